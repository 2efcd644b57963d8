"""Attention maps: recorded without changing the model, the right shapes and masks, and the
backbone's flattened feature grid maps vector l to grid cell (l // w, l % w)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from model_helpers import PREPROCESSOR, SIZES, VOCABS

from mtl_report.config import ModelConfig
from mtl_report.data.schema import VITALS
from mtl_report.explain import (
    Explanation,
    attention_layers,
    describe,
    explain_batch,
    grid_shape,
    record_attention,
    top_tokens,
)
from mtl_report.layers.unified_data import TOKEN_NAMES
from mtl_report.models.aksoy import build_aksoy_model
from mtl_report.models.aksoy.aksoy_setups import get_setup
from mtl_report.text import ReportTokenizer

GRID = (4, 4)
SMALL = ModelConfig(hidden_dim=24, num_heads=3, intermediate_dim=32, max_report_length=12)
REPORTS = ["small left pleural effusion", "the heart is enlarged", "no acute disease"]


@pytest.fixture(scope="module")
def tokenizer():
    return ReportTokenizer(max_length=SMALL.max_report_length).fit(REPORTS)


def _model(setup: str, tokenizer):
    keras.utils.set_random_seed(0)
    model_config, train_config = get_setup(setup, SMALL)
    sizes = {**SIZES, "report": tokenizer.vocab_size}
    return build_aksoy_model(model_config, sizes, train_config, (GRID[0] * GRID[1], 32))


def _inputs(n: int = 3) -> dict:
    rng = np.random.default_rng(0)
    # study 0 has no vitals at all: its vitals token must get no attention
    vitals = np.r_[np.full((1, 6), np.nan), rng.uniform(60, 120, (n - 1, 6))]
    raw = {v: tf.constant(vitals[:, j]) for j, v in enumerate(VITALS)}
    raw["dbp"] = raw["sbp"] / 2
    raw.update(
        gender=tf.constant(["F", "M", "unknown"][:n]),
        ethnicity=tf.constant(["white", "asian", "black"][:n]),
        chief_complaint=tf.constant(["chest pain", "", "fever"][:n]),
        icd_title=tf.constant(["pneumonia", "heart failure", ""][:n]),
    )
    return {
        "image_features": tf.constant(rng.random((n, GRID[0] * GRID[1], 32)), tf.float32),
        **PREPROCESSOR(raw),
    }


def test_recording_changes_no_output_and_is_undone(tokenizer):
    model = _model("mtl_tp", tokenizer)
    x = _inputs()
    ids = np.random.default_rng(0).integers(
        2, tokenizer.vocab_size, (3, SMALL.max_report_length - 1)
    )
    x["report_tokens"] = tf.constant(ids.astype("int32"))
    plain = {k: np.asarray(v) for k, v in model(x, training=False).items()}
    layers = attention_layers(model)
    assert set(layers) == {"visual_self_0", "cross_modal", "decoder_cross_0"}
    with record_attention(layers) as rec:
        recorded = {k: np.asarray(v) for k, v in model(x, training=False).items()}
    for k in plain:
        np.testing.assert_allclose(recorded[k], plain[k], rtol=1e-5, atol=1e-6)
    assert [len(v) for v in rec.values()] == [1, 1, 1]
    assert rec["visual_self_0"][0].shape == (3, 3, 16, 16)
    assert rec["cross_modal"][0].shape == (3, 3, 16, len(TOKEN_NAMES))
    assert rec["decoder_cross_0"][0].shape == (3, 3, SMALL.max_report_length - 1, 16)
    for scores in rec.values():
        np.testing.assert_allclose(scores[0].sum(-1), 1.0, rtol=1e-5)
    # the wrappers are gone: the layers use their class's method again
    assert all("_compute_attention" not in vars(layer) for layer in layers.values())


def test_explain_batch_shapes_masks_and_words(tokenizer):
    model = _model("mtl_tp", tokenizer)
    images = np.random.default_rng(1).uniform(0, 255, (3, 64, 64, 3)).astype("float32")
    explanations = explain_batch(model, _inputs(), tokenizer, images)
    assert len(explanations) == 3
    ex = explanations[0]
    assert ex.grid == GRID and ex.image.shape == (64, 64, 3)
    assert [a.shape for a in ex.visual_self_attention] == [(3, 16, 16)]
    assert ex.cross_modal_attention.shape == (3, 16, len(TOKEN_NAMES))
    # no vitals for study 0: masked, zero attention; the "none" token is always there
    vitals = TOKEN_NAMES.index("vitals")
    assert not ex.token_mask[vitals] and ex.token_mask[0]
    np.testing.assert_allclose(ex.cross_modal_attention[:, :, vitals], 0.0, atol=1e-7)
    assert explanations[1].token_mask[vitals]
    # one decoder row per generated word, and the words decode to the report
    n = len(ex.words)
    assert ex.decoder_cross_attention[0].shape == (3, n, 16)
    assert ex.report == " ".join(ex.words)
    assert len(ex.word_maps()) == n and all(m.shape == GRID for m in ex.word_maps())
    np.testing.assert_allclose(ex.visual_saliency().sum(), 1.0, rtol=1e-5)
    maps = ex.token_maps()
    assert list(maps) == list(TOKEN_NAMES) and maps["vitals"].max() == 0
    assert len(top_tokens(ex)) == 16
    assert "cross-modal attention share" in describe(ex)
    assert set(ex.outputs) == {"acuity", "findings"}


def test_explain_without_report_head(tokenizer):
    model = _model("stl_findings", tokenizer)
    (ex,) = explain_batch(model, _inputs(1))
    assert ex.words == [] and ex.report is None and ex.decoder_cross_attention == []
    assert ex.word_maps() == []


def test_explain_needs_the_tokenizer_for_a_report_head(tokenizer):
    with pytest.raises(ValueError, match="tokenizer"):
        explain_batch(_model("stl_text", tokenizer), _inputs(1))


def test_region_map_is_row_major():
    ex = Explanation(image=None, grid=(2, 3), visual_self_attention=[], cross_modal_attention=None)
    grid = ex.region_map(np.arange(6))
    assert grid[0, 2] == 2 and grid[1, 0] == 3
    with pytest.raises(ValueError):
        ex.region_map(np.arange(5))
    assert grid_shape(49) == (7, 7)
    with pytest.raises(ValueError):
        grid_shape(12)


def test_backbone_vectors_are_the_feature_grid_flattened_row_by_row():
    """Vector l of the backbone output is feature-map cell (l // w, l % w): the mapping
    :meth:`Explanation.region_map` and the overlays rely on."""
    from mtl_report.models.backbones import build_backbone, feature_shape

    keras.utils.set_random_seed(0)
    backbone = build_backbone("efficientnet_b0", 64)
    grid_model = backbone.layers[1]
    image = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    grid = np.asarray(grid_model(image, training=False))[0]  # (h, w, C)
    vectors = np.asarray(backbone(image, training=False))[0]  # (L, C)
    h, w = grid.shape[:2]
    assert (h * w, grid.shape[-1]) == feature_shape("efficientnet_b0", 64)
    for l in range(h * w):  # noqa: E741
        np.testing.assert_allclose(vectors[l], grid[l // w, l % w], rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def untrained_run(tmp_path_factory, tokenizer):
    """A run directory holding an untrained model (128 px: a 4 x 4 grid), built without
    training: enough for the inference path, which only reads the directory."""
    import json

    from mtl_report.data.schema import VITALS
    from mtl_report.models.backbones import build_backbone, feature_shape
    from mtl_report.run import (
        BACKBONE_FILE,
        CLEANING_FILE,
        MODEL_FILE,
        TOKENIZER_DIR,
        VOCAB_FILE,
        write_run_config,
    )

    run = tmp_path_factory.mktemp("explain") / "run"
    run.mkdir()
    keras.utils.set_random_seed(0)
    config, train_config = get_setup(
        "mtl_tp", ModelConfig(**{**SMALL.to_dict(), "image_size": 128})
    )
    build_backbone(config.backbone, config.image_size).save_weights(run / BACKBONE_FILE)
    tokenizer.save(run / TOKENIZER_DIR)
    vocabs = {**VOCABS, "report_vocab_size": tokenizer.vocab_size}
    (run / VOCAB_FILE).write_text(json.dumps(vocabs))
    cleaning = {
        "vital_order": list(VITALS),
        "minmax": {v: [0.0, 200.0] for v in VITALS},
        "categories": {"gender": VOCABS["gender"], "ethnicity": VOCABS["ethnicity"]},
    }
    (run / CLEANING_FILE).write_text(json.dumps(cleaning))
    shape = feature_shape(config.backbone, config.image_size)
    sizes = {**SIZES, "report": tokenizer.vocab_size}
    build_aksoy_model(config, sizes, train_config, shape).save(run / MODEL_FILE)
    write_run_config(run, config, train_config, setup="mtl_tp", feature_shape=shape)
    return run


def test_generate_explain_writes_the_overlay(untrained_run, tmp_path, capsys):
    from PIL import Image

    from mtl_report.cli import main
    from mtl_report.explain import explain_image

    image = tmp_path / "xray.png"
    pixels = np.tile(np.linspace(0, 255, 160, dtype=np.uint8), (200, 1))  # portrait: padded
    Image.fromarray(pixels).save(image)
    out = tmp_path / "figs" / "attention.png"
    argv = ["generate", "--run", str(untrained_run), str(image), "--complaint", "chest pain"]
    assert main([*argv, "--vitals", "hr=110", "--explain", str(out)]) == 0
    assert out.read_bytes().startswith(b"\x89PNG") and out.stat().st_size > 10_000
    assert "Report:" in capsys.readouterr().out

    ex = explain_image(untrained_run, image, {"chief_complaint": "chest pain", "heartrate": 110})
    assert ex.grid == GRID and ex.image.shape == (128, 128, 3)
    # the model's input image is letterboxed: the overlay covers exactly that image
    assert ex.image[:, :5].max() == 0 and ex.image[:, -5:].max() == 0
    assert ex.token_mask[TOKEN_NAMES.index("vitals")]
    assert not ex.token_mask[TOKEN_NAMES.index("icd_title")]
