"""Image size limits (issue 13): decompression bombs refused from the header before
anything is decoded, too-small images refused, in every image path (TF decoding of
training / ``generate`` / the SavedModel, Pillow verification of ``prepare``), serving
errors naming the batch index, and the limit configurable at export time.

The bombs are hand-made files whose header declares a size (``serving_helpers``): a few
hundred bytes, so a test that regressed would try to allocate gigabytes; the peak-RSS
checks catch that."""

from __future__ import annotations

import io
import json
import resource
import time
import warnings

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from serving_helpers import (
    SERVING_TEST_MAX_PIXELS,
    bmp_declaring,
    bytes_request,
    encode,
    gif_declaring,
    jpeg_declaring,
    png_declaring,
    xray,
)

from mtl_report.data.errors import DataError
from mtl_report.data.images import MAX_IMAGE_PIXELS, MIN_IMAGE_SIDE, verify_image, verify_images
from mtl_report.export import INFO_ASSET, PIXELS_SIGNATURE, SERVING_DEFAULT
from mtl_report.image_decoding import decode_image, image_dimensions, image_from_array, load_image

DECLARING = {
    "png": png_declaring,
    "jpeg": jpeg_declaring,
    "bmp": bmp_declaring,
    "gif": gif_declaring,
}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux: ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_the_limits_are_the_documented_ones():
    assert MAX_IMAGE_PIXELS == 50_000_000 and MIN_IMAGE_SIDE == 32


# ------------------------------------------------------------------ header dimensions
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF"])
def test_header_dimensions_equal_the_decoded_size(fmt):
    data = encode(xray(37, 53), fmt)
    assert image_dimensions(tf.constant(data)).numpy().tolist() == [37, 53]
    assert tf.io.decode_image(data, expand_animations=False).shape[:2] == (37, 53)


@pytest.mark.parametrize(
    ("fmt", "width", "height", "expected"),
    [
        ("png", 20000, 20000, [20000, 20000]),
        ("png", 2**31 - 1, 3, [3, 2**31 - 1]),
        ("jpeg", 65535, 40000, [40000, 65535]),
        ("bmp", 30000, -20000, [20000, 30000]),  # negative height: top-down rows
        ("gif", 65535, 65535, [65535, 65535]),
    ],
)
def test_header_dimensions_of_declared_sizes(fmt, width, height, expected):
    data = DECLARING[fmt](width, height)
    assert len(data) < 4096  # a tiny file
    assert image_dimensions(tf.constant(data)).numpy().tolist() == expected


@pytest.mark.parametrize(
    "options",
    [
        {"progressive": True},
        {"icc_profile": b"\0" * 200_000},
        {"exif": b"Exif\0\0" + b"x" * 30_000},
    ],
    ids=["progressive", "icc_200kb", "exif_30kb"],
)
def test_jpeg_frame_header_is_found_past_metadata_segments(options):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(xray(37, 53)).save(buf, format="JPEG", **options)
    dims = tf.function(image_dimensions)(tf.constant(buf.getvalue()))
    assert dims.numpy().tolist() == [37, 53]


# ------------------------------------------------------------------ decode_image (TF paths)
@pytest.mark.parametrize("fmt", list(DECLARING))
def test_decompression_bombs_are_refused_before_decoding(fmt):
    bomb = DECLARING[fmt](20000, 20000)
    peak, start = peak_rss_mb(), time.perf_counter()
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match="scan_7: image too large: 20000x20000 = 400000000 pixels exceeds the limit of "
        "50000000 pixels",
    ):
        decode_image(tf.constant(bomb), 32, source="scan_7")
    assert time.perf_counter() - start < 5
    assert peak_rss_mb() - peak < 200  # decoding would take 0.4-1.6 GB


def test_too_small_images_are_refused():
    with pytest.raises(tf.errors.InvalidArgumentError, match="image too small: 1x1, each side"):
        decode_image(tf.constant(encode(np.full((1, 1), 77, np.uint8))), 32)
    with pytest.raises(tf.errors.InvalidArgumentError, match="image too small: 40x31"):
        decode_image(tf.constant(encode(xray(31, 40), "JPEG")), 32)
    assert decode_image(tf.constant(encode(xray(32, 32))), 32).shape == (32, 32, 3)


def test_the_limits_are_parameters():
    png = tf.constant(encode(xray(48, 40)))  # 1920 pixels
    assert decode_image(png, 32, max_pixels=1920).shape == (32, 32, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="exceeds the limit of 1919 pixels"):
        decode_image(png, 32, max_pixels=1919)
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least 41 pixels"):
        decode_image(png, 32, min_side=41)
    assert decode_image(tf.constant(encode(xray(1, 1))), 32, min_side=1).shape == (32, 32, 3)


def test_image_from_array_has_the_same_limits():
    with pytest.raises(ValueError, match="image too small"):
        image_from_array(np.zeros((31, 300), np.uint8), 32)
    with pytest.raises(ValueError, match="image too large"):
        image_from_array(np.zeros((40, 50), np.uint8), 32, max_pixels=1999)


def test_load_image_names_the_file_once(tmp_path):
    bomb, tiny = tmp_path / "bomb.png", tmp_path / "tiny.png"
    bomb.write_bytes(png_declaring(20000, 20000))
    tiny.write_bytes(encode(xray(8, 8)))
    with pytest.raises(DataError, match=r"^\S*bomb\.png: image too large: 20000x20000 ") as err:
        load_image(bomb, 32)
    assert str(err.value).count("bomb.png") == 1
    with pytest.raises(DataError, match=r"tiny\.png: image too small: 8x8"):
        load_image(tiny, 32)


def test_training_pipeline_stops_at_a_bomb_naming_the_file(tmp_path):
    from mtl_report.image_decoding import read_image

    good, bomb = tmp_path / "good.png", tmp_path / "s42_bomb.png"
    good.write_bytes(encode(xray()))
    bomb.write_bytes(png_declaring(12000, 12000))
    data = tf.data.Dataset.from_tensor_slices([str(good), str(bomb)]).map(
        lambda p: read_image(p, 32)
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"s42_bomb\.png: image too large"):
        list(data)


# ------------------------------------------------------------------ prepare (Pillow)
def test_verify_image_statuses_from_the_header(tmp_path):
    cases = {
        "bomb20k.png": (png_declaring(20000, 20000), "too large"),  # Pillow: its own error
        "bomb12k.png": (png_declaring(12000, 12000), "too large"),  # Pillow: a warning
        "bomb.jpg": (jpeg_declaring(9000, 9000), "too large"),
        "one.png": (encode(xray(1, 1)), "too small"),
        "thin.jpg": (encode(xray(31, 500), "JPEG"), "too small"),
        "ok.png": (encode(xray(32, 32)), "ok"),
    }
    for name, (data, _) in cases.items():
        (tmp_path / name).write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning leaks out
        status = verify_images([str(tmp_path / n) for n in cases])
    assert status.tolist() == [s for _, s in cases.values()]
    assert verify_image(tmp_path / "ok.png", max_pixels=1023) == "too large"


def test_prepare_images_counts_too_large_and_too_small(tmp_path):
    from mtl_report.data.image_table import prepare_image_table

    rows = []
    for i in range(8):
        (tmp_path / f"g{i}.png").write_bytes(encode(xray(40, 48, seed=i)))
        rows.append((f"g{i}.png", "normal" if i % 2 else "pneumonia", f"p{i}"))
    (tmp_path / "bomb.png").write_bytes(png_declaring(20000, 20000))
    (tmp_path / "dot.png").write_bytes(encode(xray(1, 1)))
    rows += [("bomb.png", "normal", "p8"), ("dot.png", "pneumonia", "p9")]
    pd.DataFrame(rows, columns=["image", "label", "subject_id"]).to_csv(
        tmp_path / "labels.csv", index=False
    )
    log = prepare_image_table(tmp_path / "labels.csv", None, tmp_path / "out")
    dropped = log.dropped_total()
    assert dropped["image too large"] == 1 and dropped["image too small"] == 1
    assert "image file corrupt or truncated" not in dropped
    assert log.rows_out == 8


# ------------------------------------------------------------------ the SavedModel
def test_export_info_records_the_limits(serving_export):
    info = json.loads((serving_export.path / "assets" / INFO_ASSET).read_text())
    assert info["max_pixels"] == SERVING_TEST_MAX_PIXELS and info["min_image_side"] == 32


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (png_declaring(20000, 20000), "image too large: 20000x20000 = 400000000 pixels"),
        (jpeg_declaring(65535, 65535), "image too large: 65535x65535"),
        # Over the export's limit (4 MP), under the default: export_run(max_pixels) counts.
        (
            png_declaring(2500, 2000),
            r"image too large: 2500x2000 = 5000000 pixels exceeds the limit of "
            rf"{SERVING_TEST_MAX_PIXELS} pixels \(export --max-pixels\)",
        ),
        (encode(xray(1, 1)), "image too small: 1x1"),
        (b"not an image at all", "cannot decode image"),
    ],
    ids=["png_bomb", "jpeg_bomb", "over_export_limit", "one_pixel", "undecodable"],
)
def test_a_bad_image_in_a_batch_is_named_by_its_index(serving_session, bad, message):
    feeds = bytes_request([encode(xray(seed=1)), encode(xray(seed=2), "JPEG"), bad])
    peak, start = peak_rss_mb(), time.perf_counter()
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_bytes\[2\]: " + message):
        serving_session.run(SERVING_DEFAULT, feeds)
    assert time.perf_counter() - start < 10
    assert peak_rss_mb() - peak < 300


@pytest.mark.parametrize(
    ("shape", "message"),
    [((1, 16, 40, 1), "image too small"), ((1, 2001, 2000, 1), "image too large")],
)
def test_pixels_signature_has_the_same_limits(serving_session, shape, message):
    feeds = {"image": np.full(shape, 100.0, np.float32), **bytes_request([b""])}
    feeds.pop("image_bytes")
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        serving_session.run(PIXELS_SIGNATURE, feeds)


def test_export_refuses_a_pixel_limit_below_the_smallest_image(serving_run_dir, tmp_path, capsys):
    from mtl_report.cli import main
    from mtl_report.export import export_run

    with pytest.raises(DataError, match="max_pixels must be at least 1024"):
        export_run(serving_run_dir, tmp_path / "m", max_pixels=1000)
    argv = ["export", "--run", str(serving_run_dir), "--out", str(tmp_path / "m")]
    assert main([*argv, "--max-pixels", "0"]) != 0
    assert "mtl-report: error: max_pixels must be at least" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_generate_refuses_a_too_small_image(serving_run_dir, tmp_path):
    from mtl_report.models.aksoy import AksoyReportGenerator

    tiny = tmp_path / "tiny.png"
    tiny.write_bytes(encode(xray(1, 1)))
    generator = AksoyReportGenerator.from_preset(serving_run_dir)
    with pytest.raises(DataError, match=r"tiny\.png: image too small: 1x1"):
        generator.generate([str(tiny)])
