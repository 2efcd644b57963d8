"""Balanced subsets and patient-level train/val/test splits.

Splits are by patient: every study of a subject lands in the same split, so a model is never
tested on a patient it saw in training (images of one patient are strongly correlated).
Both functions are deterministic for a seed and independent of the row order they are given
(they sort by ``study_id`` first).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from mtl_report.data.schema import SPLITS

DEFAULT_FRACTIONS = (0.7, 0.2, 0.1)


def duplicate_reports(df: pd.DataFrame, order: str | None = None) -> pd.Series:
    """Studies whose report repeats an earlier study of the same subject, word for word.

    Identical reports of *different* patients are kept: normal reports are often identical
    and removing them would erase the normal class. Repeats within one patient are usually
    follow-up films copied forward, which would leak between nearby studies and reward
    memorising. The earliest study (by ``order``, else ``study_id``) is kept.
    """
    key = df["report"].fillna("").str.lower().str.replace(r"\s+", " ", regex=True).str.strip()
    frame = pd.DataFrame(
        {"subject_id": df["subject_id"], "key": key, "order": df[order or "study_id"]}
    )
    ordered = frame.sort_values("order", kind="stable")
    dup = ordered.duplicated(["subject_id", "key"], keep="first") & (ordered["key"] != "")
    return dup.reindex(df.index)


def balanced_subset(
    df: pd.DataFrame, n: int, finding_cols: Sequence[str], seed: int = 0
) -> pd.Index:
    """Index of ``n`` studies, half normal and half abnormal, abnormal balanced over findings.

    A study is abnormal when any finding is 1 and normal when all are 0 (missing labels count
    as not positive). Abnormal studies are drawn finding by finding, rarest first, until each
    finding has ``n_abnormal / k`` positive studies or runs out; the rest is filled at random.
    When one class is short, the other fills the gap. If ``n >= len(df)`` all rows are kept.
    """
    if n <= 0:
        raise ValueError("balanced subset size must be positive")
    if n >= len(df):
        return df.index
    rng = np.random.default_rng(seed)
    df = df.sort_values("study_id", kind="stable")
    positives = (df[list(finding_cols)] == 1).to_numpy()
    abnormal = positives.any(axis=1)
    normal_idx = np.flatnonzero(~abnormal)
    abnormal_idx = np.flatnonzero(abnormal)

    n_normal = min(len(normal_idx), n // 2)
    n_abnormal = min(len(abnormal_idx), n - n_normal)
    n_normal = min(len(normal_idx), n - n_abnormal)

    chosen = np.zeros(len(df), dtype=bool)
    chosen[rng.choice(normal_idx, size=n_normal, replace=False)] = True

    if n_abnormal:
        quota = n_abnormal / len(finding_cols)
        order = np.argsort(positives[abnormal_idx].sum(axis=0), kind="stable")
        for j in order:
            have = int((chosen & positives[:, j]).sum())
            need = round(quota) - have
            pool = np.flatnonzero(positives[:, j] & ~chosen)
            room = n_normal + n_abnormal - int(chosen.sum())
            take = max(0, min(need, len(pool), room))
            if take:
                chosen[rng.choice(pool, size=take, replace=False)] = True
        missing = n_normal + n_abnormal - int(chosen.sum())
        if missing > 0:
            pool = np.flatnonzero(abnormal & ~chosen)
            chosen[rng.choice(pool, size=min(missing, len(pool)), replace=False)] = True
    return df.index[chosen]


def split_by_patient(
    df: pd.DataFrame,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    stratify: pd.Series | None = None,
) -> pd.Series:
    """Assign ``train``/``val``/``test`` per subject, about ``fractions`` of the studies each.

    Subjects are shuffled within strata (``stratify``: a per-study label such as "abnormal";
    a subject takes its most frequent value) and cut where the running share of studies
    crosses the fraction boundaries, so split sizes are close to the fractions in studies,
    not only in patients.
    """
    fractions = np.asarray(fractions, dtype="float64")
    if len(fractions) != len(SPLITS) or np.any(fractions < 0) or fractions.sum() <= 0:
        raise ValueError(f"split fractions must be three non-negative numbers, got {fractions}")
    fractions = fractions / fractions.sum()
    bounds = np.cumsum(fractions)[:-1]
    rng = np.random.default_rng(seed)
    subj = df["subject_id"].astype(str)
    strata = stratify.reindex(df.index) if stratify is not None else pd.Series(0, index=df.index)
    per_subject = (
        pd.DataFrame({"subject": subj, "stratum": strata.astype(str)})
        .groupby("subject")
        .agg(n=("stratum", "size"), stratum=("stratum", lambda s: s.value_counts().index[0]))
        .sort_index()
    )
    assignment = {}
    for _, group in per_subject.groupby("stratum", sort=True):
        perm = group.iloc[rng.permutation(len(group))]
        counts = perm["n"].to_numpy(dtype="float64")
        midpoints = (np.cumsum(counts) - counts / 2) / counts.sum()
        labels = np.searchsorted(bounds, midpoints, side="right")
        assignment.update(zip(perm.index, np.asarray(SPLITS)[labels]))
    return subj.map(assignment).rename("split")


def fractions_for_rest(
    preset: pd.Series, total: int, fractions: Sequence[float] = DEFAULT_FRACTIONS
) -> list[float]:
    """Split fractions for the studies without a preset split.

    Each split gets what it lacks to reach its share of all ``total`` studies (never less
    than nothing). R2Gen's split file lists 2,069 train and 296 val studies and no test
    study; the plain 70/20/10 fractions would put only about 90 of the other studies in test,
    so those fill val and test instead, and the whole lands near 70/20/10. When the preset
    studies already fill every share, the plain fractions are used.
    """
    shares = np.asarray(fractions, dtype="float64")
    shares = shares / shares.sum()
    have = np.array([(preset == s).sum() for s in SPLITS], dtype="float64")
    lack = np.clip(np.round(shares * total - have, 9), 0.0, None)
    return (lack / lack.sum()).tolist() if lack.sum() > 0 else shares.tolist()
