"""Paired t-test and mean ± std tables against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtl_report.metrics.stats import flatten_metrics, mean_std_table, paired_t_test

A = [1.0, 2.0, 3.0, 4.0]
B = [0.5, 2.5, 2.0, 3.0]


def test_paired_t_test_hand_computed():
    # d = [0.5, -0.5, 1, 1]: mean 0.5, sd sqrt(0.5), se sqrt(0.5)/2, t = sqrt(2), df 3.
    r = paired_t_test(A, B)
    assert r["n"] == 4 and r["reason"] is None
    assert r["mean_difference"] == pytest.approx(0.5)
    assert r["statistic"] == pytest.approx(math.sqrt(2))
    assert r["p_value"] == pytest.approx(0.252215496, abs=1e-8)
    half = 3.182446305 * math.sqrt(0.5) / 2  # t(0.975, 3) * se
    assert r["ci_low"] == pytest.approx(0.5 - half, abs=1e-8)
    assert r["ci_high"] == pytest.approx(0.5 + half, abs=1e-8)


def test_paired_t_test_drops_nan_pairs():
    r = paired_t_test([*A, np.nan, 7.0], [*B, 1.0, np.nan])
    assert r["n"] == 4
    assert r["p_value"] == pytest.approx(paired_t_test(A, B)["p_value"])


@pytest.mark.parametrize(("a", "b"), [([], []), ([1.0], [2.0]), ([1.0, np.nan], [np.nan, 1.0])])
def test_paired_t_test_too_few_pairs(a, b):
    r = paired_t_test(a, b)
    assert r["n"] < 2 and math.isnan(r["p_value"]) and "at least 2" in r["reason"]


def test_paired_t_test_constant_differences():
    r = paired_t_test([1.0, 2.0, 3.0], [0.0, 1.0, 2.0])
    assert math.isnan(r["p_value"]) and "equal" in r["reason"]
    assert r["mean_difference"] == 1.0 and r["ci_low"] == r["ci_high"] == 1.0
    with pytest.raises(ValueError):
        paired_t_test([1.0], [1.0, 2.0])


def test_flatten_metrics():
    flat = flatten_metrics({"text": {"bleu_4": 0.1, "meteor": None}, "n": 5, "name": "x"})
    assert flat["text.bleu_4"] == 0.1 and flat["n"] == 5.0 and "name" not in flat
    assert math.isnan(flat["text.meteor"])


def test_mean_std_table():
    runs = [
        {"text": {"bleu_4": 0.1, "meteor": None}, "acuity": {"mae": 1.0}},
        {"text": {"bleu_4": 0.3, "meteor": 0.2}, "acuity": {"mae": 1.0}},
    ]
    t = mean_std_table(runs)
    assert list(t.index) == ["text.bleu_4", "text.meteor", "acuity.mae"]
    assert t.loc["text.bleu_4", "mean"] == pytest.approx(0.2)
    assert t.loc["text.bleu_4", "std"] == pytest.approx(math.sqrt(0.02))
    assert t.loc["text.bleu_4", "mean_std"] == "0.200 ± 0.141"
    assert t.loc["text.meteor", "n"] == 1 and t.loc["text.meteor", "mean_std"] == "0.200"
    assert t.loc["acuity.mae", "mean_std"] == "1.000 ± 0.000"
    with pytest.raises(ValueError):
        mean_std_table([])
