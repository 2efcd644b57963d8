"""Reading raw tables with clear errors, and writing/reading the prepared-dataset format.

Prepared dataset (DESIGN.md contract): a directory with

- ``records.parquet``: one row per study (see :data:`mtl_report.data.schema.RECORD_COLUMNS`,
  then one 0/1/null column per finding, then ``split``);
- ``cohort_log.json``: the funnel of the preparation run;
- ``dataset.json``: what the data is (source, synthetic or not, findings, vitals, seed);
- ``cleaning.json``: the transform fitted on the train split (vital ranges and min-max
  statistics, category vocabularies, abbreviations), so inference applies the same one.

Outputs are written to a temporary sibling directory and renamed at the end, so an interrupted
run never leaves a half-written dataset behind (:func:`mtl_report.data.outputs.atomic_dir`, which
also refuses outputs holding the user's files or inputs, and recovers after a kill).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mtl_report.data.cohort import CohortLog
from mtl_report.data.errors import DataError
from mtl_report.data.outputs import atomic_dir  # noqa: F401 - re-exported (older imports)
from mtl_report.data.schema import RECORD_COLUMNS, SPLITS

FORMAT_VERSION = 1


def find_file(root: Path, candidates: Sequence[str], what: str) -> Path:
    """First of ``candidates`` (paths relative to ``root``) that exists, or a DataError."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: directory not found ({what})")
    for name in candidates:
        path = root / name
        if path.is_file():
            return path
    raise DataError(f"{root}: no {what} found (looked for {', '.join(candidates)})")


def read_table(
    path: Path, required: Sequence[str], dtype: dict | None = None, **kwargs
) -> pd.DataFrame:
    """Read a CSV (plain or gzipped) and check that it has the ``required`` columns.

    Raises:
        DataError: naming the file when it is missing, unreadable, or lacks a column.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        header = pd.read_csv(path, nrows=0)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: cannot read as CSV ({exc})") from exc
    missing = [c for c in required if c not in header.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    try:
        return pd.read_csv(path, dtype=dtype, low_memory=False, **kwargs)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: cannot read as CSV ({exc})") from exc


@dataclass
class PreparedDataset:
    """A prepared dataset in memory. ``records`` has image paths made absolute."""

    root: Path
    records: pd.DataFrame
    metadata: dict
    cleaning: dict
    cohort: CohortLog

    @property
    def kind(self) -> str:
        return self.metadata.get("kind", "report")

    @property
    def findings(self) -> list[str]:
        return list(self.metadata.get("findings", []))

    @property
    def finding_columns(self) -> list[str]:
        return list(self.metadata.get("finding_columns", []))

    def split(self, name: str) -> pd.DataFrame:
        return self.records[self.records["split"] == name]


CLASSIFICATION_COLUMNS: tuple[str, ...] = (
    "study_id",
    "subject_id",
    "image_path",
    "label",
    "report",
)


def _required_columns(metadata: dict) -> list[str]:
    if metadata.get("kind", "report") == "classification":
        return [*CLASSIFICATION_COLUMNS, "split"]
    return [*RECORD_COLUMNS, *metadata["finding_columns"], "split"]


def _check_records(records: pd.DataFrame, metadata: dict, where: str) -> None:
    missing = [c for c in _required_columns(metadata) if c not in records.columns]
    if missing:
        raise DataError(f"{where}: records lack column(s) {', '.join(missing)}")
    bad = set(records["split"].dropna().unique()) - set(SPLITS)
    if bad:
        raise DataError(f"{where}: unknown split name(s) {sorted(bad)}")
    if records["study_id"].duplicated().any():
        raise DataError(f"{where}: duplicate study_id values")


def write_prepared(
    out: Path,
    records: pd.DataFrame,
    cohort: CohortLog,
    metadata: dict,
    cleaning: dict,
) -> None:
    """Write the prepared-dataset files into ``out`` (an existing directory).

    ``metadata["kind"]`` is ``"report"`` (default: the multi-task format with vitals, report
    and findings) or ``"classification"`` (image, label, subject id, optional report text).
    """
    out = Path(out)
    metadata = {"kind": "report", **metadata}
    if records.empty:
        # Why here: every preparer ends in this function, so none can write a 0-study
        # dataset that only fails later (or trains nothing) with exit code 0.
        dropped = cohort.dropped_total()
        if cohort.rows_in == 0 or not dropped:
            raise DataError(f"no studies: the {cohort.source} input has no rows")
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(dropped.items()))
        raise DataError(
            f"no studies: all {cohort.rows_in} {cohort.unit} of the {cohort.source} input "
            f"were dropped ({reasons})"
        )
    _check_records(records, metadata, str(out))
    required = _required_columns(metadata)
    extra = [c for c in records.columns if c not in required]
    records = records[[*required, *extra]].reset_index(drop=True)
    records.to_parquet(out / "records.parquet", index=False)
    cohort.write(out / "cohort_log.json")
    meta = {"format_version": FORMAT_VERSION, **metadata}
    meta["n_studies"] = len(records)
    meta["splits"] = {s: int((records["split"] == s).sum()) for s in SPLITS}
    (out / "dataset.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    (out / "cleaning.json").write_text(json.dumps(cleaning, indent=2) + "\n")


def load_prepared(root: Path) -> PreparedDataset:
    """Read a prepared dataset directory written by :func:`write_prepared`."""
    root = Path(root)
    for name in ("records.parquet", "dataset.json", "cleaning.json", "cohort_log.json"):
        if not (root / name).is_file():
            raise DataError(f"{root}: not a prepared dataset ({name} missing)")
    try:
        metadata = json.loads((root / "dataset.json").read_text())
        cleaning = json.loads((root / "cleaning.json").read_text())
        cohort = CohortLog.read(root / "cohort_log.json")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"{root}: corrupt prepared dataset (a JSON file is unreadable: {exc}); re-run prepare"
        ) from exc
    try:
        records = pd.read_parquet(root / "records.parquet")
    except Exception as exc:  # pyarrow's ArrowInvalid / OSError / ValueError, by engine
        raise DataError(
            f"{root}: corrupt prepared dataset (records.parquet unreadable); re-run prepare"
        ) from exc
    _check_records(records, metadata, str(root))
    paths = records["image_path"]
    has_path = paths.notna() & (paths != "")
    records.loc[has_path, "image_path"] = [
        p if os.path.isabs(p) else str(root / p) for p in paths[has_path]
    ]
    return PreparedDataset(
        root=root,
        records=records,
        metadata=metadata,
        cleaning=cleaning,
        cohort=cohort,
    )
