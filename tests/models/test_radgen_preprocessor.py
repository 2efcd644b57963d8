"""RadGenPreprocessor: one mapping from raw report text and pixels to each variant's inputs."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl_report.models.radgen import RadGenPreprocessor
from mtl_report.text import ReportTokenizer

REPORTS = ["Right lower lobe consolidation.", "", "No acute disease. Heart size normal."]


@pytest.fixture(scope="module")
def tokenizer():
    return ReportTokenizer(max_length=10).fit(REPORTS * 2)


def test_fused_model_gets_tokens_prefix_and_pixels(tokenizer):
    pre = RadGenPreprocessor(tokenizer, ["image", "text_tokens", "report_tokens"])
    images = tf.random.uniform((3, 8, 8, 3), 0, 255)
    x = pre(tf.constant(REPORTS), images)
    assert set(x) == {"image", "text_tokens", "report_tokens"}
    np.testing.assert_array_equal(x["text_tokens"].numpy(), tokenizer.encode(REPORTS))
    np.testing.assert_array_equal(x["report_tokens"].numpy(), x["text_tokens"].numpy()[:, :-1])
    assert x["text_tokens"].dtype == tf.int32
    # An empty report is [START] [END] and padding: the fusion gate falls back to the image.
    assert x["text_tokens"].numpy()[1].tolist() == [2, 3] + [0] * 8
    np.testing.assert_array_equal(x["image"].numpy(), images.numpy())


def test_each_variant_gets_only_what_it_reads(tokenizer):
    image_only = RadGenPreprocessor(tokenizer, ["image"])
    assert set(image_only(tf.constant(REPORTS), tf.zeros((3, 8, 8, 3)))) == {"image"}
    with pytest.raises(ValueError, match="reads images"):
        image_only(tf.constant(REPORTS))
    text_only = RadGenPreprocessor(tokenizer, ["text_tokens"])
    assert set(text_only(tf.constant(REPORTS))) == {"text_tokens"}
    with pytest.raises(ValueError, match="no input"):
        RadGenPreprocessor(tokenizer, ["image", "vitals"])


def test_runs_inside_tf_data_and_keeps_pixels_float32_under_mixed_precision(tokenizer):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        pre = RadGenPreprocessor(tokenizer, ["image", "text_tokens"])
    finally:
        keras.mixed_precision.set_global_policy(previous)
    data = tf.data.Dataset.from_tensor_slices(
        {"report": REPORTS, "image": np.zeros((3, 8, 8, 3), "float32")}
    ).batch(2)
    batches = list(data.map(lambda b: pre(b["report"], b["image"])))
    assert [int(b["text_tokens"].shape[0]) for b in batches] == [2, 1]
    assert all(b["image"].dtype == tf.float32 for b in batches)
    np.testing.assert_array_equal(
        np.concatenate([b["text_tokens"].numpy() for b in batches]), tokenizer.encode(REPORTS)
    )
