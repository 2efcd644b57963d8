"""Statistics for comparing models: paired t-tests on per-study scores, mean ± std over seeds.

Why paired: two models are evaluated on the same test studies, so the per-study score
differences remove the study-to-study variation that an unpaired test would count as noise
(the STL vs MTL comparisons of ``mtl_report.compare``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["flatten_metrics", "mean_std_table", "paired_t_test"]


def paired_t_test(a: Any, b: Any, confidence: float = 0.95) -> dict[str, Any]:
    """Paired t-test of per-study scores ``a`` against ``b`` (scipy.stats.ttest_rel).

    Args:
        a, b: (N,) per-study scores of two models on the same studies, same order. Pairs
            with a NaN on either side are dropped.
        confidence: level of the interval of the mean difference.

    Returns:
        ``{"statistic", "p_value", "mean_difference" (mean of a - b), "ci_low", "ci_high",
        "n" (complete pairs), "reason"}``; ``reason`` is None for a valid test, else why the
        test is undefined (fewer than 2 pairs, all differences equal), with NaN statistic
        and p-value. Never raises for those cases.
    """
    from scipy import stats

    x = np.asarray(a, dtype=float).ravel()
    y = np.asarray(b, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"paired test needs equal lengths, got {x.size} and {y.size}")
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    n = int(x.size)
    nan = float("nan")
    out: dict[str, Any] = {
        "statistic": nan,
        "p_value": nan,
        "mean_difference": nan,
        "ci_low": nan,
        "ci_high": nan,
        "n": n,
        "reason": None,
    }
    if n:
        out["mean_difference"] = float(np.mean(x - y))
    if n < 2:
        out["reason"] = f"need at least 2 complete pairs, got {n}"
        return out
    diff = x - y
    if np.allclose(diff, diff[0], rtol=0.0, atol=1e-12):
        out.update(
            ci_low=float(diff[0]),
            ci_high=float(diff[0]),
            reason="all differences are equal (zero variance): t is undefined",
        )
        return out
    res = stats.ttest_rel(x, y)
    ci = res.confidence_interval(confidence_level=confidence)
    out.update(
        statistic=float(res.statistic),
        p_value=float(res.pvalue),
        ci_low=float(ci.low),
        ci_high=float(ci.high),
    )
    return out


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested dict: ``{"text": {"bleu_4": x}}`` -> ``{"text.bleu_4": x}``.

    Non-numeric leaves (strings, lists) are skipped; None becomes NaN.
    """
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, prefix=f"{name}."))
        elif value is None:
            flat[name] = float("nan")
        elif isinstance(value, (bool, np.bool_)):
            continue
        elif isinstance(value, (int, float, np.integer, np.floating)):
            flat[name] = float(value)
    return flat


def _format(mean: float, std: float, digits: int) -> str:
    if math.isnan(mean):
        return "n/a"
    if math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def mean_std_table(results: Sequence[Mapping[str, Any]], digits: int = 3) -> pd.DataFrame:
    """Mean ± std of each metric over runs (seeds).

    Args:
        results: one (possibly nested, e.g. ``metrics.json``) dict per seed.
        digits: decimals of the formatted column.

    Returns:
        DataFrame indexed by metric name (``"text.bleu_4"``...) with columns ``mean``,
        ``std`` (sample std, ddof=1; NaN for one run), ``n`` (runs with a value) and
        ``mean_std`` (e.g. ``"0.123 ± 0.004"``). Metrics absent or None in a run are left
        out of that run's count. Rows keep the order of first appearance.
    """
    if not results:
        raise ValueError("mean_std_table needs at least one result")
    flat = [flatten_metrics(r) for r in results]
    names = list(dict.fromkeys(k for f in flat for k in f))
    rows = []
    for name in names:
        values = np.array([f.get(name, np.nan) for f in flat], dtype=float)
        values = values[~np.isnan(values)]
        mean = float(values.mean()) if values.size else float("nan")
        std = float(values.std(ddof=1)) if values.size > 1 else float("nan")
        rows.append(
            {
                "metric": name,
                "mean": mean,
                "std": std,
                "n": int(values.size),
                "mean_std": _format(mean, std, digits),
            }
        )
    return pd.DataFrame(rows).set_index("metric")
