"""One contract for every trainable model block in ``mtl_report.layers``.

Each layer: builds on its inputs with the documented output shapes and finite values;
``from_config(get_config())`` gives the same config, and with the same weights the same
outputs; Keras serialisation finds the registered class; one gradient step reaches every
trainable weight and changes the output. The preprocessing layers (no trainable weights)
and ``UnifiedDataBlock`` have theirs in their own test modules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl_report.layers import (
    CrossModalAttention,
    CumulativeOrdinalHead,
    FindingsGuide,
    GatedCrossModalFusion,
    MultiLabelHead,
    ReportDecoder,
    ReportTextEncoder,
    VisualEncoder,
)

B, L, T, D, V = 3, 6, 5, 16, 30  # batch, image tokens, text tokens, width, vocabulary


@dataclass(frozen=True)
class Case:
    make: Callable[[], keras.layers.Layer]
    inputs: Callable[[], tuple]
    shapes: tuple[tuple[int, ...], ...]  # one per output
    #: Trainable weights a single call cannot reach (none so far; say why when adding one).
    unreached: tuple[str, ...] = ()


def _floats(*shape):
    return tf.random.stateless_normal(shape, seed=(1, 2))


def _tokens(batch: int, length: int) -> tf.Tensor:
    ids = tf.random.stateless_uniform((batch, length), (3, 4), minval=4, maxval=V, dtype=tf.int32)
    return tf.concat([ids[:, :-1], tf.zeros((batch, 1), tf.int32)], axis=1)  # one padding


def _mask(batch: int, length: int) -> tf.Tensor:
    return tf.sequence_mask([length, 2, 0][:batch], length)  # full, partial, empty


CASES = {
    "VisualEncoder": Case(
        lambda: VisualEncoder(hidden_dim=D, num_heads=2, intermediate_dim=32, num_layers=2),
        lambda: (_floats(B, L, 24),),
        ((B, L, D),),
    ),
    "CrossModalAttention": Case(
        lambda: CrossModalAttention(hidden_dim=D, num_heads=2),
        lambda: (_floats(B, L, D), _floats(B, T, D), _mask(B, T)),
        ((B, L, D),),
    ),
    "ReportTextEncoder": Case(
        lambda: ReportTextEncoder(
            vocab_size=V, max_length=12, hidden_dim=D, num_heads=2, intermediate_dim=32
        ),
        lambda: (_tokens(B, 8),),
        ((B, 8, D), (B, 8)),  # tokens and their padding mask
    ),
    "ReportDecoder": Case(
        lambda: ReportDecoder(
            vocab_size=V, max_length=12, hidden_dim=D, num_heads=2, intermediate_dim=32
        ),
        lambda: (_tokens(B, 8), _floats(B, L, D)),
        ((B, 8, V),),
    ),
    "FindingsGuide": Case(
        lambda: FindingsGuide(num_findings=5, hidden_dim=D),
        lambda: (
            _floats(B, L, D),
            tf.random.stateless_uniform((B, 5), (5, 6)),
            tf.constant([[np.nan] * 5, [1, 0, 1, 0, 1], [np.nan, 1, np.nan, 0, 0.5]]),
        ),
        ((B, L + 5, D), (B, D)),
    ),
    "GatedCrossModalFusion": Case(
        lambda: GatedCrossModalFusion(hidden_dim=D, num_heads=2),
        lambda: (_floats(B, L, D), _floats(B, T, D), _mask(B, T), tf.constant([1.0, 1.0, 0.0])),
        ((B, D), (B, 1)),
    ),
    "CumulativeOrdinalHead": Case(
        lambda: CumulativeOrdinalHead(), lambda: (_floats(B, L, D),), ((B, 4),)
    ),
    "MultiLabelHead": Case(lambda: MultiLabelHead(5), lambda: (_floats(B, L, D),), ((B, 5),)),
}


def _outputs(layer, args, training=False) -> list[tf.Tensor]:
    out = layer(*args, training=training)
    return list(out) if isinstance(out, tuple | list) else [out]


@pytest.mark.parametrize("name", list(CASES))
def test_layer_contract(name):
    case = CASES[name]
    keras.utils.set_random_seed(0)
    layer, args = case.make(), case.inputs()
    outs = _outputs(layer, args)
    assert [tuple(o.shape) for o in outs] == list(case.shapes)
    assert all(np.isfinite(o.numpy()).all() for o in outs)

    # Config round trip: same config; same weights give the same outputs.
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    _outputs(clone, args)  # builds
    clone.set_weights(layer.get_weights())
    for a, b in zip(_outputs(clone, args), outs):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == config

    # One training step reaches every trainable weight and moves the output.
    assert layer.trainable_weights, "a model block without trainable weights"
    with tf.GradientTape() as tape:
        loss = sum(
            tf.reduce_mean(tf.square(o))
            for o in _outputs(layer, args, training=True)
            if o.dtype.is_floating
        )
    grads = tape.gradient(loss, layer.trainable_weights)
    missing = [
        w.path
        for w, g in zip(layer.trainable_weights, grads)
        if (g is None or not np.any(tf.convert_to_tensor(g).numpy()))
        and not any(u in w.path for u in case.unreached)
    ]
    assert not missing, f"no gradient reaches {missing}"
    keras.optimizers.SGD(0.1).apply_gradients(zip(grads, layer.trainable_weights))
    after = _outputs(layer, args)
    assert any(not np.allclose(a.numpy(), b.numpy()) for a, b in zip(after, outs))
