"""Scores of a k-class image classifier (RadGen's Normal / Pneumonia / TB and the like).

All from sklearn; nothing here imports TensorFlow. Besides the usual one-vs-rest AUCs,
F1 and confusion matrix, two measures a clinical reader asks for:

- **sensitivity at a fixed specificity** per class (e.g. TB sensitivity at 95%
  specificity, the WHO screening target), read off the one-vs-rest ROC curve;
- **per-source results** (:func:`by_source`): on a table that mixes image sources (the
  real Normal / Pneumonia / TB table has pediatric pneumonia and adult TB), the recall of
  each class inside each source, so source detection is not read as diagnosis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

#: Specificity at which :func:`classification_metrics` reports each class's sensitivity.
TARGET_SPECIFICITY = 0.95


def sensitivity_at_specificity(
    positive: np.ndarray, scores: np.ndarray, specificity: float = TARGET_SPECIFICITY
) -> float | None:
    """Highest sensitivity of a threshold on ``scores`` whose specificity is at least
    ``specificity`` (None when either class is absent).

    Read off :func:`sklearn.metrics.roc_curve` (every distinct threshold), so ties are
    handled as the ROC does: a threshold takes all equal scores together.
    """
    from sklearn.metrics import roc_curve

    positive = np.asarray(positive, bool)
    if positive.all() or not positive.any():
        return None
    fpr, tpr, _ = roc_curve(positive, np.asarray(scores, float))
    ok = fpr <= 1.0 - specificity + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def classification_metrics(
    labels: np.ndarray,
    probabilities: np.ndarray,
    classes: Sequence[str],
    specificity: float = TARGET_SPECIFICITY,
) -> dict[str, Any]:
    """Macro/per-class AUC (one-vs-rest), macro-F1, accuracy, per-class sensitivity and
    specificity of the arg-max prediction, per-class sensitivity at ``specificity``,
    confusion matrix (rows = truth, columns = prediction).

    A class absent from ``labels`` (or present in all) has AUC None; the macro-AUC averages
    the defined ones.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score

    labels = np.asarray(labels, int)
    probabilities = np.asarray(probabilities, float)
    k = len(classes)
    if len(labels) == 0:
        raise ValueError("no predictions to score")
    pred = probabilities.argmax(axis=1)
    cm = confusion_matrix(labels, pred, labels=list(range(k)))
    auc, sens, spec, sens_at = {}, {}, {}, {}
    for i, c in enumerate(classes):
        pos = labels == i
        auc[c] = (
            float(roc_auc_score(pos, probabilities[:, i])) if 0 < pos.sum() < len(pos) else None
        )
        sens_at[c] = sensitivity_at_specificity(pos, probabilities[:, i], specificity)
        tp, fn = cm[i, i], cm[i].sum() - cm[i, i]
        fp = cm[:, i].sum() - cm[i, i]
        tn = cm.sum() - tp - fn - fp
        sens[c] = float(tp / (tp + fn)) if tp + fn else None
        spec[c] = float(tn / (tn + fp)) if tn + fp else None
    defined = [v for v in auc.values() if v is not None]
    return {
        "macro_auc": float(np.mean(defined)) if defined else None,
        "auc": auc,
        "macro_f1": float(
            f1_score(labels, pred, labels=list(range(k)), average="macro", zero_division=0)
        ),
        "accuracy": float(accuracy_score(labels, pred)),
        "sensitivity": sens,
        "specificity": spec,
        f"sensitivity_at_{round(specificity * 100)}_specificity": sens_at,
        "confusion_matrix": cm.tolist(),
        "classes": list(classes),
    }


def by_source(
    labels: np.ndarray,
    probabilities: np.ndarray,
    classes: Sequence[str],
    sources: Sequence[str],
) -> dict[str, dict[str, Any]]:
    """Per image source: the number of images, the class counts, and the recall of each
    class present in it (the share of its images predicted as that class).

    On the real Normal / Pneumonia / TB table, the recall of ``normal`` inside each source is
    the number to read: a model that detects the source instead of the disease calls the
    pediatric normals "pneumonia" and the adult normals "tuberculosis".
    """
    labels = np.asarray(labels, int)
    pred = np.asarray(probabilities, float).argmax(axis=1)
    sources = np.asarray([str(s) for s in sources], dtype=object)
    out: dict[str, dict[str, Any]] = {}
    for source in sorted(set(sources)):
        here = sources == source
        counts, recall = {}, {}
        for i, c in enumerate(classes):
            mask = here & (labels == i)
            if mask.any():
                counts[c] = int(mask.sum())
                recall[c] = float((pred[mask] == i).mean())
        out[source] = {
            "n": int(here.sum()),
            "class_counts": counts,
            "recall": recall,
            "accuracy": float((pred[here] == labels[here]).mean()),
        }
    return out


def score_predictions(
    records: pd.DataFrame, probabilities: np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
    """``{"classification": ..., "by_source": ... (with a ``source`` column), "n": N}`` for
    the class probabilities of ``records`` (``label`` column; every label in ``classes``)."""
    labels = records["label"].astype(str).map({c: i for i, c in enumerate(classes)})
    if labels.isna().any():
        raise ValueError(f"labels outside {list(classes)}")
    labels = labels.to_numpy(int)
    out: dict[str, Any] = {"classification": classification_metrics(labels, probabilities, classes)}
    if "source" in records:
        out["by_source"] = by_source(labels, probabilities, classes, records["source"].tolist())
    out["n"] = len(records)
    return out


def prediction_table(
    records: pd.DataFrame, probabilities: np.ndarray, classes: Sequence[str]
) -> pd.DataFrame:
    """One row per study: ``study_id, label[, source], p_<class>..., predicted``."""
    table = pd.DataFrame(
        {"study_id": records["study_id"].to_numpy(), "label": records["label"].to_numpy()}
    )
    if "source" in records:
        table["source"] = records["source"].to_numpy()
    for i, c in enumerate(classes):
        table[f"p_{c}"] = probabilities[:, i]
    table["predicted"] = [classes[i] for i in np.asarray(probabilities).argmax(1)]
    return table
