"""Shared by the serving tests: the SavedModel loaded as TF Serving loads it, request
tensors, and hand-made image files whose header declares any size (decompression bombs
without the bomb: a few hundred bytes, nothing to decompress)."""

from __future__ import annotations

import io
import math
import struct
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

#: Model config of the serving tests: tiny, trains one epoch in seconds.
SMALL = dict(image_size=64, hidden_dim=24, num_heads=3, intermediate_dim=32, max_report_length=24)
#: The session export's pixel limit: not the default, so the tests see that
#: ``export_run(max_pixels=...)`` reaches the graph (and the fuzz tests' in-range garbage
#: decodes stay small). The real test images are at most ~0.1 MP.
SERVING_TEST_MAX_PIXELS = 4_000_000
STRINGS = ("gender", "ethnicity", "chief_complaint", "icd_title")


class ServingSession:
    """A SavedModel loaded as TF Serving loads it (C++ ``LoadSavedModel`` ≈ TF1 loader)."""

    def __init__(self, export_dir: Path):
        import tensorflow as tf

        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default():
            meta = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], str(export_dir))
        self.signatures = meta.signature_def
        self._callables: dict = {}

    def run(self, signature: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import tensorflow as tf

        sig = self.signatures[signature]
        unknown = set(feeds) - set(sig.inputs)
        if unknown:  # TF Serving rejects names the signature does not have
            raise tf.errors.InvalidArgumentError(None, None, f"unknown inputs {unknown}")
        names = sorted(feeds)
        outputs = sorted(sig.outputs)
        key = (signature, tuple(names))
        if key not in self._callables:
            self._callables[key] = self.session.make_callable(
                [sig.outputs[k].name for k in outputs], [sig.inputs[k].name for k in names]
            )
        return dict(zip(outputs, self._callables[key](*[feeds[k] for k in names])))


def train_tiny_run(root: Path) -> Path:
    """A one-epoch ``mtl_tp`` run of :data:`SMALL` on 16 synthetic studies."""
    from mtl_report.config import ModelConfig
    from mtl_report.data.synthetic import prepare_synthetic
    from mtl_report.training import train

    prepare_synthetic(root / "data", n_studies=16, seed=0, image_size=96)
    train(
        root / "data",
        root / "run",
        "mtl_tp",
        model_config=ModelConfig(**SMALL),
        epochs=1,
        batch_size=8,
        jit_compile=False,  # an XLA-compiled train step costs more than this one epoch
        verbose=0,
    )
    return root / "run"


def tabular(n: int, values: Mapping | None = None) -> dict[str, np.ndarray]:
    """ED inputs of ``n`` instances: all missing unless ``values`` gives lists."""
    from mtl_report.data.schema import VITALS

    values = dict(values or {})
    out = {v: np.asarray(values.get(v, [math.nan] * n), np.float32) for v in VITALS}
    for s in STRINGS:
        texts = values.get(s, [b""] * n)
        out[s] = np.asarray([t.encode() if isinstance(t, str) else t for t in texts], object)
    return out


def bytes_request(images: Sequence[bytes], values: Mapping | None = None) -> dict:
    """``serving_default`` feeds: encoded images + ED inputs (missing unless given)."""
    return {"image_bytes": np.asarray(list(images), object), **tabular(len(images), values)}


# --------------------------------------------------------------------------------------
# Image files
# --------------------------------------------------------------------------------------
def encode(array: np.ndarray, fmt: str = "PNG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def xray(h: int = 48, w: int = 40, seed: int = 0) -> np.ndarray:
    """A small gray uint8 image with structure (not blank)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    return ((x + y) * 200 // (h + w) + rng.integers(0, 40, (h, w))).astype(np.uint8)


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_declaring(width: int, height: int) -> bytes:
    """A structurally complete 8-bit gray PNG (IHDR, one small IDAT, IEND) whose header
    declares ``width`` × ``height``; its data holds (at most) one row."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * (min(width, 256) + 1))
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def jpeg_sof_offset(data: bytes) -> int:
    """Offset of the frame header marker (SOF0..SOF15) of a JPEG, by walking the segments."""
    pos = 2
    while pos + 4 <= len(data):
        marker = data[pos + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return pos
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    raise ValueError("no frame header")


def jpeg_declaring(width: int, height: int, seed: int = 0) -> bytes:
    """A small real JPEG with its frame header patched to declare ``width`` × ``height``
    (1..65535 each)."""
    data = bytearray(encode(xray(40, 40, seed), "JPEG"))
    pos = jpeg_sof_offset(bytes(data))
    data[pos + 5 : pos + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def bmp_declaring(width: int, height: int) -> bytes:
    """A small BMP with its DIB header patched to ``width`` × ``height`` (negative height:
    top-down rows)."""
    data = bytearray(encode(xray(40, 40), "BMP"))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def gif_declaring(width: int, height: int) -> bytes:
    """A small GIF whose logical screen is patched to ``width`` × ``height`` (≤ 65535)."""
    data = bytearray(encode(xray(40, 40), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)
