"""Clinical metrics: clinical efficacy of generated text, findings head, acuity head.

* :func:`clinical_efficacy` (CE) labels generated and reference reports with the rule-based
  labeler and compares the findings they state. Following the usual CE convention of the
  report-generation literature (CheXpert labels, positive vs rest), a finding counts as
  present only when labelled positive (1); negative (0), uncertain (-1) and not mentioned
  (NaN) all count as absent.
* :func:`findings_head_metrics` scores the multi-label findings head against the dataset's
  0/1/null finding columns; a null target is unknown, not negative, so it is masked out.
* :func:`acuity_metrics` scores the ordinal acuity head (ED triage levels 1-5).

sklearn is imported inside the functions so that ``import mtl_report.metrics`` stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtl_report.data.schema import DEFAULT_FINDINGS, finding_column

__all__ = [
    "acuity_metrics",
    "ce_from_labels",
    "clinical_efficacy",
    "findings_head_metrics",
]


def _prf(y_true: np.ndarray, y_pred: np.ndarray, average: str) -> tuple[float, float, float]:
    from sklearn.metrics import precision_recall_fscore_support

    if y_true.size == 0:
        return 0.0, 0.0, 0.0
    p, r, f, _ = precision_recall_fscore_support(
        y_true, y_pred, average=average, zero_division=0, labels=None
    )
    return float(p), float(r), float(f)


def ce_from_labels(generated: pd.DataFrame, references: pd.DataFrame) -> dict[str, Any]:
    """CE precision/recall/F1 from two label tables of :func:`label_reports` form.

    Args:
        generated, references: (N, K) tables with the same columns, values 1/0/-1/NaN.
            Positive means == 1 (see module docstring).

    Returns:
        ``{"precision_micro", "recall_micro", "f1_micro", "precision_macro",
        "recall_macro", "f1_macro", "per_finding": {column: {"precision", "recall", "f1",
        "support"}}, "n"}``; support = reference positives. Macro = unweighted mean over
        the K findings (sklearn, zero_division=0).
    """
    from sklearn.metrics import precision_recall_fscore_support

    if list(generated.columns) != list(references.columns):
        raise ValueError("generated and reference label tables have different columns")
    if len(generated) != len(references):
        raise ValueError(f"{len(generated)} generated vs {len(references)} reference rows")
    y_pred = (generated.to_numpy(dtype=float) == 1).astype(int)
    y_true = (references.to_numpy(dtype=float) == 1).astype(int)
    out: dict[str, Any] = {}
    for average in ("micro", "macro"):
        p, r, f, _ = precision_recall_fscore_support(
            y_true, y_pred, average=average, zero_division=0
        )
        out.update(
            {
                f"precision_{average}": float(p),
                f"recall_{average}": float(r),
                f"f1_{average}": float(f),
            }
        )
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    out["per_finding"] = {
        col: {
            "precision": float(p[k]),
            "recall": float(r[k]),
            "f1": float(f[k]),
            "support": int(s[k]),
        }
        for k, col in enumerate(references.columns)
    }
    out["n"] = len(references)
    return out


def clinical_efficacy(
    generated: Sequence[str],
    references: Sequence[str],
    findings: Sequence[str] = DEFAULT_FINDINGS,
    *,
    mentions_path: str | Path | None = None,
) -> dict[str, Any]:
    """Clinical efficacy of N generated reports against their N references.

    Both texts are labelled by :func:`mtl_report.metrics.labeler.label_reports`; see
    :func:`ce_from_labels` for the returned dict.
    """
    from mtl_report.metrics.labeler import label_reports

    if isinstance(generated, str) or isinstance(references, str):
        raise TypeError("pass sequences of reports, not one string")
    if len(generated) != len(references):
        raise ValueError(f"got {len(generated)} generated reports but {len(references)} references")
    if len(references) == 0:
        raise ValueError("clinical efficacy needs at least one report pair")
    gen = label_reports(generated, findings, mentions_path=mentions_path)
    ref = label_reports(references, findings, mentions_path=mentions_path)
    return ce_from_labels(gen, ref)


def _as_matrix(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be (N, K), got shape {arr.shape}")
    return arr


def findings_head_metrics(
    y_true: Any,
    y_prob: Any,
    threshold: float | Sequence[float] = 0.5,
    mask: Any = None,
    findings: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Multi-label metrics of the findings head with unknown targets masked out.

    Args:
        y_true: (N, K) 0/1 targets, NaN where unknown (a DataFrame keeps its column names).
        y_prob: (N, K) predicted probabilities.
        threshold: one cut-off or one per finding; prediction = prob >= threshold.
        mask: optional (N, K) bool, True where the target is known; ANDed with ~isnan.
        findings: names for ``per_finding`` (default: DataFrame columns, else the default
            finding columns when K == 5, else ``finding_0``...).

    Returns:
        ``precision``, ``recall``, ``f1_micro`` (micro over all known cells),
        ``f1_macro`` (mean of per-finding F1), ``auc_macro`` (mean ROC AUC over findings
        with both classes known: threshold-free), ``hamming_loss`` (wrong / known cells),
        ``exact_match`` (share of studies with all K targets known whose K predictions are
        all right; NaN when no study has all targets known), ``n_studies``,
        ``n_exact_match_studies``, and ``per_finding`` {name: precision, recall, f1, auc,
        threshold, support (known positives), n (known)}. A study missing a label
        contributes nothing for that finding. zero_division=0 throughout.
    """
    names = list(y_true.columns) if isinstance(y_true, pd.DataFrame) else None
    t = _as_matrix(y_true, "y_true")
    p = _as_matrix(y_prob, "y_prob")
    if t.shape != p.shape:
        raise ValueError(f"y_true {t.shape} and y_prob {p.shape} differ in shape")
    known = ~np.isnan(t)
    if mask is not None:
        m = np.asarray(mask, dtype=bool).reshape(t.shape)
        known &= m
    if not np.isin(t[known], (0.0, 1.0)).all():
        raise ValueError("known findings targets must be 0 or 1 (NaN for unknown)")
    if np.isnan(p[known]).any():
        raise ValueError("y_prob has NaN where the target is known")
    thr = np.broadcast_to(np.asarray(threshold, dtype=float), (t.shape[1],))
    pred = (p >= thr).astype(int)
    truth = np.where(known, t, 0).astype(int)
    k = t.shape[1]
    if names is None:
        names = (
            list(findings)
            if findings is not None
            else (
                [finding_column(f) for f in DEFAULT_FINDINGS]
                if k == len(DEFAULT_FINDINGS)
                else [f"finding_{j}" for j in range(k)]
            )
        )
    if len(names) != k:
        raise ValueError(f"{len(names)} finding names for {k} columns")
    precision, recall, f1_micro = _prf(truth[known], pred[known], "binary")
    per_finding = {}
    for j, name in enumerate(names):
        col = known[:, j]
        pj, rj, fj = _prf(truth[col, j], pred[col, j], "binary")
        per_finding[name] = {
            "precision": pj,
            "recall": rj,
            "f1": fj,
            "auc": _auc(truth[col, j], p[col, j]),
            "threshold": float(thr[j]),
            "support": int(truth[col, j].sum()),
            "n": int(col.sum()),
        }
    n_known = int(known.sum())
    wrong = int((pred != truth)[known].sum())
    complete = known.all(axis=1)
    exact = (pred == truth).all(axis=1)[complete]
    return {
        "precision": precision,
        "recall": recall,
        "f1_micro": f1_micro,
        "f1_macro": float(np.mean([v["f1"] for v in per_finding.values()])) if k else 0.0,
        "auc_macro": _nanmean([v["auc"] for v in per_finding.values()]),
        "hamming_loss": wrong / n_known if n_known else float("nan"),
        "exact_match": float(exact.mean()) if exact.size else float("nan"),
        "n_studies": int(t.shape[0]),
        "n_exact_match_studies": int(complete.sum()),
        "per_finding": per_finding,
    }


def _auc(truth: np.ndarray, prob: np.ndarray) -> float:
    """ROC AUC, NaN when only one class is known (undefined, not 0.5)."""
    from sklearn.metrics import roc_auc_score

    if truth.size == 0 or truth.min() == truth.max():
        return float("nan")
    return float(roc_auc_score(truth, prob))


def _nanmean(values: Sequence[float]) -> float:
    vals = [v for v in values if not np.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


def best_f1_thresholds(
    y_true: Any, y_prob: Any, grid: Sequence[float] | None = None, default: float = 0.5
) -> np.ndarray:
    """Per-finding cut-offs that maximise F1 on held-out data (the validation split).

    A small training set leaves the findings head under-confident for rare findings, so a
    fixed 0.5 turns a model that ranks studies well (high AUC) into one that never says
    "present". Cut-offs chosen on the validation split, and stored with the run, are the
    usual remedy; they must never be chosen on the test split.

    Args:
        y_true: (N, K) 0/1 with NaN where unknown.
        y_prob: (N, K) probabilities.
        grid: candidate cut-offs (default 0.05, 0.10, ..., 0.95).
        default: the cut-off of a finding without a known positive and negative.

    Returns:
        (K,) thresholds; ties go to the cut-off closest to ``default``.
    """
    t = _as_matrix(y_true, "y_true")
    p = _as_matrix(y_prob, "y_prob")
    if t.shape != p.shape:
        raise ValueError(f"y_true {t.shape} and y_prob {p.shape} differ in shape")
    grid = np.asarray(grid if grid is not None else np.round(np.arange(0.05, 0.96, 0.05), 2))
    order = np.argsort(np.abs(grid - default), kind="stable")
    out = np.full(t.shape[1], float(default))
    for j in range(t.shape[1]):
        known = ~np.isnan(t[:, j])
        truth = t[known, j].astype(int)
        if truth.size == 0 or truth.min() == truth.max():
            continue
        scores = [_prf(truth, (p[known, j] >= g).astype(int), "binary")[2] for g in grid[order]]
        out[j] = float(grid[order][int(np.argmax(scores))])
    return out


def acuity_metrics(y_true_levels: Any, y_pred_levels: Any) -> dict[str, Any]:
    """Ordinal acuity metrics over studies with a known true level.

    Args:
        y_true_levels: (N,) true ED acuity 1-5, NaN/None where unknown (IU X-ray has none).
        y_pred_levels: (N,) predicted levels (integers 1-5).

    Returns:
        ``{"accuracy", "mae", "mse", "within_one", "n"}``: exact-level accuracy, mean
        absolute and squared level error, share within one level; NaN values (n = 0) when
        no true level is known.
    """
    t = pd.to_numeric(
        pd.Series(np.asarray(y_true_levels, dtype=object).ravel()), errors="coerce"
    ).to_numpy(float)
    p = pd.to_numeric(
        pd.Series(np.asarray(y_pred_levels, dtype=object).ravel()), errors="coerce"
    ).to_numpy(float)
    if t.shape != p.shape:
        raise ValueError(f"{t.size} true levels but {p.size} predicted levels")
    known = ~np.isnan(t)
    if np.isnan(p[known]).any():
        raise ValueError("a predicted level is missing where the true level is known")
    if not known.any():
        nan = float("nan")
        return {"accuracy": nan, "mae": nan, "mse": nan, "within_one": nan, "n": 0}
    err = p[known] - t[known]
    return {
        "accuracy": float(np.mean(err == 0)),
        "mae": float(np.mean(np.abs(err))),
        "mse": float(np.mean(err**2)),
        "within_one": float(np.mean(np.abs(err) <= 1)),
        "n": int(known.sum()),
    }
