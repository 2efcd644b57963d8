"""Classifier figures: ROC curves, confusion matrices, fusion-gate distributions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from mtl_report.plots.common import _figure, _finish, _PathLike


def plot_roc(
    y_true: Any,
    y_prob: Any,
    class_names: Sequence[str],
    *,
    title: str = "ROC curves",
    micro_average: bool = True,
    path: _PathLike | None = None,
) -> Figure:
    """One-vs-rest ROC curves with their AUC, for binary, multi-class or multi-label data.

    Args:
        y_true: ``(n,)`` integer class indices (multi-class; binary with 0/1), or ``(n, K)``
            0/1 indicators (multi-label, e.g. the findings head; NaN = unknown, left out of
            that class's curve).
        y_prob: ``(n, K)`` scores per class, or ``(n,)`` scores of the positive class of a
            binary problem.
        class_names: K names (2 for a binary problem given ``(n,)`` scores).
        title: axes title.
        micro_average: add the micro-averaged curve when there are several classes.
        path: PNG file to write.

    Returns:
        The figure: x label ``"False positive rate"``, y label ``"True positive rate"``, one
        legend entry per class (``"<name> (AUC 0.87)"``; ``"n/a"`` when a class has only one
        label value) and the chance diagonal.
    """
    from sklearn.metrics import auc, roc_curve

    names = list(class_names)
    prob = np.asarray(y_prob, dtype="float64")
    true = np.asarray(y_true, dtype="float64")
    if prob.ndim == 1:
        if len(names) != 2:
            raise ValueError("(n,) scores are a binary problem: give two class names")
        prob = np.stack([1.0 - prob, prob], axis=1)
        curves = [1]
    else:
        curves = list(range(prob.shape[1]))
    if prob.shape[1] != len(names):
        raise ValueError(f"{prob.shape[1]} score columns but {len(names)} class names")
    if true.ndim == 1:
        if len(true) != len(prob):
            raise ValueError("y_true and y_prob have different numbers of rows")
        known = ~np.isnan(true)
        indicator = np.full(prob.shape, np.nan)
        indicator[known] = np.eye(len(names))[true[known].astype(int)]
    elif true.shape == prob.shape:
        indicator = true
    else:
        raise ValueError(f"y_true shape {true.shape} does not fit y_prob shape {prob.shape}")

    fig = _figure(5.2, 4.8)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    pooled_true, pooled_prob = [], []
    for k in curves:
        mask = ~np.isnan(indicator[:, k])
        t, p = indicator[mask, k], prob[mask, k]
        if len(np.unique(t)) < 2:
            ax.plot([], [], label=f"{names[k]} (n/a: one class only)")
            continue
        fpr, tpr, _ = roc_curve(t, p)
        ax.plot(fpr, tpr, label=f"{names[k]} (AUC {auc(fpr, tpr):.2f})")
        pooled_true.append(t)
        pooled_prob.append(p)
    if micro_average and len(pooled_true) > 1:
        t, p = np.concatenate(pooled_true), np.concatenate(pooled_prob)
        fpr, tpr, _ = roc_curve(t, p)
        ax.plot(fpr, tpr, "k--", linewidth=1.5, label=f"micro-average (AUC {auc(fpr, tpr):.2f})")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("False positive rate")
    ax.set_ylabel("True positive rate")
    ax.set_title(title)
    ax.legend(fontsize="small", loc="lower right")
    ax.grid(alpha=0.3)
    return _finish(fig, path)


def plot_confusion(
    matrix: Any,
    class_names: Sequence[str],
    *,
    normalize: bool = False,
    title: str = "Confusion matrix",
    cmap: str = "Blues",
    path: _PathLike | None = None,
) -> Figure:
    """A confusion matrix as an annotated heatmap (rows: true class, columns: predicted).

    Args:
        matrix: ``(K, K)`` counts, ``matrix[i, j]`` = studies of true class i predicted j.
        class_names: K names.
        normalize: colour and annotate row fractions (recall per class) with the counts
            beside them.
        title: axes title.
        cmap: matplotlib colour map.
        path: PNG file to write.

    Returns:
        The figure: x label ``"Predicted"``, y label ``"True"``, tick labels the class names.
    """
    m = np.asarray(matrix, dtype="float64")
    names = list(class_names)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] != len(names):
        raise ValueError(f"matrix must be ({len(names)}, {len(names)}), got {m.shape}")
    rows = m.sum(axis=1, keepdims=True)
    shown = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0) if normalize else m
    size = 1.2 + 0.75 * len(names)
    fig = _figure(size + 1.2, size)
    ax = fig.add_subplot()
    im = ax.imshow(shown, cmap=cmap, vmin=0, vmax=1 if normalize else max(shown.max(), 1))
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of row" if normalize else "")
    threshold = (1 if normalize else shown.max()) / 2
    for i in range(len(names)):
        for j in range(len(names)):
            count = f"{m[i, j]:.0f}"
            text = f"{shown[i, j]:.2f}\n({count})" if normalize else count
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize="small",
                color="white" if shown[i, j] > threshold else "black",
            )
    ax.set_xticks(range(len(names)))
    ax.set_yticks(range(len(names)))
    ax.set_xticklabels(names, rotation=40, ha="right")
    ax.set_yticklabels(names)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    ax.set_title(title)
    return _finish(fig, path)


def plot_gate_distribution(
    gate: Any,
    labels: Any,
    class_names: Sequence[str],
    *,
    title: str = "Gate value per class (image weight g)",
    path: _PathLike | None = None,
) -> Figure:
    """The fusion gate's distribution per class: a box plot with every study as a dot.

    The gated RadGen model mixes ``z = g·z_img + (1−g)·z_text``, so ``g`` near 1 means the
    image decided and near 0 the report text did.

    Args:
        gate: ``(n,)`` gate values in [0, 1] (``(n, 1)`` is flattened).
        labels: ``(n,)`` integer class indices (the true class of each study).
        class_names: K names.
        title: axes title.
        path: PNG file to write.

    Returns:
        The figure: one box per class (x tick ``"<name> (n=…)"``, empty for a class with
        no study), y label ``"gate g (1 = image only)"``, y limits [0, 1].
    """
    g = np.asarray(gate, dtype="float64").reshape(-1)
    y = np.asarray(labels).reshape(-1).astype(int)
    names = list(class_names)
    if len(g) != len(y):
        raise ValueError(f"{len(g)} gate values but {len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() >= len(names)):
        raise ValueError(f"labels must be class indices in [0, {len(names)})")
    groups = [g[y == k] for k in range(len(names))]
    fig = _figure(1.8 + 1.1 * len(names), 3.8)
    ax = fig.add_subplot()
    positions = [k for k, v in enumerate(groups) if len(v)]
    if positions:
        ax.boxplot(
            [groups[k] for k in positions],
            positions=positions,
            widths=0.5,
            showfliers=False,
            medianprops={"color": "black"},
        )
    rng = np.random.default_rng(0)
    for k in positions:
        jitter = rng.uniform(-0.12, 0.12, len(groups[k]))
        ax.plot(k + jitter, groups[k], "o", color=f"C{k % 10}", alpha=0.6, markersize=4)
    ax.axhline(0.5, linestyle=":", color="grey", linewidth=1)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([f"{n} (n={len(v)})" for n, v in zip(names, groups)])
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("gate g (1 = image only)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return _finish(fig, path)
