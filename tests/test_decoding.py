"""Cached greedy / beam decoding and n-gram blocking."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from model_helpers import FEATURE_SHAPE, SIZES, assert_greedy_matches_recomputation, batch

from mtl_report.config import ModelConfig
from mtl_report.decoding import DecodingConfig, ReportGenerator
from mtl_report.models.aksoy import build_aksoy_model
from mtl_report.models.aksoy.aksoy_setups import get_setup
from mtl_report.samplers import banned_ngram_tokens


def _model():
    keras.utils.set_random_seed(1)
    mc, tc = get_setup(
        "mtl_tp", ModelConfig(hidden_dim=24, num_heads=3, intermediate_dim=32, max_report_length=16)
    )
    return build_aksoy_model(mc, SIZES, tc, FEATURE_SHAPE)


def _inputs(n=3):
    x, _ = batch(n)
    x.pop("report_tokens")
    return x


def test_cached_greedy_equals_full_recomputation():
    tokens = assert_greedy_matches_recomputation(_model(), _inputs())
    assert tokens.shape == (3, 15)


def test_generation_returns_the_other_heads_and_pads_after_end():
    model = _model()
    out = ReportGenerator(model, 2, 3, DecodingConfig("beam", beam_width=3))(_inputs())
    assert out["tokens"].shape == (3, 15)
    assert out["acuity"].shape == (3, 4) and out["findings"].shape == (3, 5)
    for row in out["tokens"]:
        ends = np.flatnonzero(row == 3)
        if len(ends):
            assert (row[ends[0] + 1 :] == 0).all()


def test_no_repeat_ngram_blocking_removes_repeated_trigrams():
    model = _model()
    x = _inputs(4)

    def repeats(tokens):
        count = 0
        for row in tokens:
            row = [t for t in row if t not in (0, 3)]
            grams = [tuple(row[i : i + 3]) for i in range(len(row) - 2)]
            count += len(grams) - len(set(grams))
        return count

    for method in ("greedy", "beam"):
        blocked = ReportGenerator(model, 2, 3, DecodingConfig(method, no_repeat_ngram_size=3))(x)
        assert repeats(blocked["tokens"]) == 0


def test_banned_tokens():
    tokens = tf.constant([[5, 6, 7, 5, 6, 0, 0], [1, 1, 1, 0, 0, 0, 0]])
    banned = banned_ngram_tokens(tokens, tf.constant(4), 3, 10).numpy()
    assert np.flatnonzero(banned[0]).tolist() == [7]
    banned = banned_ngram_tokens(tokens, tf.constant(2), 2, 10).numpy()
    assert np.flatnonzero(banned[1]).tolist() == [1]
