"""Tiny inputs for model tests (random features; no images, no downloads)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mtl_report.data.schema import VITALS
from mtl_report.models.aksoy import AksoyPreprocessor

#: As a run's ``vocabularies.json``.
VOCABS = {
    "report_vocab_size": 40,
    "gender": ["F", "M", "unknown"],
    "ethnicity": ["asian", "black", "white", "unknown"],
    "chief_complaint": ["chest", "pain", "shortness", "of", "breath", "fever"],
    "icd_title": ["pneumonia", "unspecified", "heart", "failure"],
}
FEATURE_SHAPE = (4, 32)
#: The tiny preprocessor that makes the ED inputs of :func:`batch` (vitals scaled over 0–200).
PREPROCESSOR = AksoyPreprocessor.from_cleaning(
    {"minmax": {v: [0.0, 200.0] for v in VITALS}}, VOCABS, text_length=16
)
#: The model's ``vocabulary_sizes`` that go with :data:`PREPROCESSOR`.
SIZES = {**PREPROCESSOR.vocabulary_sizes(), "report": VOCABS["report_vocab_size"]}

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


def raw_ed(n: int = 8, seed: int = 0) -> dict:
    """Raw ED fields of ``n`` studies, some vitals missing (NaN), some texts empty."""
    rng = np.random.default_rng(seed)
    raw = {v: np.where(rng.random(n) > 0.2, rng.uniform(1, 199, n), np.nan) for v in VITALS}
    raw["dbp"] = raw["sbp"] / 2  # always below the systolic pressure
    raw.update(
        gender=rng.choice(["F", "M", "unknown", "X"], n),
        ethnicity=rng.choice(["white", "asian", "unknown", ""], n),
        chief_complaint=rng.choice(["chest pain", "", "fever cough"], n),
        icd_title=rng.choice(["pneumonia unspecified", ""], n),
    )
    return {k: tf.constant(v) for k, v in raw.items()}


def batch(n: int = 8, seed: int = 0, text: bool = True) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    x = {
        "image_features": tf.constant(rng.random((n, *FEATURE_SHAPE)), tf.float32),
        **PREPROCESSOR(raw_ed(n, seed)),
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


def assert_greedy_matches_recomputation(model, x: dict, start_id: int = 2, end_id: int = 3):
    """Cached greedy decoding (``ReportGenerator``) writes, at every step, the argmax of a
    full uncached forward pass over the prefix it has written (padding and [START] barred).
    Returns the generated tokens."""
    from mtl_report.decoding import DecodingConfig, ReportGenerator

    gen = ReportGenerator(model, start_id, end_id, DecodingConfig(no_repeat_ngram_size=0))
    tokens = gen(x)["tokens"]
    n, length = tokens.shape
    prefix = np.concatenate([np.full((n, 1), start_id), tokens], 1)[:, :length]
    logits = model({**x, "report_tokens": tf.constant(prefix.astype("int32"))}, training=False)
    logits = logits["report"].numpy()
    logits[..., [0, start_id]] = -1e9
    expected = logits.argmax(-1)
    for i in range(n):
        for t in range(length):
            if tokens[i, t] == 0:
                break
            assert expected[i, t] == tokens[i, t], (i, t)
            if tokens[i, t] == end_id:
                break
    return tokens
