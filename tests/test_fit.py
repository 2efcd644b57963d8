"""The training set-up both models share (mtl_report.workflows.fit)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mtl_report.workflows.fit import precision_policy, set_seeds, warmup_optimizer


def test_precision_policy_is_scoped_to_the_block_even_when_it_fails():
    before = keras.mixed_precision.global_policy().name
    with precision_policy(True):
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
        assert keras.layers.Dense(2).compute_dtype == "float16"
    assert keras.mixed_precision.global_policy().name == before
    with pytest.raises(RuntimeError), precision_policy(True):
        raise RuntimeError("training failed")
    assert keras.mixed_precision.global_policy().name == before
    with precision_policy(False):
        assert keras.mixed_precision.global_policy().name == before


def _schedule(optimizer):
    """The optimizer's learning-rate schedule, as its saved config holds it."""
    return keras.optimizers.schedules.deserialize(optimizer.get_config()["learning_rate"])


def test_warmup_optimizer_warms_up_then_holds_or_decays():
    plain = warmup_optimizer(1e-3, 10)
    assert type(plain) is keras.optimizers.Adam
    lr = _schedule(plain)
    steps = [0, 4, 9, 50]
    values = [float(lr(s)) for s in steps]
    np.testing.assert_allclose(values, [1e-4, 5e-4, 1e-3, 1e-3], rtol=1e-6)

    decayed = warmup_optimizer(1e-3, 10, total_steps=110, cosine_decay=True, weight_decay=0.01)
    assert type(decayed) is keras.optimizers.AdamW and decayed.weight_decay == 0.01
    lr = _schedule(decayed)
    assert float(lr(110)) == pytest.approx(1e-4, rel=1e-5)  # 10% of the peak at the end
    assert 1e-4 < float(lr(60)) < 1e-3

    clipped = warmup_optimizer(1e-3, 0, clipnorm=1.0)
    assert clipped.clipnorm == 1.0


def test_set_seeds_repeats_keras_random_numbers():
    set_seeds(7)
    a = keras.random.uniform((4,)).numpy()
    set_seeds(7)
    b = keras.random.uniform((4,)).numpy()
    np.testing.assert_array_equal(a, b)
