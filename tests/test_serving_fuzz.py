"""Property-based tests of the serving request layer (issue 13): whatever a client sends in
any input — random bytes, image headers declaring any size, truncated files, random or
invalid-UTF-8 strings, NaN / ±inf / huge floats, odd pixel shapes — the SavedModel returns
a well-formed report or fails with ``INVALID_ARGUMENT``, never another error, never a
hang, never unbounded memory.

The exported model of the session fixtures is called as TF Serving calls it
(``serving_helpers.ServingSession``); its pixel limit is 4 MP, so a header declaring an
in-range size over garbage data costs at most a 4 MP decode. Derandomized and bounded
(a few dozen examples each), so the run is reproducible and takes seconds.
"""

from __future__ import annotations

import math
import re
import resource
import time

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from serving_helpers import (
    SERVING_TEST_MAX_PIXELS,
    STRINGS,
    bmp_declaring,
    encode,
    gif_declaring,
    jpeg_declaring,
    png_declaring,
    xray,
)

from mtl_report.data.images import MIN_IMAGE_SIDE
from mtl_report.data.schema import VITALS
from mtl_report.export import PIXELS_SIGNATURE, SERVING_DEFAULT

FUZZ = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
#: Longest a single request may take (a decompression bomb took 23 s before the limits).
MAX_CALL_SECONDS = 10.0
#: Most the peak RSS may grow over a whole fuzz test (a declared 65535² image is 17 GB).
MAX_RSS_GROWTH_MB = 600

OK, TOO_LARGE, TOO_SMALL, ANY = "ok", "too large", "too small", "any"


def _expectation(width: int, height: int) -> str:
    if width * height > SERVING_TEST_MAX_PIXELS:
        return TOO_LARGE
    if min(width, height) < MIN_IMAGE_SIDE:
        return TOO_SMALL
    return ANY  # a real header over the data of a 40×40 image: may decode or not


_FORMATS = {
    "png": png_declaring,
    "jpeg": jpeg_declaring,
    "bmp": bmp_declaring,
    "gif": gif_declaring,
}
_SIDES = st.one_of(st.integers(0, 80), st.integers(0, 65535), st.sampled_from([1, 31, 32, 65535]))


@st.composite
def declared_image(draw) -> tuple[bytes, str]:
    """A small file whose header declares a random size (often a decompression bomb)."""
    fmt = draw(st.sampled_from(sorted(_FORMATS)))
    width, height = draw(_SIDES), draw(_SIDES)
    if fmt == "png" and draw(st.booleans()):
        width = draw(st.integers(0, 2**31 - 1))  # PNG allows 31-bit sides
    if fmt == "jpeg":  # a zero side is not a JPEG frame libjpeg reads a size from
        width, height = max(width, 1), max(height, 1)
    return _FORMATS[fmt](width, height), _expectation(width, height)


@st.composite
def good_image(draw) -> tuple[bytes, str]:
    h, w = draw(st.integers(MIN_IMAGE_SIDE, 90)), draw(st.integers(MIN_IMAGE_SIDE, 90))
    fmt = draw(st.sampled_from(["PNG", "JPEG"]))
    return encode(xray(h, w, draw(st.integers(0, 9))), fmt), OK


@st.composite
def broken_image(draw) -> tuple[bytes, str]:
    """Random bytes, a truncated or bit-flipped real file, a signature over noise."""
    kind = draw(st.sampled_from(["random", "truncated", "flipped", "signature"]))
    real = encode(xray(40, 40, draw(st.integers(0, 9))), draw(st.sampled_from(["PNG", "JPEG"])))
    if kind == "random":
        return draw(st.binary(max_size=300)), ANY
    if kind == "truncated":
        return real[: draw(st.integers(0, len(real) - 1))], ANY
    if kind == "flipped":
        data = bytearray(real)
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data), ANY
    head = draw(st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"GIF89a"]))
    return head + draw(st.binary(max_size=200)) + draw(
        st.sampled_from([b"", b"IEND", b"\xff\xd9"])
    ), ANY


IMAGES = st.one_of(good_image(), declared_image(), broken_image())
VITAL = st.one_of(
    st.floats(width=32, allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 3.4e38, -3.4e38, 0.0, -0.0, 1e-45, 98.6]),
)
TEXT = st.one_of(
    st.text(max_size=60).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=60),  # not UTF-8 at all
    st.sampled_from(
        [b"", b"SOB/CP", "Ünïcødé 🫁 дыхание 呼吸".encode(), b"x" * 5000, ("é " * 3000).encode()]
    ),
)


def _tabular(draw, n: int) -> dict[str, np.ndarray]:
    out = {v: np.asarray([draw(VITAL) for _ in range(n)], np.float32) for v in VITALS}
    out.update({s: np.asarray([draw(TEXT) for _ in range(n)], object) for s in STRINGS})
    return out


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _call(session, signature: str, feeds: dict) -> dict | tf.errors.InvalidArgumentError:
    """The outputs, or the InvalidArgumentError; any other exception propagates."""
    start = time.perf_counter()
    try:
        out = session.run(signature, feeds)
    except tf.errors.InvalidArgumentError as exc:
        out = exc
    elapsed = time.perf_counter() - start
    assert elapsed < MAX_CALL_SECONDS, f"{signature} took {elapsed:.1f} s"
    return out


def _check_outputs(out: dict, n: int) -> None:
    assert out["report"].shape == (n,) and all(isinstance(r, bytes) for r in out["report"])
    for r in out["report"]:
        r.decode("utf-8")  # well-formed text
    probs = out["acuity_probs"]
    assert probs.shape == (n, 5) and np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert set(out["acuity_level"].tolist()) <= {1, 2, 3, 4, 5}
    findings = out["findings_probs"]
    assert np.isfinite(findings).all() and (findings >= 0).all() and (findings <= 1).all()


@pytest.fixture(scope="module")
def rss_budget():
    """Peak RSS must not grow by more than :data:`MAX_RSS_GROWTH_MB` over the module."""
    start = _peak_rss_mb()
    yield
    assert _peak_rss_mb() - start < MAX_RSS_GROWTH_MB


@FUZZ
@given(data=st.data())
def test_any_bytes_request_gives_a_report_or_invalid_argument(serving_session, rss_budget, data):
    items = data.draw(st.lists(IMAGES, min_size=1, max_size=3), label="images")
    n = len(items)
    feeds = {"image_bytes": np.asarray([b for b, _ in items], object), **_tabular(data.draw, n)}
    out = _call(serving_session, SERVING_DEFAULT, feeds)
    kinds = [k for _, k in items]
    event(f"kinds {sorted(set(kinds))} -> {type(out).__name__}")  # --hypothesis-show-statistics
    if all(k == OK for k in kinds):  # random ED data never makes a good request fail
        assert not isinstance(out, Exception), out
    if isinstance(out, Exception):
        assert any(k != OK for k in kinds), out.message
        sized = {i: k for i, k in enumerate(kinds) if k in (TOO_LARGE, TOO_SMALL)}
        if sized and all(k != ANY for k in kinds):  # found from headers: named by index
            named = re.search(r"image_bytes\[(\d+)\]: image (too large|too small)", out.message)
            assert named, out.message
            assert sized.get(int(named.group(1))) == named.group(2), out.message
    else:
        assert not any(k in (TOO_LARGE, TOO_SMALL) for k in kinds)  # a limit was enforced
        _check_outputs(out, n)


PIXEL_VALUES = st.one_of(
    st.floats(0, 255, width=32),
    st.sampled_from([math.nan, math.inf, -math.inf, -1e30, 1e30, 0.0, 255.0]),
)


@settings(FUZZ, max_examples=20)
@given(data=st.data())
def test_any_pixels_request_gives_a_report_or_invalid_argument(serving_session, rss_budget, data):
    n = data.draw(st.integers(1, 2), label="n")
    h, w = data.draw(st.integers(0, 70), label="h"), data.draw(st.integers(0, 70), label="w")
    c = data.draw(st.integers(0, 5), label="c")
    image = np.full((n, h, w, c), data.draw(st.floats(0, 255, width=32)), np.float32)
    specials = data.draw(st.lists(PIXEL_VALUES, max_size=3), label="specials")
    if image.size:
        flat = image.reshape(-1)
        for k, value in enumerate(specials):
            flat[(k * 7919) % flat.size] = value
    feeds = {"image": image, **_tabular(data.draw, n)}
    out = _call(serving_session, PIXELS_SIGNATURE, feeds)
    valid = 1 <= c <= 4 and min(h, w) >= MIN_IMAGE_SIDE and np.isfinite(image).all()
    if valid:
        assert not isinstance(out, Exception), out
        _check_outputs(out, n)
    else:
        assert isinstance(out, tf.errors.InvalidArgumentError)
