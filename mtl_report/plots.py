"""Analysis plots: learning curves, comparisons, ROC, confusion, attention, cohort funnel.

Every ``plot_*`` function returns a :class:`matplotlib.figure.Figure` and, with ``path``,
also writes it as PNG (parent folders created). Figures are built with the object-oriented
API on the non-interactive Agg canvas, so the library never opens a window and works on a
headless server; in Jupyter the returned figure displays inline as usual.

Inputs are plain NumPy / pandas / dicts (or the package's own files: ``history.json``,
``comparison.json``, ``cohort_log.json``), so the functions serve the notebooks, the CLI
(``compare``, ``evaluate``, ``generate --explain``) and a user's own analyses alike.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

__all__ = [
    "DEFAULT_COMPARISON_METRICS",
    "LOWER_IS_BETTER",
    "plot_attention_grid",
    "plot_attention_overlay",
    "plot_category_distribution",
    "plot_cohort_funnel",
    "plot_comparison",
    "plot_confusion",
    "plot_distributions",
    "plot_explanation",
    "plot_gate_distribution",
    "plot_learning_curves",
    "plot_prevalence",
    "plot_region_token_attention",
    "plot_roc",
    "results_frame",
    "save_figure",
]

#: Metrics where a smaller value is better (bars say so in their title).
LOWER_IS_BETTER = frozenset({"hamming_loss", "mae", "mse"})

#: ``(task, metric)`` panels of :func:`plot_comparison` by default (those present are drawn).
DEFAULT_COMPARISON_METRICS: tuple[tuple[str, str], ...] = (
    ("text", "bleu_4"),
    ("text", "rouge_l"),
    ("text", "cider"),
    ("findings", "f1_macro"),
    ("findings", "f1_micro"),
    ("acuity", "accuracy"),
    ("acuity", "mae"),
)

_PathLike = str | Path


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def _figure(width: float, height: float) -> Figure:
    """A figure on the Agg canvas (no pyplot state, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: _PathLike, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG to ``path`` (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png", facecolor="white")
    return path


def _finish(fig: Figure, path: _PathLike | None) -> Figure:
    if path is not None:
        save_figure(fig, path)
    return fig


def _grid(n: int, ncols: int) -> tuple[int, int]:
    ncols = max(1, min(ncols, n))
    return math.ceil(n / ncols), ncols


def _display_image(image: np.ndarray) -> np.ndarray:
    """Any ``(H, W)``, ``(H, W, 1|3|4)`` array → float ``[0, 1]`` for ``imshow``."""
    a = np.asarray(image, dtype="float64")
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]
    if a.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {a.shape}")
    finite = a[np.isfinite(a)]
    top = finite.max() if finite.size else 1.0
    if top > 1.0:
        a = a / 255.0
    return np.clip(np.nan_to_num(a), 0.0, 1.0)


def _as_grid(attention: np.ndarray, grid: tuple[int, int] | None) -> np.ndarray:
    """``(h, w)`` or flattened ``(L,)`` (row-major) attention → ``(h, w)``."""
    a = np.asarray(attention, dtype="float64")
    if a.ndim == 2:
        if grid is not None and tuple(a.shape) != tuple(grid):
            raise ValueError(f"attention shape {a.shape} does not match grid {grid}")
        return a
    if a.ndim != 1:
        raise ValueError(f"attention must be (h, w) or (L,), got shape {a.shape}")
    if grid is None:
        side = math.isqrt(a.size)
        if side * side != a.size:
            raise ValueError(f"{a.size} attention values are not a square grid; pass grid=(h, w)")
        grid = (side, side)
    return a.reshape(grid)


# --------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------
def _load_history(history: Mapping | _PathLike) -> dict[str, list[float]]:
    if isinstance(history, Mapping):
        data = dict(history)
    else:
        path = Path(history)
        if path.is_dir():
            path = path / "history.json" if (path / "history.json").is_file() else path
            if path.is_dir():
                path = path / "history.csv"
        if path.suffix == ".csv":
            data = pd.read_csv(path).drop(columns=["epoch"], errors="ignore").to_dict("list")
        else:
            data = json.loads(path.read_text())
    return {
        k: [float(x) for x in v]
        for k, v in data.items()
        if isinstance(v, list | tuple) and v and all(isinstance(x, int | float) for x in v)
    }


def plot_learning_curves(
    history: Mapping | _PathLike,
    *,
    tasks: Sequence[str] | None = None,
    title: str | None = None,
    path: _PathLike | None = None,
) -> Figure:
    """Loss per epoch: the total and one panel per task (train solid, validation dashed).

    Args:
        history: ``model.fit(...).history``, ``TrainResult.history``, a run directory or its
            ``history.json`` / ``history.csv``.
        tasks: task panels to draw (default: every ``<task>_loss`` in the history).
        title: figure title.
        path: PNG file to write.

    Returns:
        The figure; panel titles are ``"total loss"`` and ``"<task> loss"``, x label
        ``"epoch"``, y label ``"loss"``.
    """
    hist = _load_history(history)
    if "loss" not in hist:
        raise ValueError("history has no 'loss' entry")
    found = [k[: -len("_loss")] for k in hist if k.endswith("_loss") and not k.startswith("val_")]
    tasks = list(tasks) if tasks is not None else found
    panels = [("loss", "total loss")] + [(f"{t}_loss", f"{t} loss") for t in tasks]
    fig = _figure(3.6 * len(panels), 3.2)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (key, label) in zip(axes, panels):
        if key not in hist:
            ax.set_visible(False)
            continue
        epochs = np.arange(1, len(hist[key]) + 1)
        ax.plot(epochs, hist[key], "o-", color="C0", label="train")
        if f"val_{key}" in hist:
            val = hist[f"val_{key}"]
            ax.plot(np.arange(1, len(val) + 1), val, "s--", color="C1", label="validation")
        ax.set_title(label)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


# --------------------------------------------------------------------------------------
# comparison
# --------------------------------------------------------------------------------------
def _load_results(results: Mapping | _PathLike) -> Mapping[str, Sequence[Mapping | None]]:
    if not isinstance(results, Mapping):
        path = Path(results)
        if path.is_dir():
            path = path / "comparison.json"
        results = json.loads(path.read_text())
    if "results" in results and isinstance(results["results"], Mapping):
        results = results["results"]
    return results


def results_frame(results: Mapping | _PathLike) -> pd.DataFrame:
    """Tidy table of a comparison: one row per (set-up, seed, task, metric).

    Args:
        results: ``compare(...)``'s return value or ``comparison.json`` (its ``results``:
            set-up → one ``metrics.json`` dict per seed), or the folder holding it.

    Returns:
        Columns ``setup``, ``seed``, ``task``, ``metric``, ``value`` (numeric metrics of the
        ``text``, ``findings`` and ``acuity`` sections; nested dicts such as clinical
        efficacy are flattened as ``clinical_efficacy.<key>``; sample sizes ``n``/``n_*``
        are left out).
    """

    def is_score(name: str) -> bool:  # sample sizes ("n", "n_studies") are not scores
        return name != "n" and not name.startswith("n_")

    rows = []
    for setup, per_seed in _load_results(results).items():
        for seed, metrics in enumerate(per_seed or []):
            if not metrics:
                continue
            for task in ("text", "findings", "acuity"):
                section = metrics.get(task) or {}
                for metric, value in section.items():
                    if not is_score(metric):
                        continue
                    if isinstance(value, Mapping):
                        for sub, v in value.items():
                            if (
                                is_score(sub)
                                and isinstance(v, int | float)
                                and not isinstance(v, bool)
                            ):
                                rows.append((setup, seed, task, f"{metric}.{sub}", float(v)))
                    elif isinstance(value, int | float) and not isinstance(value, bool):
                        rows.append((setup, seed, task, metric, float(value)))
    return pd.DataFrame(rows, columns=["setup", "seed", "task", "metric", "value"])


def plot_comparison(
    results: Mapping | _PathLike,
    metrics: Sequence[tuple[str, str]] | None = None,
    *,
    ncols: int = 4,
    title: str | None = None,
    path: _PathLike | None = None,
) -> Figure:
    """Bars of the mean over seeds with ± one standard deviation, one panel per metric.

    Set-ups trained over several seeds get error bars (sample std, ``ddof=1``) and their
    seeds as dots; baselines (names starting with ``baseline``) are drawn hatched in grey.

    Args:
        results: as for :func:`results_frame`.
        metrics: ``(task, metric)`` panels (default :data:`DEFAULT_COMPARISON_METRICS`,
            those present in the results).
        ncols: panels per row.
        title: figure title.
        path: PNG file to write.

    Returns:
        The figure; each panel is titled ``"<task>: <metric>"`` (with ``"(lower is
        better)"`` where it applies) and has the metric as y label.
    """
    df = results_frame(results)
    if df.empty:
        raise ValueError("no numeric metrics in the comparison results")
    wanted = list(metrics) if metrics is not None else list(DEFAULT_COMPARISON_METRICS)
    present = set(zip(df["task"], df["metric"]))
    panels = [p for p in wanted if tuple(p) in present]
    if not panels:
        raise ValueError(f"none of the metrics {wanted} is in the results")
    setups = list(dict.fromkeys(df["setup"]))
    colours = {s: f"C{i % 10}" for i, s in enumerate(s for s in setups if not _is_baseline(s))}
    nrows, ncols = _grid(len(panels), ncols)
    fig = _figure(3.4 * ncols, 3.4 * nrows + 0.6)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (task, metric) in zip(axes, panels):
        sub = df[(df["task"] == task) & (df["metric"] == metric)]
        names = [s for s in setups if s in set(sub["setup"])]
        for x, name in enumerate(names):
            values = sub.loc[sub["setup"] == name, "value"].to_numpy()
            mean = float(values.mean())
            std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            base = _is_baseline(name)
            ax.bar(
                x,
                mean,
                yerr=std if len(values) > 1 else None,
                capsize=4,
                color="lightgrey" if base else colours[name],
                hatch="//" if base else None,
                edgecolor="grey" if base else "black",
                linewidth=0.6,
            )
            if len(values) > 1:
                ax.plot(np.full(len(values), x), values, "k.", markersize=4, alpha=0.7)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([_short(n) for n in names], rotation=40, ha="right", fontsize="small")
        better = " (lower is better)" if metric in LOWER_IS_BETTER else ""
        ax.set_title(f"{task}: {metric}{better}", fontsize="medium")
        ax.set_ylabel(metric)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    n_seeds = df.groupby("setup")["seed"].nunique().max()
    fig.suptitle(title or f"Set-ups compared (mean ± std over {n_seeds} seed(s))")
    return _finish(fig, path)


def _is_baseline(name: str) -> bool:
    return name.startswith("baseline")


def _short(name: str) -> str:
    return name.replace("baseline: ", "base: ")


# --------------------------------------------------------------------------------------
# classification
# --------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------
# attention
# --------------------------------------------------------------------------------------
def _overlay(
    ax,
    image: np.ndarray,
    attention: np.ndarray,
    grid: tuple[int, int] | None,
    alpha: float,
    cmap: str,
    smooth: bool,
    vmax: float | None = None,
    relative: bool = False,
):
    """Draw ``image`` and the attention grid stretched over exactly the same extent.

    Both use the image's pixel extent ``(-0.5, W - 0.5, H - 0.5, -0.5)``, so grid cell
    ``(i, j)`` of an ``h × w`` map covers rows ``[i·H/h, (i+1)·H/h)`` and columns
    ``[j·W/w, (j+1)·W/w)`` of the image, row 0 on top. The colour scale runs from 0 to
    the map's maximum (or ``vmax``); ``relative`` stretches it from the map's minimum to its
    maximum, which shows where a nearly uniform map peaks.
    """
    img = _display_image(image)
    heat = _as_grid(attention, grid)
    h_px, w_px = img.shape[:2]
    extent = (-0.5, w_px - 0.5, h_px - 0.5, -0.5)
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, extent=extent, vmin=0, vmax=1)
    top = vmax if vmax is not None else (float(np.nanmax(heat)) or 1.0)
    bottom = float(np.nanmin(heat)) if relative else 0.0
    if relative and top <= bottom:
        top = bottom + 1e-9
    im = ax.imshow(
        heat,
        cmap=cmap,
        alpha=alpha,
        extent=extent,
        interpolation="bilinear" if smooth else "nearest",
        vmin=bottom,
        vmax=top,
    )
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def plot_attention_overlay(
    image: Any,
    attention: Any,
    *,
    grid: tuple[int, int] | None = None,
    alpha: float = 0.45,
    cmap: str = "jet",
    smooth: bool = True,
    relative: bool = False,
    title: str | None = None,
    colorbar: bool = True,
    ax=None,
    path: _PathLike | None = None,
) -> Figure:
    """An attention map over image regions drawn as a heatmap on top of the image.

    Args:
        image: ``(H, W)`` or ``(H, W, C)``, values in [0, 1] or [0, 255]. Pass the model's
            input image (e.g. ``Explanation.image``): the grid covers the whole of it,
            including any letterbox padding the preprocessing added.
        attention: ``(h, w)`` grid or ``(L,)`` vector flattened row by row (cell
            ``(l // w, l % w)``, row 0 at the top), as the backbone's visual vectors are.
        grid: ``(h, w)`` for a flattened non-square grid.
        alpha: opacity of the heatmap.
        cmap: colour map of the heatmap.
        smooth: bilinear interpolation between cell centres (False: hard cell edges).
        relative: colour scale from the map's minimum to its maximum instead of from 0
            (shows where a nearly uniform map peaks).
        title: axes title.
        colorbar: add a colour bar labelled ``"attention"``.
        ax: draw into this axes (its figure is returned) instead of a new figure.
        path: PNG file to write.
    """
    if ax is None:
        fig = _figure(4.6 if colorbar else 4.0, 4.0)
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    im = _overlay(
        ax, np.asarray(image), np.asarray(attention), grid, alpha, cmap, smooth, relative=relative
    )
    if colorbar:
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="attention")
    if title:
        ax.set_title(title)
    return _finish(fig, path)


def plot_attention_grid(
    image: Any,
    maps: Sequence[Any],
    titles: Sequence[str],
    *,
    grid: tuple[int, int] | None = None,
    ncols: int = 5,
    shared_scale: bool = False,
    relative: bool = False,
    alpha: float = 0.45,
    cmap: str = "jet",
    suptitle: str | None = None,
    path: _PathLike | None = None,
) -> Figure:
    """Several attention maps over the same image, one panel each (e.g. one per word).

    Args:
        image: as for :func:`plot_attention_overlay`.
        maps: ``(h, w)`` or ``(L,)`` maps.
        titles: one panel title per map.
        grid: ``(h, w)`` of flattened maps.
        ncols: panels per row.
        shared_scale: one colour scale for all panels (compare magnitudes); default is
            each panel scaled to its own maximum (compare where each looks).
        relative: each panel's colour scale from its minimum to its maximum.
        alpha, cmap: of the heatmaps.
        suptitle: figure title.
        path: PNG file to write.
    """
    if len(maps) != len(titles):
        raise ValueError(f"{len(maps)} maps but {len(titles)} titles")
    if not maps:
        raise ValueError("no attention maps to draw")
    grids = [_as_grid(m, grid) for m in maps]
    vmax = max(float(np.nanmax(g)) for g in grids) if shared_scale else None
    nrows, ncols = _grid(len(grids), ncols)
    fig = _figure(2.5 * ncols, 2.6 * nrows + (0.4 if suptitle else 0))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, g, t in zip(axes, grids, titles):
        _overlay(ax, np.asarray(image), g, None, alpha, cmap, True, vmax, relative)
        ax.set_title(t, fontsize="small")
    for ax in axes[len(grids) :]:
        ax.set_visible(False)
    if suptitle:
        fig.suptitle(suptitle)
    return _finish(fig, path)


def plot_region_token_attention(
    attention: Any,
    token_names: Sequence[str],
    grid: tuple[int, int],
    *,
    token_mask: Sequence[bool] | None = None,
    title: str = "Which ED data each image region attends to",
    path: _PathLike | None = None,
) -> Figure:
    """Cross-modal attention as a table: image regions (rows) × unified-data tokens.

    Args:
        attention: ``(L, K)``, each row a region's attention over the K tokens.
        token_names: K token names.
        grid: ``(h, w)``; rows are labelled ``"r<i> c<j>"`` (row i from the top).
        token_mask: ``(K,)``, False for modalities the study lacks (marked ``absent``).
        title: axes title.
        path: PNG file to write.

    Returns:
        The figure: x label ``"ED data token"``, y label ``"image region (row, column)"``.
    """
    a = np.asarray(attention, dtype="float64")
    h, w = grid
    if a.shape != (h * w, len(token_names)):
        raise ValueError(f"attention must be ({h * w}, {len(token_names)}), got {a.shape}")
    labels = [
        f"{n}\n(absent)" if token_mask is not None and not token_mask[k] else n
        for k, n in enumerate(token_names)
    ]
    fig = _figure(1.2 + 1.1 * len(token_names), 1.2 + 0.28 * h * w)
    ax = fig.add_subplot()
    im = ax.imshow(a, aspect="auto", cmap="viridis", vmin=0, vmax=max(a.max(), 1e-9))
    fig.colorbar(im, ax=ax, label="attention")
    ax.set_xticks(range(len(token_names)))
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize="small")
    ax.set_yticks(range(h * w))
    ax.set_yticklabels([f"r{i} c{j}" for i in range(h) for j in range(w)], fontsize="x-small")
    ax.set_xlabel("ED data token")
    ax.set_ylabel("image region (row, column)")
    ax.set_title(title)
    return _finish(fig, path)


def plot_explanation(
    explanation,
    *,
    max_words: int = 8,
    path: _PathLike | None = None,
) -> Figure:
    """One-page summary of :class:`mtl_report.explain.Explanation` for one X-ray.

    Top row: the input image, the visual self-attention (attention received per region,
    last block), and per present ED token the share of cross-modal attention each region
    gives it (colour scale 0–1). Bottom row (with a report head): the decoder's
    cross-attention over the image for the first ``max_words`` generated words. The visual
    and per-word maps are scaled from their minimum to their maximum, to show where each
    peaks.
    """
    if explanation.image is None:
        raise ValueError("the explanation holds no image (explain with images=...)")
    image = explanation.image
    mask = (
        explanation.token_mask
        if explanation.token_mask is not None
        else np.ones(len(explanation.token_names), bool)
    )
    token_maps = [
        (name, m) for (name, m), present in zip(explanation.token_maps().items(), mask) if present
    ]
    words = explanation.words[:max_words]
    word_maps = explanation.word_maps()[:max_words]
    top = 2 + len(token_maps)
    ncols = max(top, len(words), 1)
    nrows = 2 if words else 1
    fig = _figure(2.4 * ncols, 2.7 * nrows + 0.5)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    axes[0, 0].imshow(_display_image(image), cmap="gray")
    axes[0, 0].set_title("input image", fontsize="small")
    axes[0, 0].set_xticks([])
    axes[0, 0].set_yticks([])
    _overlay(
        axes[0, 1], image, explanation.visual_saliency(), None, 0.45, "jet", True, relative=True
    )
    axes[0, 1].set_title("visual self-attention", fontsize="small")
    for ax, (name, m) in zip(axes[0, 2:], token_maps):
        _overlay(ax, image, m, None, 0.45, "jet", True, vmax=1.0)
        ax.set_title(f"→ {name}", fontsize="small")
    for ax in axes[0, top:]:
        ax.set_visible(False)
    if words:
        for ax, word, m in zip(axes[1], words, word_maps):
            _overlay(ax, image, m, None, 0.45, "jet", True, relative=True)
            ax.set_title(f'"{word}"', fontsize="small")
        for ax in axes[1, len(words) :]:
            ax.set_visible(False)
    report = explanation.report
    head = f"report: {report[:110]}{'…' if report and len(report) > 110 else ''}"
    fig.suptitle(head if report is not None else "attention maps", fontsize="medium")
    return _finish(fig, path)


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------
def plot_cohort_funnel(
    log: Any,
    *,
    title: str | None = None,
    path: _PathLike | None = None,
) -> Figure:
    """The cohort funnel: studies left after each preparation step, with what it dropped.

    Args:
        log: a :class:`mtl_report.data.cohort.CohortLog`, its ``to_dict()``, a
            ``cohort_log.json`` path or a prepared dataset directory.
        title: axes title (default ``"Cohort (<source>)"``).
        path: PNG file to write.

    Returns:
        The figure: one horizontal bar per step (top to bottom, labelled with the step
        name), the count at the end of each bar, the drop reasons beside it; x label
        ``"<unit> remaining"``.
    """
    if hasattr(log, "to_dict"):
        data = log.to_dict()
    elif isinstance(log, Mapping):
        data = dict(log)
    else:
        p = Path(log)
        data = json.loads((p / "cohort_log.json" if p.is_dir() else p).read_text())
    steps = data.get("steps", [])
    if not steps:
        raise ValueError("the cohort log has no steps")
    unit = data.get("unit", "studies")
    fig = _figure(10.0, 0.9 + 0.55 * len(steps))
    ax = fig.add_subplot()
    y = np.arange(len(steps))
    outs = [s["rows_out"] for s in steps]
    top = max(s["rows_in"] for s in steps) or 1
    ax.barh(y, [s["rows_in"] for s in steps], color="mistyrose", edgecolor="none")
    ax.barh(y, outs, color="steelblue")
    for i, s in enumerate(steps):
        ax.text(s["rows_out"], i, f" {s['rows_out']:,}", va="center", fontsize="small")
        if s.get("dropped"):
            why = "; ".join(f"−{n:,} {r}" for r, n in s["dropped"].items())
            ax.text(top * 1.12, i, why, va="center", fontsize="x-small", color="firebrick")
    ax.set_yticks(y)
    ax.set_yticklabels([s["name"] for s in steps], fontsize="small")
    ax.invert_yaxis()
    ax.set_xlim(0, top * 1.1)
    ax.set_xlabel(f"{unit} remaining")
    ax.set_title(title or f"Cohort ({data.get('source', '?')})")
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="x", alpha=0.3)
    ax.set_clip_on(False)
    return _finish(fig, path)


def plot_distributions(
    before: pd.DataFrame,
    after: pd.DataFrame,
    columns: Sequence[str],
    *,
    labels: tuple[str, str] = ("before cleaning", "after cleaning"),
    bins: int = 30,
    ncols: int = 3,
    title: str | None = None,
    path: _PathLike | None = None,
) -> Figure:
    """Histograms of numeric columns in two tables (e.g. vitals before/after cleaning).

    Missing values are left out and counted in each panel's legend, so values that
    cleaning set to missing show up as a larger ``missing`` count.

    Returns:
        The figure: one panel per column, titled with the column name, y label ``"studies"``.
    """
    nrows, ncols = _grid(len(columns), ncols)
    fig = _figure(3.6 * ncols, 2.9 * nrows + (0.4 if title else 0))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, col in zip(axes, columns):
        a = pd.to_numeric(before[col], errors="coerce") if col in before else pd.Series([])
        b = pd.to_numeric(after[col], errors="coerce") if col in after else pd.Series([])
        both = pd.concat([a, b]).dropna()
        edges = np.histogram_bin_edges(both, bins=bins) if len(both) else bins
        for values, label, style in (
            (a, labels[0], dict(color="grey", alpha=0.45)),
            (b, labels[1], dict(color="C0", histtype="step", linewidth=1.6)),
        ):
            kept = values.dropna()
            ax.hist(
                kept,
                bins=edges,
                label=f"{label} (n={len(kept)}, missing {values.isna().sum()})",
                **style,
            )
        ax.set_title(col)
        ax.set_ylabel("studies")
        ax.legend(fontsize="x-small")
    for ax in axes[len(columns) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def plot_prevalence(
    records: pd.DataFrame,
    columns: Sequence[str],
    *,
    by: str = "split",
    order: Sequence[str] | None = ("train", "val", "test"),
    title: str = "Finding prevalence per split",
    path: _PathLike | None = None,
) -> Figure:
    """Grouped bars: the share of positives of 0/1 label columns per group (NaN ignored).

    Returns:
        The figure: x ticks the label columns, one bar colour per group (legend), y label
        ``"prevalence (labelled studies)"``.
    """
    prev = records.groupby(by)[list(columns)].mean()
    groups = [g for g in (order or prev.index) if g in prev.index]
    prev = prev.loc[groups]
    fig = _figure(1.6 + 1.2 * len(columns), 3.6)
    ax = fig.add_subplot()
    width = 0.8 / max(len(groups), 1)
    x = np.arange(len(columns))
    for i, g in enumerate(groups):
        n = int(records[by].eq(g).sum())
        ax.bar(x + (i - (len(groups) - 1) / 2) * width, prev.loc[g], width, label=f"{g} (n={n})")
    ax.set_xticks(x)
    ax.set_xticklabels(columns, rotation=20, ha="right")
    ax.set_ylabel("prevalence (labelled studies)")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return _finish(fig, path)


def plot_category_distribution(
    records: pd.DataFrame,
    column: str,
    *,
    by: str = "split",
    order: Sequence[str] | None = ("train", "val", "test"),
    normalize: bool = True,
    title: str | None = None,
    path: _PathLike | None = None,
) -> Figure:
    """Grouped bars of a categorical column per group (e.g. acuity levels per split).

    Returns:
        The figure: x ticks the categories, one bar colour per group, y label
        ``"share of studies"`` (``"studies"`` without ``normalize``).
    """
    table = pd.crosstab(records[column], records[by], normalize="columns" if normalize else False)
    groups = [g for g in (order or table.columns) if g in table.columns]
    table = table[groups]
    fig = _figure(1.8 + 0.9 * len(table.index), 3.4)
    ax = fig.add_subplot()
    width = 0.8 / max(len(groups), 1)
    x = np.arange(len(table.index))
    for i, g in enumerate(groups):
        ax.bar(x + (i - (len(groups) - 1) / 2) * width, table[g], width, label=str(g))
    ax.set_xticks(x)
    ax.set_xticklabels([_category_label(v) for v in table.index])
    ax.set_xlabel(column)
    ax.set_ylabel("share of studies" if normalize else "studies")
    ax.set_title(title or f"{column} per {by}")
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return _finish(fig, path)


def _category_label(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
