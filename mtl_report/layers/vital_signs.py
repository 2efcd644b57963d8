"""Triage vital signs cleaned and min-max scaled inside the TensorFlow graph."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from mtl_report.data.cleaning import CELSIUS_RANGE, DEFAULT_VITAL_RANGES
from mtl_report.data.errors import DataError
from mtl_report.data.schema import VITALS


@keras.saving.register_keras_serializable(package="mtl_report")
class VitalSignsScaler(keras.layers.Layer):
    """Six raw vitals → the model's ``vitals`` and ``vitals_mask``, with the train statistics.

    The rules of :func:`mtl_report.data.cleaning.clean_vitals` (the preparation applies them
    to count what it drops; this layer applies them to what the model reads, so a raw
    request is cleaned like the training data): non-finite → missing, a 30–45 temperature
    read as °C and converted to °F, values outside the plausible range → missing, a
    diastolic pressure not below the systolic one → both missing. Then min-max scaling with
    the train split's statistics, clipped to [0, 1]. Computed in float64 like the pandas
    path, so prepared records give the values the preparation wrote to the last float32 bit.

    Call: a dict of the six vitals (:data:`~mtl_report.data.schema.VITALS`), each float
    ``(n,)``, NaN = missing → ``vitals`` float32 ``(n, 6)`` (missing → 0) and
    ``vitals_mask`` float32 ``(n, 6)`` (1 = present). No weights.

    Args:
        minmax: ``{vital: [low, high]}`` fitted on the train split.
        vital_order: order of the output columns (default :data:`VITALS`).
        vital_ranges: plausible inclusive range per vital (default the preparation's).
        convert_celsius: read 30–45 temperatures as °C.
    """

    def __init__(
        self,
        minmax: Mapping[str, Sequence[float]],
        vital_order: Sequence[str] = VITALS,
        vital_ranges: Mapping[str, Sequence[float]] | None = None,
        convert_celsius: bool = True,
        **kwargs,
    ):
        kwargs.setdefault("trainable", False)
        kwargs.setdefault("autocast", False)  # float64 inputs keep their precision
        super().__init__(**kwargs)
        self.vital_order = [str(v) for v in vital_order]
        unknown = [v for v in self.vital_order if v not in VITALS]
        if unknown:
            raise DataError(f"cleaning vital_order names unknown vital(s) {unknown}")
        missing = [v for v in self.vital_order if v not in minmax]
        if missing:
            raise DataError(f"cleaning has no min-max statistics for {missing}")
        self.minmax = {v: [float(b) for b in minmax[v]] for v in self.vital_order}
        for name, (lo, hi) in self.minmax.items():
            if not hi > lo:
                raise DataError(f"min-max statistics for {name}: high {hi} is not above {lo}")
        ranges = {**DEFAULT_VITAL_RANGES, **dict(vital_ranges or {})}
        self.vital_ranges = {v: [float(b) for b in ranges[v]] for v in VITALS}
        self.convert_celsius = bool(convert_celsius)
        self.built = True

    def call(self, vitals: Mapping[str, tf.Tensor]):
        nan = tf.constant(np.nan, tf.float64)
        v = {}
        for name in VITALS:
            x = tf.cast(vitals[name], tf.float64)
            x = tf.where(tf.math.is_finite(x), x, nan)
            if name == "temperature" and self.convert_celsius:
                celsius = (x >= CELSIUS_RANGE[0]) & (x <= CELSIUS_RANGE[1])
                x = tf.where(celsius, x * 9.0 / 5.0 + 32.0, x)
            low, high = self.vital_ranges[name]
            v[name] = tf.where((x >= low) & (x <= high), x, nan)
        inverted = v["dbp"] >= v["sbp"]  # False when either is NaN
        for name in ("sbp", "dbp"):
            v[name] = tf.where(inverted, nan, v[name])
        columns = []
        for name in self.vital_order:
            lo, hi = self.minmax[name]
            columns.append(tf.clip_by_value((v[name] - lo) / (hi - lo), 0.0, 1.0))
        values = tf.stack(columns, axis=-1)
        present = tf.math.is_finite(values)
        return (
            tf.cast(tf.where(present, values, tf.zeros_like(values)), tf.float32),
            tf.cast(present, tf.float32),
        )

    def compute_output_spec(self, vitals):
        shape = (*vitals[VITALS[0]].shape, len(self.vital_order))
        return keras.KerasTensor(shape, "float32"), keras.KerasTensor(shape, "float32")

    def get_config(self):
        config = super().get_config()
        config.update(
            minmax=self.minmax,
            vital_order=self.vital_order,
            vital_ranges=self.vital_ranges,
            convert_celsius=self.convert_celsius,
        )
        return config
