"""Ordinal and multi-label heads; consistent acuity levels."""

import numpy as np
import pytest
import tensorflow as tf

from mtl_report.layers.heads import (
    CumulativeOrdinalHead,
    MultiLabelHead,
    level_probabilities,
    levels_from_cumulative,
)


def test_heads_shapes_ranges_and_config_roundtrip():
    seq = tf.random.normal((3, 7, 16))
    for layer, width in ((CumulativeOrdinalHead(), 4), (MultiLabelHead(5), 5)):
        out = layer(seq).numpy()
        assert out.shape == (3, width) and ((out > 0) & (out < 1)).all()
        clone = layer.__class__.from_config(layer.get_config())
        clone.build(seq.shape)
        clone.set_weights(layer.get_weights())
        np.testing.assert_allclose(clone(seq).numpy(), out, rtol=1e-6)


@pytest.mark.parametrize(
    ("probs", "level"),
    [
        ([0.1, 0.05, 0.0, 0.0], 1),
        ([0.9, 0.8, 0.2, 0.1], 3),
        ([0.99, 0.9, 0.8, 0.7], 5),
        ([0.2, 0.9, 0.9, 0.9], 1),  # non-monotone: cannot pass k=2 without k=1
    ],
)
def test_levels_are_always_1_to_5_and_consistent(probs, level):
    assert levels_from_cumulative(tf.constant([probs])).numpy().tolist() == [level]


def test_level_probabilities_sum_to_one():
    p = level_probabilities(tf.random.uniform((10, 4))).numpy()
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-6)
    assert (p >= -1e-7).all()
