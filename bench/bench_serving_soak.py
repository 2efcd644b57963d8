"""Serving soak: thousands of mixed good and bad requests against one loaded SavedModel.

In one process, the exported model (``tf.saved_model.load``, ``serving_default``) gets
``--requests`` single-instance requests drawn at random from these kinds:

=====================  =================================================  ==============
kind                   request                                            expected
=====================  =================================================  ==============
``good_png``           a small gray PNG, plausible ED data                a report
``good_jpeg``          a small JPEG, plausible ED data                    a report
``nan_inf_vitals``     a good image, vitals NaN / ±inf / ±3.4e38 / 0      a report
``long_strings``       a good image, 5,000-character, unicode and         a report
                       invalid-UTF-8 text in every string input
``corrupt_bytes``      random bytes                                       INVALID_ARGUMENT
``truncated``          a good PNG or JPEG cut in half                     INVALID_ARGUMENT
``too_large_header``   a ~300-byte PNG/JPEG declaring 20000×20000 /       INVALID_ARGUMENT
                       65535×65535 pixels
``too_small``          a 1×1 or 8×20 image                                INVALID_ARGUMENT
=====================  =================================================  ==============

It reports (JSON on stdout) p50/p99 latency per kind, outcomes per kind (expected vs
unexpected: a report where an error was due, an error where a report was, or any
exception other than ``InvalidArgumentError``), and resident memory (``VmRSS`` /
``VmHWM`` of ``/proc/self/status``) at start (model loaded), after the warm-up (the first
10% of requests) and at the end; ``rss_growth_mb`` is end minus after-warm-up and must stay
near zero.

Decompression bombs side by side: the peak RSS of one request carrying a *real* 12000×12000
PNG (~140 KB of zlib over zeros, 144 MP; before the pixel limit: ~4 s and ~4 GB) and one
carrying a real 20000×20000 PNG (~380 KB, 400 MP; before: ~23 s and ~9 GB), against a
normal-sized request and a valid 2048×2048 (4 MP) noise PNG, each measured with the peak
reset (``/proc/self/clear_refs`` = 5) where the kernel allows it.

Without ``--model`` a tiny model is trained (one epoch, 16 synthetic studies) and exported
first (about a minute on 2 cores); pass ``--model DIR/<version>`` for a real export.

    python bench/bench_serving_soak.py [--model DIR] [--requests 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

KINDS = {
    "good_png": "report",
    "good_jpeg": "report",
    "nan_inf_vitals": "report",
    "long_strings": "report",
    "corrupt_bytes": "invalid_argument",
    "truncated": "invalid_argument",
    "too_large_header": "invalid_argument",
    "too_small": "invalid_argument",
}
VITALS = ("o2sat", "heartrate", "resprate", "sbp", "dbp", "temperature")
STRINGS = ("gender", "ethnicity", "chief_complaint", "icd_title")
SMALL = dict(image_size=64, hidden_dim=24, num_heads=3, intermediate_dim=32, max_report_length=24)


# --------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------
def memory_mb() -> dict[str, float]:
    """``VmRSS`` (now) and ``VmHWM`` (peak) of this process in MB."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def reset_peak() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux ≥ 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------
def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_bomb(side: int) -> bytes:
    """A real, complete ``side`` × ``side`` 8-bit gray PNG of zeros (zlib streams well)."""
    z = zlib.compressobj(9)
    row = b"\0" * (side + 1)  # filter byte + pixels
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` × ``height`` (data: one short row)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 65)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def encode(array: np.ndarray, fmt: str) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def jpeg_declaring(width: int, height: int, base: bytes) -> bytes:
    """``base`` (a JPEG) with its frame header patched to ``width`` × ``height``."""
    data, pos = bytearray(base), 2
    while not (0xC0 <= data[pos + 1] <= 0xCF and data[pos + 1] not in (0xC4, 0xC8, 0xCC)):
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    data[pos + 5 : pos + 9] = struct.pack(">HH", height, width)
    return bytes(data)


class Requests:
    """Random requests of each kind (seeded)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        y, x = np.mgrid[0:300, 0:240]
        base = ((x + y) * 255 // 540).astype(np.uint8)
        self.pngs = [encode(np.roll(base, 7 * i, axis=0)[: 200 + 20 * i], "PNG") for i in range(4)]
        self.jpegs = [encode(np.roll(base, 5 * i, axis=1), "JPEG") for i in range(4)]
        self.bombs = [png_declaring(20000, 20000), jpeg_declaring(65535, 65535, self.jpegs[0])]
        self.small = [encode(np.full((1, 1), 90, np.uint8), "PNG"), encode(base[:8, :20], "PNG")]

    def ed(self) -> dict[str, np.ndarray]:
        vitals = {"o2sat": 96.0, "heartrate": 92.0, "resprate": 18.0, "sbp": 130.0}
        vitals.update({"dbp": 80.0, "temperature": 98.9})
        out = {k: np.asarray([v + self.rng.normal(0, 2)], np.float32) for k, v in vitals.items()}
        text = {"gender": b"F", "ethnicity": b"WHITE", "chief_complaint": b"SOB, CP"}
        text["icd_title"] = b"Pneumonia, unspecified organism"
        out.update({k: np.asarray([v], object) for k, v in text.items()})
        return out

    def make(self, kind: str) -> dict[str, np.ndarray]:
        rng = self.rng
        ed = self.ed()
        good = self.pngs[rng.integers(4)] if rng.random() < 0.5 else self.jpegs[rng.integers(4)]
        if kind == "good_png":
            image = self.pngs[rng.integers(4)]
        elif kind == "good_jpeg":
            image = self.jpegs[rng.integers(4)]
        elif kind == "nan_inf_vitals":
            image = good
            specials = [np.nan, np.inf, -np.inf, 3.4e38, -3.4e38, 0.0]
            for v in VITALS:
                ed[v] = np.asarray([specials[rng.integers(len(specials))]], np.float32)
        elif kind == "long_strings":
            image = good
            texts = [
                "é" * 5000,
                "Ünïcødé 🫁 дыхание 呼吸 " * 200,
                bytes(rng.integers(0, 256, 300, dtype=np.uint8)),  # not UTF-8
                "SOB/CP " * 700,
            ]
            for s in STRINGS:
                t = texts[rng.integers(len(texts))]
                ed[s] = np.asarray([t if isinstance(t, bytes) else t.encode()], object)
        elif kind == "corrupt_bytes":
            image = bytes(rng.integers(0, 256, int(rng.integers(0, 2000)), dtype=np.uint8))
        elif kind == "truncated":
            image = good[: len(good) // 2]
        elif kind == "too_large_header":
            image = self.bombs[rng.integers(2)]
        else:
            image = self.small[rng.integers(2)]
        return {"image_bytes": np.asarray([image], object), **ed}


# --------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------
def make_export(root: Path) -> Path:
    """Train a tiny ``mtl_tp`` run on 16 synthetic studies and export it."""
    from mtl_report.config import ModelConfig
    from mtl_report.data.synthetic import prepare_synthetic
    from mtl_report.export import export_run
    from mtl_report.training import train

    prepare_synthetic(root / "data", n_studies=16, seed=0, image_size=96)
    train(
        root / "data",
        root / "run",
        "mtl_tp",
        model_config=ModelConfig(**SMALL),
        epochs=1,
        batch_size=8,
        jit_compile=False,
        verbose=0,
    )
    return export_run(root / "run", root / "serving").path


def _percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {
        "n": len(ms),
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p99_ms": round(float(np.percentile(a, 99)), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="SavedModel version dir (default: tiny)")
    parser.add_argument("--requests", type=int, default=2000, help="requests in the soak")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import tensorflow as tf

    from mtl_report.image_decoding import op_error_reason

    tf.get_logger().setLevel("ERROR")
    t0 = time.perf_counter()
    model_dir = args.model or make_export(Path(tempfile.mkdtemp(prefix="bench_soak_")))
    build_s = time.perf_counter() - t0
    loaded = tf.saved_model.load(str(model_dir))
    serve = loaded.signatures["serving_default"]
    info_path = Path(model_dir) / "assets" / "export_info.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}

    def call(feeds: dict) -> tuple[str, float, str]:
        start = time.perf_counter()
        try:
            out = serve(**{k: tf.constant(v) for k, v in feeds.items()})
            outcome = "report" if out["report"].shape == (1,) else "malformed_output"
            detail = ""
        except tf.errors.InvalidArgumentError as exc:
            outcome, detail = "invalid_argument", op_error_reason(exc)[:200]
        except Exception as exc:
            outcome, detail = f"exception:{type(exc).__name__}", str(exc)[:160]
        return outcome, (time.perf_counter() - start) * 1000, detail

    requests = Requests(args.seed)
    memory = {"start": memory_mb()}
    kinds = list(KINDS)
    order = [kinds[i] for i in requests.rng.integers(len(kinds), size=args.requests)]
    warmup = max(len(kinds), args.requests // 10)
    latency: dict[str, list[float]] = {k: [] for k in kinds}
    outcomes: dict[str, dict[str, int]] = {k: {} for k in kinds}
    unexpected: list[dict] = []
    soak_start = time.perf_counter()
    for i, kind in enumerate(order):
        outcome, ms, detail = call(requests.make(kind))
        if i >= warmup:
            latency[kind].append(ms)
        outcomes[kind][outcome] = outcomes[kind].get(outcome, 0) + 1
        if outcome != KINDS[kind] and len(unexpected) < 10:
            unexpected.append({"kind": kind, "outcome": outcome, "detail": detail})
        if i + 1 == warmup:
            memory["after_warmup"] = memory_mb()
    soak_s = time.perf_counter() - soak_start
    memory["end"] = memory_mb()

    # --- bombs side by side with a normal request -----------------------------------------
    noise = np.random.default_rng(args.seed).integers(0, 256, (2048, 2048), dtype=np.uint8)
    files = {
        "normal_request": None,  # a 240×200-300 PNG, as in the soak
        "valid_png_2048x2048_noise": encode(noise, "PNG"),  # a big image that is allowed
        "bomb_png_12000x12000": png_bomb(12000),
        "bomb_png_20000x20000": png_bomb(20000),
    }
    side_by_side = {}
    for name, data in files.items():
        feeds = requests.make("good_png")
        if data is not None:
            feeds["image_bytes"] = np.asarray([data], object)
        before = memory_mb()
        peak_reset = reset_peak()
        outcome, ms, detail = call(feeds)
        after = memory_mb()
        side_by_side[name] = {
            "file_kb": round(len(feeds["image_bytes"][0]) / 1024, 1),
            "outcome": outcome,
            "message": detail,
            "ms": round(ms, 1),
            "peak_rss_mb": after["VmHWM"] if peak_reset else None,
            "peak_above_rss_before_mb": round(after["VmHWM"] - before["VmRSS"], 1)
            if peak_reset
            else None,
        }

    n_unexpected = sum(
        n for k, counts in outcomes.items() for o, n in counts.items() if o != KINDS[k]
    )
    result = {
        "model": str(model_dir),
        "max_pixels": info.get("max_pixels"),
        "requests": args.requests,
        "warmup_requests": warmup,
        "build_s": round(build_s, 1),
        "soak_s": round(soak_s, 1),
        "requests_per_s": round(args.requests / soak_s, 1),
        "latency_after_warmup": {k: _percentiles(v) for k, v in latency.items() if v},
        "outcomes": {k: {"expected": KINDS[k], **v} for k, v in outcomes.items()},
        "unexpected": n_unexpected,
        "unexpected_examples": unexpected,
        "memory_mb": memory,
        "rss_growth_mb": round(memory["end"]["VmRSS"] - memory["after_warmup"]["VmRSS"], 1),
        "bombs_side_by_side": side_by_side,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
