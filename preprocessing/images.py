"""Image files: decode-verification and the plain image-classification table.

Every image a prepared dataset points at has been opened and decoded once, so a corrupt or
truncated file is dropped (and counted) at preparation time instead of crashing a training
run hours later. JPEGs are decoded in draft mode (libjpeg's DCT scaling, up to 1/8 size),
which still reads every byte of the file and so catches truncation, at a fraction of the
cost of a full decode of a 3000×2500 MIMIC image.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
from PIL import Image, UnidentifiedImageError

IMAGE_STATUSES = ("ok", "missing", "corrupt")


def verify_image(path: str | os.PathLike) -> str:
    """``"ok"``, ``"missing"`` or ``"corrupt"`` (unreadable, truncated or not an image)."""
    if not path or not os.path.isfile(path):
        return "missing"
    try:
        with Image.open(path) as img:
            if img.format == "JPEG":
                img.draft("L", (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
            if img.width < 1 or img.height < 1:
                return "corrupt"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return "corrupt"
    return "ok"


def verify_images(
    paths: Iterable[str], progress: Callable[[int], None] | None = None, workers: int = 4
) -> pd.Series:
    """Status of each path (aligned with ``paths`` when it is a Series). Pillow releases the
    GIL while decoding, so a few threads overlap file reads and decodes."""
    index = paths.index if isinstance(paths, pd.Series) else None
    paths = list(paths)
    statuses = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for status in pool.map(verify_image, paths):
            statuses.append(status)
            if progress:
                progress(1)
    return pd.Series(statuses, index=index, dtype=object)
