"""VitalSignsScaler: the model reads the vitals the preparation wrote, and raw ones alike."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from mtl_report.data.cleaning import DEFAULT_VITAL_RANGES, apply_minmax, clean_vitals
from mtl_report.data.errors import DataError
from mtl_report.data.schema import VITALS
from mtl_report.layers.vital_signs import VitalSignsScaler

MINMAX = {
    "o2sat": [80.0, 100.0],
    "heartrate": [40.0, 160.0],
    "resprate": [8.0, 40.0],
    "sbp": [80.0, 200.0],
    "dbp": [40.0, 120.0],
    "temperature": [95.0, 104.0],
}


def _raw(n: int, seed: int = 0) -> pd.DataFrame:
    """Vitals with every kind of trouble: implausible, °C in the °F field, dbp ≥ sbp,
    ±inf, NaN, values beyond the train min/max."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({v: rng.uniform(lo - 30, hi + 30, n) for v, (lo, hi) in MINMAX.items()})
    df.loc[::5, "temperature"] = rng.uniform(30, 45, len(df.loc[::5]))
    df.loc[::7, "heartrate"] = np.inf
    df.loc[::4, "o2sat"] = np.nan
    df.loc[::6, "dbp"] = df.loc[::6, "sbp"] + 1
    return df


def test_layer_equals_the_preparation_clean_then_scale():
    raw = _raw(200)
    cleaned, counts = clean_vitals(raw, DEFAULT_VITAL_RANGES, True)
    assert counts["temperature_celsius_converted"] > 0 and counts["bp_dbp_not_below_sbp"] > 0
    expected = apply_minmax(cleaned, MINMAX)[list(VITALS)].to_numpy()
    layer = VitalSignsScaler(MINMAX)
    vitals, mask = layer({v: tf.constant(raw[v].to_numpy()) for v in VITALS})
    np.testing.assert_array_equal(mask.numpy(), np.isfinite(expected).astype("float32"))
    np.testing.assert_array_equal(
        vitals.numpy(), np.where(np.isfinite(expected), expected, 0).astype("float32")
    )
    # and the cleaned values pass through unchanged (prepared records hold them)
    again, mask2 = layer({v: tf.constant(cleaned[v].to_numpy()) for v in VITALS})
    np.testing.assert_array_equal(again.numpy(), vitals.numpy())
    np.testing.assert_array_equal(mask2.numpy(), mask.numpy())


def test_layer_contract_order_config_round_trip_and_float32_requests():
    order = list(reversed(VITALS))
    layer = VitalSignsScaler(MINMAX, vital_order=order, convert_celsius=False)
    raw = {v: tf.constant([MINMAX[v][1], 37.0], tf.float32) for v in VITALS}
    vitals, mask = layer(raw)
    assert vitals.shape == mask.shape == (2, 6) and vitals.dtype == tf.float32
    assert vitals.numpy()[0].tolist() == [1.0] * 6  # each at its train maximum
    assert mask.numpy()[1, 0] == 0  # 37 °F without the °C reading: implausible
    clone = VitalSignsScaler.from_config(layer.get_config())
    assert clone.vital_order == order and not clone.convert_celsius
    np.testing.assert_array_equal(clone(raw)[0].numpy(), vitals.numpy())
    assert not layer.weights


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(vital_order=["o2sat", "pulse"]), "unknown vital"),
        (dict(minmax={"o2sat": [0, 1]}), "no min-max statistics"),
        (dict(minmax={**MINMAX, "sbp": [120.0, 120.0]}), "not above"),
    ],
)
def test_bad_statistics_are_refused_clearly(kwargs, message):
    with pytest.raises(DataError, match=message):
        VitalSignsScaler(**{"minmax": MINMAX, **kwargs})
