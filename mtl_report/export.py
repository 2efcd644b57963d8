"""SavedModel export for TF Serving: raw request in, report out, all inside the graph.

``mtl-report export --run RUN --out DIR`` writes ``DIR/<version>/`` (TF Serving's versioned
layout) with Keras 3's :class:`keras.export.ExportArchive`. Every step from the raw request
to the report runs in TensorFlow ops that a standard ``tensorflow/serving`` build has (no
tensorflow-text, no XLA-only ops, no ``py_function``):

- image bytes (PNG/JPEG/BMP/GIF, gray or RGB, from 32×32 up to ``max_pixels``, 50 MP by
  default, ``export --max-pixels``; the size is read from the header and checked before
  anything is decoded) → :func:`mtl_report.inputs.decode_image`, the very function the
  training pipeline and ``mtl-report generate`` use;
- vitals (NaN = missing) → plausibility ranges, °C typed as °F converted, diastolic ≥
  systolic dropped, min-max scaled with the train-split statistics of ``cleaning.json``;
- gender / ethnicity → grouped and mapped to the train vocabulary;
- chief complaint / ICD title → lower-cased, abbreviations expanded from the run's table,
  punctuation stripped (:func:`normalise_text_graph`, an RE2 transcription of
  :func:`preprocessing.cleaning.normalise_text` with the same single-pass semantics);
- frozen backbone (weights from ``backbone.weights.h5``) or the fine-tuned one;
- cached greedy or beam decoding (:class:`~mtl_report.decoding.ReportGenerator`) and
  de-tokenisation (:meth:`~mtl_report.text.ReportTokenizer.detokenize_graph`).

Signatures (batch dimension first on every tensor):

``serving_default``
    inputs ``image_bytes`` string ``(n,)``; ``o2sat``, ``heartrate``, ``resprate``, ``sbp``,
    ``dbp``, ``temperature`` (°F) float32 ``(n,)``, NaN = missing; ``gender``,
    ``ethnicity``, ``chief_complaint``, ``icd_title`` string ``(n,)``, ``""`` = missing.
    outputs (those of the model's tasks) ``report`` string ``(n,)``, ``acuity_probs``
    float32 ``(n, 5)`` (P(level 1..5)), ``acuity_level`` int32 ``(n,)`` (1..5),
    ``findings_probs`` float32 ``(n, F)`` in the order of ``assets/findings.txt``.
``generate_from_pixels``
    as above with ``image`` float32 ``(n, H, W, C)`` (C = 1, 3 or 4, values in [0, 255])
    instead of ``image_bytes``; resized in the graph like decoded bytes.

Bad requests fail with ``INVALID_ARGUMENT`` from the graph (undecodable image bytes, an
image over the pixel limit or with a side under 32 pixels, inputs of different batch sizes,
non-finite pixels, a batch of zero), never with garbage. Image errors found before decoding
name the instance (``image_bytes[3]: image too large: 20000x20000 = 400000000 pixels
exceeds the limit of 50000000 pixels (export --max-pixels)``); an error the codec itself
finds in the compressed data past a valid header carries the codec's message.

``assets.extra/tf_serving_warmup_requests`` holds a few real ``PredictionLog`` requests so
that TF Serving traces and warms every signature at load time.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from mtl_report.decoding import DecodingConfig
from preprocessing.cleaning import (
    _ETHNICITY_PREFIXES,
    _GENDER,
    DEFAULT_VITAL_RANGES,
    MAX_RAW_TEXT_CHARS,
    MAX_TEXT_CHARS,
    MISSING_TEXT,
    prepared_abbreviations,
)
from preprocessing.errors import DataError
from preprocessing.images import MAX_IMAGE_PIXELS, MIN_IMAGE_SIDE
from preprocessing.outputs import clean_stale, tmp_prefix
from preprocessing.schema import CATEGORICAL, TEXT_FEATURES, UNKNOWN, VITALS

SERVING_DEFAULT = "serving_default"
PIXELS_SIGNATURE = "generate_from_pixels"
STRING_FEATURES: tuple[str, ...] = (*CATEGORICAL, *TEXT_FEATURES)
FINDINGS_ASSET = "findings.txt"
INFO_ASSET = "export_info.json"
WARMUP_FILE = "tf_serving_warmup_requests"
N_ACUITY_LEVELS = 5
#: Appended to the serving graph's too-large message: how the limit is changed.
_LIMIT_HINT = " (export --max-pixels)"


def check_max_pixels(max_pixels: int) -> int:
    """``max_pixels`` as int, or DataError: a pixel limit must allow the smallest image."""
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int | np.integer):
        raise DataError(f"max_pixels must be an integer, got {max_pixels!r}")
    if max_pixels < MIN_IMAGE_SIDE**2:
        raise DataError(
            f"max_pixels must be at least {MIN_IMAGE_SIDE**2} "
            f"({MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}, the smallest image accepted), got {max_pixels}"
        )
    return int(max_pixels)


# Python's ``\w`` and ``\s`` on str are Unicode-aware; RE2's are ASCII-only, so spell out
# the Unicode classes to normalise text exactly like the pandas/``re`` path (``[^\W_]``,
# a letter or digit, is ``_ALNUM``).
_SPACE = (
    r"\t\n\x0b\x0c\r\x1c-\x1f \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}"
    r"\x{202f}\x{205f}\x{3000}"
)
_ALNUM = r"\p{L}\p{N}"
# Abbreviation spans are marked with these control characters between the matching pass
# and the expansion pass; none is left in the text by then (every character that is not a
# letter, digit or "/" has become a space).
_OPEN, _CLOSE = "\x02", "\x03"


# --------------------------------------------------------------------------------------
# In-graph preprocessing (mirrors mtl_report.inputs.tabular_inputs)
# --------------------------------------------------------------------------------------
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
    """Graph version of :func:`preprocessing.cleaning.normalise_text`, step for step.

    ``text`` tf.string of any shape → same shape: the first
    :data:`~preprocessing.cleaning.MAX_RAW_TEXT_CHARS` characters, lower-cased, as tokens
    with one separator (``" "`` or ``"/"``) between them, abbreviations expanded (whole
    token runs, longest first, ``/`` a separator unless part of an entry), ``/`` → space,
    cut at a word boundary to :data:`~preprocessing.cleaning.MAX_TEXT_CHARS` characters,
    placeholders (:data:`~preprocessing.cleaning.MISSING_TEXT`) → ``""``. Invalid UTF-8 is
    replaced (U+FFFD), not an error.

    Why it is built this way: Python matches abbreviations with look-behind/look-ahead
    (``(?<![^ /])key(?![^ /])``), which RE2 lacks. A consuming boundary ``(^|[ /])``
    would eat the separator two adjacent abbreviations share (``"sob/cp"``), so every
    separator is first tripled: one copy for the boundary after a key, one for the
    boundary before the next, and one more for a key that ends in ``/`` itself (``w/``).
    One leftmost-first alternation pass (keys in the priority order of
    :func:`~preprocessing.cleaning.prepared_abbreviations`, as in Python) marks the key
    spans; then one pass per key, in the same order, swaps each marked span its pattern
    matches for the expansion (the first key in the order that matches a span is the one
    that marked it), so an expansion is never expanded again: ``re.sub``'s single pass.
    """
    t = tf.strings.unicode_transcode(
        text, "UTF-8", "UTF-8", errors="replace", replace_control_characters=False
    )
    t = tf.strings.substr(t, 0, MAX_RAW_TEXT_CHARS, unit="UTF8_CHAR")
    # tf.strings.lower stops at a NUL byte (it is a separator anyway); İ and ς as in
    # preprocessing.cleaning._separators.
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


def _strip_upper(values: tf.Tensor) -> tf.Tensor:
    t = tf.strings.unicode_transcode(values, "UTF-8", "UTF-8", errors="replace")
    t = tf.strings.regex_replace(t, rf"^[{_SPACE}]+|[{_SPACE}]+$", "")
    return tf.strings.upper(t, encoding="utf-8")


def _to_vocabulary(values: tf.Tensor, vocabulary: Sequence[str] | None) -> tf.Tensor:
    """Values outside a non-empty train vocabulary → ``unknown``."""
    if not vocabulary:
        return values
    known = tf.reduce_any(tf.equal(values[..., None], tf.constant(list(vocabulary))), axis=-1)
    return tf.where(known, values, UNKNOWN)


def gender_graph(values: tf.Tensor, vocabulary: Sequence[str] | None = None) -> tf.Tensor:
    """Graph version of :func:`preprocessing.cleaning.normalise_gender` + vocabulary."""
    key = _strip_upper(values)
    out = tf.fill(tf.shape(key), UNKNOWN)
    for raw, group in _GENDER.items():
        out = tf.where(tf.equal(key, raw), group, out)
    return _to_vocabulary(out, vocabulary)


def ethnicity_graph(values: tf.Tensor, vocabulary: Sequence[str] | None = None) -> tf.Tensor:
    """Graph version of :func:`preprocessing.cleaning.ethnicity_group` + vocabulary: the
    first matching prefix of the grouping table wins."""
    key = _strip_upper(values)
    out = tf.fill(tf.shape(key), UNKNOWN)
    for prefix, group in reversed(_ETHNICITY_PREFIXES):
        hit = tf.equal(tf.strings.substr(key, 0, len(prefix.encode())), prefix)
        out = tf.where(hit, group, out)
    return _to_vocabulary(out, vocabulary)


def vitals_graph(raw: Mapping[str, tf.Tensor], cleaning: Mapping) -> tuple[tf.Tensor, tf.Tensor]:
    """Graph version of the vitals part of :func:`mtl_report.inputs.tabular_inputs`.

    ``raw`` maps each vital name to float ``(n,)`` (NaN/inf = missing, °F) → ``vitals``
    float32 ``(n, 6)`` min-max scaled and clipped to [0, 1] (missing → 0) and
    ``vitals_mask`` float32 ``(n, 6)``. Computed in float64 like the pandas path, so the
    two agree to the last float32 bit.
    """
    order = list(cleaning.get("vital_order", VITALS))
    ranges = {k: tuple(r) for k, r in cleaning.get("vital_ranges", DEFAULT_VITAL_RANGES).items()}
    v = {}
    for name in VITALS:
        x = tf.cast(raw[name], tf.float64)
        x = tf.where(tf.math.is_finite(x), x, tf.constant(np.nan, tf.float64))
        if name == "temperature" and cleaning.get("convert_celsius", True):
            celsius = (x >= 30.0) & (x <= 45.0)
            x = tf.where(celsius, x * 9.0 / 5.0 + 32.0, x)
        low, high = ranges.get(name, DEFAULT_VITAL_RANGES[name])
        v[name] = tf.where((x >= low) & (x <= high), x, tf.constant(np.nan, tf.float64))
    inverted = v["dbp"] >= v["sbp"]  # False when either is NaN
    for name in ("sbp", "dbp"):
        v[name] = tf.where(inverted, tf.constant(np.nan, tf.float64), v[name])
    columns = []
    for name in order:
        lo, hi = (float(b) for b in cleaning["minmax"][name])
        columns.append(tf.clip_by_value((v[name] - lo) / (hi - lo), 0.0, 1.0))
    values = tf.stack(columns, axis=-1)
    present = tf.math.is_finite(values)
    return (
        tf.cast(tf.where(present, values, tf.zeros_like(values)), tf.float32),
        tf.cast(present, tf.float32),
    )


def tabular_inputs_graph(raw: Mapping[str, tf.Tensor], cleaning: Mapping) -> dict:
    """Raw ED fields (``(n,)`` tensors named as in the serving signature) → the model's
    tabular inputs, as :func:`mtl_report.inputs.tabular_inputs` computes them in pandas."""
    vitals, mask = vitals_graph(raw, cleaning)
    categories = cleaning.get("categories", {})
    abbreviations = cleaning.get("abbreviations", {})
    return {
        "vitals": vitals,
        "vitals_mask": mask,
        "gender": gender_graph(raw["gender"], categories.get("gender")),
        "ethnicity": ethnicity_graph(raw["ethnicity"], categories.get("ethnicity")),
        "chief_complaint": normalise_text_graph(raw["chief_complaint"], abbreviations),
        "icd_title": normalise_text_graph(raw["icd_title"], abbreviations),
    }


def acuity_outputs_graph(cumulative: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``P(acuity > k)`` ``(n, 4)`` → P(level 1..5) float32 ``(n, 5)`` and level int32
    ``(n,)``; graph version of ``level_probabilities`` / ``level_from_cumulative``
    (running minimum first, so the probabilities are non-negative and sum to 1)."""
    p = tf.clip_by_value(tf.cast(cumulative, tf.float64), 0.0, 1.0)
    running = [p[:, 0]]
    for k in range(1, N_ACUITY_LEVELS - 1):
        running.append(tf.minimum(running[-1], p[:, k]))
    monotone = tf.stack(running, axis=-1)
    n = tf.shape(p)[0]
    upper = tf.concat([tf.ones([n, 1], tf.float64), monotone], axis=1)
    lower = tf.concat([monotone, tf.zeros([n, 1], tf.float64)], axis=1)
    level = 1 + tf.reduce_sum(tf.cast(monotone > 0.5, tf.int32), axis=-1)
    return tf.cast(upper - lower, tf.float32), level


# --------------------------------------------------------------------------------------
# The serving module
# --------------------------------------------------------------------------------------
@dataclass
class ExportResult:
    """What :func:`export_run` wrote."""

    path: Path
    version: int
    signatures: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)
    warmup_requests: int = 0


class ServingGraph:
    """The functions behind the signatures, over a loaded run (model, backbone, tokenizer).

    ``serve_bytes(inputs)`` and ``serve_pixels(inputs)`` take the signature dicts described
    in the module docstring and return the output dicts; both are pure TF and are traced by
    :class:`keras.export.ExportArchive`.
    """

    def __init__(
        self, run, decoding: DecodingConfig | None = None, max_pixels: int = MAX_IMAGE_PIXELS
    ):
        from mtl_report.decoding import ReportGenerator

        self.run = run
        self.max_pixels = check_max_pixels(max_pixels)
        self.model = run.load_model()
        cfg = run.model_config
        self.image_size = int(cfg.image_size)
        self.backbone = None if cfg.fine_tune_backbone else run.load_backbone()
        self.cleaning = run.cleaning
        self.findings = list(cfg.findings)
        self.decoding = decoding or DecodingConfig()
        self.tokenizer = run.tokenizer() if "report" in self.model.output else None
        self.generator = (
            ReportGenerator(
                self.model, self.tokenizer.start_id, self.tokenizer.end_id, self.decoding
            )
            if self.tokenizer is not None
            else None
        )
        self.outputs = [
            name
            for name, present in (
                ("report", "report" in self.model.output),
                ("acuity_probs", "acuity" in self.model.output),
                ("acuity_level", "acuity" in self.model.output),
                ("findings_probs", "findings" in self.model.output),
            )
            if present
        ]
        # Both signatures call this one function (fixed signature): it is traced once and
        # stored once in the SavedModel, instead of a backbone + decoder graph per signature.
        raw_specs = {k: v for k, v in self.tabular_specs().items()}
        image_spec = tf.TensorSpec([None, self.image_size, self.image_size, 3], tf.float32)
        self._predict_fn = tf.function(self._predict, input_signature=[image_spec, raw_specs])

    # -- signatures ------------------------------------------------------------------------
    def tabular_specs(self) -> dict[str, tf.TensorSpec]:
        specs = {v: tf.TensorSpec([None], tf.float32, name=v) for v in VITALS}
        specs.update({s: tf.TensorSpec([None], tf.string, name=s) for s in STRING_FEATURES})
        return specs

    def bytes_specs(self) -> dict[str, tf.TensorSpec]:
        return {
            "image_bytes": tf.TensorSpec([None], tf.string, name="image_bytes"),
            **self.tabular_specs(),
        }

    def pixel_specs(self) -> dict[str, tf.TensorSpec]:
        image = tf.TensorSpec([None, None, None, None], tf.float32, name="image")
        return {"image": image, **self.tabular_specs()}

    def serve_bytes(self, inputs: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        n = self._check_batch(inputs, "image_bytes")
        size = self.image_size

        def decode(item):
            from mtl_report.inputs import decode_image

            contents, index = item
            # Every error names the instance: "image_bytes[3]: image too large: ..."
            source = tf.strings.join(["image_bytes[", tf.strings.as_string(index), "]"])
            return decode_image(
                contents, size, source, max_pixels=self.max_pixels, limit_hint=_LIMIT_HINT
            )

        images = tf.map_fn(
            decode,
            (inputs["image_bytes"], tf.range(n)),
            fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32),
        )
        raw = {k: inputs[k] for k in (*VITALS, *STRING_FEATURES)}
        return self._predict_fn(tf.reshape(images, [n, size, size, 3]), raw)

    def serve_pixels(self, inputs: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        from mtl_report.inputs import check_image_size, resize_image, to_rgb

        n = self._check_batch(inputs, "image")
        image = inputs["image"]
        channels = tf.shape(image)[3]
        checks = [
            tf.debugging.Assert(
                (channels >= 1) & (channels <= 4),
                ["image must be (batch, H, W, C) with C in 1..4, got shape", tf.shape(image)],
            ),
            check_image_size(tf.shape(image)[1:3], "image", self.max_pixels, hint=_LIMIT_HINT),
            tf.debugging.Assert(
                tf.reduce_all(tf.math.is_finite(image)),
                ["image has NaN or infinite pixel values"],
            ),
        ]
        with tf.control_dependencies(checks):
            image = tf.identity(image)
        size = self.image_size
        images = tf.map_fn(
            lambda im: resize_image(to_rgb(im), size),
            image,
            fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32),
        )
        raw = {k: inputs[k] for k in (*VITALS, *STRING_FEATURES)}
        return self._predict_fn(tf.reshape(images, [n, size, size, 3]), raw)

    # -- graph pieces ----------------------------------------------------------------------
    def _check_batch(self, inputs: Mapping[str, tf.Tensor], image_key: str) -> tf.Tensor:
        """Every input must have the image's batch size (≥ 1); ``InvalidArgument`` if not."""
        n = tf.shape(inputs[image_key])[0]
        checks = [tf.debugging.Assert(n > 0, ["empty batch: send at least one instance"])]
        for name in (*VITALS, *STRING_FEATURES):
            checks.append(
                tf.debugging.Assert(
                    tf.equal(tf.shape(inputs[name])[0], n),
                    [
                        f"input {name!r} has batch size",
                        tf.shape(inputs[name])[0],
                        f"but {image_key!r} has",
                        n,
                    ],
                )
            )
        with tf.control_dependencies(checks):
            return tf.identity(n)

    def model_inputs(self, images: tf.Tensor, raw: Mapping[str, tf.Tensor]) -> dict:
        """Pixels ``(n, S, S, 3)`` in [0, 255] + raw ED fields → the Keras model's inputs."""
        x = tabular_inputs_graph(raw, self.cleaning)
        if self.backbone is not None:
            x["image_features"] = self.backbone(images, training=False)
        else:
            x["image"] = images
        return x

    def _predict(self, images: tf.Tensor, raw: Mapping[str, tf.Tensor]) -> dict:
        x = self.model_inputs(images, raw)
        if self.generator is not None:
            out = self.generator._generate(
                {k: v for k, v in x.items() if k in self.generator.encoder.input}
            )
        else:
            wanted = {k: v for k, v in x.items() if k in self.model.input}
            out = self.model(wanted, training=False)
        result = {}
        if self.generator is not None:
            result["report"] = self.tokenizer.detokenize_graph(out["tokens"])
        if "acuity" in out:
            probs, level = acuity_outputs_graph(out["acuity"])
            result["acuity_probs"] = probs
            result["acuity_level"] = level
        if "findings" in out:
            result["findings_probs"] = tf.cast(out["findings"], tf.float32)
        return result


# --------------------------------------------------------------------------------------
# Warm-up requests
# --------------------------------------------------------------------------------------
def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def prediction_log_bytes(
    model_name: str, signature_name: str, inputs: Mapping[str, np.ndarray]
) -> bytes:
    """A serialised ``tensorflow.serving.PredictionLog`` holding one ``PredictRequest``.

    Uses ``tensorflow-serving-api`` when installed; otherwise writes the same wire format
    by hand around TF's own ``TensorProto`` (PredictionLog.predict_log = 6, PredictLog.request
    = 1, PredictRequest.model_spec = 1 / inputs = 2 (map entries key = 1, value = 2),
    ModelSpec.name = 1 / signature_name = 3), so exporting needs no extra package.
    """
    tensors = {k: tf.make_tensor_proto(v) for k, v in inputs.items()}
    try:
        from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
    except ImportError:  # pragma: no cover - exercised where the package is absent
        spec = _field(1, model_name.encode()) + _field(3, signature_name.encode())
        request = _field(1, spec)
        for key in sorted(tensors):
            entry = _field(1, key.encode()) + _field(2, tensors[key].SerializeToString())
            request += _field(2, entry)
        return _field(6, _field(1, request))
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name)
    )
    for key, proto in tensors.items():
        request.inputs[key].CopyFrom(proto)
    log = prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request)
    )
    return log.SerializeToString(deterministic=True)


def _default_warmup_images(image_size: int) -> list[bytes]:
    """Two encoded radiograph-like images: a 16-bit-free gray PNG (portrait) and an RGB
    JPEG (landscape), so both decoders and both resize paths are warmed up."""
    rows = np.linspace(0, 1, 300)[:, None]
    cols = np.linspace(-1, 1, 240)[None, :]
    gray = (255 * np.exp(-4 * cols**2) * (0.3 + 0.7 * rows)).astype(np.uint8)[..., None]
    png = tf.io.encode_png(tf.constant(gray)).numpy()
    rgb = np.repeat(gray[..., 0].T[..., None], 3, axis=-1)  # landscape 240 x 300
    jpeg = tf.io.encode_jpeg(tf.constant(np.ascontiguousarray(rgb))).numpy()
    return [png, jpeg]


def warmup_requests(images: Sequence[bytes], model_name: str) -> list[bytes]:
    """Serialized PredictionLogs: each signature at batch 1 and a mixed-size batch."""

    def tabular(n: int) -> dict:
        vit = {
            "o2sat": [97.0, np.nan],
            "heartrate": [88.0, 112.0],
            "resprate": [18.0, np.nan],
            "sbp": [128.0, 95.0],
            "dbp": [79.0, 60.0],
            "temperature": [98.4, 38.6],
        }
        text = {
            "gender": [b"F", b"M"],
            "ethnicity": [b"WHITE", b""],
            "chief_complaint": [b"SOB, CP", b"fever"],
            "icd_title": [b"Pneumonia, unspecified organism", b""],
        }
        out = {k: np.asarray(v[:n], np.float32) for k, v in vit.items()}
        out.update({k: np.asarray(v[:n], object) for k, v in text.items()})
        return out

    images = list(images)
    logs = [
        prediction_log_bytes(
            model_name,
            SERVING_DEFAULT,
            {"image_bytes": np.asarray(images[:1], object), **tabular(1)},
        )
    ]
    if len(images) > 1:
        pair = np.asarray(images[:2], object)
        logs.append(
            prediction_log_bytes(model_name, SERVING_DEFAULT, {"image_bytes": pair, **tabular(2)})
        )
    pixels = np.stack(
        [np.full((200, 160, 1), 90.0, np.float32), np.full((200, 160, 1), 180.0, np.float32)]
    )
    logs.append(
        prediction_log_bytes(model_name, PIXELS_SIGNATURE, {"image": pixels[:1], **tabular(1)})
    )
    return logs


# --------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------
def next_version(out_dir: Path) -> int:
    """1 + the highest numeric version folder in ``out_dir`` (1 for a new directory)."""
    versions = [int(p.name) for p in Path(out_dir).glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    version: int | None = None,
    decoding: DecodingConfig | None = None,
    warmup_images: Sequence[str | Path] = (),
    model_name: str = "mtl_report",
    overwrite: bool = False,
    verbose: bool = False,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> ExportResult:
    """Export a run directory as ``out_dir/<version>/`` for TF Serving.

    Args:
        run_dir: a trained run (``mtl-report train``).
        out_dir: the model base path TF Serving watches (``--model_base_path``).
        version: version folder (positive int); default: one above the highest present.
        decoding: greedy (default) or beam search, fixed into the graph.
        warmup_images: image files for the warm-up requests (default: two generated
            images, one PNG and one JPEG).
        model_name: ``model_spec.name`` of the warm-up requests (TF Serving's ``--model_name``).
        overwrite: replace an existing version folder instead of failing.
        verbose: let Keras print the exported endpoints.
        max_pixels: largest request image (width × height) the graph decodes, checked
            from the header first; larger ones fail with ``INVALID_ARGUMENT`` naming the
            batch index. Default :data:`preprocessing.images.MAX_IMAGE_PIXELS` (50 MP).

    Returns:
        :class:`ExportResult`.

    Raises:
        DataError: not a run directory, a missing model or backbone file, a bad version,
            an existing version without ``overwrite``, unreadable warm-up images.
    """
    import keras

    from mtl_report.run import Run

    run = Run.read(Path(run_dir))
    out_dir = Path(out_dir)
    if version is None:
        version = next_version(out_dir)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise DataError(f"version must be a positive integer, got {version!r}")
    target = out_dir / str(version)
    if target.exists() and not overwrite:
        raise DataError(f"{target} exists; pick another --version or pass --overwrite")
    if target.exists() and not (target / "saved_model.pb").is_file():
        # --overwrite replaces an exported version, never a folder of the user's.
        raise DataError(
            f"{target}: not a SavedModel version (no saved_model.pb); "
            "choose another --version or --out"
        )
    max_pixels = check_max_pixels(max_pixels)
    images = []
    for path in warmup_images:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: warm-up image not found")
        images.append(path.read_bytes())

    graph = ServingGraph(run, decoding, max_pixels)
    if images:
        from mtl_report.inputs import load_image

        for path in warmup_images:  # fail here, naming the file, not at TF Serving's load
            load_image(path, graph.image_size, max_pixels=graph.max_pixels)
    else:
        images = _default_warmup_images(graph.image_size)

    archive = keras.export.ExportArchive()
    archive.track(graph.model)
    if graph.backbone is not None:
        archive.track(graph.backbone)
    archive.add_endpoint(SERVING_DEFAULT, graph.serve_bytes, input_signature=[graph.bytes_specs()])
    archive.add_endpoint(
        PIXELS_SIGNATURE, graph.serve_pixels, input_signature=[graph.pixel_specs()]
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    # Write next to the target and move into place, so TF Serving (which polls the base
    # path) never sees a half-written version.
    # Staging folders carry the PID: those of killed exports are removed here.
    clean_stale(out_dir, r"\d+")
    staging = Path(tempfile.mkdtemp(prefix=tmp_prefix(str(version)), dir=out_dir))
    try:
        # No gradient functions: a serving graph is never differentiated (saves ~10% time).
        options = tf.saved_model.SaveOptions(experimental_custom_gradients=False)
        archive.write_out(str(staging / "model"), options=options, verbose=verbose)
        model_dir = staging / "model"
        assets = model_dir / "assets"
        assets.mkdir(exist_ok=True)
        (assets / FINDINGS_ASSET).write_text("\n".join(graph.findings) + "\n", encoding="utf-8")
        info = {
            "run": str(Path(run_dir).resolve()),
            "preset": run.info.get("preset"),
            "outputs": graph.outputs,
            "findings": graph.findings if "findings_probs" in graph.outputs else [],
            "acuity_levels": list(range(1, N_ACUITY_LEVELS + 1)),
            "image_size": graph.image_size,
            "max_pixels": graph.max_pixels,
            "min_image_side": MIN_IMAGE_SIDE,
            "backbone": run.model_config.backbone,
            "fine_tuned_backbone": graph.backbone is None,
            "decoding": asdict(graph.decoding),
            "signatures": [SERVING_DEFAULT, PIXELS_SIGNATURE],
            "versions": run.info.get("versions", {}),
        }
        (assets / INFO_ASSET).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        logs = warmup_requests(images, model_name)
        extra = model_dir / "assets.extra"
        extra.mkdir(exist_ok=True)
        with tf.io.TFRecordWriter(str(extra / WARMUP_FILE)) as writer:
            for record in logs:
                writer.write(record)
        if target.exists():  # moved aside, not deleted first: the swap is two renames
            target.rename(staging / "replaced")
        model_dir.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    specs = {
        SERVING_DEFAULT: sorted(graph.bytes_specs()),
        PIXELS_SIGNATURE: sorted(graph.pixel_specs()),
    }
    return ExportResult(
        path=target,
        version=version,
        signatures={k: {"inputs": v, "outputs": list(graph.outputs)} for k, v in specs.items()},
        findings=graph.findings if "findings_probs" in graph.outputs else [],
        warmup_requests=len(logs),
    )
