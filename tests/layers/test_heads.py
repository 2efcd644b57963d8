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


def test_acuity_decoding_exact_values_on_numpy_and_in_a_graph():
    """The one acuity decoder (evaluate, generate and the serving graph call it)."""
    cum = np.array([[0.9, 0.7, 0.2, 0.1], [0.3, 0.6, 0.55, 0.0], [1.0, 1.0, 1.0, 0.99]])
    expected = [[0.1, 0.2, 0.5, 0.1, 0.1], [0.7, 0.0, 0.0, 0.3, 0.0], [0, 0, 0, 0.01, 0.99]]
    np.testing.assert_allclose(np.asarray(level_probabilities(cum)), expected, atol=1e-7)
    assert np.asarray(levels_from_cumulative(cum)).tolist() == [3, 1, 5]
    graph = tf.function(lambda p: (level_probabilities(p), levels_from_cumulative(p)))
    probs, levels = graph(tf.constant(cum, tf.float32))
    assert probs.dtype == tf.float32 and levels.dtype == tf.int32
    np.testing.assert_allclose(probs.numpy(), expected, atol=1e-7)
    assert levels.numpy().tolist() == [3, 1, 5]


def test_the_target_encoding_decodes_to_its_level():
    """Training encodes acuity with mtl_report.data.cleaning; the heads' decoder inverts it."""
    from mtl_report.data.cleaning import cumulative_encoding

    enc = cumulative_encoding([1, 2, 3, 4, 5])
    assert np.asarray(levels_from_cumulative(enc)).tolist() == [1, 2, 3, 4, 5]
    probs = np.asarray(level_probabilities(enc))
    np.testing.assert_array_equal(probs, np.eye(5, dtype="float32"))
