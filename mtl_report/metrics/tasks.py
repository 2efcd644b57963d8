"""The ``metrics.json`` layout of DESIGN.md, built from the per-task metric dicts.

Contract::

    {"text": {"bleu_1".."bleu_4", "meteor", "rouge_l", "cider", "bertscore_f1"},
     "findings": {"precision", "recall", "f1_micro", "f1_macro", "hamming_loss",
                  "exact_match", ...},
     "acuity": {"accuracy", "mae", "mse", ...},
     "n": ...}

Tasks a model does not have are left out. Values are plain JSON: numpy scalars become Python
numbers and NaN/inf become null (strict JSON has no NaN), so any JSON reader can load it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mtl_report.metrics.nlg import TEXT_METRIC_KEYS, TextMetrics

#: Keys each task block must have (more may follow, e.g. per-finding scores).
REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "text": TEXT_METRIC_KEYS,
    "findings": ("precision", "recall", "f1_micro", "f1_macro", "hamming_loss", "exact_match"),
    "acuity": ("accuracy", "mae", "mse"),
}

__all__ = ["REQUIRED_KEYS", "jsonable", "metrics_json", "write_metrics_json"]


def jsonable(value: Any) -> Any:
    """Plain-JSON copy: numpy -> Python, NaN/inf -> None, tuples -> lists, keys -> str."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    return value


def _block(name: str, metrics: Mapping[str, Any]) -> dict[str, Any]:
    missing = [k for k in REQUIRED_KEYS[name] if k not in metrics]
    if missing:
        raise ValueError(f"'{name}' metrics lack {missing}")
    ordered = {k: metrics[k] for k in REQUIRED_KEYS[name]}
    ordered.update({k: v for k, v in metrics.items() if k not in ordered})
    return jsonable(ordered)


def metrics_json(
    text: TextMetrics | Mapping[str, Any] | None = None,
    findings: Mapping[str, Any] | None = None,
    acuity: Mapping[str, Any] | None = None,
    n: int | Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Assemble ``metrics.json`` from the task results a model has.

    Args:
        text: :class:`TextMetrics` (its corpus scores are used) or the corpus dict.
        findings: :func:`findings_head_metrics` result.
        acuity: :func:`acuity_metrics` result.
        n: number of evaluated studies (or a per-task dict).

    Returns:
        ``{"text": ..., "findings": ..., "acuity": ..., "n": ...}`` without the tasks passed
        as None; JSON-ready (see module docstring).

    Raises:
        ValueError: no task given, or a task block lacks a contract key.
    """
    out: dict[str, Any] = {}
    if text is not None:
        out["text"] = _block("text", text.corpus if isinstance(text, TextMetrics) else text)
    if findings is not None:
        out["findings"] = _block("findings", findings)
    if acuity is not None:
        out["acuity"] = _block("acuity", acuity)
    if not out:
        raise ValueError("metrics_json needs at least one of text, findings, acuity")
    if n is not None:
        out["n"] = jsonable(n)
    return out


def write_metrics_json(metrics: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``metrics`` as strict, indented JSON (NaN -> null). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(jsonable(metrics), indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    return path
