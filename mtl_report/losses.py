"""Masked losses: a study that lacks a target contributes nothing to that task.

Targets mark "unknown" with NaN (findings, cumulative acuity) or 0 (report padding). Every
loss averages over the known entries of the batch only, and is 0 (not NaN) when a batch has
none, so a batch of IU X-ray studies (no acuity) trains the other heads without noise.
"""

from __future__ import annotations

import keras
from keras import ops


def _masked_mean(values, mask):
    mask = ops.cast(mask, values.dtype)
    total = ops.sum(values * mask)
    count = ops.sum(mask)
    return ops.where(count > 0, total / ops.maximum(count, 1.0), ops.zeros_like(total))


def masked_binary_crossentropy(y_true, y_prob, epsilon: float = 1e-7):
    """Mean binary cross-entropy over the non-NaN entries of ``y_true``.

    Shapes: ``y_true`` and ``y_prob`` ``(batch, k)``; returns a scalar.
    """
    y_true = ops.cast(y_true, "float32")
    y_prob = ops.clip(ops.cast(y_prob, "float32"), epsilon, 1.0 - epsilon)
    known = ops.logical_not(ops.isnan(y_true))
    target = ops.where(known, y_true, ops.zeros_like(y_true))
    bce = -(target * ops.log(y_prob) + (1.0 - target) * ops.log(1.0 - y_prob))
    return _masked_mean(bce, known)


def cumulative_ordinal_loss(y_true, y_prob):
    """Ordinal acuity loss: binary cross-entropy on the 4 cumulative targets ``P(y > k)``.

    ``y_true`` rows are NaN for studies without acuity. Shapes ``(batch, 4)``.
    """
    return masked_binary_crossentropy(y_true, y_prob)


def masked_report_loss(y_true, logits, pad_id: int = 0):
    """Token cross-entropy averaged over non-padding target tokens.

    Shapes: ``y_true`` ``(batch, T)`` int, ``logits`` ``(batch, T, vocab)``.
    """
    y_true = ops.cast(y_true, "int32")
    ce = keras.losses.sparse_categorical_crossentropy(
        y_true, ops.cast(logits, "float32"), from_logits=True
    )
    return _masked_mean(ce, ops.not_equal(y_true, pad_id))


TASK_LOSSES = {
    "text": ("report", masked_report_loss),
    "acuity": ("acuity", cumulative_ordinal_loss),
    "findings": ("findings", masked_binary_crossentropy),
}
