"""Clinical free text (chief complaint, ICD title) normalised inside the TensorFlow graph.

:class:`ClinicalTextNormalizer` is the one implementation the model sees: tf.data calls it in
training, ``mtl-report generate`` in prediction and the SavedModel in TF Serving. Dataset
preparation (no TensorFlow) normalises with :func:`mtl_report.data.cleaning.normalise_text`,
whose rules this graph transcribes; a property test holds the two equal, so a prepared
dataset's text passes through unchanged and a raw request's text is read like the training
data.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import tensorflow as tf

from mtl_report.data.cleaning import (
    MAX_RAW_TEXT_CHARS,
    MAX_TEXT_CHARS,
    MISSING_TEXT,
    prepared_abbreviations,
)

# Python's ``\w`` on str is Unicode-aware; RE2's is ASCII-only, so spell out
# the Unicode class to normalise text exactly like the pandas/``re`` path (``[^\W_]``,
# a letter or digit, is ``_ALNUM``).
_ALNUM = r"\p{L}\p{N}"
# Abbreviation spans are marked with these control characters between the matching pass
# and the expansion pass; none is left in the text by then (every character that is not a
# letter, digit or "/" has become a space).
_OPEN, _CLOSE = "\x02", "\x03"


def _re2_escape(text: str) -> str:
    """A literal for RE2: alphanumerics kept, ASCII punctuation backslashed, other
    characters as ``\\x{HEX}`` (RE2 rejects backslash before non-ASCII characters)."""
    out = []
    for ch in text:
        if (ch.isalnum() and ch.isascii()) or ch == " ":
            out.append(ch)
        elif ch.isascii() and ch.isprintable():
            out.append("\\" + ch)
        else:
            out.append(f"\\x{{{ord(ch):x}}}")
    return "".join(out)


def _key_pattern(key: str) -> str:
    """RE2 pattern of a normalised key on text whose separators are tripled.

    A key's space matches a tripled space or a tripled ``/``, its inner ``/`` a tripled
    ``/``; a final ``/`` (``w/``) takes one copy only, leaving one for the boundary after
    the key and one for the token that follows (see :func:`normalise_text_graph`).
    """
    body, tail = (key[:-1], "/") if key.endswith("/") else (key, "")
    parts = ["(?:   |///)" if c == " " else "///" if c == "/" else _re2_escape(c) for c in body]
    return "".join(parts) + tail


def normalise_text_graph(text: tf.Tensor, abbreviations: Mapping[str, str]) -> tf.Tensor:
    """Graph version of :func:`mtl_report.data.cleaning.normalise_text`, step for step.

    ``text`` tf.string of any shape → same shape: the first
    :data:`~mtl_report.data.cleaning.MAX_RAW_TEXT_CHARS` characters, lower-cased, as tokens
    with one separator (``" "`` or ``"/"``) between them, abbreviations expanded (whole
    token runs, longest first, ``/`` a separator unless part of an entry), ``/`` → space,
    cut at a word boundary to :data:`~mtl_report.data.cleaning.MAX_TEXT_CHARS` characters,
    placeholders (:data:`~mtl_report.data.cleaning.MISSING_TEXT`) → ``""``. Invalid UTF-8 is
    replaced (U+FFFD), not an error.

    Why it is built this way: Python matches abbreviations with look-behind/look-ahead
    (``(?<![^ /])key(?![^ /])``), which RE2 lacks. A consuming boundary ``(^|[ /])``
    would eat the separator two adjacent abbreviations share (``"sob/cp"``), so every
    separator is first tripled: one copy for the boundary after a key, one for the
    boundary before the next, and one more for a key that ends in ``/`` itself (``w/``).
    One leftmost-first alternation pass (keys in the priority order of
    :func:`~mtl_report.data.cleaning.prepared_abbreviations`, as in Python) marks the key
    spans; then one pass per key, in the same order, swaps each marked span its pattern
    matches for the expansion (the first key in the order that matches a span is the one
    that marked it), so an expansion is never expanded again: ``re.sub``'s single pass.
    """
    t = tf.strings.unicode_transcode(
        text, "UTF-8", "UTF-8", errors="replace", replace_control_characters=False
    )
    t = tf.strings.substr(t, 0, MAX_RAW_TEXT_CHARS, unit="UTF8_CHAR")
    # tf.strings.lower stops at a NUL byte (it is a separator anyway); İ and ς as in
    # mtl_report.data.cleaning._separators.
    t = tf.strings.regex_replace(t, r"\x00", " ")
    t = tf.strings.regex_replace(t, r"\x{130}", "I")
    t = tf.strings.lower(t, encoding="utf-8")
    t = tf.strings.regex_replace(t, r"\x{3c2}", "\u03c3")
    t = tf.strings.regex_replace(t, rf"[^{_ALNUM}/]", " ")
    t = tf.strings.regex_replace(t, r"[ /]*/[ /]*", "/")
    t = tf.strings.regex_replace(t, r" {2,}", " ")
    t = tf.strings.regex_replace(t, r"^ | $", "")
    pairs = prepared_abbreviations(abbreviations)
    if pairs:
        t = tf.strings.regex_replace(t, r"([ /])", r"\1\1\1")
        alternatives = "|".join(_key_pattern(k) for k, _ in pairs)
        t = tf.strings.regex_replace(
            t, rf"(^|[ /])({alternatives})([ /]|$)", rf"\1{_OPEN}\2{_CLOSE}\3"
        )
        for key, expansion in pairs:
            t = tf.strings.regex_replace(
                t, f"{_OPEN}{_key_pattern(key)}{_CLOSE}", f" {expansion} ".replace("\\", "\\\\")
            )
    t = tf.strings.regex_replace(t, r"[ /]+", " ")
    t = tf.strings.regex_replace(t, r"^ | $", "")
    long = tf.strings.length(t, unit="UTF8_CHAR") > MAX_TEXT_CHARS
    head = tf.strings.substr(t, 0, MAX_TEXT_CHARS, unit="UTF8_CHAR")
    head = tf.strings.regex_replace(head, r" [^ ]*$", "")
    t = tf.where(long, head, t)
    placeholder = "|".join(_re2_escape(m) for m in MISSING_TEXT)
    return tf.where(tf.strings.regex_full_match(t, placeholder), tf.constant(""), t)


@keras.saving.register_keras_serializable(package="mtl_report")
class ClinicalTextNormalizer(keras.layers.Layer):
    """Lower-case, strip punctuation, expand abbreviations, cut: :func:`normalise_text_graph`.

    Call: tf.string of any shape → tf.string of the same shape. No weights.

    Args:
        abbreviations: ``{abbreviation: expansion}``, the dataset's table (``cleaning.json``
            ``abbreviations``); empty expands nothing.
    """

    def __init__(self, abbreviations: Mapping[str, str] | None = None, **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        self.abbreviations = dict(abbreviations or {})
        self.built = True

    def call(self, text):
        return normalise_text_graph(tf.convert_to_tensor(text, tf.string), self.abbreviations)

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_output_spec(self, text):
        return keras.KerasTensor(text.shape, dtype="string")

    def get_config(self):
        config = super().get_config()
        config.update(abbreviations=self.abbreviations)
        return config
