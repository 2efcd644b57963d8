"""Image decoding in the graph, shared by training, ``generate`` and the SavedModel.

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
:class:`~mtl_report.data.errors.DataError` naming the file.

Size limits (decompression bombs). A 438 KB PNG can declare 20000×20000 pixels and take
~9 GB and 23 s to decode. :func:`decode_image` therefore reads width and height from the
header first (PNG ``IHDR``, ``tf.io.extract_jpeg_shape``, the BMP and GIF headers) and
refuses, before any decoding, an image with more than ``max_pixels`` pixels (default
:data:`~mtl_report.data.images.MAX_IMAGE_PIXELS`, 50 MP; ``mtl-report export --max-pixels``
for a SavedModel) or with a side under ``min_side`` (default
:data:`~mtl_report.data.images.MIN_IMAGE_SIDE`, 32: a 1×1 image is not a radiograph and
must not get a fluent report). Both limits are the constants ``prepare`` checks with
Pillow, so a prepared dataset never holds an image that training would refuse.

Augmentation (train split only, off by default): small rotations (±5°), zoom (±10%),
shifts (±5%) and contrast (±10%) — Keras 3 layers, seeded, applied per batch. No flips: the
reports name sides ("left lower lobe opacity", "right-sided effusion"), and a mirrored image
with an unchanged report would teach the decoder wrong laterality (and a heart on the
wrong side).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from mtl_report.data.errors import DataError
from mtl_report.data.images import MAX_IMAGE_PIXELS, MIN_IMAGE_SIDE

IMAGE_SIZE = 224
#: Bumped whenever decoding/resizing changes, so cached backbone features are recomputed.
IMAGE_PIPELINE_VERSION = 1

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TAIL_BYTES = 4096
#: Bytes of the file start that hold the dimensions of PNG (IHDR), BMP and GIF files.
_HEADER_BYTES = 32


def _tail_has(tail: tf.Tensor, marker: bytes) -> tf.Tensor:
    """Whether the byte string ``marker`` occurs in the uint8 vector ``tail``."""
    n = tf.shape(tail)[0] - len(marker) + 1
    hit = tf.ones(tf.maximum(n, 0), tf.bool)
    for i, byte in enumerate(marker):
        hit &= tf.equal(tail[i : i + tf.maximum(n, 0)], byte)
    return tf.reduce_any(hit)


def image_bytes_ok(contents: tf.Tensor) -> tf.Tensor:
    """Cheap structural check of encoded image bytes (graph ops), tf.bool scalar.

    True for a non-empty PNG, JPEG, BMP or GIF; PNG must start with its ``IHDR`` chunk
    and end with its ``IEND`` chunk, JPEG with an end-of-image marker (within the last
    4 KiB), which truncated files lack.
    """
    n = tf.strings.length(contents)
    tail_len = tf.minimum(n, _TAIL_BYTES)
    tail = tf.io.decode_raw(tf.strings.substr(contents, n - tail_len, tail_len), tf.uint8)
    tail = tf.reshape(tail, [-1])
    is_png = tf.equal(tf.strings.substr(contents, 0, 8), _PNG_SIGNATURE)
    is_jpeg = tf.equal(tf.strings.substr(contents, 0, 3), b"\xff\xd8\xff")
    is_bmp = tf.equal(tf.strings.substr(contents, 0, 2), b"BM")
    is_gif = tf.equal(tf.strings.substr(contents, 0, 4), b"GIF8")
    ihdr = tf.equal(tf.strings.substr(contents, tf.minimum(12, n), 4), b"IHDR")  # pos <= n
    png_ok = is_png & ihdr & _tail_has(tail, b"IEND")
    jpeg_ok = is_jpeg & _tail_has(tail, b"\xff\xd9")
    return (n > 8) & (png_ok | jpeg_ok | is_bmp | is_gif)


def _field(offset: int, size: int, big_endian: bool) -> tuple[list[int], list[int]]:
    """Byte positions and weights of an unsigned integer field (4 entries, zero-padded)."""
    positions = list(range(offset, offset + size))
    weights = [256**k for k in range(size)]
    if big_endian:
        weights.reverse()
    return positions + [0] * (4 - size), weights + [0] * (4 - size)


#: Header fields (unsigned): PNG IHDR height, width; GIF screen height, width; BMP DIB
#: header size, core-header height, width, info-header height, width (signed 32-bit).
_FIELDS = [
    _field(20, 4, True),
    _field(16, 4, True),
    _field(8, 2, False),
    _field(6, 2, False),
    _field(14, 4, False),
    _field(20, 2, False),
    _field(18, 2, False),
    _field(22, 4, False),
    _field(18, 4, False),
]
_FIELD_POSITIONS = [f[0] for f in _FIELDS]
_FIELD_WEIGHTS = [f[1] for f in _FIELDS]


def _header_fields(contents: tf.Tensor) -> tf.Tensor:
    """The :data:`_FIELDS` of a scalar string's first :data:`_HEADER_BYTES` bytes (zero
    where the string is shorter), int64 ``(9,)``: a handful of ops for all formats."""
    head = tf.io.decode_raw(tf.strings.substr(contents, 0, _HEADER_BYTES), tf.uint8)
    head = tf.cast(tf.reshape(head, [-1]), tf.int64)
    head = tf.pad(head, [[0, _HEADER_BYTES - tf.shape(head)[0]]])
    weights = tf.constant(_FIELD_WEIGHTS, tf.int64)
    return tf.reduce_sum(tf.gather(head, _FIELD_POSITIONS) * weights, axis=1)


#: JPEG marker segments walked at most to find the frame header (real files: < 20).
_MAX_JPEG_SEGMENTS = 512
#: Segments walked with straight-line ops over the first :data:`_JPEG_FAST_BYTES` bytes
#: before a (slower) graph loop takes over: encoders without metadata (libjpeg, Pillow,
#: OpenCV, ``tf.io.encode_jpeg``) write APP0, DQT, DQT, then the frame header.
_UNROLLED_JPEG_SEGMENTS = 4
_JPEG_FAST_BYTES = 1024
#: Bytes the loop searches (EXIF and ICC segments can be up to 64 KiB each).
_JPEG_HEADER_BYTES = 1 << 20
_SOF_WORDS = tuple(0xFF00 + m for m in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7))
_SOF_WORDS += tuple(0xFF00 + m for m in (0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
_STANDALONE_WORDS = (0xFF01, *range(0xFFD0, 0xFFD8))


def _jpeg_segment_step(
    head: tf.Tensor,
    pos: tf.Tensor,
    done: tf.Tensor,
    found: tf.Tensor,
    dims: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """One segment of :func:`_jpeg_frame_size` over ``head`` (int32 bytes, 9 zeros
    appended): the state after reading the marker at ``pos`` (unchanged once ``done``)."""
    end = tf.shape(head)[0] - 9
    b = tf.gather(head, tf.minimum(pos, end) + tf.range(9))
    words = b[:-1] * 256 + b[1:]  # big-endian 16-bit words at offsets 0..7
    marker = words[0]
    is_sof = tf.reduce_any(tf.equal(marker, _SOF_WORDS)) & (pos < end)
    stop = is_sof | (marker < 0xFF00) | tf.equal(marker, 0xFFDA) | tf.equal(marker, 0xFFD9)
    standalone = tf.reduce_any(tf.equal(marker, _STANDALONE_WORDS))
    step = tf.where(tf.equal(marker, 0xFFFF), 1, tf.where(standalone, 2, 2 + words[2]))
    hit = ~done & is_sof
    dims = tf.where(hit, tf.cast(tf.gather(words, [5, 7]), tf.int64), dims)
    return tf.where(done, pos, pos + step), done | stop | (pos >= end), found | hit, dims


def _head_bytes(contents: tf.Tensor, size: int) -> tf.Tensor:
    """The first ``size`` bytes (or fewer) as int32, with 9 zeros appended."""
    head = tf.io.decode_raw(tf.strings.substr(contents, 0, size), tf.uint8)
    return tf.concat([tf.cast(tf.reshape(head, [-1]), tf.int32), tf.zeros(9, tf.int32)], 0)


def _jpeg_frame_size(contents: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``(found, (height, width))`` from a JPEG's frame header (SOFn), graph ops.

    Walks the marker segments after SOI by their lengths, as a decoder does (so an EXIF
    thumbnail's own SOF inside APP1 is skipped), without failing on any input: libjpeg's
    ``extract_jpeg_shape`` refuses sides over 65500 with an error that cannot name the
    request's instance, and bombs declare exactly such sides. ``found`` is False when no
    frame header comes before the scan data, the end, :data:`_MAX_JPEG_SEGMENTS` or
    :data:`_JPEG_HEADER_BYTES`. The first :data:`_UNROLLED_JPEG_SEGMENTS` steps are
    straight-line ops (~0.3 ms); a ``tf.while_loop`` runs only for files with more
    segments before the frame (metadata).
    """
    fast = _head_bytes(contents, _JPEG_FAST_BYTES)
    state = (tf.constant(2), tf.constant(False), tf.constant(False), tf.zeros(2, tf.int64))
    for _ in range(_UNROLLED_JPEG_SEGMENTS):
        state = _jpeg_segment_step(fast, *state)

    def loop():
        head = _head_bytes(contents, _JPEG_HEADER_BYTES)

        def cond(i, pos, done, found, dims):
            return ~done & (i < _MAX_JPEG_SEGMENTS)

        def body(i, pos, done, found, dims):
            return (i + 1, *_jpeg_segment_step(head, pos, done, found, dims))

        start = (tf.constant(0), tf.constant(2), tf.constant(False), tf.constant(False))
        out = tf.while_loop(cond, body, (*start, tf.zeros(2, tf.int64)))
        return out[3], out[4]

    found, dims = state[2:]
    return tf.cond(found, lambda: (found, dims), loop)


def image_dimensions(contents: tf.Tensor) -> tf.Tensor:
    """``(height, width)`` int64 from the header of a PNG, JPEG, BMP or GIF, graph ops,
    nothing decoded; ``(0, 0)`` for other bytes.

    PNG: the ``IHDR`` fields (big-endian uint32 at bytes 16 and 20); JPEG: the frame
    header, found by walking the marker segments (:func:`_jpeg_frame_size`), else
    ``tf.io.extract_jpeg_shape`` (libjpeg skips stray bytes between segments; it fails
    with ``InvalidArgument`` on a malformed header); BMP: the DIB header (16-bit
    fields for the old ``BITMAPCOREHEADER``, else signed 32-bit, negative height =
    top-down); GIF: the logical screen size, the canvas TensorFlow decodes onto.
    """
    contents = tf.convert_to_tensor(contents, tf.string)
    f = _header_fields(contents)
    is_png = tf.equal(tf.strings.substr(contents, 0, 8), _PNG_SIGNATURE)
    is_jpeg = tf.equal(tf.strings.substr(contents, 0, 3), b"\xff\xd8\xff")
    is_bmp = tf.equal(tf.strings.substr(contents, 0, 2), b"BM")
    is_gif = tf.equal(tf.strings.substr(contents, 0, 4), b"GIF8")
    info = f[7:9]
    info = tf.abs(tf.where(info >= 2**31, info - 2**32, info))  # signed 32-bit
    bmp = tf.where(tf.equal(f[4], 12), f[5:7], info)  # 12: the old BITMAPCOREHEADER
    other = tf.where(is_gif, f[2:4], tf.zeros(2, tf.int64))
    fixed = tf.where(is_png, f[0:2], tf.where(is_bmp, bmp, other))

    def jpeg() -> tf.Tensor:
        found, dims = _jpeg_frame_size(contents)
        return tf.cond(
            found, lambda: dims, lambda: tf.cast(tf.io.extract_jpeg_shape(contents)[:2], tf.int64)
        )

    return tf.cond(is_jpeg & ~is_png, jpeg, lambda: fixed)


def check_image_size(
    dims: tf.Tensor,
    source: tf.Tensor | str,
    max_pixels: int = MAX_IMAGE_PIXELS,
    min_side: int = MIN_IMAGE_SIDE,
    hint: str = "",
) -> tf.Operation:
    """An ``Assert`` op: ``dims`` ``(height, width)`` within the limits, else
    ``InvalidArgument`` "SOURCE: image too large: 20000x20000 = 400000000 pixels exceeds the
    limit of 50000000 pixels" (``hint`` appended) or "SOURCE: image too small: 1x1, each side
    must be at least 32 pixels"."""
    dims = tf.cast(dims, tf.int64)
    pixels = dims[0] * dims[1]
    shown = tf.strings.join([tf.strings.as_string(dims[1]), "x", tf.strings.as_string(dims[0])])
    limit = f" pixels exceeds the limit of {int(max_pixels)} pixels{hint}"
    too_large = tf.strings.join(
        [source, ": image too large: ", shown, " = ", tf.strings.as_string(pixels), limit]
    )
    side = f", each side must be at least {int(min_side)} pixels"
    too_small = tf.strings.join([source, ": image too small: ", shown, side])
    large_ok = pixels <= max_pixels
    return tf.debugging.Assert(
        large_ok & (tf.reduce_min(dims) >= min_side),
        [tf.where(large_ok, too_small, too_large)],
    )


def _decode_jpeg(contents: tf.Tensor, image_size: int, shape: tf.Tensor) -> tf.Tensor:
    """JPEG → float32 (h, w, c), DCT-scaled while the long side stays >= image_size."""
    long_side = tf.reduce_max(shape[:2])

    def decode(ratio: int):
        return lambda: tf.io.decode_jpeg(contents, channels=0, ratio=ratio)

    image = tf.case(
        [(long_side >= r * image_size, decode(r)) for r in (8, 4, 2)],
        default=decode(1),
        exclusive=False,
    )
    return tf.cast(image, tf.float32)


def _decode_any(contents: tf.Tensor, image_size: int, dims: tf.Tensor) -> tf.Tensor:
    """PNG (8/16-bit), JPEG, BMP or GIF → float32 (h, w, c) in [0, 255], c in 1..4;
    ``dims`` from :func:`image_dimensions`."""
    is_png = tf.equal(tf.strings.substr(contents, 0, 8), _PNG_SIGNATURE)

    def png():
        # uint16 decoding scales 8-bit PNGs by 257, so one division serves both depths.
        return tf.cast(tf.io.decode_png(contents, channels=0, dtype=tf.uint16), tf.float32) / 257.0

    def other():
        return tf.cond(
            tf.io.is_jpeg(contents),
            lambda: _decode_jpeg(contents, image_size, dims),
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
    contents: tf.Tensor,
    image_size: int = IMAGE_SIZE,
    source: tf.Tensor | str | None = None,
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    min_side: int = MIN_IMAGE_SIDE,
    limit_hint: str = "",
) -> tf.Tensor:
    """Encoded image bytes → float32 ``(S, S, 3)`` in [0, 255], graph ops only.

    Accepts PNG (8- or 16-bit; gray, gray+alpha, RGB, RGBA, palette), JPEG (gray, RGB,
    CMYK), BMP and GIF (first frame), from ``min_side`` × ``min_side`` up to ``max_pixels``
    pixels, checked from the header before decoding (module docstring). 16-bit values are
    divided by 257, alpha is dropped, grayscale is tiled to 3 channels; see the module
    docstring for the resizing.

    Args:
        contents: scalar tf.string, the file bytes.
        image_size: output side S.
        source: what to name in an error (a path); tf.string scalar or str.
        max_pixels: most pixels (width × height) accepted.
        min_side: fewest pixels on either side accepted.
        limit_hint: appended to the too-large message (how to change the limit).

    Raises:
        tf.errors.InvalidArgumentError: (when run) for bytes that are not a complete image
            or outside the size limits, the message starting with ``source``.
    """
    contents = tf.convert_to_tensor(contents, tf.string)
    if contents.shape.rank not in (None, 0):
        raise ValueError(f"decode_image takes one image (a scalar string), got {contents.shape}")
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    source = "<image bytes>" if source is None else source
    message = tf.strings.join(
        [source, ": cannot decode image (empty, truncated or not PNG/JPEG/BMP/GIF)"]
    )
    check = tf.debugging.Assert(image_bytes_ok(contents), [message])
    with tf.control_dependencies([check]):
        contents = tf.identity(contents)
    dims = image_dimensions(contents)  # header only: runs after the structural check
    size_check = check_image_size(dims, source, max_pixels, min_side, limit_hint)
    with tf.control_dependencies([size_check]):
        contents = tf.identity(contents)  # nothing is decoded unless the size is accepted
    return resize_image(to_rgb(_decode_any(contents, image_size, dims)), image_size)


def op_error_reason(exc: tf.errors.OpError) -> str:
    """The one-line reason of a TensorFlow op error: an ``Assert``'s message without its
    wrapping (graph: ``assertion failed: [MSG]``; eager: ``Expected ... to be true.
    Summarized data: b'MSG'``), else the first line of the message."""
    message = (exc.message or type(exc).__name__).strip()
    eager = re.search(r"Summarized data: (b'.*'|b\".*\")$", message, re.MULTILINE)
    if eager:
        try:
            return ast.literal_eval(eager.group(1)).decode("utf-8", "replace")
        except (ValueError, SyntaxError):
            pass
    graph = re.search(r"^assertion failed: \[(.*)\]\s*$", message, re.MULTILINE)
    if graph:  # after "Graph execution error:" when run in a tf.function
        return graph.group(1)
    lines = [line for line in message.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def image_error(path: Path, exc: tf.errors.OpError) -> DataError:
    """DataError naming the file, for an op error of :func:`decode_image` on ``path``."""
    reason = op_error_reason(exc)[:300]
    if reason.startswith(f"{path}: "):
        return DataError(reason)
    return DataError(f"{path}: cannot decode image ({reason})")


def read_image(path: tf.Tensor, image_size: int = IMAGE_SIZE) -> tf.Tensor:
    """Graph version of :func:`load_image`: path (tf.string scalar) → ``(S, S, 3)`` float32."""
    return decode_image(tf.io.read_file(path), image_size, source=path)


def load_image(
    path: str | Path, image_size: int = IMAGE_SIZE, *, max_pixels: int = MAX_IMAGE_PIXELS
) -> np.ndarray:
    """Read and prepare one image file (inference): float32 ``(S, S, 3)`` in [0, 255].

    Raises:
        DataError: naming the file when it is missing, cannot be decoded, or is outside
            the size limits (more than ``max_pixels`` pixels, a side under
            :data:`~mtl_report.data.images.MIN_IMAGE_SIDE`).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    contents = path.read_bytes()
    try:
        image = decode_image(tf.constant(contents), image_size, str(path), max_pixels=max_pixels)
        return image.numpy()
    except tf.errors.OpError as exc:
        raise image_error(path, exc) from None


def image_from_array(
    array: Any,
    image_size: int = IMAGE_SIZE,
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    min_side: int = MIN_IMAGE_SIDE,
) -> np.ndarray:
    """An in-memory image (e.g. from PIL or a DICOM reader) → float32 ``(S, S, 3)``.

    Args:
        array: ``(H, W)`` or ``(H, W, C)`` with C in 1..4; uint8 as is, uint16 divided by
            257, float taken as already in [0, 255] (clipped), bool as 0/255.
        max_pixels, min_side: the size limits of :func:`decode_image`.

    Raises:
        ValueError: for any other shape (a batch, a 1-D vector, 5+ channels, an empty side)
            or dtype, a size outside the limits, and for non-finite float pixels.
    """
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or not 1 <= a.shape[-1] <= 4 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(
            f"expected one image of shape (H, W) or (H, W, C) with C in 1..4, got {a.shape}"
        )
    h, w = a.shape[:2]
    if h * w > max_pixels:
        raise ValueError(f"image too large: {w}x{h} = {h * w} pixels exceeds {max_pixels}")
    if min(h, w) < min_side:
        raise ValueError(f"image too small: {w}x{h}, each side must be at least {min_side}")
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
