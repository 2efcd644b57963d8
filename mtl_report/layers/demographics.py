"""Gender and ethnicity grouped inside the TensorFlow graph, from the preparation's tables."""

from __future__ import annotations

import keras
import tensorflow as tf

from mtl_report.data.cleaning import ETHNICITY_PREFIXES, GENDER_GROUPS
from mtl_report.data.schema import UNKNOWN

# Python's ``str.strip`` strips Unicode white space; RE2's ``\s`` is ASCII-only.
_SPACE = (
    r"\t\n\x0b\x0c\r\x1c-\x1f \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}"
    r"\x{202f}\x{205f}\x{3000}"
)
KINDS = ("gender", "ethnicity")


def _strip_upper(values: tf.Tensor) -> tf.Tensor:
    t = tf.strings.unicode_transcode(values, "UTF-8", "UTF-8", errors="replace")
    t = tf.strings.regex_replace(t, rf"^[{_SPACE}]+|[{_SPACE}]+$", "")
    return tf.strings.upper(t, encoding="utf-8")


def group_gender(values: tf.Tensor) -> tf.Tensor:
    """Graph version of :func:`mtl_report.data.cleaning.normalise_gender` (``F``/``M``/
    ``unknown``) over :data:`~mtl_report.data.cleaning.GENDER_GROUPS`."""
    key = _strip_upper(values)
    out = tf.fill(tf.shape(key), UNKNOWN)
    for raw, group in GENDER_GROUPS.items():
        out = tf.where(tf.equal(key, raw), group, out)
    return out


def group_ethnicity(values: tf.Tensor) -> tf.Tensor:
    """Graph version of :func:`mtl_report.data.cleaning.ethnicity_group`: the first matching
    prefix of :data:`~mtl_report.data.cleaning.ETHNICITY_PREFIXES` wins; idempotent."""
    key = _strip_upper(values)
    out = tf.fill(tf.shape(key), UNKNOWN)
    for prefix, group in reversed(ETHNICITY_PREFIXES):
        hit = tf.equal(tf.strings.substr(key, 0, len(prefix.encode())), prefix)
        out = tf.where(hit, group, out)
    return out


@keras.saving.register_keras_serializable(package="mtl_report")
class DemographicGrouper(keras.layers.Layer):
    """Raw gender or race/ethnicity strings → their group (``"F"``, ``"white"``, ``"unknown"``).

    Call: tf.string of any shape → tf.string of the same shape. No weights. Already-grouped
    values pass through, so prepared records and raw requests give the same groups.

    Args:
        kind: ``"gender"`` or ``"ethnicity"``.
    """

    def __init__(self, kind: str, **kwargs):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        self.kind = kind
        self.built = True

    def call(self, values):
        values = tf.convert_to_tensor(values, tf.string)
        return group_gender(values) if self.kind == "gender" else group_ethnicity(values)

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_output_spec(self, values):
        return keras.KerasTensor(values.shape, dtype="string")

    def get_config(self):
        config = super().get_config()
        config.update(kind=self.kind)
        return config
