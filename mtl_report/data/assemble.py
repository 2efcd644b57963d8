"""The steps every report-dataset source shares once it has one row per study.

Sources (MIMIC, IU X-ray, synthetic) differ in how they find studies; from a table of raw
per-study features on, they are prepared the same way: normalise categories and text, split by
patient, fit the cleaning transform on the train split, apply it, write the dataset.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from mtl_report.data.cleaning import (
    CleaningConfig,
    apply_categories,
    clean_vitals,
    ethnicity_group,
    fit_cleaning,
    load_abbreviations,
    normalise_gender,
    normalise_text,
    scaled_vitals,
)
from mtl_report.data.cohort import CohortLog
from mtl_report.data.schema import RECORD_COLUMNS, TEXT_FEATURES, VITALS, finding_columns
from mtl_report.data.splits import DEFAULT_FRACTIONS, fractions_for_rest, split_by_patient


def with_record_columns(df: pd.DataFrame, findings: Sequence[str]) -> pd.DataFrame:
    """Add any missing record or finding column as all-missing, so sources can omit them."""
    df = df.copy()
    for col in (*RECORD_COLUMNS, *finding_columns(findings)):
        if col not in df.columns:
            df[col] = np.nan if col in VITALS or col == "acuity" else None
    if df["acuity"].dtype != "Int64":
        df["acuity"] = pd.to_numeric(df["acuity"], errors="coerce").astype("Int64")
    df["study_id"] = df["study_id"].astype(str)
    df["subject_id"] = df["subject_id"].astype(str)
    return df


def clean_features(df: pd.DataFrame, config: CleaningConfig, log: CohortLog) -> pd.DataFrame:
    """Rules that need no fitting: plausible vitals, category groups, text normalisation."""
    df = df.copy()
    vitals, counts = clean_vitals(df, config.vital_ranges, config.convert_celsius)
    df[list(VITALS)] = vitals
    log.count_values("vitals set to missing or converted", counts)
    log.count_values(
        "missing values",
        {f"{v}_missing": int(df[v].isna().sum()) for v in VITALS}
        | {"acuity_missing": int(df["acuity"].isna().sum())},
    )
    df["gender"] = normalise_gender(df["gender"])
    df["ethnicity"] = ethnicity_group(df["ethnicity"])
    abbreviations = load_abbreviations(config.abbreviation_files)
    for col in TEXT_FEATURES:
        df[col] = normalise_text(df[col], abbreviations)
    log.count_values("empty text", {f"{c}_empty": int((df[c] == "").sum()) for c in TEXT_FEATURES})
    return df


def finalise_records(
    df: pd.DataFrame,
    config: CleaningConfig,
    log: CohortLog,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    split_all: str | None = None,
    preset_split: pd.Series | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Split by patient, fit the cleaning transform on train, apply it.

    Args:
        df: one row per study with the record columns (cleaned by :func:`clean_features`).
        split_all: put every study in this split (e.g. ``"test"`` for evaluation-only data);
            the transform is then fitted on all studies and ``cleaning.json`` says so.
        preset_split: a split per study (aligned with ``df``) that studies keep where it is
            given (e.g. R2Gen's train/val lists); the others are split by patient so that the
            whole lands near ``fractions`` (:func:`~mtl_report.data.splits.fractions_for_rest`).

    Returns:
        The records with ``split`` and ``<vital>_scaled`` columns, and the fitted transform.
    """
    preset = (
        pd.Series(None, index=df.index, dtype=object)
        if preset_split is None
        else preset_split.reindex(df.index).astype(object)
    )
    df = df.assign(_preset=preset).sort_values("study_id", kind="stable").reset_index(drop=True)
    split = df.pop("_preset")
    if split_all:
        split[:] = split_all
    rest = split.isna()
    if rest.any():
        abnormal = (df[finding_columns(config.findings)] == 1).any(axis=1).astype(int)
        rest_fractions = fractions
        if not rest.all():
            rest_fractions = fractions_for_rest(split[~rest], len(df), fractions)
            log.info["fractions_of_unlisted_studies"] = [round(f, 4) for f in rest_fractions]
        split[rest] = split_by_patient(df[rest], rest_fractions, seed=seed, stratify=abnormal[rest])
    df["split"] = split
    train = df[df["split"] == "train"]
    fitted_on = "train"
    if train.empty:
        train, fitted_on = df, "all studies (no train split)"
    cleaning = fit_cleaning(train, config)
    cleaning["fitted_on"] = fitted_on
    df, unknown = apply_categories(df, cleaning["categories"])
    log.count_values("categories outside the train vocabulary", unknown)
    df = pd.concat([df, scaled_vitals(df, cleaning)], axis=1)
    return df, cleaning
