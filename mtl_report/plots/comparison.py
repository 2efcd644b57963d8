"""Set-up comparisons from ``comparison.json`` (bars with seeds and baselines)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mtl_report.plots.common import (
    DEFAULT_COMPARISON_METRICS,
    LOWER_IS_BETTER,
    _figure,
    _finish,
    _grid,
    _PathLike,
)


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
