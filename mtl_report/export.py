"""SavedModel export for TF Serving: raw request in, report out, all inside the graph.

``mtl-report export --run RUN --out DIR`` writes ``DIR/<version>/`` (TF Serving's versioned
layout) with Keras 3's :class:`keras.export.ExportArchive`. Every step from the raw request
to the report runs in TensorFlow ops that a standard ``tensorflow/serving`` build has (no
tensorflow-text, no XLA-only ops, no ``py_function``):

- image bytes (PNG/JPEG/BMP/GIF, gray or RGB, from 32×32 up to ``max_pixels``, 50 MP by
  default, ``export --max-pixels``; the size is read from the header and checked before
  anything is decoded) → :func:`mtl_report.image_decoding.decode_image`, the very function the
  training pipeline and ``mtl-report generate`` use;
- the ED fields → the run's :class:`~mtl_report.models.aksoy.AksoyPreprocessor`, the layer
  tf.data calls in training: vitals (NaN = missing) through the plausibility ranges, °C
  typed as °F converted, diastolic ≥ systolic dropped, min-max scaled with the train-split
  statistics; gender / ethnicity grouped and looked up in the train vocabulary; chief
  complaint / ICD title lower-cased, abbreviations expanded from the run's table,
  punctuation stripped (an RE2 transcription of :func:`mtl_report.data.cleaning.normalise_text`
  with the same single-pass semantics) and turned into word ids;
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

from mtl_report.data.cleaning import N_ACUITY_LEVELS
from mtl_report.data.errors import DataError
from mtl_report.data.images import MAX_IMAGE_PIXELS, MIN_IMAGE_SIDE
from mtl_report.data.outputs import clean_stale, tmp_prefix
from mtl_report.data.schema import VITALS
from mtl_report.decoding import DecodingConfig
from mtl_report.layers.heads import level_probabilities, levels_from_cumulative
from mtl_report.models.aksoy import ED_FIELDS, AksoyReportGenerator

SERVING_DEFAULT = "serving_default"
PIXELS_SIGNATURE = "generate_from_pixels"
FINDINGS_ASSET = "findings.txt"
INFO_ASSET = "export_info.json"
WARMUP_FILE = "tf_serving_warmup_requests"
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
    """The functions behind the signatures, over a run loaded as an
    :class:`~mtl_report.models.aksoy.AksoyReportGenerator` (model, backbone, preprocessor,
    tokenizer, decoding).

    ``serve_bytes(inputs)`` and ``serve_pixels(inputs)`` take the signature dicts described
    in the module docstring and return the output dicts; both are pure TF and are traced by
    :class:`keras.export.ExportArchive`.
    """

    def __init__(self, task: AksoyReportGenerator, max_pixels: int = MAX_IMAGE_PIXELS):
        self.task = task
        self.max_pixels = check_max_pixels(max_pixels)
        self.model = task.model
        self.image_size = task.image_size
        self.backbone = task.backbone
        self.preprocessor = task.preprocessor
        self.findings = task.findings
        self.decoding = task.decoding
        self.text_generator = task.text_generator
        self.tokenizer = task.tokenizer if self.text_generator is not None else None
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
        specs.update(
            {s: tf.TensorSpec([None], tf.string, name=s) for s in ED_FIELDS[len(VITALS) :]}
        )
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
        n, raw = self._check_batch(inputs, "image_bytes")
        size = self.image_size

        def decode(item):
            from mtl_report.image_decoding import decode_image

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
        return self._predict_fn(tf.reshape(images, [n, size, size, 3]), raw)

    def serve_pixels(self, inputs: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        from mtl_report.image_decoding import check_image_size, resize_image, to_rgb

        n, raw = self._check_batch(inputs, "image")
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
        return self._predict_fn(tf.reshape(images, [n, size, size, 3]), raw)

    # -- graph pieces ----------------------------------------------------------------------
    def _check_batch(
        self, inputs: Mapping[str, tf.Tensor], image_key: str
    ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """Every input must have the image's batch size (≥ 1); ``InvalidArgument`` if not.

        Returns the batch size and the raw ED fields, both only after the checks ran (so no
        op downstream fails first with a less helpful message)."""
        n = tf.shape(inputs[image_key])[0]
        checks = [tf.debugging.Assert(n > 0, ["empty batch: send at least one instance"])]
        for name in ED_FIELDS:
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
            return tf.identity(n), {k: tf.identity(inputs[k]) for k in ED_FIELDS}

    def _predict(self, images: tf.Tensor, raw: Mapping[str, tf.Tensor]) -> dict:
        x = self.task.inputs_graph(images, raw)
        if self.text_generator is not None:
            out = self.text_generator.generate_graph(x)
        else:
            wanted = {k: v for k, v in x.items() if k in self.model.input}
            out = self.model(wanted, training=False)
        result = {}
        if self.text_generator is not None:
            result["report"] = self.tokenizer.detokenize_graph(out["tokens"])
        if "acuity" in out:
            result["acuity_probs"] = level_probabilities(out["acuity"])
            result["acuity_level"] = levels_from_cumulative(out["acuity"])
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
            batch index. Default :data:`mtl_report.data.images.MAX_IMAGE_PIXELS` (50 MP).

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

    graph = ServingGraph(AksoyReportGenerator(run, decoding), max_pixels)
    if images:
        from mtl_report.image_decoding import load_image

        for path in warmup_images:  # fail here, naming the file, not at TF Serving's load
            load_image(path, graph.image_size, max_pixels=graph.max_pixels)
    else:
        images = _default_warmup_images(graph.image_size)

    archive = keras.export.ExportArchive()
    archive.track(graph.model)
    archive.track(graph.preprocessor)  # its lookup tables travel with the SavedModel
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
            "setup": run.info.get("setup"),
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
