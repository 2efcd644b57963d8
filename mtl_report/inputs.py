"""tf.data input pipelines: images, ED data and targets of a prepared dataset.

Model inputs **(contract)** — the model builder uses exactly these names:

==================  =========================  ===============================================
name                per-example shape, dtype   meaning
==================  =========================  ===============================================
``image``           ``(S, S, 3)`` float32      pixels in [0, 255], see :func:`decode_image`
``image_features``  ``(L, C)`` float32         cached frozen-backbone features (instead of
                                               ``image``; :mod:`mtl_report.feature_cache`)
``vitals``          ``(6,)`` float32           min-max scaled with the train statistics,
                                               order ``cleaning["vital_order"]``, missing → 0
``vitals_mask``     ``(6,)`` float32           1 = vital present, 0 = missing
``gender``          ``()`` tf.string           ``F``/``M``/``unknown`` (train vocabulary)
``ethnicity``       ``()`` tf.string           train vocabulary or ``unknown``
``chief_complaint`` ``()`` tf.string           normalised text, ``""`` = absent
``icd_title``       ``()`` tf.string           normalised text, ``""`` = absent
``report_tokens``   ``(max_length - 1,)`` int32  decoder input (teacher forcing)
==================  =========================  ===============================================

Targets: ``report`` int32 ``(max_length - 1,)`` (0 = padding, ignored by the loss; a study
without a report is all padding), ``acuity`` float32 ``(4,)`` cumulative encoding (NaN row
when missing), ``findings`` float32 ``(n_findings,)`` 0/1/NaN (NaN = masked).

Image policy. Images are decoded with graph-only ops (so an exported serving signature can
reuse :func:`decode_image`), converted to 3 channels (grayscale tiled, alpha dropped), and
resized with the aspect ratio kept by zero padding (as ``tf.image.resize_with_pad``,
bilinear with antialiasing; :func:`resize_image`): stretching a 3056×2544 MIMIC image to a
square would change the cardiothoracic ratio that cardiomegaly is read from; the padding
is black, like the collimated border of a radiograph. Pixel values stay in [0, 255]
because the Keras EfficientNet models normalise internally; other backbones get their
normalisation from their registry entry. 16-bit PNGs are scaled by full range (``/257``):
data with 12 significant bits should be windowed to 8 bits before, or it looks dark.
Large JPEGs are decoded with libjpeg's DCT scaling (1/2, 1/4, 1/8 while the long side
stays ≥ S), about 3× faster on MIMIC-size images, at ~0.5 grey levels mean difference
after resizing.

Bad image files. Prepared datasets are decode-verified at preparation time, so the training
pipeline does not re-verify each file in Python. It checks the bytes in the graph instead
(non-empty, PNG/JPEG/BMP/GIF signature, JPEG end-of-image or PNG ``IEND`` marker near the
end: this catches empty, foreign and truncated files), and a failing file stops the
pipeline with an ``InvalidArgumentError`` whose message names the file. Missing files are
listed before the pipeline is built. :func:`load_image` (inference) raises
:class:`~preprocessing.errors.DataError` naming the file.

Augmentation (train split only, off by default): small rotations (±5°), zoom (±10%),
shifts (±5%) and contrast (±10%) — Keras 3 layers, seeded, applied per batch. No flips: the
reports name sides ("left lower lobe opacity", "right-sided effusion"), and a mirrored image
with an unchanged report would teach the decoder wrong laterality (and a heart on the
wrong side).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from preprocessing.cleaning import (
    DEFAULT_VITAL_RANGES,
    clean_vitals,
    cumulative_encoding,
    ethnicity_group,
    normalise_gender,
    normalise_text,
)
from preprocessing.errors import DataError
from preprocessing.io import PreparedDataset
from preprocessing.schema import CATEGORICAL, TEXT_FEATURES, UNKNOWN, VITALS

if TYPE_CHECKING:  # pragma: no cover
    from mtl_report.feature_cache import FeatureCache
    from mtl_report.text import ReportTokenizer

IMAGE_SIZE = 224
#: Bumped whenever decoding/resizing changes, so cached backbone features are recomputed.
IMAGE_PIPELINE_VERSION = 1
STRING_INPUTS: tuple[str, ...] = (*CATEGORICAL, *TEXT_FEATURES)
TABULAR_INPUTS: tuple[str, ...] = ("vitals", "vitals_mask", *STRING_INPUTS)
TARGETS: tuple[str, ...] = ("report", "acuity", "findings")
#: Free text longer than this (characters) is cut at a word boundary.
MAX_TEXT_CHARS = 1000
#: Acuity levels 1–5 → 4 cumulative targets.
N_ACUITY_TARGETS = 4

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TAIL_BYTES = 4096


# --------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------
def _tail_has(tail: tf.Tensor, marker: bytes) -> tf.Tensor:
    """Whether the byte string ``marker`` occurs in the uint8 vector ``tail``."""
    n = tf.shape(tail)[0] - len(marker) + 1
    hit = tf.ones(tf.maximum(n, 0), tf.bool)
    for i, byte in enumerate(marker):
        hit &= tf.equal(tail[i : i + tf.maximum(n, 0)], byte)
    return tf.reduce_any(hit)


def image_bytes_ok(contents: tf.Tensor) -> tf.Tensor:
    """Cheap structural check of encoded image bytes (graph ops), tf.bool scalar.

    True for a non-empty PNG, JPEG, BMP or GIF; PNG must end with its ``IEND`` chunk and
    JPEG with an end-of-image marker (within the last 4 KiB), which truncated files lack.
    """
    n = tf.strings.length(contents)
    tail_len = tf.minimum(n, _TAIL_BYTES)
    tail = tf.io.decode_raw(tf.strings.substr(contents, n - tail_len, tail_len), tf.uint8)
    tail = tf.reshape(tail, [-1])
    is_png = tf.equal(tf.strings.substr(contents, 0, 8), _PNG_SIGNATURE)
    is_jpeg = tf.equal(tf.strings.substr(contents, 0, 3), b"\xff\xd8\xff")
    is_bmp = tf.equal(tf.strings.substr(contents, 0, 2), b"BM")
    is_gif = tf.equal(tf.strings.substr(contents, 0, 4), b"GIF8")
    png_ok = is_png & _tail_has(tail, b"IEND")
    jpeg_ok = is_jpeg & _tail_has(tail, b"\xff\xd9")
    return (n > 8) & (png_ok | jpeg_ok | is_bmp | is_gif)


def _decode_jpeg(contents: tf.Tensor, image_size: int) -> tf.Tensor:
    """JPEG → float32 (h, w, c), DCT-scaled while the long side stays >= image_size."""
    shape = tf.io.extract_jpeg_shape(contents)
    long_side = tf.reduce_max(shape[:2])

    def decode(ratio: int):
        return lambda: tf.io.decode_jpeg(contents, channels=0, ratio=ratio)

    image = tf.case(
        [(long_side >= r * image_size, decode(r)) for r in (8, 4, 2)],
        default=decode(1),
        exclusive=False,
    )
    return tf.cast(image, tf.float32)


def _decode_any(contents: tf.Tensor, image_size: int) -> tf.Tensor:
    """PNG (8/16-bit), JPEG, BMP or GIF → float32 (h, w, c) in [0, 255], c in 1..4."""
    is_png = tf.equal(tf.strings.substr(contents, 0, 8), _PNG_SIGNATURE)

    def png():
        # uint16 decoding scales 8-bit PNGs by 257, so one division serves both depths.
        return tf.cast(tf.io.decode_png(contents, channels=0, dtype=tf.uint16), tf.float32) / 257.0

    def other():
        return tf.cond(
            tf.io.is_jpeg(contents),
            lambda: _decode_jpeg(contents, image_size),
            lambda: tf.cast(
                tf.io.decode_image(contents, channels=0, expand_animations=False), tf.float32
            ),
        )

    image = tf.cond(is_png, png, other)
    image.set_shape([None, None, None])
    return image


def to_rgb(image: tf.Tensor) -> tf.Tensor:
    """(h, w, c) with c in 1..4 → (h, w, 3): grayscale tiled, gray+alpha and RGBA lose alpha."""
    channels = tf.shape(image)[-1]
    image = tf.cond(
        channels < 3,
        lambda: tf.tile(image[..., :1], [1, 1, 3]),
        lambda: image[..., :3],
    )
    image.set_shape([None, None, 3])
    return image


def resize_image(image: tf.Tensor, image_size: int = IMAGE_SIZE) -> tf.Tensor:
    """(h, w, 3) float → (S, S, 3) float32 in [0, 255], aspect ratio kept by zero padding.

    The long side is scaled to S (bilinear, antialiased when shrinking) and the image is
    centred on black; like ``tf.image.resize_with_pad``, except that a very thin image
    keeps at least one pixel instead of failing.
    """
    image = tf.cast(image, tf.float32)
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = image_size / tf.reduce_max(hw)
    new_hw = tf.clip_by_value(tf.cast(tf.round(hw * scale), tf.int32), 1, image_size)
    image = tf.image.resize(image, new_hw, method="bilinear", antialias=True)
    offset = (image_size - new_hw) // 2
    image = tf.image.pad_to_bounding_box(image, offset[0], offset[1], image_size, image_size)
    image = tf.clip_by_value(image, 0.0, 255.0)
    return tf.ensure_shape(image, [image_size, image_size, 3])


def decode_image(
    contents: tf.Tensor, image_size: int = IMAGE_SIZE, source: tf.Tensor | str | None = None
) -> tf.Tensor:
    """Encoded image bytes → float32 ``(S, S, 3)`` in [0, 255], graph ops only.

    Accepts PNG (8- or 16-bit; gray, gray+alpha, RGB, RGBA, palette), JPEG (gray, RGB,
    CMYK), BMP and GIF (first frame), any size. 16-bit values are divided by 257, alpha is
    dropped, grayscale is tiled to 3 channels; see the module docstring for the resizing.

    Args:
        contents: scalar tf.string, the file bytes.
        image_size: output side S.
        source: what to name in an error (a path); tf.string scalar or str.

    Raises:
        tf.errors.InvalidArgumentError: (when run) for bytes that are not a complete image,
            with ``source`` in the message.
    """
    contents = tf.convert_to_tensor(contents, tf.string)
    if contents.shape.rank not in (None, 0):
        raise ValueError(f"decode_image takes one image (a scalar string), got {contents.shape}")
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    source = "<image bytes>" if source is None else source
    check = tf.debugging.Assert(
        image_bytes_ok(contents),
        ["Cannot decode image file", source, "(empty, truncated or not PNG/JPEG/BMP/GIF)"],
    )
    with tf.control_dependencies([check]):
        contents = tf.identity(contents)
    return resize_image(to_rgb(_decode_any(contents, image_size)), image_size)


def read_image(path: tf.Tensor, image_size: int = IMAGE_SIZE) -> tf.Tensor:
    """Graph version of :func:`load_image`: path (tf.string scalar) → ``(S, S, 3)`` float32."""
    return decode_image(tf.io.read_file(path), image_size, source=path)


def load_image(path: str | Path, image_size: int = IMAGE_SIZE) -> np.ndarray:
    """Read and prepare one image file (inference): float32 ``(S, S, 3)`` in [0, 255].

    Raises:
        DataError: naming the file when it is missing or cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    contents = path.read_bytes()
    try:
        return decode_image(tf.constant(contents), image_size, source=str(path)).numpy()
    except tf.errors.OpError as exc:
        reason = exc.message.splitlines()[0] if exc.message else type(exc).__name__
        raise DataError(f"{path}: cannot decode image ({reason[:200]})") from None


def image_from_array(array: Any, image_size: int = IMAGE_SIZE) -> np.ndarray:
    """An in-memory image (e.g. from PIL or a DICOM reader) → float32 ``(S, S, 3)``.

    Args:
        array: ``(H, W)`` or ``(H, W, C)`` with C in 1..4; uint8 as is, uint16 divided by
            257, float taken as already in [0, 255] (clipped), bool as 0/255.

    Raises:
        ValueError: for any other shape (a batch, a 1-D vector, 5+ channels, an empty side)
            or dtype, and for non-finite float pixels.
    """
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or not 1 <= a.shape[-1] <= 4 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(
            f"expected one image of shape (H, W) or (H, W, C) with C in 1..4, got {a.shape}"
        )
    if a.dtype == np.uint16:
        a = a.astype(np.float32) / 257.0
    elif a.dtype == bool:
        a = a.astype(np.float32) * 255.0
    elif a.dtype == np.uint8 or np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32)
        if not np.isfinite(a).all():
            raise ValueError("image has NaN or infinite pixel values")
    else:
        raise ValueError(f"unsupported image dtype {a.dtype} (uint8, uint16, bool or float)")
    return resize_image(to_rgb(tf.constant(a)), image_size).numpy()


def augmentation(seed: int = 0) -> keras.Sequential:
    """Train-time augmentation for chest X-rays, float ``(B, S, S, 3)`` in [0, 255].

    Small geometric and contrast changes a radiograph plausibly has (patient position,
    exposure). No flips (laterality). Border areas are filled with black, like the padding.
    """
    fill = {"fill_mode": "constant", "fill_value": 0.0}
    return keras.Sequential(
        [
            keras.layers.RandomRotation(5.0 / 360.0, seed=seed, **fill),
            keras.layers.RandomZoom((-0.1, 0.1), seed=seed + 1, **fill),
            keras.layers.RandomTranslation(0.05, 0.05, seed=seed + 2, **fill),
            keras.layers.RandomContrast(0.1, value_range=(0, 255), seed=seed + 3),
        ],
        name="xray_augmentation",
    )


# --------------------------------------------------------------------------------------
# Tabular ED data
# --------------------------------------------------------------------------------------
def _text_column(values: pd.Series) -> pd.Series:
    return values.astype("string").fillna("").astype(object)


def _cut(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit]
    return cut.rsplit(" ", 1)[0] if " " in cut else cut


def tabular_inputs(
    records: pd.DataFrame | Mapping[str, Any], cleaning: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """The non-imaging model inputs of studies, with the dataset's fitted transform.

    Applies the preparation's cleaning again (idempotent on prepared records), so the same
    function serves a prepared split and one raw study at inference: implausible vitals →
    missing, °C → °F, gender/ethnicity grouped and mapped to the train vocabulary
    (anything else → ``unknown``), free text normalised (abbreviations expanded) and cut to
    :data:`MAX_TEXT_CHARS`.

    Args:
        records: a DataFrame (one row per study) or one study as a mapping, e.g.
            ``{"heartrate": 110, "temperature": 38.2, "gender": "female",
            "chief_complaint": "SOB"}``. Missing keys/values (None, NaN) are missing.
        cleaning: ``PreparedDataset.cleaning`` (``minmax``, ``vital_order``, ``categories``,
            ``abbreviations``, ``vital_ranges``, ``convert_celsius``).

    Returns:
        ``vitals`` and ``vitals_mask`` float32 ``(n, 6)``; ``gender``, ``ethnicity``,
        ``chief_complaint``, ``icd_title`` object arrays of str ``(n,)``.
    """
    if isinstance(records, Mapping):
        records = pd.DataFrame([dict(records)])
    n = len(records)
    order = list(cleaning.get("vital_order", VITALS))
    unknown = [v for v in order if v not in VITALS]
    if unknown:
        raise DataError(f"cleaning vital_order names unknown vital(s) {unknown}")
    minmax = cleaning["minmax"]
    missing_stats = [v for v in order if v not in minmax]
    if missing_stats:
        raise DataError(f"cleaning has no min-max statistics for {missing_stats}")
    raw = pd.DataFrame(
        {v: records[v] if v in records.columns else np.nan for v in VITALS}, index=records.index
    )
    for v in VITALS:  # inf is not a measurement: make it missing before range checks
        raw[v] = pd.to_numeric(raw[v], errors="coerce").replace([np.inf, -np.inf], np.nan)
    ranges = {k: tuple(r) for k, r in cleaning.get("vital_ranges", DEFAULT_VITAL_RANGES).items()}
    clean, _ = clean_vitals(raw, ranges, bool(cleaning.get("convert_celsius", True)))
    values = np.empty((n, len(order)), np.float64)
    for j, v in enumerate(order):
        lo, hi = minmax[v]
        values[:, j] = np.clip((clean[v].to_numpy(np.float64) - lo) / (hi - lo), 0.0, 1.0)
    mask = np.isfinite(values)
    out: dict[str, np.ndarray] = {
        "vitals": np.where(mask, values, 0.0).astype(np.float32),
        "vitals_mask": mask.astype(np.float32),
    }

    def column(name: str) -> pd.Series:
        if name in records.columns:
            return records[name]
        return pd.Series([None] * n, index=records.index, dtype=object)

    categories = cleaning.get("categories", {})
    gender = normalise_gender(column("gender"))
    ethnicity = ethnicity_group(column("ethnicity"))
    for name, values_ in (("gender", gender), ("ethnicity", ethnicity)):
        vocab = categories.get(name)
        if vocab:
            values_ = values_.where(values_.isin(list(vocab)), UNKNOWN)
        out[name] = np.asarray(values_.astype(str).tolist(), dtype=object)
    abbreviations = cleaning.get("abbreviations", {})
    for name in TEXT_FEATURES:
        text = normalise_text(_text_column(column(name)), abbreviations)
        out[name] = np.asarray([_cut(t) for t in text.tolist()], dtype=object)
    return out


# --------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------
def report_token_ids(reports: pd.Series | Sequence, tokenizer: ReportTokenizer) -> np.ndarray:
    """``(n, max_length)`` int32 ids; a missing or blank report is all padding (masked)."""
    reports = pd.Series(list(reports), dtype=object)
    present = reports.map(lambda r: isinstance(r, str) and r.strip() != "").to_numpy(bool)
    ids = tokenizer.encode(reports.where(present, "").tolist())
    ids[~present] = tokenizer.pad_id
    return ids


def make_targets(
    records: pd.DataFrame, tokenizer: ReportTokenizer, finding_columns: Sequence[str]
) -> dict[str, np.ndarray]:
    """``report`` int32 ``(n, max_length - 1)``, ``acuity`` float32 ``(n, 4)`` (NaN row =
    missing), ``findings`` float32 ``(n, F)`` 0/1/NaN, and ``report_tokens`` (the decoder
    input that goes with ``report``)."""
    n = len(records)
    reports = records["report"] if "report" in records.columns else [None] * n
    decoder_input, target = tokenizer.decoder_io(report_token_ids(reports, tokenizer))
    if "acuity" in records.columns:
        acuity = cumulative_encoding(records["acuity"].to_numpy(dtype=object, na_value=np.nan))
    else:
        acuity = np.full((n, N_ACUITY_TARGETS), np.nan, np.float32)
    findings = np.full((n, len(finding_columns)), np.nan, np.float32)
    for j, col in enumerate(finding_columns):
        if col in records.columns:
            findings[:, j] = pd.to_numeric(records[col], errors="coerce").to_numpy(np.float64)
    bad = np.isfinite(findings) & (findings != 0) & (findings != 1)
    if bad.any():
        raise DataError(f"finding targets must be 0, 1 or missing; got {findings[bad][:5]}")
    return {
        "report_tokens": np.ascontiguousarray(decoder_input, np.int32),
        "report": np.ascontiguousarray(target, np.int32),
        "acuity": acuity.astype(np.float32),
        "findings": findings,
    }


# --------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------
def _check_image_paths(paths: pd.Series, where: str) -> list[str]:
    bad = [i for i, p in paths.items() if not isinstance(p, str) or not p]
    if bad:
        raise DataError(f"{where}: {len(bad)} stud(ies) without an image path")
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        shown = ", ".join(missing[:3])
        raise DataError(f"{where}: {len(missing)} image file(s) not found, e.g. {shown}")
    return paths.tolist()


def make_dataset(
    ds: PreparedDataset,
    split: str,
    tokenizer: ReportTokenizer,
    *,
    batch_size: int = 32,
    image_size: int = IMAGE_SIZE,
    features: FeatureCache | None = None,
    shuffle: bool | None = None,
    augment: bool = False,
    seed: int = 0,
    drop_remainder: bool = False,
    repeat: bool = False,
) -> tf.data.Dataset:
    """Batches ``(inputs, targets)`` of one split of a prepared dataset.

    Args:
        ds: the prepared dataset (``load_prepared``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        tokenizer: fitted report tokenizer (its ``max_length`` fixes the token shapes).
        batch_size: studies per batch.
        image_size: side S of ``image``; must equal ``features.image_size`` with features.
        features: a filled :class:`~mtl_report.feature_cache.FeatureCache`; the inputs then
            hold ``image_features`` ``(B, L, C)`` instead of ``image``.
        shuffle: shuffle studies each epoch (default: only for ``"train"``). Without
            shuffling, batches follow the order of ``ds.split(split)``.
        augment: random augmentation (:func:`augmentation`); train split and images only.
        seed: fixes the shuffling and augmentation sequence (the same seed gives the same
            batches, epoch after epoch).
        drop_remainder: drop a last, smaller batch.
        repeat: repeat forever (then pass ``steps_per_epoch`` to ``fit``).

    Returns:
        ``tf.data.Dataset`` of ``(inputs, targets)`` dicts, names as in the module docstring,
        decoded in parallel (deterministic order) and prefetched.

    Raises:
        DataError: unknown or empty split, studies without image files.
        ValueError: inconsistent options.
    """
    if ds.kind != "report":
        raise DataError(f"{ds.root}: a {ds.kind} dataset has no report-model inputs")
    records = ds.split(split)
    if records.empty:
        raise DataError(f"{ds.root}: no studies in split {split!r}")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if shuffle is None:
        shuffle = split == "train"
    if augment and split != "train":
        raise ValueError(f"augmentation is for the train split only, not {split!r}")
    if augment and features is not None:
        raise ValueError("cannot augment cached backbone features; fine-tune to augment")
    if features is not None and features.image_size != image_size:
        raise ValueError(
            f"feature cache is for {features.image_size}px images, dataset asks {image_size}px"
        )
    where = f"{ds.root} ({split})"
    if ds.metadata.get("text_only") and features is not None:
        paths = [""] * len(records)  # no images: blank features (training.BlankFeatures)
    else:
        paths = _check_image_paths(records["image_path"], where)
    tab = tabular_inputs(records, ds.cleaning)
    tgt = make_targets(records, tokenizer, ds.finding_columns)
    inputs = {k: tab[k] for k in TABULAR_INPUTS}
    inputs["report_tokens"] = tgt.pop("report_tokens")
    n = len(records)

    columns: dict[str, Any] = {
        "inputs": {k: tf.constant(v) for k, v in inputs.items()},
        "targets": {k: tf.constant(v) for k, v in tgt.items()},
        "index": tf.range(n, dtype=tf.int64),
    }
    if features is None:
        columns["path"] = tf.constant(paths)
    data = tf.data.Dataset.from_tensor_slices(columns)
    if shuffle:
        data = data.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        data = data.repeat()

    if features is None:

        def load(element):
            x = dict(element["inputs"])
            x["image"] = read_image(element["path"], image_size)
            return x, element["targets"]

        data = data.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        data = data.batch(batch_size, drop_remainder=drop_remainder)
        if augment:
            layers = augmentation(seed)

            def aug(x, y):
                x = dict(x)
                x["image"] = layers(x["image"], training=True)
                return x, y

            # Sequential: the layers' seed state advances in a fixed order → reproducible.
            data = data.map(aug, num_parallel_calls=None)
    else:
        table = features.lookup(paths, dtype="float16")
        feature_shape = tuple(table.shape[1:])

        def gather(index: np.ndarray) -> np.ndarray:
            return table[index].astype(np.float32)

        def attach(element):
            x = dict(element["inputs"])
            feats = tf.numpy_function(gather, [element["index"]], tf.float32, stateful=False)
            x["image_features"] = tf.ensure_shape(feats, (None, *feature_shape))
            return x, element["targets"]

        data = data.batch(batch_size, drop_remainder=drop_remainder)
        data = data.map(attach, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    options = tf.data.Options()
    options.deterministic = True
    return data.with_options(options).prefetch(tf.data.AUTOTUNE)
