"""One ``mtl_tp`` training epoch over 7,000 studies with cached backbone features.

Measures, in one process: (a) the epoch on cached EfficientNetB0 features (49 × 1280 per
study, stored as float16 like the feature cache), and (b) the reference that caching
avoids: the EfficientNetB0 forward pass alone, timed on a few batches and scaled to 7,000
images. Prints JSON. Target on the 2-core CPU: the epoch well under a minute.

``mtl_report`` turns TensorFlow's oneDNN CPU kernels on (see its ``__init__``); run with
``TF_ENABLE_ONEDNN_OPTS=0`` to measure without them (about half the speed on AVX2 CPUs).

    python bench/bench_train_epoch.py [--studies 7000] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mtl_report  # noqa: I001  (first: sets the oneDNN default before TensorFlow loads)
import keras
import numpy as np
import tensorflow as tf

from mtl_report.config import ModelConfig
from mtl_report.models.aksoy import ED_FIELDS, AksoyPreprocessor, build_aksoy_model, compile_for
from mtl_report.models.backbones import build_backbone
from mtl_report.models.aksoy.aksoy_setups import get_setup
from mtl_report.data.schema import VITALS


def synthetic_batch_source(n: int, vocab: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((n, 49, 1280)).astype("float16")
    tokens = rng.integers(4, vocab, (n, 60)).astype("int32")
    tokens[:, 0] = 2
    x = {
        "image_features": features,
        "o2sat": rng.uniform(85, 100, n),
        "heartrate": rng.uniform(50, 140, n),
        "resprate": rng.uniform(10, 30, n),
        "sbp": rng.uniform(100, 160, n),
        "dbp": rng.uniform(50, 90, n),
        "temperature": rng.uniform(97, 102, n),
        "gender": rng.choice(["F", "M"], n).astype(object),
        "ethnicity": rng.choice(["white", "black", "unknown"], n).astype(object),
        "chief_complaint": rng.choice(["chest pain", "shortness of breath", ""], n).astype(object),
        "icd_title": rng.choice(["pneumonia unspecified", "chest pain unspecified"], n).astype(
            object
        ),
        "report_tokens": tokens[:, :-1],
    }
    y = {
        "report": tokens[:, 1:],
        "acuity": (rng.random((n, 4)) < 0.5).astype("float32"),
        "findings": (rng.random((n, 5)) < 0.3).astype("float32"),
    }
    return x, y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=7000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--vocab", type=int, default=1200)
    parser.add_argument(
        "--jit-compile",
        choices=("auto", "true", "false"),
        default="auto",
        help="XLA for the train step (TrainConfig.jit_compile; default auto, as training)",
    )
    args = parser.parse_args()
    jit = {"auto": "auto", "true": True, "false": False}[args.jit_compile]
    keras.utils.set_random_seed(0)

    x, y = synthetic_batch_source(args.studies, args.vocab)
    model_config, train_config = get_setup("mtl_tp", ModelConfig())
    preprocessor = AksoyPreprocessor(
        minmax={v: [0.0, 200.0] for v in VITALS},
        gender_vocabulary=["F", "M", "unknown"],
        ethnicity_vocabulary=["black", "white", "unknown"],
        complaint_vocabulary=["chest", "pain", "shortness", "of", "breath"],
        icd_vocabulary=["pneumonia", "unspecified", "chest", "pain"],
        text_length=model_config.text_feature_length,
    )

    def model_inputs(a, b):  # per batch, as training: ED fields through the preprocessor
        ed = preprocessor({k: a[k] for k in ED_FIELDS})
        rest = {k: v for k, v in a.items() if k not in ED_FIELDS}
        return {**rest, **ed, "image_features": tf.cast(a["image_features"], tf.float32)}, b

    data = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .batch(args.batch_size)
        .map(model_inputs, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    sizes = {**preprocessor.vocabulary_sizes(), "report": args.vocab}
    model = build_aksoy_model(model_config, sizes, train_config, (49, 1280))
    compile_for(model, train_config, keras.optimizers.Adam(3e-5), jit_compile=jit)

    t0 = time.perf_counter()
    model.fit(data.take(2), epochs=1, verbose=0)  # tracing, excluded from the epoch time
    t_trace = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.fit(data, epochs=1, verbose=0)
    t_epoch = time.perf_counter() - t0

    backbone = build_backbone("efficientnet_b0", 224, None)
    images = tf.random.uniform((args.batch_size, 224, 224, 3), 0, 255)
    backbone(images, training=False)  # warm-up
    reps = 3
    t0 = time.perf_counter()
    for _ in range(reps):
        backbone(images, training=False)
    per_image = (time.perf_counter() - t0) / (reps * args.batch_size)

    print(
        json.dumps(
            {
                "benchmark": "mtl_tp_epoch_on_cached_features",
                "studies": args.studies,
                "batch_size": args.batch_size,
                "parameters_trainable": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
                "seconds": {
                    "first_trace (not counted)": round(t_trace, 2),
                    "epoch_cached_features": round(t_epoch, 2),
                    "reference_backbone_forward_7000_images": round(per_image * args.studies, 2),
                },
                "studies_per_second": round(args.studies / t_epoch, 1),
                "target_epoch_seconds": 60,
                "meets_target": bool(t_epoch < 60),
                "cpus": os.cpu_count(),
                "jit_compile": args.jit_compile,
                "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "1",
                "mtl_report": mtl_report.__version__,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
