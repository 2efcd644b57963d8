"""What every training run of the package sets up, written once for both models.

The report model (:func:`mtl_report.training.train`) and the RadGen classifier
(:func:`mtl_report.classify.train_classifier`) differ in data, callbacks and evaluation, but
not in how a run is seeded, made deterministic, switched to mixed precision, distributed
over devices, or optimised: those live here, so a fix to one reaches both.

Each process-wide switch (determinism, the precision policy) is scoped to the run by a
context manager and restored afterwards, so that a notebook or test process that trains
one run is not changed behind its back for everything it does later.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import keras
import tensorflow as tf

from mtl_report.schedules import LinearWarmup


def set_seeds(seed: int) -> None:
    """Python, NumPy and TensorFlow seeds (``keras.utils.set_random_seed``)."""
    keras.utils.set_random_seed(seed)


@contextlib.contextmanager
def op_determinism(enabled: bool) -> Iterator[None]:
    """Deterministic TensorFlow ops inside the block (``enable_op_determinism``), when
    ``enabled``; the process's previous setting afterwards.

    TF has no public way back, so the private ``disable_op_determinism`` restores it where
    it exists (TF 2.9 and later); elsewhere determinism stays on after the run.
    """
    from tensorflow.python.framework import config as tf_config

    was_on = getattr(tf_config, "is_op_determinism_enabled", lambda: False)()
    if enabled and not was_on:
        tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if enabled and not was_on and hasattr(tf_config, "disable_op_determinism"):
            tf_config.disable_op_determinism()


@contextlib.contextmanager
def precision_policy(mixed: bool) -> Iterator[None]:
    """``mixed_float16`` as Keras's global dtype policy inside the block when ``mixed``
    (float16 compute, float32 variables and losses); the previous policy afterwards, so a
    model built later in the process is float32 again unless asked otherwise."""
    previous = keras.mixed_precision.global_policy()
    if mixed:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def strategy_for(devices: Sequence[str] | None = None) -> tf.distribute.Strategy:
    """MirroredStrategy over ``devices`` or over all GPUs when there are several; else the
    default (single-device) strategy."""
    if devices:
        return tf.distribute.MirroredStrategy(list(devices))
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def warmup_optimizer(
    learning_rate: float,
    warmup_steps: int,
    *,
    total_steps: int = 0,
    cosine_decay: bool = False,
    weight_decay: float = 0.0,
    clipnorm: float | None = None,
) -> keras.optimizers.Optimizer:
    """Adam (AdamW with ``weight_decay``) over :class:`~mtl_report.schedules.LinearWarmup`:
    a linear warm-up to ``learning_rate`` over ``warmup_steps``, then constant or, with
    ``cosine_decay``, cosine decay by ``total_steps``. ``clipnorm`` clips each gradient's
    norm. Both models train with it; the schedule serialises with the saved optimizer."""
    schedule = LinearWarmup(
        learning_rate, int(warmup_steps), total_steps=int(total_steps), decay=cosine_decay
    )
    if weight_decay:
        return keras.optimizers.AdamW(schedule, weight_decay=weight_decay, clipnorm=clipnorm)
    return keras.optimizers.Adam(schedule, clipnorm=clipnorm)
