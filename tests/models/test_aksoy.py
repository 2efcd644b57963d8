"""The Aksoy multi-task model: builds per set-up, trains, round-trips, fails clearly."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from model_helpers import FEATURE_SHAPE, PREPROCESSOR, SIZES, batch

from mtl_report.config import ConfigError, ModelConfig
from mtl_report.data.schema import VITALS
from mtl_report.losses import TASK_LOSSES
from mtl_report.models.aksoy import ED_INPUTS, AksoyBackbone, build_aksoy_model, complete_inputs
from mtl_report.models.aksoy.aksoy_setups import SETUPS, expand_setups, get_setup

SMALL = ModelConfig(hidden_dim=24, num_heads=3, intermediate_dim=32, max_report_length=12)


def build(setup: str, **overrides):
    model_config, train_config = get_setup(setup, SMALL, **overrides)
    return build_aksoy_model(model_config, SIZES, train_config, FEATURE_SHAPE)


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_each_setup_builds_its_heads_and_has_a_finite_loss(setup):
    keras.utils.set_random_seed(0)
    model = build(setup)
    expected = {"text": "report", "acuity": "acuity", "findings": "findings"}
    assert set(model.output) == {expected[t] for t in SETUPS[setup]["tasks"]}
    x, y = batch(8, text="text" in model.tasks)
    x = complete_inputs(model, {k: v for k, v in x.items() if k in model.input})
    y = {k: v for k, v in y.items() if k in model.output}
    loss = model.compute_loss(x, y, model(x, training=False))
    assert np.isfinite(float(loss)) and float(loss) > 0


@pytest.fixture(scope="module")
def trained():
    """An mtl_uw model (all heads, learned weights) after a few steps on one batch."""
    keras.utils.set_random_seed(0)
    model = build("mtl_uw")
    x, y = batch(8)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    before = [w.numpy().copy() for w in model.trainable_weights]
    hist = model.fit(tf.data.Dataset.from_tensors((x, y)), epochs=8, verbose=0, shuffle=False)
    return model, before, hist.history, (x, y)


def test_training_updates_weights_and_reduces_every_task_loss(trained):
    model, before, history, _ = trained
    assert all(np.isfinite(v) for v in history["loss"])
    for task in model.tasks:
        losses = history[f"{task}_loss"]
        assert losses[-1] < losses[0], task
    changed = sum(not np.allclose(a, w.numpy()) for a, w in zip(before, model.trainable_weights))
    assert changed > len(before) // 2
    weights = model.learned_task_weights()
    assert set(weights) == set(model.tasks)
    assert any(abs(w - 1.0) > 1e-4 for w in weights.values())  # the weights were learned


def test_outputs_have_the_documented_shapes_and_ranges():
    model = build("mtl_tp")
    x, _ = batch(5)
    out = model(x, training=False)
    assert out["report"].shape == (5, 11, SIZES["report"])
    assert out["acuity"].shape == (5, 4) and out["findings"].shape == (5, 5)
    for key in ("acuity", "findings"):
        v = out[key].numpy()
        assert ((v >= 0) & (v <= 1)).all()


def test_saved_model_reloads_with_identical_outputs(trained, tmp_path):
    model, _, _, (x, _) = trained
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.models.load_model(path, compile=False)
    a, b = model(x, training=False), again(x, training=False)
    for key in a:
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())
    assert again.uncertainty_weighting and again.tasks == model.tasks
    assert again.learned_task_weights() == pytest.approx(model.learned_task_weights())


def test_absent_modalities_are_masked_not_crashing():
    """IU X-ray: no vitals, unknown categories, empty texts."""
    model = build("mtl_eq")
    x, _ = batch(3)
    raw = {v: tf.fill((3,), float("nan")) for v in VITALS}
    raw.update(
        gender=tf.constant(["unknown"] * 3),
        ethnicity=tf.constant([""] * 3),
        chief_complaint=tf.constant(["", "zzz unseenword", ""]),
        icd_title=tf.constant([""] * 3),
    )
    x.update(PREPROCESSOR(raw))
    assert x["vitals_mask"].numpy().sum() == 0
    out = model(x, training=False)
    for v in out.values():
        assert np.isfinite(v.numpy()).all()
    _, mask = model.backbone.unified_data(*(x[k] for k in ED_INPUTS))
    assert mask.numpy().tolist() == [[True, False, False, False, False]] * 3


def test_masked_targets_contribute_nothing():
    model = build("stl_acuity")
    x, y = batch(4, text=False)
    x = {k: v for k, v in x.items() if k in model.input}
    pred = model(x, training=False)
    all_missing = {"acuity": tf.fill((4, 4), float("nan"))}
    loss = model.compute_loss(x, all_missing, pred)
    assert float(loss) == 0.0
    half = y["acuity"].numpy()
    half[:2] = np.nan
    full_loss = float(model.compute_loss(x, {"acuity": tf.constant(half)}, pred))
    only_known = float(
        model.compute_loss(
            {k: v[2:] for k, v in x.items()},
            {"acuity": tf.constant(half[2:])},
            {k: v[2:] for k, v in pred.items()},
        )
    )
    assert full_loss == pytest.approx(only_known, rel=1e-5)


@pytest.mark.parametrize(
    ("setup", "overrides", "message"),
    [
        ("stl_text", {"gamma": 0.5}, "findings"),
        ("mtl_tp", {"beta": 0.0}, "acuity"),
        ("nope", {}, "unknown set-up"),
    ],
)
def test_inconsistent_configs_fail_before_training(setup, overrides, message):
    with pytest.raises(ConfigError, match=message):
        get_setup(setup, SMALL, **overrides)


def test_setup_aliases_expand_setups():
    assert expand_setups("stl,mtl_tp") == ["stl_text", "stl_acuity", "stl_findings", "mtl_tp"]
    with pytest.raises(ConfigError):
        expand_setups("stl,bogus")


def test_model_config_validation():
    with pytest.raises(ConfigError, match="divisible"):
        ModelConfig(hidden_dim=10, num_heads=3)
    with pytest.raises(ConfigError, match="tasks"):
        ModelConfig(tasks=("poetry",))


def _backbone(**overrides):
    kwargs = dict(
        gender_vocabulary_size=SIZES["gender"],
        ethnicity_vocabulary_size=SIZES["ethnicity"],
        chief_complaint_vocabulary_size=SIZES["chief_complaint"],
        icd_title_vocabulary_size=SIZES["icd_title"],
        text_feature_length=16,
        hidden_dim=24,
        num_heads=3,
        intermediate_dim=32,
        num_shared_layers=2,
        feature_shape=FEATURE_SHAPE,
    )
    return AksoyBackbone(**{**kwargs, **overrides})


def test_backbone_takes_numbers_and_gives_one_vector_per_image_region():
    backbone = _backbone()
    x, _ = batch(3)
    memory = backbone({k: x[k] for k in backbone.input})
    assert tuple(memory.shape) == (3, FEATURE_SHAPE[0], 24)
    assert set(backbone.input) == {"image_features", *ED_INPUTS}  # no strings, no labels
    config = backbone.get_config()
    assert config["num_shared_layers"] == 2 and config["feature_shape"] == FEATURE_SHAPE
    again = AksoyBackbone.from_config(config)
    assert again.get_config() == config
    assert again.count_params() == backbone.count_params()


def test_backbone_needs_exactly_one_image_source():
    with pytest.raises(ValueError, match="either feature_shape"):
        _backbone(feature_shape=None)
    encoder = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Reshape((16, 48))])
    with pytest.raises(ValueError, match="either feature_shape"):
        _backbone(image_encoder=encoder)
    fine_tuned = _backbone(feature_shape=None, image_encoder=encoder, image_size=16)
    assert set(fine_tuned.input) == {"image", *ED_INPUTS}


def test_task_weights_are_given_at_compile_and_weight_the_loss():
    keras.utils.set_random_seed(0)
    model = build("mtl_tp")
    x, y = batch(6)
    pred = model(x, training=False)
    parts = {}
    for task in ("text", "acuity", "findings"):
        key, loss_fn = TASK_LOSSES[task]
        parts[task] = float(loss_fn(y[key], pred[key]))
    model.compile(optimizer="adam", task_weights={"text": 1.0, "acuity": 0.5, "findings": 0.25})
    expected = parts["text"] + 0.5 * parts["acuity"] + 0.25 * parts["findings"]
    assert float(model.compute_loss(x, y, pred)) == pytest.approx(expected, rel=1e-5)
    model.compile(optimizer="adam")  # default: equal weights
    assert float(model.compute_loss(x, y, pred)) == pytest.approx(sum(parts.values()), rel=1e-5)


@pytest.mark.parametrize(
    ("setup", "weights", "message"),
    [
        ("mtl_tp", {"text": 1.0, "acuity": 0.5}, "do not fit"),  # a head without weight
        ("stl_text", {"text": 1.0, "findings": 0.5}, "do not fit"),  # a weight without head
        ("mtl_uw", {"text": 1.0, "acuity": 1.0, "findings": 1.0}, "learns its task weights"),
    ],
)
def test_task_weights_that_cannot_train_the_model_fail_at_compile(setup, weights, message):
    model = build(setup)
    with pytest.raises(ValueError, match=message):
        model.compile(optimizer="adam", task_weights=weights)


def test_compiled_model_reloads_with_its_task_weights(tmp_path):
    model = build("mtl_tp")
    weights = {"text": 1.0, "acuity": 0.5, "findings": 0.25}
    model.compile(optimizer="adam", task_weights=weights)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    assert again.compiled and again.task_weights == weights
