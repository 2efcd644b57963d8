"""Figure helpers every plot module shares (Agg figures, saving, grids, image display)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

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
