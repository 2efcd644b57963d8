"""Three-class synthetic studies: class sizes, signs in the pixels, reports, the dataset."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mtl_report.data.errors import DataError
from mtl_report.data.synthetic import render_phantom
from mtl_report.data.synthetic.classes import (
    CLASSES,
    add_lobar_consolidation,
    add_upper_lobe_tb,
    class_sizes,
    compose_report,
    prepare_synthetic_classes,
    render_study,
)


def test_class_sizes_follow_the_radgen_ratio():
    sizes = class_sizes(6033)
    assert sizes == [519, 4202, 1312]
    small = class_sizes(60)
    assert sum(small) == 60 and min(small) >= 2 and small[1] > small[2] > small[0]
    with pytest.raises(ValueError, match="at least"):
        class_sizes(3)


def _base(seed: int = 0, size: int = 96) -> np.ndarray:
    return render_phantom({}, np.random.default_rng(seed), size).astype(np.float32) / 255.0


def test_consolidation_whitens_the_named_lower_lobe():
    base = _base()
    out = add_lobar_consolidation(base, np.random.default_rng(1), "right", "lower")
    s = base.shape[0]
    lower_right = (slice(int(0.55 * s), int(0.72 * s)), slice(int(0.22 * s), int(0.40 * s)))
    lower_left = (slice(int(0.55 * s), int(0.72 * s)), slice(int(0.60 * s), int(0.78 * s)))
    gain_right = (out[lower_right] - base[lower_right]).mean()
    gain_left = (out[lower_left] - base[lower_left]).mean()
    assert gain_right > 0.1 and abs(gain_left) < 0.02  # patient right = image left


def test_tb_pattern_is_in_the_upper_zone():
    base = _base()
    out = add_upper_lobe_tb(base, np.random.default_rng(2), ["left"], cavity=True)
    s = base.shape[0]
    upper = out[int(0.18 * s) : int(0.4 * s)] - base[int(0.18 * s) : int(0.4 * s)]
    lower = out[int(0.6 * s) : int(0.8 * s)] - base[int(0.6 * s) : int(0.8 * s)]
    assert np.abs(upper).mean() > 5 * np.abs(lower).mean()


def test_reports_agree_with_the_class_and_vary():
    rng = np.random.default_rng(0)
    normal = {compose_report("normal", rng) for _ in range(40)}
    pneu = [compose_report("pneumonia", rng, "left", "lower") for _ in range(60)]
    tb = [compose_report("tuberculosis", rng, "right") for _ in range(60)]
    assert len(normal) >= 4
    assert any(" no " in f" {r.lower()}" for r in normal)  # negations
    assert sum("pneumonia" in r.lower() or "consolidation" in r.lower() for r in pneu) > 40
    assert sum("tubercul" in r.lower() or "cavit" in r.lower() for r in tb) > 40
    assert all("left" in r.lower() for r in pneu)
    with pytest.raises(ValueError, match="unknown label"):
        compose_report("covid", rng)


def test_render_study_is_reproducible():
    a = render_study("tuberculosis", np.random.default_rng(5), 64)
    b = render_study("tuberculosis", np.random.default_rng(5), 64)
    assert a[0].dtype == np.uint8 and a[0].shape == (64, 64)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]


def test_prepared_dataset(tmp_path):
    out = tmp_path / "syn"
    prepare_synthetic_classes(out, 40, seed=3, image_size=32)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["kind"] == "classification" and meta["synthetic"] is True
    assert meta["classes"] == list(CLASSES)
    records = pd.read_parquet(out / "records.parquet")
    assert len(records) == 40
    assert records["label"].value_counts().to_dict() == dict(zip(CLASSES, class_sizes(40)))
    assert (records["report"].str.len() > 10).all()
    assert records.groupby("subject_id")["split"].nunique().max() == 1  # patients whole
    assert records.groupby("subject_id").size().max() == 2  # some patients have 2 studies
    assert all((out / p).is_file() for p in records["image_path"])


def test_bad_arguments_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="at least"):
        prepare_synthetic_classes(tmp_path / "x", 4)
    with pytest.raises(DataError, match="image_size"):
        prepare_synthetic_classes(tmp_path / "y", 30, image_size=8)
