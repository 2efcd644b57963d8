"""One test per cleaning rule of mtl_report.data.cleaning."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mtl_report.data.cleaning import (
    CleaningConfig,
    apply_categories,
    apply_minmax,
    chexpert_findings,
    clean_acuity,
    clean_vitals,
    cumulative_encoding,
    ethnicity_group,
    fit_categories,
    fit_minmax,
    load_abbreviations,
    normalise_gender,
    normalise_text,
)
from mtl_report.data.errors import DataError
from mtl_report.data.schema import VITALS


def vitals(**cols):
    n = len(next(iter(cols.values())))
    base = {v: [np.nan] * n for v in VITALS}
    base.update(cols)
    return pd.DataFrame(base)


@pytest.mark.parametrize(
    ("vital", "bad", "good"),
    [
        ("o2sat", 150, 97),
        ("o2sat", 0, 88),
        ("heartrate", 400, 80),
        ("resprate", 0, 16),
        ("sbp", 0, 120),
        ("temperature", 980.0, 98.6),
    ],
)
def test_implausible_vital_becomes_missing_and_is_counted(vital, bad, good):
    out, counts = clean_vitals(vitals(**{vital: [bad, good]}))
    assert np.isnan(out[vital].iloc[0])
    assert out[vital].iloc[1] == good
    assert counts[f"{vital}_implausible"] == 1


def test_celsius_temperature_is_converted_to_fahrenheit():
    out, counts = clean_vitals(vitals(temperature=[37.0, 98.6]))
    assert out["temperature"].tolist() == pytest.approx([98.6, 98.6])
    assert counts["temperature_celsius_converted"] == 1
    out, counts = clean_vitals(vitals(temperature=[37.0]), convert_celsius=False)
    assert np.isnan(out["temperature"].iloc[0])


def test_unparseable_vitals_are_counted():
    out, counts = clean_vitals(vitals(heartrate=["eighty", "80"]))
    assert np.isnan(out["heartrate"].iloc[0]) and out["heartrate"].iloc[1] == 80
    assert counts["heartrate_unparseable"] == 1


def test_diastolic_not_below_systolic_nulls_both():
    out, counts = clean_vitals(vitals(sbp=[90, 120], dbp=[95, 80]))
    assert out[["sbp", "dbp"]].iloc[0].isna().all()
    assert out[["sbp", "dbp"]].iloc[1].tolist() == [120, 80]
    assert counts["bp_dbp_not_below_sbp"] == 1


def test_minmax_fits_on_train_and_clips_others():
    train = vitals(heartrate=[60.0, 100.0])
    stats = fit_minmax(train, CleaningConfig().vital_ranges)
    assert stats["heartrate"] == [60.0, 100.0]
    scaled = apply_minmax(vitals(heartrate=[80.0, 140.0, np.nan]), stats)
    assert scaled["heartrate"].iloc[0] == pytest.approx(0.5)
    assert scaled["heartrate"].iloc[1] == 1.0
    assert np.isnan(scaled["heartrate"].iloc[2])
    # A vital never observed in train falls back to its plausible range.
    assert stats["o2sat"] == [50.0, 100.0]


def test_gender_and_ethnicity_have_an_unknown_bucket():
    assert normalise_gender(pd.Series(["F", "m", None, "X"])).tolist() == [
        "F",
        "M",
        "unknown",
        "unknown",
    ]
    races = pd.Series(
        [
            "WHITE - RUSSIAN",
            "BLACK/CAPE VERDEAN",
            "HISPANIC/LATINO - DOMINICAN",
            "ASIAN - KOREAN",
            "AMERICAN INDIAN/ALASKA NATIVE",
            "PATIENT DECLINED TO ANSWER",
            None,
            "UNABLE TO OBTAIN",
        ]
    )
    assert ethnicity_group(races).tolist() == [
        "white",
        "black",
        "hispanic",
        "asian",
        "other",
        "unknown",
        "unknown",
        "unknown",
    ]
    assert ethnicity_group(ethnicity_group(races)).tolist() == ethnicity_group(races).tolist()


def test_unseen_categories_map_to_unknown_and_are_counted():
    vocab = fit_categories(pd.DataFrame({"gender": ["F", "M"], "ethnicity": ["white", "white"]}))
    assert vocab["ethnicity"] == ["white", "unknown"]
    out, counts = apply_categories(
        pd.DataFrame({"gender": ["F", "M"], "ethnicity": ["asian", "white"]}), vocab
    )
    assert out["ethnicity"].tolist() == ["unknown", "white"]
    assert counts == {"ethnicity_unknown_category": 1}


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("SOB, CP..", "shortness of breath chest pain"),
        ("s/p Fall", "status post fall"),
        ("N/V/D", "nausea vomiting diarrhea"),
        ("Abd pain...R/O PNA", "abdominal pain rule out pneumonia"),
        ("SOBER", "sober"),  # no expansion inside a word
        ("  ", ""),
        (None, ""),
        # "/" separates tokens unless it is part of an entry (issue 13, real MIMIC-IV-ED)
        ("LETHARGY/SOB", "lethargy shortness of breath"),
        ("SOB/ABNL LABS", "shortness of breath abnormal labs"),
        ("MVC/INTUBATED TRAUMA", "motor vehicle collision intubated trauma"),
        ("S/P ARREST", "status post arrest"),
        ("Abd pain, n/v/d", "abdominal pain nausea vomiting diarrhea"),
        ("w/cp", "with chest pain"),
        ("n / v", "nausea vomiting"),
        ("A-FIB", "atrial fibrillation"),
        ("sob_cp", "shortness of breath chest pain"),  # "_" is punctuation too
        ("R FOOT ULCER/CELLULITIS", "right foot ulcer cellulitis"),
        ("SOB/", "shortness of breath"),
        ("sobs/p", "sobs p"),  # no entry inside a word, on either side of "/"
        # placeholders for "no complaint" are missing, not words
        ("UNKNOWN-CC", ""),
        ("Unknown", ""),
        ("___", ""),
    ],
)
def test_text_normalisation(raw, clean):
    assert normalise_text(pd.Series([raw]), load_abbreviations()).iloc[0] == clean


def test_user_abbreviations_extend_and_override(tmp_path):
    extra = tmp_path / "abbr.tsv"
    extra.write_text("# mine\nsob\tbreathlessness\nhtn crisis\thypertensive crisis\n")
    table = load_abbreviations([extra])
    assert normalise_text(pd.Series(["SOB; HTN crisis"]), table).iloc[0] == (
        "breathlessness hypertensive crisis"
    )
    bad = tmp_path / "bad.tsv"
    bad.write_text("only-one-field\n")
    with pytest.raises(DataError, match=r"bad\.tsv:1"):
        load_abbreviations([bad])
    bad.write_text("# comment\n/x\tslash x\n")
    with pytest.raises(DataError, match=r"bad\.tsv:2: abbreviation '/x' must start with a letter"):
        load_abbreviations([bad])
    # A user entry with punctuation matches however the text punctuates it.
    extra.write_text("x-ray\tradiograph\n")
    table = load_abbreviations([extra])
    out = normalise_text(pd.Series(["X-RAY, x ray; x_ray"]), table).iloc[0]
    assert out == "radiograph radiograph radiograph"


def test_acuity_keeps_levels_1_to_5():
    acuity, invalid = clean_acuity(pd.Series([1.0, 5.0, 0.0, 6.0, np.nan, 2.5]))
    assert acuity.tolist()[:2] == [1, 5]
    assert acuity.isna().tolist() == [False, False, True, True, True, True]
    assert invalid == 3


def test_cumulative_encoding_roundtrip():
    enc = cumulative_encoding([1, 3, 5, np.nan])
    assert enc[:3].tolist() == [[0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]]
    assert np.isnan(enc[3]).all()
    with pytest.raises(ValueError):
        cumulative_encoding([0])


@pytest.mark.parametrize(
    ("policy", "expected"), [("masked", np.nan), ("positive", 1.0), ("negative", 0.0)]
)
def test_uncertain_label_policy(policy, expected):
    labels = pd.DataFrame({"Cardiomegaly": [1.0, 0.0, np.nan, -1.0]})
    out, counts = chexpert_findings(labels, ["Cardiomegaly"], policy)
    assert out["cardiomegaly"].tolist()[:3] == [1.0, 0.0, 0.0]  # blank = not mentioned = 0
    assert out["cardiomegaly"].iloc[3] == expected or (
        np.isnan(expected) and np.isnan(out["cardiomegaly"].iloc[3])
    )
    assert counts == {f"cardiomegaly_uncertain_{policy}": 1}


def test_bad_config_fails_early():
    with pytest.raises(DataError, match="uncertain"):
        CleaningConfig(uncertain="maybe")
    with pytest.raises(DataError, match="not below"):
        CleaningConfig(vital_ranges={"o2sat": (100.0, 50.0)})
    with pytest.raises(DataError, match="not a label column"):
        chexpert_findings(pd.DataFrame({"A": [1.0]}), ["Cardiomegaly"])
