"""Where the findings come from: a run's findings head (cut-offs chosen on its validation
split) or a dataset's labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mtl_report.data.errors import DataError
from mtl_report.data.io import PreparedDataset
from mtl_report.llm_report.description import (
    THRESHOLDS_FILE,
    DescriptionThresholds,
    choose_thresholds,
    finding_states,
)


@dataclass
class _Sources:
    """The findings of the split to report, and how they were obtained."""

    vectors: np.ndarray  # (N, K) probabilities or labels
    states: list[list[str]]
    thresholds: DescriptionThresholds | None
    run: str | None


def _sections(record: pd.Series) -> tuple[str, str]:
    findings = str(record.get("findings_text") or "").strip()
    impression = str(record.get("impression_text") or "").strip()
    if not findings and not impression:
        findings = str(record.get("report") or "").strip()
    return findings, impression


def _split_records(ds: PreparedDataset, split: str, limit: int | None) -> pd.DataFrame:
    records = ds.split(split)
    if records.empty:
        raise DataError(f"{ds.root}: no studies in split {split!r}")
    return records.head(limit) if limit else records


def _labels(records: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    return records[list(columns)].to_numpy(dtype="float64")


def findings_from_run(
    run_dir: Path,
    ds: PreparedDataset,
    split: str,
    records: pd.DataFrame,
    npv: float,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> _Sources:
    """Probabilities of the run's findings head on ``split``; cut-offs from its val split."""
    from mtl_report.evaluate import predict_split
    from mtl_report.run import Run

    run = Run.read(run_dir)
    model = run.load_model()
    if "findings" not in model.output:
        raise DataError(
            f"{run_dir}: the model has no findings head (set-up {run.info.get('setup')}); "
            "use a multi-task or stl_findings run, or --findings-from labels"
        )
    if list(run.model_config.findings) != list(ds.findings):
        raise DataError(
            f"{run_dir}: the run models {list(run.model_config.findings)}, the data has "
            f"{list(ds.findings)}"
        )
    val = ds.split("val")
    if val.empty:
        raise DataError(f"{ds.root}: no validation studies to choose the description cut-offs on")
    kw = dict(cache_dir=cache_dir, model=model, progress=progress, generate_text=False)
    val_pred = predict_split(run, ds, "val", **kw)
    thresholds = choose_thresholds(
        _labels(val, ds.finding_columns),
        val_pred.findings_probs,
        ds.findings,
        present_at=run.findings_thresholds(),
        npv=npv,
    )
    thresholds.save(run.root / THRESHOLDS_FILE)  # stored with the run
    pred = predict_split(run, ds, split, **kw)
    probs = pred.findings_probs[: len(records)]
    return _Sources(probs, finding_states(probs, thresholds), thresholds, str(run_dir))


def findings_from_labels(ds: PreparedDataset, records: pd.DataFrame) -> _Sources:
    """The dataset's labels as the findings (1 present, 0 absent, unknown uncertain)."""
    labels = _labels(records, ds.finding_columns)
    return _Sources(labels, finding_states(labels), None, None)


def _findings(ds, split, records, config, run, cache_dir, progress) -> _Sources:
    """The findings of ``records`` as ``config.findings_from`` says (a run's head or labels)."""
    if config.findings_from == "labels":
        return findings_from_labels(ds, records)
    if run is None:
        raise DataError("--run is required unless --findings-from labels")
    return findings_from_run(
        Path(run),
        ds,
        split,
        records,
        config.npv,
        Path(cache_dir) if cache_dir else None,
        progress=progress is not None,
    )
