"""FeatureCache: content- and backbone-keyed storage of frozen-backbone features."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

import mtl_report.feature_cache as fc
from mtl_report.data.cleaning import CleaningConfig, fit_cleaning
from mtl_report.data.cohort import CohortLog
from mtl_report.data.errors import DataError
from mtl_report.data.io import load_prepared, write_prepared
from mtl_report.data.schema import DEFAULT_FINDINGS, RECORD_COLUMNS, finding_columns
from mtl_report.feature_cache import FeatureCache, MissingFeaturesError, weights_fingerprint
from mtl_report.image_decoding import read_image
from mtl_report.inputs import make_dataset
from mtl_report.models.aksoy import AksoyPreprocessor, feature_vocabularies
from mtl_report.text import ReportTokenizer

S = 64  # EfficientNetB0 at 64 px: a 2 × 2 grid of 1280 channels


def write_image(path: Path, seed: int, fmt: str = "PNG") -> str:
    arr = np.random.default_rng(seed).integers(0, 256, (48, 40), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return str(path)


@pytest.fixture(scope="module")
def efficientnet():
    keras.utils.set_random_seed(0)
    return keras.applications.EfficientNetB0(include_top=False, weights=None, input_shape=(S, S, 3))


def tiny_backbone(size: int = 16, scale: float = 1.0) -> keras.Model:
    """A fast stand-in: (B, S, S, 3) → (B, 2, 2, 4)."""
    inp = keras.Input((size, size, 3))
    x = keras.layers.AveragePooling2D(size // 2)(inp)
    x = keras.layers.Dense(4, kernel_initializer="ones")(x) * scale
    return keras.Model(inp, x)


@pytest.fixture
def images(tmp_path):
    return [write_image(tmp_path / "img" / f"{i}.png", i) for i in range(5)]


def test_ensure_and_lookup_with_efficientnet(tmp_path, images, efficientnet):
    cache = FeatureCache(tmp_path / "cache", efficientnet, "efficientnet_b0", S)
    assert cache.ensure(images[:3], batch_size=2, progress=False) == 3
    assert cache.feature_shape == (4, 1280)
    assert cache.ensure(images, batch_size=2, progress=False) == 2  # only the missing ones
    assert cache.ensure(images, progress=False) == 0
    feats = cache.lookup(images)
    assert feats.shape == (5, 4, 1280) and feats.dtype == np.float32
    batch = tf.stack([read_image(tf.constant(p), S) for p in images])
    direct = efficientnet(batch, training=False).numpy().reshape(5, 4, 1280)
    np.testing.assert_allclose(feats, direct, rtol=2e-3, atol=2e-3)  # float16 storage
    assert cache.lookup(images, dtype="float16").dtype == np.float16
    entries = list(cache.directory.glob("*/*.npy"))
    assert len(entries) == 5
    assert np.load(entries[0]).dtype == np.float16
    manifest = json.loads((cache.directory / "manifest.json").read_text())
    assert manifest["feature_shape"] == [4, 1280] and manifest["backbone_name"] == "efficientnet_b0"
    # A new cache object on the same directory sees the stored entries.
    again = FeatureCache(tmp_path / "cache", efficientnet, "efficientnet_b0", S)
    assert again.feature_shape == (4, 1280) and again.missing(images) == []


def test_other_weights_never_share_entries(tmp_path, images, efficientnet):
    cache = FeatureCache(tmp_path / "cache", efficientnet, "efficientnet_b0", S)
    cache.ensure(images[:2], progress=False)
    first = efficientnet.weights[0]
    original = first.numpy()
    try:
        first.assign(original + 0.01)  # "other weights" (e.g. ImageNet vs random init)
        other = FeatureCache(tmp_path / "cache", efficientnet, "efficientnet_b0", S)
        assert other.key != cache.key and other.fingerprint != cache.fingerprint
        with pytest.raises(MissingFeaturesError, match="call ensure"):
            other.lookup(images[:2])
    finally:
        first.assign(original)
    assert weights_fingerprint(efficientnet) == cache.fingerprint
    bigger = FeatureCache(tmp_path / "cache", efficientnet, "efficientnet_b0", 96)
    assert bigger.key != cache.key and bigger.missing(images[:2]) == images[:2]


def test_keyed_by_content_not_path(tmp_path, images):
    backbone = tiny_backbone()
    cache = FeatureCache(tmp_path / "cache", backbone, "tiny", 16)
    assert cache.ensure(images[:2], progress=False) == 2
    copy = tmp_path / "elsewhere" / "renamed.png"
    copy.parent.mkdir()
    shutil.copy(images[0], copy)
    assert cache.ensure([str(copy)], progress=False) == 0  # same bytes: a hit
    np.testing.assert_array_equal(cache.lookup([str(copy)]), cache.lookup(images[:1]))
    write_image(Path(images[1]), seed=99)  # edited in place: a miss
    assert cache.missing(images[:2]) == [images[1]]
    # Identical files in one call are computed once.
    dup = tmp_path / "dup.png"
    shutil.copy(images[3], dup)
    assert cache.ensure([images[3], str(dup), images[3]], progress=False) == 1


def test_file_index_avoids_rehashing(tmp_path, images, monkeypatch):
    cache = FeatureCache(tmp_path / "cache", tiny_backbone(), "tiny", 16)
    cache.content_hashes(images)
    calls = []
    real = fc.file_sha256
    monkeypatch.setattr(fc, "file_sha256", lambda p: calls.append(p) or real(p))
    fresh = FeatureCache(tmp_path / "cache", tiny_backbone(), "tiny", 16)  # index from disk
    fresh.content_hashes(images)
    assert calls == []
    os.utime(images[2], ns=(1, 1))  # mtime changed: hashed again
    fresh.content_hashes(images)
    assert calls == [os.path.abspath(images[2])]


def test_bad_inputs(tmp_path, images):
    cache = FeatureCache(tmp_path / "cache", tiny_backbone(), "tiny", 16)
    with pytest.raises(DataError, match="not found"):
        cache.ensure([str(tmp_path / "absent.png")], progress=False)
    corrupt = tmp_path / "img" / "corrupt_scan.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"corrupt_scan\.jpg"):
        cache.ensure([images[0], str(corrupt)], progress=False)
    # A damaged entry is reported with its file, not returned.
    cache.ensure(images[:1], progress=False)
    entry = cache.entry_path(cache.content_hashes(images[:1])[0])
    entry.write_bytes(b"garbage")
    with pytest.raises(DataError, match="unreadable cache entry"):
        cache.lookup(images[:1])
    np.save(entry, np.zeros((3, 3), np.float16))
    with pytest.raises(DataError, match="shape"):
        cache.lookup(images[:1])


def test_nan_or_overflowing_features_are_not_stored(tmp_path, images):
    for scale in (float("nan"), 1e6):  # 1e6 is beyond float16
        cache = FeatureCache(tmp_path / f"c{scale}", tiny_backbone(scale=scale), "bad", 16)
        with pytest.raises(DataError, match="NaN/inf"):
            cache.ensure(images[:2], progress=False)
        assert cache.missing(images[:2]) == images[:2]


def test_backbone_output_shapes(tmp_path, images):
    inp = keras.Input((16, 16, 3))
    pooled = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(inp))  # (B, C)
    cache = FeatureCache(tmp_path / "c", pooled, "pooled", 16)
    cache.ensure(images[:1], progress=False)
    assert cache.lookup(images[:1]).shape == (1, 1, 3)
    five_d = keras.Model(inp, keras.layers.Reshape((4, 4, 16, 3))(inp))
    with pytest.raises(ValueError, match="rank 5"):
        FeatureCache(tmp_path / "c5", five_d, "5d", 16).ensure(images[:1], progress=False)


def _prepared(root: Path, images: list[str]):
    n = len(images)
    root.mkdir(parents=True)
    rec = pd.DataFrame({c: [None] * n for c in RECORD_COLUMNS})
    rec["study_id"] = [str(i) for i in range(n)]
    rec["subject_id"] = [str(i) for i in range(n)]
    rec["image_path"] = images
    rec["report"] = "heart normal ."
    rec["acuity"] = pd.array([None] * n, dtype="Int64")
    cols = finding_columns(DEFAULT_FINDINGS)
    for col in cols:
        rec[col] = np.nan
    rec["split"] = "train"
    cleaning = fit_cleaning(rec, CleaningConfig())
    meta = {"findings": list(DEFAULT_FINDINGS), "finding_columns": cols}
    write_prepared(root, rec, CohortLog("test"), meta, cleaning)
    return load_prepared(root)


def test_make_dataset_with_cached_features(tmp_path, images):
    cache = FeatureCache(tmp_path / "cache", tiny_backbone(), "tiny", 16)
    ds = _prepared(tmp_path / "prep", images)
    tok = ReportTokenizer(max_length=6, min_count=1).fit(["heart normal ."])
    vocabularies = feature_vocabularies(ds.split("train"), ds.cleaning, 100)
    pre = AksoyPreprocessor.from_cleaning(ds.cleaning, vocabularies, text_length=16)
    with pytest.raises(MissingFeaturesError):
        make_dataset(ds, "train", tok, pre, image_size=16, features=cache)
    cache.ensure(images, progress=False)
    data = make_dataset(ds, "train", tok, pre, batch_size=2, image_size=16, features=cache)
    x_spec, _ = data.element_spec
    assert "image" not in x_spec
    assert x_spec["image_features"].shape.as_list() == [None, 4, 4]
    unshuffled = make_dataset(
        ds, "train", tok, pre, batch_size=2, image_size=16, features=cache, shuffle=False
    )
    feats = np.concatenate([x["image_features"].numpy() for x, _ in unshuffled])
    np.testing.assert_array_equal(feats, cache.lookup(images))
    shuffled = np.concatenate([x["image_features"].numpy() for x, _ in data])
    vit = np.concatenate([x["vitals"].numpy() for x, _ in data])
    assert shuffled.shape == feats.shape and vit.shape == (5, 6)
    with pytest.raises(ValueError, match="augment"):
        make_dataset(ds, "train", tok, pre, image_size=16, features=cache, augment=True)
    with pytest.raises(ValueError, match="16px"):
        make_dataset(ds, "train", tok, pre, image_size=224, features=cache)


def test_real_images(tmp_path, shared_data, efficientnet):
    paths = sorted(str(p) for p in (shared_data / "pneumonia_sample" / "images").glob("*.jpg"))
    cache = FeatureCache(tmp_path / "cache", efficientnet, "efficientnet_b0", S)
    assert cache.ensure(paths[:4], progress=False) == 4
    feats = cache.lookup(paths[:4])
    assert np.isfinite(feats).all() and feats.std() > 0
    assert not np.allclose(feats[0], feats[1])
