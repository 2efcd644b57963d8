"""Findings guidance (set-up mtl_tp_guided): the decoder is told the findings."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from model_helpers import FEATURE_SHAPE, SIZES, assert_greedy_matches_recomputation, batch

from mtl_report.config import ConfigError, ModelConfig
from mtl_report.decoding import DecodingConfig, ReportGenerator
from mtl_report.layers import FindingsGuide
from mtl_report.models.aksoy import GUIDE_INPUT, build_aksoy_model, complete_inputs
from mtl_report.models.aksoy.aksoy_setups import get_setup

SMALL = ModelConfig(hidden_dim=24, num_heads=3, intermediate_dim=32, max_report_length=12)


def _model(seed: int = 0):
    keras.utils.set_random_seed(seed)
    mc, tc = get_setup("mtl_tp_guided", SMALL)
    return build_aksoy_model(mc, SIZES, tc, FEATURE_SHAPE)


def _guided(x, y):
    """Training inputs: the labels as the guide, as training.train feeds them."""
    return {**x, GUIDE_INPUT: y["findings"]}


def test_layer_states_follow_labels_and_fall_back_to_the_cut_head():
    layer = FindingsGuide(3, 4)
    memory = tf.zeros((2, 5, 4))
    probs = tf.constant([[0.9, 0.2, 0.6], [0.1, 0.8, 0.4]])
    guide = tf.constant([[0.0, 1.0, np.nan], [np.nan, np.nan, 1.0]])
    out, condition = layer(memory, probs, guide)
    assert out.shape == (2, 8, 4) and condition.shape == (2, 4)
    present, absent = layer.present.numpy(), layer.absent.numpy()
    # study 0: finding 0 told absent (head says 0.9), 1 told present, 2 unknown: 0.6 >= 0.5
    expected0 = np.stack([absent[0], present[1], present[2]])
    np.testing.assert_allclose(out[0, 5:].numpy(), expected0, rtol=1e-6)
    np.testing.assert_allclose(condition[0].numpy(), expected0.sum(0), rtol=1e-5)
    layer.set_thresholds([0.05, 0.9, 0.3])  # now the head's 0.8 is "absent", 0.1 "present"
    out, _ = layer(memory, probs, guide)
    expected1 = np.stack([present[0], absent[1], present[2]])
    np.testing.assert_allclose(out[1, 5:].numpy(), expected1, rtol=1e-6)
    with pytest.raises(ValueError, match="3 thresholds"):
        layer.set_thresholds([0.5, 0.5])
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        layer.set_thresholds([0.5, 1.0, 0.5])
    again = FindingsGuide.from_config(layer.get_config())
    assert (again.num_findings, again.hidden_dim) == (3, 4)


def test_guidance_needs_both_heads():
    with pytest.raises(ConfigError, match="findings_guidance needs the text and findings"):
        get_setup("stl_text", ModelConfig(findings_guidance=True))
    with pytest.raises(ConfigError, match="findings_guidance"):
        ModelConfig(tasks=("text", "acuity"), findings_guidance=True)
    mc, _ = get_setup("mtl_tp_guided")
    assert mc.findings_guidance and set(mc.tasks) == {"text", "acuity", "findings"}
    assert not get_setup("mtl_tp")[0].findings_guidance


def test_unknown_findings_are_filled_in_for_inference():
    model = _model()
    x, _ = batch(3)
    filled = complete_inputs(model, x)
    assert filled[GUIDE_INPUT].shape == (3, 5) and np.isnan(filled[GUIDE_INPUT]).all()
    told = {**x, GUIDE_INPUT: tf.ones((3, 5))}
    assert complete_inputs(model, told) is told  # a given guide is kept
    mc, tc = get_setup("mtl_tp", SMALL)
    plain = build_aksoy_model(mc, SIZES, tc, FEATURE_SHAPE)
    assert complete_inputs(plain, x) is x  # an unguided model takes no guide


@pytest.fixture(scope="module")
def trained():
    """A guided model fitted on one batch, told the labels, as training does."""
    model = _model()
    x, y = batch(8)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    data = tf.data.Dataset.from_tensors((_guided(x, y), y))
    hist = model.fit(data, epochs=30, verbose=0, shuffle=False)
    return model, hist.history, (x, y)


def test_the_decoder_learns_to_use_the_findings(trained):
    model, history, (x, y) = trained
    assert history["text_loss"][-1] < history["text_loss"][0]
    from mtl_report.losses import TASK_LOSSES

    text_loss = TASK_LOSSES["text"][1]
    labels = np.nan_to_num(y["findings"].numpy(), nan=0.0)
    right = model({**x, GUIDE_INPUT: tf.constant(labels)}, training=False)
    wrong = model({**x, GUIDE_INPUT: tf.constant(1.0 - labels)}, training=False)
    # Told the wrong findings, the decoder explains its reports worse.
    assert (
        float(text_loss(y["report"], wrong["report"]))
        > float(text_loss(y["report"], right["report"])) + 0.05
    )
    # The findings head does not read the guide.
    np.testing.assert_allclose(right["findings"].numpy(), wrong["findings"].numpy())


def test_cached_generation_matches_full_recomputation_with_the_guide(trained):
    model, _, (x, _) = trained
    x = {k: v for k, v in x.items() if k != "report_tokens"}
    for guide in (np.zeros((8, 5), "float32"), np.ones((8, 5), "float32")):
        assert_greedy_matches_recomputation(model, {**x, GUIDE_INPUT: tf.constant(guide)})
    # Without a guide the generator fills in "unknown" (the head decides) and runs.
    out = ReportGenerator(model, 2, 3, DecodingConfig("beam", beam_width=2))(x)
    assert out["tokens"].shape == (8, 11) and out["findings"].shape == (8, 5)


def test_guided_model_reloads_with_identical_outputs_and_thresholds(trained, tmp_path):
    model, _, (x, _) = trained
    model.get_layer("findings_tokens").set_thresholds([0.2, 0.3, 0.4, 0.6, 0.7])
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.models.load_model(path, compile=False)
    assert again.findings_guidance
    np.testing.assert_allclose(
        again.get_layer("findings_tokens").thresholds.numpy(), [0.2, 0.3, 0.4, 0.6, 0.7]
    )
    xx = complete_inputs(model, x)
    a, b = model(xx, training=False), again(xx, training=False)
    for key in a:
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())


def test_training_run_sets_the_validation_cut_offs_in_the_model(shared_data, tmp_path):
    from mtl_report.data.io import load_prepared
    from mtl_report.data.iu_xray import prepare_iu_xray
    from mtl_report.evaluate import predict_split
    from mtl_report.run import Run
    from mtl_report.training import train

    data = tmp_path / "data"
    prepare_iu_xray(data, csv=shared_data / "iu_xray_sample" / "train.csv", seed=0)
    small = dict(image_size=64, hidden_dim=24, num_heads=3, intermediate_dim=32)
    result = train(
        data,
        tmp_path / "run",
        "mtl_tp_guided",
        model_config=ModelConfig(max_report_length=24, **small),
        epochs=2,
        batch_size=4,
        learning_rate=1e-3,
        verbose=0,
    )
    run = Run.read(result.run_dir)
    cut = json.loads((result.run_dir / "thresholds.json").read_text())["findings"]
    saved = run.load_model().get_layer("findings_tokens").thresholds.numpy()
    np.testing.assert_allclose(saved, [cut[f] for f in run.model_config.findings], rtol=1e-6)
    # Evaluation never sees the test labels: reports come from the head's findings.
    pred = predict_split(run, load_prepared(data), "val", progress=False)
    assert pred.generated is not None and len(pred.generated) == len(pred.study_ids)
    heads = predict_split(run, load_prepared(data), "val", progress=False, generate_text=False)
    np.testing.assert_allclose(heads.findings_probs, pred.findings_probs, rtol=1e-5)
