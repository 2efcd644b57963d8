"""Linear baselines for the image classifier: seconds of scikit-learn, no network.

A deep model that does not beat these has learned nothing a linear model could not:

- **pixels** (``pixels_pca_lr``): the image as the network sees it (letterboxed, grey),
  downscaled to 64 px, standardised, projected on its first 128 principal components and
  classified by a class-balanced logistic regression. The regularisation ``C`` is picked
  from a small grid on the validation split (macro-AUC), then the model is refitted on
  train + validation, the same data the network sees (it uses validation for early
  stopping).
- **source-only** (``source_only``): the same pixel model trained to tell the image
  *source* (hospital / dataset, the table's ``source`` column), whose source probabilities
  are turned into class probabilities with the training split's class shares per source:
  ``P(class | image) = Σ_s P(s | image) · P(class | s)``. On a table where source and class
  are confounded (the real Normal / Pneumonia / TB table: pediatric pneumonia, adult TB)
  this is what "detecting the hospital" alone scores; a diagnosis model must beat it,
  above all on the normals of each source (:func:`mtl_report.metrics.classification.by_source`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtl_report.data.errors import DataError
from mtl_report.metrics.classification import (
    classification_metrics,
    prediction_table,
    score_predictions,
)

PIXEL_SIZE = 64
N_COMPONENTS = 128
C_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0)
KINDS = ("pixels", "source")


def pixel_features(
    paths: Sequence[str], size: int = PIXEL_SIZE, progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """``(N, size²)`` float32 grey pixels in [0, 1], read with the network's image loader
    (:func:`mtl_report.image_decoding.load_image`: same decoding, letterboxing and size limits)."""
    from mtl_report.image_decoding import load_image

    rows = []
    for path in paths:
        rows.append(load_image(path, size)[..., 0].ravel() / 255.0)
        if progress:
            progress(1)
    return np.stack(rows).astype(np.float32)


def _model(n_train: int, c: float, seed: int):
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(),
        PCA(min(N_COMPONENTS, n_train - 1), random_state=seed),
        LogisticRegression(C=c, max_iter=5000, class_weight="balanced"),
    )


def has_sources(records: pd.DataFrame) -> bool:
    """Whether ``records`` name two image sources or more (``source`` column)."""
    if "source" not in records:
        return False
    sources = records["source"].fillna("").astype(str)
    return sources[sources != ""].nunique() > 1


def fit_linear(
    x: np.ndarray, y: np.ndarray, is_val: np.ndarray, n_classes: int, seed: int = 0
) -> tuple[Any, float]:
    """Fit the PCA + logistic-regression pipeline; ``C`` picked on the validation rows
    (``is_val``) by macro-AUC when they hold two classes or more, then refitted on all rows.

    Returns ``(fitted pipeline, C)``. ``y`` are integer labels ``0..n_classes-1``.
    """
    train, val = ~is_val, is_val
    if len(np.unique(y[train])) < 2:
        raise DataError("the linear baseline needs two classes or more in the train split")
    best_c = 0.1
    if val.any() and len(np.unique(y[val])) > 1:
        scores = {}
        for c in C_GRID:
            model = _model(int(train.sum()), c, seed).fit(x[train], y[train])
            probs = np.zeros((int(val.sum()), n_classes))
            probs[:, model.classes_] = model.predict_proba(x[val])
            scores[c] = classification_metrics(y[val], probs, range(n_classes))["macro_auc"]
        best_c = max(C_GRID, key=lambda c: (scores[c], -c))
    return _model(len(y), best_c, seed).fit(x, y), best_c


def _probabilities(model, x: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((len(x), n))
    out[:, model.classes_] = model.predict_proba(x)
    return out


def linear_baseline(
    kind: str,
    records: pd.DataFrame,
    classes: Sequence[str],
    features: Mapping[str, np.ndarray],
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Test-split class probabilities ``(N_test, k)`` of a baseline and what it chose.

    ``records`` has ``split`` (train / val / test), ``label``, ``image_path`` (and
    ``source`` for ``kind="source"``); ``features`` maps each image path to its pixels
    (:func:`pixel_features`).
    """
    if kind not in KINDS:
        raise ValueError(f"linear baseline kind must be one of {KINDS}, got {kind!r}")
    fit_rows = records[records["split"].isin(("train", "val"))]
    test = records[records["split"] == "test"]
    if fit_rows.empty or test.empty:
        raise DataError("the linear baselines need train and test studies")
    index = {c: i for i, c in enumerate(classes)}
    x_fit = np.stack([features[p] for p in fit_rows["image_path"]])
    x_test = np.stack([features[p] for p in test["image_path"]])
    is_val = (fit_rows["split"] == "val").to_numpy()
    y_fit = fit_rows["label"].astype(str).map(index).to_numpy(int)
    if kind == "pixels":
        model, c = fit_linear(x_fit, y_fit, is_val, len(classes), seed)
        return _probabilities(model, x_test, len(classes)), {"C": c}
    if not has_sources(records):
        raise DataError("the source-only baseline needs a 'source' column with two sources")
    sources = sorted(fit_rows["source"].astype(str).unique())
    if len(sources) < 2:
        raise DataError(f"the source-only baseline needs two sources or more, got {sources}")
    s_index = {s: i for i, s in enumerate(sources)}
    s_fit = fit_rows["source"].astype(str).map(s_index).to_numpy(int)
    model, c = fit_linear(x_fit, s_fit, is_val, len(sources), seed)
    # P(class | source) on the rows the model was fitted on.
    shares = pd.crosstab(s_fit, y_fit).reindex(
        index=range(len(sources)), columns=range(len(classes)), fill_value=0
    )
    shares = shares.to_numpy(float) / shares.to_numpy(float).sum(axis=1, keepdims=True)
    p_source = _probabilities(model, x_test, len(sources))
    test_sources = test["source"].astype(str).map(s_index)
    known = test_sources.notna().to_numpy()
    source_accuracy = (
        float((p_source[known].argmax(1) == test_sources[known].to_numpy(int)).mean())
        if known.any()
        else None
    )
    return p_source @ shares, {
        "C": c,
        "sources": sources,
        "class_share_by_source": {
            s: dict(zip(classes, shares[i].round(4).tolist())) for s, i in s_index.items()
        },
        "source_accuracy": source_accuracy,
    }


def run_linear_baseline(
    kind: str,
    records: pd.DataFrame,
    classes: Sequence[str],
    features: Mapping[str, np.ndarray],
    run_dir: Path,
    seed: int = 0,
) -> dict[str, Any]:
    """:func:`linear_baseline` scored like a network run: ``metrics.json`` and
    ``predictions.csv`` in ``run_dir``; returns the metrics."""
    probs, chosen = linear_baseline(kind, records, classes, features, seed)
    test = records[records["split"] == "test"]
    metrics = score_predictions(test, probs, classes)
    metrics["baseline"] = {"kind": kind, "pixels": PIXEL_SIZE, **chosen}
    metrics["split"] = "test"
    run_dir.mkdir(parents=True, exist_ok=True)
    prediction_table(test, probs, classes).to_csv(run_dir / "predictions.csv", index=False)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    return metrics
