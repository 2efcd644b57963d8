"""Comparison tables: verdicts against the baselines (pure functions, no training)."""

from __future__ import annotations

from mtl_report.compare import _beats_baselines


def test_verdicts_skip_tasks_without_labels_and_respect_lower_is_better():
    nan = float("nan")
    results = {
        "mtl_tp": [
            {"text": {"bleu_4": 0.3}, "acuity": {"mae": None}, "findings": {"f1_macro": 0.2}}
        ],
        "baseline: constant report": [
            {"text": {"bleu_4": 0.1}, "acuity": {"mae": nan}, "findings": {"f1_macro": 0.4}}
        ],
        "baseline: nearest neighbour": [{"text": {"bleu_4": 0.35}, "findings": {}}],
    }
    lines = _beats_baselines(results, ["mtl_tp"])
    # IU X-ray has no acuity labels: no verdict rather than a crash on None / NaN.
    assert not any(" acuity " in line for line in lines)
    assert "mtl_tp text bleu_4 0.300: does NOT beat baseline: nearest neighbour (0.350)" in lines
    assert (
        "mtl_tp findings f1_macro 0.200: does NOT beat baseline: constant report (0.400)" in lines
    )
    results["mtl_tp"][0]["acuity"] = {"mae": 0.4}
    results["baseline: constant report"][0]["acuity"] = {"mae": 0.5}
    assert "mtl_tp acuity mae 0.400: beats all baselines" in _beats_baselines(results, ["mtl_tp"])
