"""Learning-rate schedules (serialisable, so a saved optimizer reloads)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mtl_report")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to ``peak`` over ``warmup_steps``, then constant ``peak``
    (the paper's schedule), or cosine decay to ``final_fraction * peak`` by ``total_steps``
    when ``decay`` is set."""

    def __init__(
        self,
        peak: float,
        warmup_steps: int,
        total_steps: int = 0,
        decay: bool = False,
        final_fraction: float = 0.1,
    ):
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.decay = bool(decay)
        self.final_fraction = float(final_fraction)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warm = ops.cast(max(self.warmup_steps, 1), "float32")
        lr = self.peak * ops.minimum(1.0, (step + 1.0) / warm)
        if self.decay and self.total_steps > self.warmup_steps:
            span = float(self.total_steps - self.warmup_steps)
            progress = ops.clip((step - self.warmup_steps) / span, 0.0, 1.0)
            cosine = 0.5 * (1.0 + ops.cos(3.141592653589793 * progress))
            factor = self.final_fraction + (1.0 - self.final_fraction) * cosine
            lr = ops.where(step < self.warmup_steps, lr, self.peak * factor)
        return lr

    def get_config(self):
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "decay": self.decay,
            "final_fraction": self.final_fraction,
        }
