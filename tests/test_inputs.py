"""Input pipeline: image decoding and resizing, bad image files, tabular ED inputs, targets,
and the tf.data datasets of a small prepared dataset."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

from mtl_report.data.cleaning import CleaningConfig, fit_cleaning, scaled_vitals
from mtl_report.data.cohort import CohortLog
from mtl_report.data.errors import DataError
from mtl_report.data.io import load_prepared, write_prepared
from mtl_report.data.schema import DEFAULT_FINDINGS, RECORD_COLUMNS, VITALS, finding_columns
from mtl_report.image_decoding import (
    decode_image,
    image_bytes_ok,
    image_from_array,
    load_image,
    read_image,
)
from mtl_report.inputs import make_dataset, make_targets
from mtl_report.models.aksoy import AksoyPreprocessor, feature_vocabularies
from mtl_report.text import ReportTokenizer

S = 32  # image side used in these tests
FINDINGS = finding_columns(DEFAULT_FINDINGS)


# ------------------------------------------------------------------ helpers
def encode(array: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format=fmt)
    return buf.getvalue()


def decode(contents: bytes, size: int = S) -> np.ndarray:
    return decode_image(tf.constant(contents), size).numpy()


def gradient(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return ((x + y) * 255 // (h + w - 2)).astype(np.uint8)


def make_prepared(root: Path, n: int = 10, image_paths: list[str] | None = None):
    """A prepared dataset of ``n`` studies (6 train, rest val) with small varied images."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    paths = []
    for i in range(n):
        if image_paths:
            paths.append(image_paths[i % len(image_paths)])
            continue
        h, w = 32 + 4 * (i % 3), 40 - 4 * (i % 2)
        arr = rng.integers(0, 256, (h, w), dtype=np.uint8)
        name = f"images/s{i}.{'png' if i % 2 else 'jpg'}"
        (root / name).write_bytes(encode(arr, "PNG" if i % 2 else "JPEG"))
        paths.append(name)
    words = ["heart normal .", "small left effusion .", "lungs clear . no pneumothorax ."]
    rec = pd.DataFrame(
        {
            "study_id": [f"{i:03d}" for i in range(n)],
            "subject_id": [f"p{i}" for i in range(n)],
            "image_path": paths,
            "o2sat": [97.0, np.nan, 99.0, 92.0, 95.0, 100.0, 98.0, 94.0, np.nan, 96.0][:n],
            "heartrate": np.linspace(60, 120, n),
            "resprate": 16.0,
            "sbp": np.linspace(100, 160, n),
            "dbp": 70.0,
            "temperature": np.nan,
            "gender": ["F", "M"] * (n // 2),
            "ethnicity": ["white", "black", "unknown", "asian", "hispanic"] * (n // 5),
            "chief_complaint": ["shortness of breath", ""] * (n // 2),
            "icd_title": ["chest pain", "", "pneumonia", "", ""] * (n // 5),
            "findings_text": "",
            "impression_text": "",
            "report": [" ".join(words[: 1 + i % 3]) for i in range(n)],
            "report_rule": "findings",
            "acuity": pd.array([1, 2, 3, 4, 5, None, 3, 2, None, 1][:n], dtype="Int64"),
            "split": ["train"] * 6 + ["val"] * (n - 6),
        }
    )
    rec.loc[3, "report"] = None  # a study without a report
    for j, col in enumerate(FINDINGS):
        rec[col] = [float((i + j) % 2) if (i + j) % 4 else np.nan for i in range(n)]
    rec = rec[[*RECORD_COLUMNS, *FINDINGS, "split"]]
    cleaning = fit_cleaning(rec[rec["split"] == "train"], CleaningConfig())
    rec = pd.concat([rec, scaled_vitals(rec, cleaning)], axis=1)
    meta = {"source": "test", "findings": list(DEFAULT_FINDINGS), "finding_columns": FINDINGS}
    write_prepared(root, rec, CohortLog("test"), meta, cleaning)
    return load_prepared(root)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return make_prepared(tmp_path_factory.mktemp("prep"))


@pytest.fixture(scope="module")
def tokenizer(prepared):
    return ReportTokenizer(max_length=10, min_count=1).fit(prepared.split("train")["report"])


# ------------------------------------------------------------------ decoding
def test_grayscale_png_is_tiled_to_three_equal_channels():
    img = decode(encode(gradient(S, S)))
    assert img.shape == (S, S, 3) and img.dtype == np.float32
    np.testing.assert_array_equal(img[..., 0], img[..., 1])
    np.testing.assert_array_equal(img[..., 0], img[..., 2])
    np.testing.assert_allclose(img[..., 0], gradient(S, S), atol=1)  # same size: no change


def test_rgba_png_drops_alpha_and_keeps_colour():
    rgba = np.zeros((S, S, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 200, 100, 50, 0
    img = decode(encode(rgba))
    np.testing.assert_allclose(img[S // 2, S // 2], [200, 100, 50], atol=1)


@pytest.mark.parametrize("mode", ["LA", "P", "RGB"])
def test_other_png_modes(mode):
    base = Image.fromarray(np.stack([gradient(S, S)] * 3, -1)).convert(mode)
    buf = io.BytesIO()
    base.save(buf, format="PNG")
    img = decode(buf.getvalue())
    assert img.shape == (S, S, 3) and img.min() >= 0 and img.max() <= 255
    assert img.std() > 20  # the gradient survived


def test_16_bit_png_is_scaled_to_8_bit_range():
    arr = np.full((S, S), 65535, np.uint16)
    arr[:, : S // 2] = 32896  # 128 * 257
    png = encode(arr)
    assert Image.open(io.BytesIO(png)).mode.startswith("I;16")
    img = decode(png)
    np.testing.assert_allclose(img[S // 2, S // 4], [128] * 3, atol=0.01)
    np.testing.assert_allclose(img[S // 2, -2], [255] * 3, atol=0.01)


@pytest.mark.parametrize("fmt", ["JPEG", "BMP", "GIF"])
def test_jpeg_bmp_gif(fmt):
    img = decode(encode(np.stack([gradient(S, S)] * 3, -1), fmt))
    assert img.shape == (S, S, 3)
    np.testing.assert_allclose(img[..., 0], gradient(S, S), atol=12)


def test_aspect_ratio_is_kept_by_black_padding():
    img = decode(encode(np.full((40, 80), 255, np.uint8)))  # wide: 2:1
    column = img[:, S // 2, 0]
    assert (column[:7] == 0).all() and (column[-7:] == 0).all()  # padding above/below
    np.testing.assert_allclose(column[9:23], 255, atol=0.5)  # the image, 16 rows tall
    tall = decode_image(  # extreme ratio still works (below the default minimum side)
        tf.constant(encode(np.full((1000, 10), 255, np.uint8))), S, min_side=1
    ).numpy()
    assert tall.shape == (S, S, 3)
    assert (tall[..., 0].max(axis=0) > 250).sum() == 1  # one pixel wide, not zero


def test_large_jpeg_scaled_decode_matches_full_decode():
    big = np.asarray(Image.fromarray(gradient(60, 50)).resize((800, 960), Image.BILINEAR))
    jpeg = encode(big, "JPEG")
    fast = decode(jpeg, 64)  # 960 >= 8 * 64 → decoded at 1/8 size
    full = tf.image.resize_with_pad(
        tf.cast(tf.io.decode_jpeg(jpeg, channels=3), tf.float32), 64, 64, antialias=True
    ).numpy()
    assert np.abs(fast - full).mean() < 1.0


def test_tiny_image_is_refused_or_upsampled_when_allowed():
    with pytest.raises(tf.errors.InvalidArgumentError, match="image too small: 1x1"):
        decode(encode(np.full((1, 1), 77, np.uint8)))  # not a radiograph: no fluent report
    img = decode_image(tf.constant(encode(np.full((1, 1), 77, np.uint8))), S, min_side=1).numpy()
    assert img.shape == (S, S, 3)
    np.testing.assert_allclose(img[S // 2, S // 2], 77, atol=0.5)


# ------------------------------------------------------------------ bad images
def _truncated_jpeg() -> bytes:
    data = encode(np.random.default_rng(1).integers(0, 255, (64, 64), dtype=np.uint8), "JPEG")
    return data[: len(data) // 2]


BAD_FILES = {
    "empty": b"",
    "text": b"this is not an image at all, just some bytes",
    "truncated_jpeg": _truncated_jpeg(),
    "truncated_png": encode(gradient(64, 64))[:-40],
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_bytes_are_detected_and_named(kind):
    assert not bool(image_bytes_ok(tf.constant(BAD_FILES[kind])))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"scan_042\.png"):
        decode_image(tf.constant(BAD_FILES[kind]), S, source="scan_042.png")


def test_good_bytes_pass_the_check():
    for data in (encode(gradient(8, 8)), encode(gradient(8, 8), "JPEG")):
        assert bool(image_bytes_ok(tf.constant(data)))


@pytest.mark.parametrize("kind", ["empty", "truncated_jpeg"])
def test_load_image_raises_data_error_naming_the_file(tmp_path, kind):
    path = tmp_path / f"{kind}.jpg"
    path.write_bytes(BAD_FILES[kind])
    with pytest.raises(DataError, match=f"{kind}.jpg: cannot decode image"):
        load_image(path, S)
    with pytest.raises(DataError, match="not found"):
        load_image(tmp_path / "absent.png", S)


def test_corrupt_file_in_a_pipeline_names_the_file(tmp_path):
    good, bad = tmp_path / "good.png", tmp_path / "broken_study.jpg"
    good.write_bytes(encode(gradient(S, S)))
    bad.write_bytes(_truncated_jpeg())
    data = tf.data.Dataset.from_tensor_slices([str(good), str(bad)]).map(
        lambda p: read_image(p, S), num_parallel_calls=2
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"broken_study\.jpg"):
        list(data)


def test_decode_image_rejects_a_batch_of_contents():
    with pytest.raises(ValueError, match="scalar"):
        decode_image(tf.constant([b"a", b"b"]), S)


@pytest.mark.parametrize(
    ("array", "ok"),
    [
        (np.zeros((40, 50), np.uint8), True),
        (np.zeros((40, 50, 1), np.uint8), True),
        (np.zeros((40, 50, 4), np.uint8), True),
        (np.full((40, 50), 65535, np.uint16), True),
        (np.zeros((40, 50, 3), np.float32), True),
        (np.zeros((30,), np.uint8), False),
        (np.zeros((2, 20, 30, 3), np.uint8), False),
        (np.zeros((40, 50, 5), np.uint8), False),
        (np.zeros((0, 30), np.uint8), False),
        (np.full((40, 50), np.nan, np.float32), False),
        (np.zeros((40, 50), np.complex64), False),
    ],
)
def test_image_from_array_shapes(array, ok):
    if ok:
        out = image_from_array(array, S)
        assert out.shape == (S, S, 3) and out.dtype == np.float32 and out.max() <= 255
    else:
        with pytest.raises(ValueError):
            image_from_array(array, S)


def test_image_from_array_16_bit_scaling():
    out = image_from_array(np.full((32, 32), 65535, np.uint16), 8)
    np.testing.assert_allclose(out, 255.0, atol=1e-3)


def test_real_images(shared_data):
    paths = sorted((shared_data / "pneumonia_sample" / "images").glob("*.jpeg"))[:2]
    paths += sorted((shared_data / "iu_xray_sample" / "images").glob("*.jpg"))[:2]
    assert len(paths) >= 2
    for path in paths:
        img = load_image(path, 64)
        assert img.shape == (64, 64, 3) and img.min() >= 0 and img.max() <= 255
        assert img.std() > 10  # a radiograph, not a blank
        src = np.asarray(Image.open(path).convert("L"), np.float32)
        assert abs(img[..., 0].mean() - src.mean()) < 0.35 * src.mean() + 10


# ------------------------------------------------------------------ targets
def test_targets(prepared, tokenizer):
    rec = prepared.records
    t = make_targets(rec, tokenizer, prepared.finding_columns)
    assert t["report"].shape == t["report_tokens"].shape == (len(rec), 9)
    assert t["report"].dtype == np.int32
    np.testing.assert_array_equal(t["report_tokens"][:, 1:], t["report"][:, :-1])
    assert (t["report"][3] == 0).all() and (t["report_tokens"][3] == 0).all()  # no report
    assert t["report_tokens"][0, 0] == tokenizer.start_id
    np.testing.assert_array_equal(t["acuity"][0], [0, 0, 0, 0])  # level 1
    np.testing.assert_array_equal(t["acuity"][2], [1, 1, 0, 0])  # level 3
    np.testing.assert_array_equal(t["acuity"][4], [1, 1, 1, 1])  # level 5
    assert np.isnan(t["acuity"][5]).all()  # missing acuity
    expected = rec[prepared.finding_columns].to_numpy(np.float32)
    np.testing.assert_array_equal(t["findings"], expected)  # NaN positions equal too
    assert np.isnan(t["findings"]).any()


def test_findings_outside_0_1_are_an_error(prepared, tokenizer):
    rec = prepared.records.copy()
    rec.loc[0, FINDINGS[0]] = -1.0  # an uncertain label that was not mapped
    with pytest.raises(DataError, match="0, 1 or missing"):
        make_targets(rec, tokenizer, prepared.finding_columns)


# ------------------------------------------------------------------ datasets
def pre(ds) -> AksoyPreprocessor:
    """The preprocessor training would build for ``ds`` (vocabularies of its train split)."""
    vocabularies = feature_vocabularies(ds.split("train"), ds.cleaning, 100)
    return AksoyPreprocessor.from_cleaning(ds.cleaning, vocabularies, text_length=16)


def _batches(data):
    return [
        (tf.nest.map_structure(np.asarray, x), tf.nest.map_structure(np.asarray, y))
        for x, y in data
    ]


def test_dataset_structure_and_order(prepared, tokenizer):
    data = make_dataset(
        prepared, "train", tokenizer, pre(prepared), batch_size=4, image_size=S, shuffle=False
    )
    x_spec, y_spec = data.element_spec
    assert set(x_spec) == {
        "image",
        "vitals",
        "vitals_mask",
        "gender",
        "ethnicity",
        "chief_complaint",
        "icd_title",
        "report_tokens",
    }
    assert x_spec["image"].shape.as_list() == [None, S, S, 3]
    assert x_spec["image"].dtype == tf.float32
    assert x_spec["vitals"].shape.as_list() == [None, 6]
    assert x_spec["gender"].dtype == tf.int32 and x_spec["gender"].shape.as_list() == [None]
    assert x_spec["chief_complaint"].dtype == tf.int32
    assert x_spec["chief_complaint"].shape.as_list() == [None, 16]
    assert x_spec["report_tokens"].dtype == tf.int32
    assert x_spec["report_tokens"].shape.as_list() == [None, 9]
    assert set(y_spec) == {"report", "acuity", "findings"}
    assert y_spec["acuity"].shape.as_list() == [None, 4]
    assert y_spec["findings"].shape.as_list() == [None, 5]
    batches = _batches(data)
    assert [len(y["report"]) for _, y in batches] == [4, 2]
    train = prepared.split("train")
    ids = np.concatenate([x["report_tokens"] for x, _ in batches])
    expected = make_targets(train, tokenizer, prepared.finding_columns)["report_tokens"]
    np.testing.assert_array_equal(ids, expected)  # unshuffled: records order
    # the preprocessor's vitals are the scaled values the preparation wrote
    vitals = np.concatenate([x["vitals"] for x, _ in batches])
    mask = np.concatenate([x["vitals_mask"] for x, _ in batches])
    for j, vital in enumerate(prepared.cleaning["vital_order"]):
        expected = train[f"{vital}_scaled"].to_numpy(np.float64)
        present = ~np.isnan(expected)
        np.testing.assert_array_equal(mask[:, j], present.astype(np.float32))
        np.testing.assert_allclose(vitals[present, j], expected[present], atol=1e-6)
        assert (vitals[~present, j] == 0).all()
    assert (mask[:, VITALS.index("temperature")] == 0).all()
    vocabulary = pre(prepared).gender_vocabulary
    genders = np.concatenate([x["gender"] for x, _ in batches])
    assert [vocabulary[i - 1] if i else "unknown" for i in genders] == train["gender"].tolist()
    first = batches[0][0]["image"][0]
    direct = load_image(train["image_path"].iloc[0], S)
    np.testing.assert_allclose(first, direct, atol=1e-4)
    dropped = make_dataset(
        prepared, "train", tokenizer, pre(prepared), batch_size=4, image_size=S, drop_remainder=True
    )
    assert len(_batches(dropped)) == 1


def test_shuffling_is_deterministic_for_a_seed(prepared, tokenizer):
    def order(seed, epochs=1):
        data = make_dataset(
            prepared, "train", tokenizer, pre(prepared), batch_size=6, image_size=S, seed=seed
        )
        return [tuple(x["vitals"][:, 1].round(4)) for _ in range(epochs) for x, _ in _batches(data)]

    a = order(0, epochs=2)
    assert a == order(0, epochs=2)
    assert a[0] != a[1]  # reshuffled each epoch
    assert sorted(a[0]) == sorted(a[1])
    assert any(order(s)[0] != a[0] for s in (1, 2, 3))


def test_augmentation_is_seeded_and_changes_images(prepared, tokenizer):
    def images(seed, augment=True):
        data = make_dataset(
            prepared,
            "train",
            tokenizer,
            pre(prepared),
            batch_size=6,
            image_size=S,
            shuffle=False,
            augment=augment,
            seed=seed,
        )
        return next(iter(data))[0]["image"].numpy()

    plain, a, b = images(0, augment=False), images(0), images(0)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - plain).mean() > 1.0
    assert a.min() >= 0 and a.max() <= 255
    assert np.abs(images(1) - a).mean() > 1.0


def test_dataset_option_errors(prepared, tokenizer, tmp_path):
    with pytest.raises(ValueError, match="train split only"):
        make_dataset(prepared, "val", tokenizer, pre(prepared), image_size=S, augment=True)
    with pytest.raises(DataError, match="no studies in split 'test'"):
        make_dataset(prepared, "test", tokenizer, pre(prepared), image_size=S)
    broken = make_prepared(tmp_path / "broken", n=10)
    Path(broken.split("train")["image_path"].iloc[2]).unlink()
    with pytest.raises(DataError, match=r"1 image file\(s\) not found, e\.g\. .*s2\.jpg"):
        make_dataset(broken, "train", tokenizer, pre(broken), image_size=S)


def test_corrupt_image_in_prepared_dataset_names_the_file(tmp_path, tokenizer):
    ds = make_prepared(tmp_path / "corrupt", n=10)
    bad = ds.split("val")["image_path"].iloc[1]
    Path(bad).write_bytes(Path(bad).read_bytes()[:100])
    data = make_dataset(ds, "val", tokenizer, pre(ds), batch_size=2, image_size=S)
    with pytest.raises(tf.errors.InvalidArgumentError, match=Path(bad).name):
        _batches(data)


def test_dataset_from_real_images(shared_data, tmp_path, tokenizer):
    images = sorted(str(p) for p in (shared_data / "iu_xray_sample" / "images").glob("*.jpg"))
    ds = make_prepared(tmp_path / "real", n=10, image_paths=images[:5])
    (x, y), *_ = _batches(make_dataset(ds, "val", tokenizer, pre(ds), batch_size=4, image_size=64))
    assert x["image"].shape == (4, 64, 64, 3)
    assert (x["image"].reshape(4, -1).std(axis=1) > 10).all()
    assert y["report"].shape == (4, 9)
