"""UnifiedDataBlock: numbers in (from the preprocessor), five masked tokens out."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from model_helpers import PREPROCESSOR, SIZES, raw_ed

from mtl_report.layers import UnifiedDataBlock
from mtl_report.layers.unified_data import TOKEN_NAMES
from mtl_report.models.aksoy import ED_INPUTS


def _block() -> UnifiedDataBlock:
    return UnifiedDataBlock(
        16, SIZES["gender"], SIZES["ethnicity"], SIZES["chief_complaint"], SIZES["icd_title"]
    )


def test_contract_shapes_mask_config_round_trip_and_a_train_step():
    keras.utils.set_random_seed(0)
    x = PREPROCESSOR(raw_ed(6))
    block = _block()
    tokens, mask = block(*(x[k] for k in ED_INPUTS))
    assert tokens.shape == (6, len(TOKEN_NAMES), 16) and mask.shape == (6, len(TOKEN_NAMES))
    mask = mask.numpy()
    assert mask[:, 0].all()  # the none token is always there
    np.testing.assert_array_equal(mask[:, 1], x["vitals_mask"].numpy().sum(1) > 0)
    np.testing.assert_array_equal(mask[:, 3], (x["chief_complaint"].numpy() > 1).any(1))
    clone = UnifiedDataBlock.from_config(block.get_config())
    clone.build(*(x[k].shape for k in ED_INPUTS))
    clone.set_weights(block.get_weights())
    again, _ = clone(*(x[k] for k in ED_INPUTS))
    np.testing.assert_allclose(again.numpy(), tokens.numpy(), rtol=1e-6)

    inputs = {k: keras.Input(x[k].shape[1:], dtype=x[k].dtype.name, name=k) for k in ED_INPUTS}
    out, _ = _block()(*(inputs[k] for k in ED_INPUTS))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling1D()(out))
    model.compile(optimizer="adam", loss="mse")
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.fit(x, tf.ones((6, 16)), epochs=1, verbose=0)
    assert any(not np.allclose(a, w.numpy()) for a, w in zip(before, model.trainable_weights))
