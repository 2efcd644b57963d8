"""Report generation speed: Python path vs exported SavedModel vs the backbone alone.

Measures, in one process and on the same inputs:

- ``backbone``: the EfficientNetB0 forward pass alone on decoded ``(B, S, S, 3)`` pixels,
  the floor any report generator pays (with and without XLA ``jit_compile``);
- ``python``: :class:`mtl_report.models.aksoy.AksoyReportGenerator` (``mtl-report generate``), image
  files in, reports out;
- ``savedmodel``: the export of :mod:`mtl_report.export`, loaded with
  ``tf.saved_model.load`` and called through ``serving_default`` with encoded image bytes,
  as TF Serving runs it.

Per-report latency (p50/p95) at batch 1 and throughput (reports/s) at batch 32, plus the
ratios to the backbone. Goal on the 2-core CPU: latency ≤ 2× the backbone at batch 1,
throughput ≥ 70% of the backbone's at batch 32. Prints JSON.

The model is the paper-size default config (224 px) trained for one epoch on a few
synthetic studies (random backbone weights), so reports run to whatever length the barely
trained decoder produces; ``max_report_tokens`` in the output says how long they were.

    python bench/bench_generate.py [--run RUN] [--repeats 20] [--batch 32]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import tensorflow as tf


def _timeit(fn, repeats: int) -> list[float]:
    fn()  # warm-up (tracing, first-run graph optimisation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _latency(times: list[float]) -> dict:
    ms = np.asarray(times) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
    }


def _throughput(times: list[float], batch: int) -> float:
    return round(batch / float(np.median(times)), 2)


def make_run(root: Path) -> Path:
    from mtl_report.config import ModelConfig
    from mtl_report.data.synthetic import prepare_synthetic
    from mtl_report.training import train

    prepare_synthetic(root / "data", n_studies=40, seed=0, image_size=256)
    train(
        root / "data",
        root / "run",
        "mtl_tp",
        model_config=ModelConfig(),
        epochs=1,
        batch_size=16,
        verbose=0,
    )
    return root / "run"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a trained run (default: train a tiny one)")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per setting")
    parser.add_argument("--batch", type=int, default=32, help="batch for throughput")
    parser.add_argument("--beam", type=int, default=1, help="beam width (1 = greedy)")
    args = parser.parse_args()

    from mtl_report.data.io import load_prepared
    from mtl_report.decoding import DecodingConfig
    from mtl_report.export import export_run
    from mtl_report.image_decoding import load_image
    from mtl_report.models.aksoy import AksoyReportGenerator
    from mtl_report.run import Run

    tmp = Path(tempfile.mkdtemp(prefix="bench_generate_"))
    run_dir = args.run or make_run(tmp)
    run = Run.read(run_dir)
    decoding = DecodingConfig("beam" if args.beam > 1 else "greedy", beam_width=max(args.beam, 1))

    root = (run.info.get("data") or {}).get("root")
    paths = []
    if root and Path(root).is_dir():
        paths = load_prepared(Path(root)).records["image_path"].astype(str).tolist()
    if not paths:
        raise SystemExit(f"{run_dir}: its dataset {root} is gone; pass a run whose data exists")
    paths = (paths * args.batch)[: args.batch]
    study = {
        "o2sat": 97.0,
        "heartrate": 90.0,
        "temperature": 98.6,
        "gender": "F",
        "chief_complaint": "SOB, CP",
        "icd_title": "pneumonia",
    }
    studies = [dict(study) for _ in paths]
    size = run.model_config.image_size
    results: dict = {
        "config": {
            "image_size": size,
            "hidden_dim": run.model_config.hidden_dim,
            "max_report_length": run.model_config.max_report_length,
            "decoding": decoding.method,
            "beam_width": decoding.beam_width,
            "batch": args.batch,
            "repeats": args.repeats,
            "cpu_threads": os.cpu_count(),
        },
    }

    # --- backbone alone -------------------------------------------------------------------
    backbone = run.load_backbone()
    pixels = np.stack([load_image(p, size) for p in paths]).astype("float32")
    for jit in (False, True):
        fwd = tf.function(lambda x: backbone(x, training=False), jit_compile=jit)
        one, many = tf.constant(pixels[:1]), tf.constant(pixels)
        key = "backbone_xla" if jit else "backbone"
        results[key] = {
            "batch1": _latency(_timeit(lambda f=fwd, x=one: f(x).numpy(), args.repeats)),
            "throughput_per_s": _throughput(
                _timeit(lambda f=fwd, x=many: f(x).numpy(), max(3, args.repeats // 4)),
                args.batch,
            ),
        }

    # --- Python path ----------------------------------------------------------------------
    generator = AksoyReportGenerator(run, decoding)
    out = generator.generate(paths[:1], studies[:1])
    results["python"] = {
        "batch1": _latency(
            _timeit(lambda: generator.generate(paths[:1], studies[:1]), args.repeats)
        ),
        "throughput_per_s": _throughput(
            _timeit(lambda: generator.generate(paths, studies), max(3, args.repeats // 4)),
            args.batch,
        ),
    }
    tokens = [len(r["report"].split()) for r in generator.generate(paths, studies)]
    results["max_report_tokens"] = max(tokens)
    results["mean_report_tokens"] = round(float(np.mean(tokens)), 1)

    # --- SavedModel -----------------------------------------------------------------------
    start = time.perf_counter()
    exported = export_run(run_dir, tmp / "serving", decoding=decoding)
    results["export_s"] = round(time.perf_counter() - start, 1)
    model = tf.saved_model.load(str(exported.path))
    serve = model.signatures["serving_default"]

    def request(n: int) -> dict:
        x = {"image_bytes": tf.constant([Path(p).read_bytes() for p in paths[:n]])}
        for v in ("o2sat", "heartrate", "resprate", "sbp", "dbp", "temperature"):
            x[v] = tf.constant([float(s.get(v, np.nan)) for s in studies[:n]], tf.float32)
        for s_ in ("gender", "ethnicity", "chief_complaint", "icd_title"):
            x[s_] = tf.constant([s.get(s_, "") for s in studies[:n]])
        return x

    one, many = request(1), request(args.batch)
    served = serve(**one)
    assert served["report"].numpy()[0].decode() == out[0]["report"], "export differs from Python"
    results["savedmodel"] = {
        "batch1": _latency(_timeit(lambda: serve(**one)["report"].numpy(), args.repeats)),
        "throughput_per_s": _throughput(
            _timeit(lambda: serve(**many)["report"].numpy(), max(3, args.repeats // 4)), args.batch
        ),
    }

    base = results["backbone"]
    for key in ("python", "savedmodel"):
        results[key]["latency_vs_backbone"] = round(
            results[key]["batch1"]["p50_ms"] / base["batch1"]["p50_ms"], 2
        )
        results[key]["throughput_vs_backbone"] = round(
            results[key]["throughput_per_s"] / base["throughput_per_s"], 2
        )
    results["goal"] = {"latency_vs_backbone_max": 2.0, "throughput_vs_backbone_min": 0.7}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
