"""AksoyPreprocessor: raw ED fields → the model's numbers, one layer for training, generate
and serving. Prepared records and the raw fields they came from give the same inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from mtl_report.data.assemble import clean_features
from mtl_report.data.cleaning import CleaningConfig, fit_cleaning
from mtl_report.data.cohort import CohortLog
from mtl_report.data.schema import VITALS
from mtl_report.models.aksoy import (
    ED_FIELDS,
    ED_INPUTS,
    AksoyPreprocessor,
    feature_vocabularies,
    raw_ed_columns,
    word_vocabulary,
)

#: Raw ED data with abbreviations, °C typed as °F, implausible and missing vitals,
#: diastolic above systolic, unseen categories, punctuation and case.
STUDIES = [
    {
        "o2sat": 97.0,
        "heartrate": 88.0,
        "resprate": 18.0,
        "sbp": 128.0,
        "dbp": 79.0,
        "temperature": 98.4,
        "gender": "F",
        "ethnicity": "WHITE - RUSSIAN",
        "chief_complaint": "SOB, CP..",
        "icd_title": "Pneumonia, unspecified organism",
    },
    {
        "o2sat": None,
        "heartrate": 400.0,  # implausible
        "resprate": "UTA",  # unparseable
        "sbp": 90.0,
        "dbp": 95.0,  # not below the systolic pressure
        "temperature": 38.5,  # °C in the °F field
        "gender": "male",
        "ethnicity": "Martian",  # never seen
        "chief_complaint": "Chest pain w/ fever",
    },
    {"gender": b"F", "icd_title": "  ", "chief_complaint": "x" * 20_000},
]


@pytest.fixture(scope="module")
def fitted():
    raw = pd.DataFrame(STUDIES).reindex(columns=[*ED_FIELDS, "acuity"])
    # what `prepare` writes for these records
    prepared = clean_features(raw, CleaningConfig(), CohortLog("test"))
    cleaning = fit_cleaning(prepared, CleaningConfig())
    vocabularies = feature_vocabularies(prepared, cleaning, 50)
    layer = AksoyPreprocessor.from_cleaning(cleaning, vocabularies, text_length=8)
    return layer, raw, prepared, vocabularies


def _run(layer, records) -> dict:
    columns = raw_ed_columns(records)
    return {k: v.numpy() for k, v in layer({k: tf.constant(v) for k, v in columns.items()}).items()}


def test_prepared_records_and_their_raw_fields_give_the_same_inputs(fitted):
    """Training reads prepared records, serving raw requests: the same numbers."""
    layer, raw, prepared, _ = fitted
    a, b = _run(layer, raw), _run(layer, prepared)
    assert set(a) == set(ED_INPUTS)
    for key in ED_INPUTS:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert a["vitals_mask"][1].tolist() == [0, 0, 0, 0, 0, 1]  # 400/min, UTA, dbp > sbp
    assert a["vitals_mask"][2].sum() == 0  # no vitals at all
    assert ((a["vitals"] >= 0) & (a["vitals"] <= 1)).all()


def test_outputs_shapes_dtypes_unknowns_and_words(fitted):
    layer, raw, _, vocabularies = fitted
    out = _run(layer, raw)
    assert out["vitals"].shape == out["vitals_mask"].shape == (3, 6)
    assert out["gender"].dtype == out["chief_complaint"].dtype == np.int32
    assert out["chief_complaint"].shape == out["icd_title"].shape == (3, 8)
    assert out["gender"].tolist()[0] > 0 and out["gender"][2] == out["gender"][0]  # b"F"
    assert out["ethnicity"][1] == 0  # "Martian": unknown
    words = ["[pad]", "[UNK]", *vocabularies["chief_complaint"]]
    assert [words[i] for i in out["chief_complaint"][0] if i] == [
        "shortness",
        "of",
        "breath",
        "chest",
        "pain",
    ]
    unseen = _run(layer, [{"chief_complaint": "zzz unseenword", "gender": "U"}])
    assert unseen["chief_complaint"][0].tolist()[:2] == [1, 1] and unseen["gender"][0] == 0
    assert (out["icd_title"][2] == 0).all()  # blank: all padding


def test_config_round_trip_tf_data_and_vocabulary_sizes(fitted):
    layer, raw, _, vocabularies = fitted
    clone = AksoyPreprocessor.from_config(layer.get_config())
    expected = _run(layer, raw)
    for key, value in _run(clone, raw).items():
        np.testing.assert_array_equal(value, expected[key])
    data = tf.data.Dataset.from_tensor_slices(raw_ed_columns(raw)).batch(2).map(layer)
    got = np.concatenate([b["chief_complaint"].numpy() for b in data])
    np.testing.assert_array_equal(got, expected["chief_complaint"])
    sizes = layer.vocabulary_sizes()
    assert sizes["chief_complaint"] == len(vocabularies["chief_complaint"]) + 2
    assert sizes["gender"] == len([g for g in vocabularies["gender"] if g != "unknown"]) + 1
    assert not layer.trainable_weights


def test_missing_fields_are_an_error_and_empty_vocabularies_work(fitted):
    layer, raw, _, _ = fitted
    columns = {k: tf.constant(v) for k, v in raw_ed_columns(raw).items()}
    del columns["icd_title"]
    with pytest.raises(ValueError, match="icd_title"):
        layer(columns)
    empty = AksoyPreprocessor(
        minmax={v: [0.0, 1.0] for v in VITALS},
        gender_vocabulary=["unknown"],
        ethnicity_vocabulary=[],
        complaint_vocabulary=[],
        icd_vocabulary=[],
    )
    out = _run(empty, raw)
    assert (out["gender"] == 0).all() and (out["chief_complaint"] <= 1).all()


def test_raw_ed_columns_of_dicts_and_frames():
    columns = raw_ed_columns([{"heartrate": "eighty", "gender": b"F"}, {}])
    assert set(columns) == set(ED_FIELDS)
    assert np.isnan(columns["heartrate"]).all() and columns["heartrate"].dtype == np.float64
    assert columns["gender"].tolist() == ["F", ""] and columns["icd_title"].tolist() == ["", ""]
    frame = raw_ed_columns(pd.DataFrame({"sbp": [120, None], "ethnicity": [None, "ASIAN"]}))
    assert frame["sbp"][0] == 120 and np.isnan(frame["sbp"][1])
    assert frame["ethnicity"].tolist() == ["", "ASIAN"]


def test_word_vocabulary_is_by_frequency_then_alphabetical():
    assert word_vocabulary(["b a", "a c", "c", None], 2) == ["a", "c"]
    assert word_vocabulary(["b a", "a c"], 10, min_count=2) == ["a"]
