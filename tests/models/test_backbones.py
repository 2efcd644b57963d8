"""Backbone registry: names, shapes, weights files, progressive unfreezing."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mtl_report.models import backbones
from mtl_report.models.backbones import BACKBONES, build_backbone, feature_shape, unfreeze_top


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet9'.*densenet121"):
        build_backbone("resnet9", 32)


def test_registry_lists_the_three_families():
    assert {"efficientnet_b0", "densenet121", "swin_base", "swin_tiny"} <= set(BACKBONES)
    # EfficientNetB0 is what the Aksoy model depends on: its entry is unchanged.
    spec = BACKBONES["efficientnet_b0"]
    assert (spec.channels, spec.stride, spec.size_multiple) == (1280, 32, 1)
    assert feature_shape("densenet121", 224) == (49, 1024)
    assert feature_shape("swin_base", 224) == (49, 1024)
    assert feature_shape("swin_tiny", 224) == (49, 768)


@pytest.mark.parametrize("name,size", [("densenet_micro", 64), ("swin_micro", 32)])
def test_micro_backbones_give_the_registered_shape(name, size):
    model = build_backbone(name, size)
    out = model(np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32"))
    assert tuple(out.shape) == (2, *feature_shape(name, size))
    assert np.isfinite(np.asarray(out)).all()


def test_swin_rejects_an_image_size_its_windows_cannot_tile():
    with pytest.raises(ValueError, match="multiple of 32"):
        build_backbone("swin_micro", 48)


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.weights\.h5"):
        build_backbone("swin_micro", 32, str(tmp_path / "nope.weights.h5"))


def test_weights_from_a_file_reproduce_the_backbone(tmp_path):
    keras.utils.set_random_seed(1)
    model = build_backbone("swin_micro", 32)
    grid_model = model.layers[1]
    core = grid_model.layers[-1]  # the keras-hub backbone behind the normalisation
    path = tmp_path / "swin_micro.weights.h5"
    core.save_weights(path)
    keras.utils.set_random_seed(2)
    again = build_backbone("swin_micro", 32, str(path))
    x = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(again(x)), atol=1e-5)


def test_unfreeze_top_fractions():
    model = build_backbone("densenet_micro", 32)
    assert unfreeze_top(model, 0.0) == 0
    assert not model.trainable_weights
    n_all = unfreeze_top(model, 1.0)
    assert n_all > 10 and model.trainable_weights
    some = unfreeze_top(model, 0.25)
    assert 0 < some < n_all
    # Only the top layers train; batch norms of a partly unfrozen backbone stay frozen.
    assert not any(
        isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
        for layer in model._flatten_layers()
    )
    with pytest.raises(ValueError, match="fraction"):
        unfreeze_top(model, 1.5)


@pytest.mark.slow
@pytest.mark.parametrize("name,size", [("densenet121", 32), ("swin_tiny", 224)])
def test_full_size_backbones_build(name, size):
    model = build_backbone(name, size)
    out = model(np.zeros((1, size, size, 3), "float32"))
    assert tuple(out.shape) == (1, *feature_shape(name, size))


def test_densenet_uses_imagenet_normalisation():
    model = build_backbone("densenet_micro", 32)
    norm = [layer for layer in model._flatten_layers() if layer.name == "imagenet_norm"]
    assert norm, "DenseNet/Swin entries normalise [0, 255] inputs themselves"
    assert backbones.IMAGENET_MEAN[0] == pytest.approx(0.485)


def test_recalibrate_batch_norm_matches_the_current_weights():
    """Trainable batch norms get the average batch statistics of the data under the
    current weights; frozen ones keep theirs; momenta are restored."""
    from mtl_report.models.backbones import recalibrate_batch_norm

    keras.utils.set_random_seed(0)
    x = keras.Input((4,))
    h = keras.layers.Dense(3, name="dense")(x)
    h = keras.layers.BatchNormalization(name="bn")(h)
    y = keras.layers.BatchNormalization(name="frozen")(h)
    model = keras.Model(x, y)
    model.get_layer("frozen").trainable = False
    data = np.random.default_rng(0).normal(2.0, 3.0, (64, 4)).astype("float32")
    batches = [data[i : i + 16] for i in range(0, 64, 16)]
    # Initial moving statistics (0 / 1) do not describe the Dense outputs at all.
    assert recalibrate_batch_norm(model, [(b, None) for b in batches]) == 1
    dense = np.asarray(model.get_layer("dense")(data))
    bn = model.get_layer("bn")
    expected_mean = np.mean([dense[i : i + 16].mean(0) for i in range(0, 64, 16)], axis=0)
    expected_var = np.mean([dense[i : i + 16].var(0) for i in range(0, 64, 16)], axis=0)
    np.testing.assert_allclose(np.asarray(bn.moving_mean), expected_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(bn.moving_variance), expected_var, rtol=1e-3)
    frozen = model.get_layer("frozen")
    np.testing.assert_array_equal(np.asarray(frozen.moving_mean), 0.0)
    assert bn.momentum == pytest.approx(0.99)
    # Inference now normalises as training does: outputs of the first BN are ~N(0, 1).
    out = np.asarray(bn(model.get_layer("dense")(data), training=False))
    np.testing.assert_allclose(out.mean(0), 0.0, atol=0.05)
    assert recalibrate_batch_norm(keras.Sequential([keras.layers.Dense(2)]), batches) == 0
