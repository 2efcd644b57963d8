"""Task heads over the shared encoder sequence: ordinal acuity and multi-label findings."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mtl_report")
class CumulativeOrdinalHead(keras.layers.Layer):
    """Ordinal acuity 1–5 as 4 cumulative probabilities ``P(y > k)``, k = 1..4.

    Layer norm → dense with 4 sigmoids at every position → mean over the sequence.
    Call: ``(batch, L, d)`` → ``(batch, 4)`` float32. The level is derived by
    :func:`levels_from_cumulative`, always 1–5 and consistent with the probabilities.
    """

    def __init__(self, num_levels: int = 5, **kwargs):
        super().__init__(**kwargs)
        self.num_levels = num_levels
        self.norm = keras.layers.LayerNormalization(epsilon=1e-5, name="norm")
        self.dense = keras.layers.Dense(num_levels - 1, name="thresholds")

    def build(self, input_shape):
        self.norm.build(input_shape)
        self.dense.build(input_shape)
        self.built = True

    def call(self, sequence):
        logits = ops.cast(self.dense(self.norm(sequence)), "float32")
        return ops.mean(ops.sigmoid(logits), axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_levels - 1)

    def get_config(self):
        config = super().get_config()
        config.update(num_levels=self.num_levels)
        return config


@keras.saving.register_keras_serializable(package="mtl_report")
class MultiLabelHead(keras.layers.Layer):
    """Independent probabilities of ``num_labels`` findings.

    Layer norm → dense with sigmoids at every position → mean over the sequence.
    Call: ``(batch, L, d)`` → ``(batch, num_labels)`` float32.
    """

    def __init__(self, num_labels: int, **kwargs):
        super().__init__(**kwargs)
        self.num_labels = num_labels
        self.norm = keras.layers.LayerNormalization(epsilon=1e-5, name="norm")
        self.dense = keras.layers.Dense(num_labels, name="logits")

    def build(self, input_shape):
        self.norm.build(input_shape)
        self.dense.build(input_shape)
        self.built = True

    def call(self, sequence):
        logits = ops.cast(self.dense(self.norm(sequence)), "float32")
        return ops.mean(ops.sigmoid(logits), axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_labels)

    def get_config(self):
        config = super().get_config()
        config.update(num_labels=self.num_labels)
        return config


def _monotone(probs):
    """Cumulative probabilities ``(batch, 4)`` clipped to [0, 1], in float64, made
    non-increasing by a running minimum (``P(y > k+1) ≤ P(y > k)``)."""
    probs = ops.clip(ops.cast(probs, "float64"), 0.0, 1.0)
    running = [probs[:, 0]]
    for k in range(1, probs.shape[-1]):
        running.append(ops.minimum(running[-1], probs[:, k]))
    return ops.stack(running, axis=-1)


def levels_from_cumulative(probs, threshold: float = 0.5):
    """Acuity level 1–5 int32 ``(batch,)`` from ``P(y > k)`` ``(batch, 4)``.

    The one acuity decoder: evaluation, ``generate`` and the serving graph call it
    (``keras.ops``, so it runs on numpy arrays and inside a graph alike). A running minimum
    first makes the probabilities non-increasing, so the level is the number of leading
    thresholds passed plus one: never out of range or self-contradictory.
    """
    passed = _monotone(probs) > threshold
    return 1 + ops.sum(ops.cast(passed, "int32"), axis=-1)


def level_probabilities(probs):
    """Probabilities of levels 1–5 float32 ``(batch, 5)`` from cumulative ones
    ``(batch, 4)``: non-negative and summing to one (computed in float64)."""
    cum = _monotone(probs)
    ones = ops.ones_like(cum[:, :1])
    zeros = ops.zeros_like(cum[:, :1])
    upper = ops.concatenate([ones, cum], axis=-1)
    return ops.cast(upper - ops.concatenate([cum, zeros], axis=-1), "float32")
