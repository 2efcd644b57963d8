"""Attention maps over the X-ray: overlays, grids, region × token, whole explanations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from mtl_report.plots.common import _as_grid, _display_image, _figure, _finish, _grid, _PathLike


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
