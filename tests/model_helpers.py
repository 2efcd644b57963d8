"""Tiny inputs for model tests (random features; no images, no downloads)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

VOCABS = {
    "report_vocab_size": 40,
    "gender": ["F", "M", "unknown"],
    "ethnicity": ["asian", "black", "white", "unknown"],
    "chief_complaint": ["chest", "pain", "shortness", "of", "breath", "fever"],
    "icd_title": ["pneumonia", "unspecified", "heart", "failure"],
}
FEATURE_SHAPE = (4, 32)

#: The smallest RadGen classifier that still trains (tests of the model and of classify).
TINY_RADGEN = dict(
    backbone="swin_micro",
    image_size=32,
    hidden_dim=16,
    num_heads=2,
    intermediate_dim=32,
    num_text_layers=1,
    mlp_units=(32, 16),
)


def batch(n: int = 8, seed: int = 0, text: bool = True) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    x = {
        "image_features": tf.constant(rng.random((n, *FEATURE_SHAPE)), tf.float32),
        "vitals": tf.constant(rng.random((n, 6)), tf.float32),
        "vitals_mask": tf.constant((rng.random((n, 6)) > 0.2).astype("float32")),
        "gender": tf.constant(rng.choice(["F", "M", "unknown", "X"], n)),
        "ethnicity": tf.constant(rng.choice(["white", "asian", "unknown", ""], n)),
        "chief_complaint": tf.constant(rng.choice(["chest pain", "", "fever cough"], n)),
        "icd_title": tf.constant(rng.choice(["pneumonia unspecified", ""], n)),
    }
    y = {
        "acuity": tf.constant(
            np.where(rng.random((n, 1)) < 0.25, np.nan, rng.integers(0, 2, (n, 4))), tf.float32
        ),
        "findings": tf.constant(
            np.where(rng.random((n, 5)) < 0.1, np.nan, rng.integers(0, 2, (n, 5))), tf.float32
        ),
    }
    if text:
        tokens = rng.integers(4, 40, (n, 12)).astype("int32")
        tokens[:, 0] = 2
        tokens[:, 8:] = 0
        x["report_tokens"] = tf.constant(tokens[:, :-1])
        y["report"] = tf.constant(tokens[:, 1:])
    return x, y
