"""Image files: decode-verification and the plain image-classification table.

Every image a prepared dataset points at has been opened and decoded once, so a corrupt or
truncated file is dropped (and counted) at preparation time instead of crashing a training
run hours later. JPEGs are decoded in draft mode (libjpeg's DCT scaling, up to 1/8 size),
which still reads every byte of the file and so catches truncation, at a fraction of the
cost of a full decode of a 3000×2500 MIMIC image.

Size limits, read from the file header **before** anything is decoded (Pillow's
``Image.open`` parses only the header; ``load`` decodes): an image with more than
:data:`MAX_IMAGE_PIXELS` pixels is ``"too large"`` (a 438 KB PNG can declare
20000×20000 pixels, which take ~9 GB to decode: a decompression bomb), one with a side
under :data:`MIN_IMAGE_SIDE` pixels is ``"too small"`` (a 1×1 image is not a radiograph,
and must not get a fluent normal report). The same two constants bound the TensorFlow
decoding of :func:`mtl_report.image_decoding.decode_image` (training, ``generate``, the SavedModel,
where ``mtl-report export --max-pixels`` changes the upper one).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
from PIL import Image, UnidentifiedImageError

#: Largest image (width × height) any path decodes: 50 megapixels, 2.5× the largest
#: digital radiographs (~4300×4300 detectors; MIMIC-CXR's are ≤ 4280×3520), while a
#: decoded 50 MP image stays under 1 GB as float32 gray. Defined once here (no
#: TensorFlow); ``mtl-report export --max-pixels`` overrides it for the SavedModel.
MAX_IMAGE_PIXELS = 50_000_000
#: Smallest side (pixels) of an accepted image.
MIN_IMAGE_SIDE = 32

IMAGE_STATUSES = ("ok", "missing", "corrupt", "too large", "too small")
#: Cohort-log drop reason of each status but ``"ok"`` (one wording for every ``prepare``).
DROP_REASONS = {
    "missing": "image file missing",
    "corrupt": "image file corrupt or truncated",
    "too large": "image too large",
    "too small": "image too small",
}


def size_status(
    width: int, height: int, max_pixels: int = MAX_IMAGE_PIXELS, min_side: int = MIN_IMAGE_SIDE
) -> str:
    """``"ok"``, ``"too large"`` (more than ``max_pixels``) or ``"too small"`` (a side
    under ``min_side``) for header dimensions."""
    if width * height > max_pixels:
        return "too large"
    if min(width, height) < min_side:
        return "too small"
    return "ok"


def verify_image(
    path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS, min_side: int = MIN_IMAGE_SIDE
) -> str:
    """One of :data:`IMAGE_STATUSES`: ``"missing"``, ``"corrupt"`` (unreadable, truncated
    or not an image), ``"too large"`` / ``"too small"`` (from the header, before
    decoding, see the module docstring) or ``"ok"``."""
    if not path or not os.path.isfile(path):
        return "missing"
    try:
        with Image.open(path) as img:  # parses the header only
            status = size_status(img.width, img.height, max_pixels, min_side)
            if status != "ok":
                return status
            if img.format == "JPEG":
                img.draft("L", (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
    except Image.DecompressionBombError:  # Pillow's own limit (2 × 89 MP), hit in open()
        return "too large"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return "corrupt"
    return "ok"


def verify_images(
    paths: Iterable[str], progress: Callable[[int], None] | None = None, workers: int = 4
) -> pd.Series:
    """Status of each path (aligned with ``paths`` when it is a Series). Pillow releases the
    GIL while decoding, so a few threads overlap file reads and decodes.

    Pillow's ``DecompressionBombWarning`` (above its own 89 MP) is silenced: the size
    check decides, and counts the image as ``"too large"``."""
    index = paths.index if isinstance(paths, pd.Series) else None
    paths = list(paths)
    statuses = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for status in pool.map(verify_image, paths):
                statuses.append(status)
                if progress:
                    progress(1)
    return pd.Series(statuses, index=index, dtype=object)


def drop_masks(status: pd.Series) -> dict[str, pd.Series]:
    """Cohort-log filter masks ``{reason: status == s}`` for every non-``ok`` status."""
    return {reason: status == s for s, reason in DROP_REASONS.items()}
