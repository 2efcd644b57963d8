"""Data figures: cohort funnel, distributions before/after cleaning, prevalence, categories."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mtl_report.plots.common import _figure, _finish, _grid, _PathLike


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
