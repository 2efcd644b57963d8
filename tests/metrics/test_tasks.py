"""The metrics.json layout (DESIGN.md contract)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mtl_report.metrics.nlg import TEXT_METRIC_KEYS, TextMetrics
from mtl_report.metrics.tasks import REQUIRED_KEYS, metrics_json, write_metrics_json

TEXT = dict(zip(TEXT_METRIC_KEYS, [0.4, 0.3, 0.2, 0.1, 0.15, 0.35, 0.5, None]))
FINDINGS = {
    "precision": 0.5,
    "recall": np.float64(0.25),
    "f1_micro": 1 / 3,
    "f1_macro": 0.3,
    "hamming_loss": 0.1,
    "exact_match": float("nan"),
    "per_finding": {"a": {"f1": 0.3}},
}
ACUITY = {"accuracy": 0.5, "mae": 0.6, "mse": 0.9, "within_one": 0.95, "n": np.int64(10)}


def test_full_layout_is_plain_json():
    m = metrics_json(text=TEXT, findings=FINDINGS, acuity=ACUITY, n=10)
    assert list(m) == ["text", "findings", "acuity", "n"]
    for task, keys in REQUIRED_KEYS.items():
        assert list(m[task])[: len(keys)] == list(keys)
    assert m["findings"]["exact_match"] is None  # NaN -> null
    assert m["text"]["bertscore_f1"] is None
    assert type(m["findings"]["recall"]) is float and type(m["acuity"]["n"]) is int
    assert m["findings"]["per_finding"] == {"a": {"f1": 0.3}}
    assert json.loads(json.dumps(m, allow_nan=False)) == m


def test_missing_tasks_are_left_out():
    tm = TextMetrics(corpus=TEXT, per_study=pd.DataFrame())
    assert list(metrics_json(text=tm, n=3)) == ["text", "n"]
    assert list(metrics_json(acuity=ACUITY)) == ["acuity"]
    with pytest.raises(ValueError, match="at least one"):
        metrics_json()
    with pytest.raises(ValueError, match="lack"):
        metrics_json(acuity={"accuracy": 1.0})


def test_write_metrics_json(tmp_path):
    path = write_metrics_json(metrics_json(findings=FINDINGS, n=4), tmp_path / "run" / "m.json")
    data = json.loads(path.read_text())
    assert data["n"] == 4 and data["findings"]["exact_match"] is None
