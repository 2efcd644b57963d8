"""Learning curves from ``history.json``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mtl_report.plots.common import _figure, _finish, _PathLike


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
