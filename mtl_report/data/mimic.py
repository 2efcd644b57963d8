"""MIMIC-CXR(-JPG) ↔ MIMIC-IV-ED linkage: one frontal X-ray per study with its ED stay.

Reads the real PhysioNet layouts and column names:

- MIMIC-CXR-JPG 2.x (``--cxr-root``): ``mimic-cxr-2.0.0-metadata.csv.gz``,
  ``mimic-cxr-2.0.0-chexpert.csv.gz``, images ``files/p1X/pSUBJECT/sSTUDY/DICOM_ID.jpg``;
  reports of MIMIC-CXR at ``files/p1X/pSUBJECT/sSTUDY.txt`` (``--reports-root``, default
  the same root).
- MIMIC-IV-ED 2.2 (``--ed-root``): ``ed/edstays.csv.gz``, ``ed/triage.csv.gz``,
  ``ed/diagnosis.csv.gz`` (``ed/`` may be omitted; plain ``.csv`` is accepted too).

Linkage rule: a study belongs to an ED stay of the same subject when the study's datetime
(``StudyDate`` + ``StudyTime``) lies in ``[intime - window, outtime + window]``. When several
stays qualify, the one containing the study wins over one only reached through the window,
then the stay whose ``intime`` is closest before the study (the visit in progress), then the
lower ``stay_id``. A study without ``StudyTime`` cannot be placed in a stay and is dropped
(counted). The join is an interval join over a merge on ``subject_id``: vectorised, no loop
over rows; at MIMIC's full size it takes seconds (``bench/bench_linkage.py``).

One frontal image per study: ``PA`` preferred over ``AP``, then the lowest ``dicom_id``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mtl_report.data.assemble import clean_features, finalise_records, with_record_columns
from mtl_report.data.cleaning import CleaningConfig, chexpert_findings, clean_acuity
from mtl_report.data.cohort import CohortLog
from mtl_report.data.errors import DataError
from mtl_report.data.images import drop_masks, verify_images
from mtl_report.data.io import find_file, read_table, write_prepared
from mtl_report.data.outputs import atomic_dir, check_prepared_out
from mtl_report.data.reports import extract_sections
from mtl_report.data.schema import VITALS, finding_columns
from mtl_report.data.splits import DEFAULT_FRACTIONS, balanced_subset, duplicate_reports

METADATA_COLUMNS = ("dicom_id", "subject_id", "study_id", "ViewPosition", "StudyDate", "StudyTime")
EDSTAYS_COLUMNS = ("subject_id", "stay_id", "intime", "outtime", "gender", "race")
TRIAGE_COLUMNS = ("subject_id", "stay_id", *sorted(VITALS), "acuity", "chiefcomplaint")
DIAGNOSIS_COLUMNS = ("subject_id", "stay_id", "seq_num", "icd_title")

FRONTAL_VIEWS = {"PA": 0, "AP": 1}


@dataclass
class MimicTables:
    """The raw MIMIC tables the linkage needs (as read, unvalidated values)."""

    metadata: pd.DataFrame
    chexpert: pd.DataFrame
    edstays: pd.DataFrame
    triage: pd.DataFrame
    diagnosis: pd.DataFrame


@dataclass
class MimicPrepConfig:
    """Options of ``mtl-report prepare mimic``.

    Attributes:
        window_hours: extend every ED stay by this many hours on both sides.
        balanced: size of the balanced subset (``None``: keep the whole cohort). The default
            10,000 gives the 7k/2k/1k train/val/test of the Aksoy et al. set-up.
        seed: seed of the subset and the split.
        fractions: train/val/test fractions of studies (split by patient).
        verify_images: decode every selected image (draft mode) to catch corrupt files,
            and drop images outside the size limits (:mod:`mtl_report.data.images`).
        cleaning: cleaning rules and the findings to model.
    """

    window_hours: float = 0.0
    balanced: int | None = 10_000
    seed: int = 0
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    verify_images: bool = True
    cleaning: CleaningConfig = field(default_factory=CleaningConfig)

    def __post_init__(self) -> None:
        if self.window_hours < 0:
            raise DataError(f"--window-hours must be >= 0, got {self.window_hours}")
        if self.balanced is not None and self.balanced <= 0:
            raise DataError(f"--balanced must be positive, got {self.balanced}")


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------
def _gz_or_csv(name: str, prefix: str = "") -> list[str]:
    return [f"{prefix}{name}.csv.gz", f"{prefix}{name}.csv"]


def read_mimic_tables(cxr_root: Path, ed_root: Path) -> MimicTables:
    """Read the five tables, checking files and columns (one-line DataError otherwise)."""
    meta = find_file(cxr_root, _gz_or_csv("mimic-cxr-2.0.0-metadata"), "MIMIC-CXR metadata")
    chex = find_file(cxr_root, _gz_or_csv("mimic-cxr-2.0.0-chexpert"), "CheXpert labels")
    ed = [*_gz_or_csv("edstays", "ed/"), *_gz_or_csv("edstays")]
    edstays = find_file(ed_root, ed, "MIMIC-IV-ED edstays")
    triage = find_file(edstays.parent, _gz_or_csv("triage"), "MIMIC-IV-ED triage")
    diagnosis = find_file(edstays.parent, _gz_or_csv("diagnosis"), "MIMIC-IV-ED diagnosis")
    return MimicTables(
        metadata=read_table(meta, METADATA_COLUMNS, dtype={"dicom_id": str}),
        chexpert=read_table(chex, ("subject_id", "study_id")),
        edstays=read_table(edstays, EDSTAYS_COLUMNS),
        triage=read_table(triage, TRIAGE_COLUMNS, dtype={"chiefcomplaint": str, "pain": str}),
        diagnosis=read_table(diagnosis, DIAGNOSIS_COLUMNS, dtype={"icd_title": str}),
    )


def report_path(root: Path, subject_id: int | str, study_id: int | str) -> Path:
    """``files/p1X/pSUBJECT/sSTUDY.txt`` of MIMIC-CXR."""
    subject = str(subject_id)
    return Path(root) / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study_id}.txt"


def image_path(root: Path, subject_id: int | str, study_id: int | str, dicom_id: str) -> Path:
    """``files/p1X/pSUBJECT/sSTUDY/DICOM_ID.jpg`` of MIMIC-CXR-JPG."""
    subject = str(subject_id)
    return (
        Path(root)
        / "files"
        / f"p{subject[:2]}"
        / f"p{subject}"
        / f"s{study_id}"
        / f"{dicom_id}.jpg"
    )


def read_reports(
    root: Path, studies: pd.DataFrame, progress: Callable[[int], None] | None = None
) -> pd.Series:
    """Report texts of ``studies`` (subject_id, study_id) by study_id; missing file → NaN."""
    texts = {}
    for subject, study in zip(studies["subject_id"], studies["study_id"]):
        path = report_path(root, subject, study)
        try:
            texts[study] = path.read_text(encoding="utf-8", errors="replace")
        except (FileNotFoundError, IsADirectoryError):
            texts[study] = np.nan
        if progress:
            progress(1)
    return pd.Series(texts, dtype=object, name="text")


# --------------------------------------------------------------------------------------
# Linkage (vectorised)
# --------------------------------------------------------------------------------------
def study_datetime(date: pd.Series, time: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Datetime from MIMIC-CXR's ``StudyDate`` (YYYYMMDD) and ``StudyTime`` (HHMMSS.fff).

    Returns the datetimes and two masks: unparseable date, missing/invalid time.
    """
    date_num = pd.to_numeric(date, errors="coerce")
    day = pd.to_datetime(
        date_num.astype("Int64").astype("string"), format="%Y%m%d", errors="coerce"
    )
    t = pd.to_numeric(time, errors="coerce")
    hours, minutes, seconds = t // 10000, (t // 100) % 100, t % 100
    valid_time = t.notna() & (t >= 0) & (hours < 24) & (minutes < 60) & (seconds < 60)
    offset = pd.to_timedelta(hours * 3600 + minutes * 60 + seconds, unit="s")
    when = (day + offset).where(valid_time & day.notna())
    return when, day.isna(), day.notna() & ~valid_time


def select_frontal(metadata: pd.DataFrame) -> pd.DataFrame:
    """One frontal image row per study: PA over AP, then the lowest dicom_id."""
    view = metadata["ViewPosition"].astype("string").str.strip().str.upper()
    rank = view.map(FRONTAL_VIEWS)
    frontal = metadata.assign(_rank=rank)[rank.notna()]
    frontal = frontal.sort_values(["study_id", "_rank", "dicom_id"], kind="stable")
    return frontal.drop_duplicates("study_id").drop(columns="_rank")


def link_stays(
    studies: pd.DataFrame, edstays: pd.DataFrame, window_hours: float = 0.0
) -> pd.DataFrame:
    """Best ED stay per study (see the module docstring for the rule).

    Args:
        studies: ``study_id, subject_id, study_datetime``.
        edstays: ``subject_id, stay_id, intime, outtime`` (datetimes).

    Returns:
        ``study_id, stay_id, inside`` for the studies that link (``inside``: within the stay
        itself rather than only within the window).
    """
    window = pd.Timedelta(hours=window_hours)
    pairs = studies[["study_id", "subject_id", "study_datetime"]].merge(
        edstays[["subject_id", "stay_id", "intime", "outtime"]], on="subject_id", how="inner"
    )
    t = pairs["study_datetime"]
    in_window = (t >= pairs["intime"] - window) & (t <= pairs["outtime"] + window)
    pairs = pairs[in_window]
    t = pairs["study_datetime"]
    inside = (t >= pairs["intime"]) & (t <= pairs["outtime"])
    since_intime = (t - pairs["intime"]).abs()
    pairs = pairs.assign(inside=inside, _outside=~inside, _since=since_intime)
    pairs = pairs.sort_values(["study_id", "_outside", "_since", "stay_id"], kind="stable")
    best = pairs.drop_duplicates("study_id")
    return best[["study_id", "stay_id", "inside"]].reset_index(drop=True)


def _parse_stays(edstays: pd.DataFrame, log: CohortLog) -> pd.DataFrame:
    """Stays with parseable, ordered in/out times; bad rows are counted and left out."""
    stays = edstays.copy()
    stays["intime"] = pd.to_datetime(stays["intime"], errors="coerce")
    stays["outtime"] = pd.to_datetime(stays["outtime"], errors="coerce")
    stays["subject_id"] = pd.to_numeric(stays["subject_id"], errors="coerce")
    bad_time = stays["intime"].isna() | stays["outtime"].isna()
    reversed_ = ~bad_time & (stays["outtime"] < stays["intime"])
    bad_id = stays["subject_id"].isna() | stays["stay_id"].isna()
    log.count_values(
        "ED stays left out",
        {
            "unparseable_intime_or_outtime": int(bad_time.sum()),
            "outtime_before_intime": int(reversed_.sum()),
            "missing_ids": int(bad_id.sum()),
        },
    )
    stays = stays[~(bad_time | reversed_ | bad_id)]
    stays["subject_id"] = stays["subject_id"].astype("int64")
    return stays


def link_mimic(
    tables: MimicTables,
    config: MimicPrepConfig,
    log: CohortLog,
    reports: pd.Series | Callable[[pd.DataFrame], pd.Series],
) -> pd.DataFrame:
    """Linked, unsplit studies with raw ED features, report sections and finding labels.

    Args:
        reports: report texts indexed by study_id, or a function reading them for the
            linked studies (only those are read from disk).
    """
    meta = tables.metadata.copy()
    meta["subject_id"] = pd.to_numeric(meta["subject_id"], errors="coerce")
    meta["study_id"] = pd.to_numeric(meta["study_id"], errors="coerce")
    bad_rows = meta["subject_id"].isna() | meta["study_id"].isna() | meta["dicom_id"].isna()
    log.info["image_rows_in_metadata"] = len(meta)
    log.count_values("metadata rows left out", {"missing_ids": int(bad_rows.sum())})
    meta = meta[~bad_rows].astype({"subject_id": "int64", "study_id": "int64"})

    studies = meta.drop_duplicates("study_id")[["study_id", "subject_id", "StudyDate", "StudyTime"]]
    studies = studies.set_index("study_id", drop=False)
    log.start("studies in MIMIC-CXR metadata", len(studies))

    when, bad_date, bad_time = study_datetime(studies["StudyDate"], studies["StudyTime"])
    studies = studies.assign(study_datetime=when)
    studies = log.filter(
        "study date and time",
        studies,
        {"unparseable StudyDate": bad_date, "missing or invalid StudyTime": bad_time},
    )

    frontal = select_frontal(meta).set_index("study_id")
    has_frontal = studies.index.isin(frontal.index)
    studies = log.filter(
        "one frontal image (PA > AP)",
        studies,
        {"no frontal (PA/AP) image": pd.Series(~has_frontal, index=studies.index)},
    )
    studies = studies.join(frontal[["dicom_id", "ViewPosition"]])

    stays = _parse_stays(tables.edstays, log)
    links = link_stays(studies.reset_index(drop=True), stays, config.window_hours)
    links = links.set_index("study_id")
    has_stay_subject = studies["subject_id"].isin(stays["subject_id"])
    linked = studies.index.isin(links.index)
    studies = log.filter(
        "ED stay linkage",
        studies,
        {
            "subject has no ED stay": ~has_stay_subject,
            "no ED stay within the time window": pd.Series(~linked, index=studies.index),
        },
    )
    studies = studies.join(links)
    log.count_values(
        "linkage",
        {
            "inside_stay": int(studies["inside"].sum()),
            "within_window_only": int((~studies["inside"]).sum()),
        },
    )

    texts = reports(studies) if callable(reports) else reports
    texts = texts.reindex(studies.index)
    sections = extract_sections(texts)
    studies = studies.join(sections)
    studies = log.filter(
        "report sections",
        studies,
        {
            "report file missing": texts.isna(),
            "no FINDINGS or IMPRESSION section": studies["report_rule"] == "none",
        },
    )
    log.count_values("report rule", studies["report_rule"].value_counts().to_dict())

    # ED features of the linked stay.
    stays = stays.drop_duplicates("stay_id").set_index("stay_id")
    studies = studies.join(stays[["gender", "race"]], on="stay_id")
    triage = tables.triage.drop_duplicates("stay_id").set_index("stay_id")
    triage = triage[[*VITALS, "acuity", "chiefcomplaint"]]
    studies = studies.join(triage, on="stay_id")
    log.count_values(
        "linked stays without triage",
        {"no_triage_row": int((~studies["stay_id"].isin(triage.index)).sum())},
    )
    diag = tables.diagnosis.copy()
    diag["seq_num"] = pd.to_numeric(diag["seq_num"], errors="coerce")
    primary = diag.sort_values(["stay_id", "seq_num"], kind="stable").drop_duplicates("stay_id")
    studies = studies.join(primary.set_index("stay_id")["icd_title"], on="stay_id")
    acuity, invalid = clean_acuity(studies["acuity"])
    studies["acuity"] = acuity
    log.count_values("acuity set to missing", {"outside_1_to_5": invalid})

    # Finding labels (CheXpert labeler output); studies absent from the table stay missing.
    chex = tables.chexpert.copy()
    chex["study_id"] = pd.to_numeric(chex["study_id"], errors="coerce")
    chex = chex.dropna(subset=["study_id"]).drop_duplicates("study_id")
    chex = chex.set_index(chex["study_id"].astype("int64"))
    labels = chex.reindex(studies.index)
    findings, counts = chexpert_findings(
        labels, config.cleaning.findings, config.cleaning.uncertain
    )
    unlabelled = pd.Series(~studies.index.isin(chex.index), index=studies.index)
    findings[unlabelled] = np.nan
    log.count_values("finding labels", {**counts, "study_without_labels": int(unlabelled.sum())})
    studies = studies.join(findings)

    dup = duplicate_reports(studies, order="study_datetime")
    studies = log.filter(
        "duplicate reports",
        studies,
        {"same subject and report as an earlier study": dup},
    )
    return studies.rename(
        columns={"race": "ethnicity", "chiefcomplaint": "chief_complaint"}
    ).reset_index(drop=True)


# --------------------------------------------------------------------------------------
# The whole preparation
# --------------------------------------------------------------------------------------
def prepare_mimic(
    cxr_root: Path,
    ed_root: Path,
    out: Path,
    config: MimicPrepConfig | None = None,
    reports_root: Path | None = None,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
    metadata: dict | None = None,
    overwrite: bool = True,
) -> CohortLog:
    """Link, clean, subset, split and write a prepared dataset from MIMIC files.

    Args:
        progress: factory ``progress(description, total) -> update(n)`` for progress bars
            (the CLI passes tqdm); ``None`` for silence.
        metadata: extra entries for ``dataset.json`` (the synthetic generator marks itself).
        overwrite: replace an existing prepared dataset in ``out`` (never anything else;
            see :func:`mtl_report.data.outputs.check_prepared_out`).

    Returns:
        The cohort log (also written to ``out/cohort_log.json``).
    """
    config = config or MimicPrepConfig()
    cxr_root, ed_root = Path(cxr_root).absolute(), Path(ed_root).absolute()
    reports_root = Path(reports_root).absolute() if reports_root else cxr_root
    out = Path(out).absolute()
    inputs = [cxr_root, ed_root, reports_root, *config.cleaning.abbreviation_files]
    check_prepared_out(out, inputs, overwrite)
    tables = read_mimic_tables(cxr_root, ed_root)
    log = CohortLog("mimic" if not metadata else metadata.get("source", "mimic"))

    def read_linked(studies: pd.DataFrame) -> pd.Series:
        update = progress("reading reports", len(studies)) if progress else None
        return read_reports(reports_root, studies, update)

    with atomic_dir(out, overwrite, inputs) as tmp:
        return prepare_from_tables(
            tmp, out, tables, config, log, read_linked, cxr_root, progress, metadata or {}
        )


def prepare_from_tables(
    tmp: Path,
    out: Path,
    tables: MimicTables,
    config: MimicPrepConfig,
    log: CohortLog,
    reports,
    cxr_root: Path,
    progress,
    metadata: dict,
) -> CohortLog:
    """Link, verify, subset, clean, split and write ``tables`` into ``tmp``.

    The body of :func:`prepare_mimic`, shared with the synthetic generator so that both run
    the very same code; ``out`` is the final directory (paths under it become relative).
    """
    studies = link_mimic(tables, config, log, reports)
    paths = [
        str(image_path(cxr_root, s, st, d))
        for s, st, d in zip(studies["subject_id"], studies["study_id"], studies["dicom_id"])
    ]
    studies["image_path"] = paths
    if config.verify_images:
        update = progress("verifying images", len(studies)) if progress else None
        status = verify_images(studies["image_path"], update)
        studies = log.filter(
            "image files",
            studies,
            drop_masks(status),
        )
    finding_cols = finding_columns(config.cleaning.findings)
    if config.balanced is not None:
        keep = balanced_subset(studies, config.balanced, finding_cols, seed=config.seed)
        selected = studies.index.isin(keep)
        studies = log.filter(
            "balanced subset",
            studies,
            {"not selected for the balanced subset": pd.Series(~selected, index=studies.index)},
        )
    records = with_record_columns(studies, config.cleaning.findings)
    records = clean_features(records, config.cleaning, log)
    records, cleaning = finalise_records(
        records, config.cleaning, log, seed=config.seed, fractions=config.fractions
    )
    # Paths inside the output directory are stored relative to it (the dataset can move).
    for root in (tmp, out):
        inside = records["image_path"].str.startswith(str(root) + os.sep)
        records.loc[inside, "image_path"] = [
            os.path.relpath(p, root) for p in records.loc[inside, "image_path"]
        ]
    info = {
        "source": log.source,
        "synthetic": False,
        "findings": list(config.cleaning.findings),
        "finding_columns": finding_cols,
        "vitals": list(VITALS),
        "seed": config.seed,
        "window_hours": config.window_hours,
        "balanced": config.balanced,
        "cxr_root": str(cxr_root),
        **metadata,
    }
    write_prepared(tmp, records, log, info, cleaning)
    return log
