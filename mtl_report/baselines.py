"""Reference points a model must beat: a constant report and nearest-neighbour retrieval.

- **constant**: every test study gets the most common training report, the training
  prevalence as finding probabilities and the most common training acuity.
- **nearest neighbour**: the training study whose (mean-pooled, L2-normalised) frozen
  backbone features are closest by cosine similarity gives its report, findings and acuity.

Both produce :class:`~mtl_report.evaluate.Predictions`, scored like any model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mtl_report.data.cleaning import cumulative_encoding
from mtl_report.evaluate import Predictions, standardized_references


def _majority_level(train: pd.DataFrame) -> float:
    levels = pd.to_numeric(train["acuity"], errors="coerce").dropna()
    return float(levels.mode().iloc[0]) if len(levels) else 3.0


def constant_baseline(train: pd.DataFrame, test: pd.DataFrame, finding_columns) -> Predictions:
    refs = standardized_references(train["report"].tolist())
    most_common = pd.Series(refs).value_counts().index[0] if refs else ""
    prevalence = train[list(finding_columns)].mean().fillna(0.0).to_numpy()
    n = len(test)
    level = _majority_level(train)
    return Predictions(
        study_ids=test["study_id"].tolist(),
        generated=[most_common] * n,
        acuity_cumulative=np.repeat(cumulative_encoding([level]), n, axis=0),
        findings_probs=np.repeat(prevalence[None, :], n, axis=0),
    )


def nearest_neighbour_baseline(
    train: pd.DataFrame,
    test: pd.DataFrame,
    train_features: np.ndarray,
    test_features: np.ndarray,
    finding_columns,
) -> Predictions:
    """Retrieval on image features; ``*_features`` are ``(n, L, C)`` or ``(n, C)``."""

    def embed(f):
        f = np.asarray(f, dtype="float32")
        if f.ndim == 3:
            f = f.mean(axis=1)
        return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-8)

    sims = embed(test_features) @ embed(train_features).T
    nearest = sims.argmax(axis=1)
    refs = standardized_references(train["report"].tolist())
    labels = train[list(finding_columns)].fillna(0.0).to_numpy()
    level = _majority_level(train)
    levels = pd.to_numeric(train["acuity"], errors="coerce").fillna(level).to_numpy()
    return Predictions(
        study_ids=test["study_id"].tolist(),
        generated=[refs[i] for i in nearest],
        acuity_cumulative=cumulative_encoding(levels[nearest]),
        findings_probs=labels[nearest].astype("float64"),
    )
