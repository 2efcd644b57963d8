"""DemographicGrouper: gender and ethnicity grouped in the graph as the preparation does."""

from __future__ import annotations

import pandas as pd
import pytest
import tensorflow as tf

from mtl_report.layers.demographics import DemographicGrouper, group_ethnicity, group_gender


def test_layer_contract_shapes_config_round_trip_and_bad_kind():
    layer = DemographicGrouper("ethnicity")
    values = tf.constant([["WHITE - RUSSIAN", ""], ["asian", "PATIENT DECLINED"]])
    out = layer(values)
    assert out.shape == (2, 2)
    assert out.numpy().tolist() == [[b"white", b"unknown"], [b"asian", b"unknown"]]
    assert not layer.weights
    clone = DemographicGrouper.from_config(layer.get_config())
    assert clone.kind == "ethnicity" and (clone(values).numpy() == out.numpy()).all()
    assert DemographicGrouper("gender")(tf.constant([" female ", "U"])).numpy().tolist() == [
        b"F",
        b"unknown",
    ]
    with pytest.raises(ValueError, match="kind must be one of"):
        DemographicGrouper("age")


def test_graph_categories_equal_the_pandas_path():
    from mtl_report.data.cleaning import ethnicity_group, normalise_gender

    values = ["F", "female", " m ", "W", "x", "", "MALE", "WHITE - RUSSIAN", "PORTUGUESE"]
    values += ["BLACK/AFRICAN AMERICAN", "hispanic/latino - cuban", "Asian", "unknown", "white"]
    genders = [g.decode() for g in group_gender(tf.constant(values)).numpy()]
    groups = [g.decode() for g in group_ethnicity(tf.constant(values)).numpy()]
    assert genders == normalise_gender(pd.Series(values)).tolist()
    assert groups == ethnicity_group(pd.Series(values)).tolist()
