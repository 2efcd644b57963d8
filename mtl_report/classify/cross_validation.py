"""Patient-grouped, label-stratified k-fold cross-validation of the classifier."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtl_report.classify.config import ClassifierTrainConfig, _write_json
from mtl_report.classify.data import load_classification
from mtl_report.classify.train import train_classifier
from mtl_report.config import ConfigError
from mtl_report.data.errors import DataError
from mtl_report.data.io import PreparedDataset
from mtl_report.models.radgen import RadGenConfig


def cv_splits(
    records: pd.DataFrame, folds: int = 5, seed: int = 0, val_fraction: float = 0.15
) -> list[pd.Series]:
    """Per fold, a ``split`` column: ``test`` (the fold), ``val`` and ``train``.

    Outer folds: :class:`sklearn.model_selection.StratifiedGroupKFold` by ``subject_id``
    (stratified by label). The validation part (early stopping) is one fold of a second
    stratified group split of the remaining patients, about ``val_fraction`` of them.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if folds < 2:
        raise ConfigError(f"folds must be >= 2, got {folds}")
    labels = records["label"].astype(str).to_numpy()
    groups = records["subject_id"].astype(str).to_numpy()
    n_groups = len(set(groups))
    if n_groups < folds:
        raise DataError(f"{n_groups} patients cannot make {folds} folds")
    small = {c: n for c, n in pd.Series(labels).value_counts().items() if n < folds}
    if small:
        raise DataError(f"class(es) with fewer studies than folds ({folds}): {small}")
    outer = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    out = []
    for train_idx, test_idx in outer.split(np.zeros(len(labels)), labels, groups):
        split = np.array(["train"] * len(labels), dtype=object)
        split[test_idx] = "test"
        inner_k = max(2, round(1.0 / val_fraction))
        inner = StratifiedGroupKFold(n_splits=inner_k, shuffle=True, random_state=seed + 1)
        _, val_pos = next(
            inner.split(np.zeros(len(train_idx)), labels[train_idx], groups[train_idx])
        )
        split[train_idx[val_pos]] = "val"
        out.append(pd.Series(split, index=records.index, name="split"))
    return out


def _run_or_reuse(ds, run_dir: Path, model_config, train_config, verbose, resume: bool) -> dict:
    """Train one run (test split scored) or, with ``resume``, reuse its ``metrics.json``."""
    if resume and (run_dir / "metrics.json").is_file():
        m = json.loads((run_dir / "metrics.json").read_text())
        history = json.loads((run_dir / "history.json").read_text())
        m["epochs_run"] = len(history.get("loss", []))
        return m
    if resume and run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)  # an interrupted run starts again
    result = train_classifier(
        ds, run_dir, model_config, train_config, eval_split="test", verbose=verbose
    )
    m = dict(result.metrics or {})
    m["epochs_run"] = result.epochs_run
    return m


def summarize_folds(fold_metrics: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Mean ± std over folds of every numeric metric (``mean_std_table``)."""
    from mtl_report.metrics import mean_std_table

    cleaned = []
    for m in fold_metrics:
        m = dict(m)
        cls = dict(m.get("classification", {}))
        cls.pop("confusion_matrix", None)
        cls.pop("classes", None)
        m["classification"] = cls
        m.pop("split", None)
        cleaned.append(m)
    return mean_std_table(cleaned)


def cross_validate(
    data: str | Path | PreparedDataset,
    out: str | Path,
    model_config: RadGenConfig | None = None,
    train_config: ClassifierTrainConfig | None = None,
    *,
    folds: int = 5,
    verbose: int | str = 0,
    progress: Callable[[str], None] | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """K-fold patient-grouped stratified CV; one run per fold under ``out/fold_<k>``.

    With ``resume`` a fold whose run already has ``metrics.json`` is not trained again
    (an interrupted CV continues; same data, seed and folds give the same splits).

    Returns ``{"folds": [metrics...], "summary": {metric: {mean, std, n}}, "confusion_matrix":
    summed over folds}``; also written to ``out/cv_metrics.json`` and ``out/cv_summary.csv``.
    """
    ds = load_classification(data)
    train_config = train_config or ClassifierTrainConfig()
    out = Path(out)
    if not resume and out.exists() and any(out.iterdir()):
        raise DataError(f"{out}: not empty (choose another --out, or --resume)")
    splits = cv_splits(ds.records, folds, train_config.seed, train_config.val_fraction)
    fold_metrics = []
    for k, split in enumerate(splits):
        if progress:
            progress(f"fold {k + 1}/{folds}")
        records = ds.records.assign(split=split.to_numpy())
        m = _run_or_reuse(
            replace(ds, records=records),
            out / f"fold_{k}",
            model_config,
            train_config,
            verbose,
            resume,
        )
        fold_metrics.append(m)
    summary = summarize_folds(fold_metrics)
    cm = np.sum([m["classification"]["confusion_matrix"] for m in fold_metrics], axis=0)
    result = {
        "folds": fold_metrics,
        "summary": {
            name: {"mean": r["mean"], "std": r["std"], "n": int(r["n"])}
            for name, r in summary.iterrows()
        },
        "confusion_matrix": cm.tolist(),
        "classes": fold_metrics[0]["classification"]["classes"],
    }
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "cv_metrics.json", result)
    summary.to_csv(out / "cv_summary.csv")
    return result
