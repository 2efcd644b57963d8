"""Linkage edge cases of mtl_report.data.mimic, on hand-made tables and a tiny file tree."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mtl_report.data.errors import DataError
from mtl_report.data.io import load_prepared
from mtl_report.data.mimic import (
    MimicPrepConfig,
    image_path,
    link_stays,
    prepare_mimic,
    read_mimic_tables,
    report_path,
    select_frontal,
    study_datetime,
)
from mtl_report.data.schema import CHEXPERT_LABELS

T = pd.Timestamp


def _stays(rows):
    return pd.DataFrame(rows, columns=["subject_id", "stay_id", "intime", "outtime"]).assign(
        intime=lambda d: pd.to_datetime(d["intime"]), outtime=lambda d: pd.to_datetime(d["outtime"])
    )


def _studies(rows):
    return pd.DataFrame(rows, columns=["study_id", "subject_id", "study_datetime"]).assign(
        study_datetime=lambda d: pd.to_datetime(d["study_datetime"])
    )


STAYS = _stays(
    [
        (1, 101, "2180-01-01 10:00", "2180-01-01 16:00"),
        # subject 2: two overlapping stays
        (2, 201, "2180-02-01 08:00", "2180-02-01 20:00"),
        (2, 202, "2180-02-01 12:00", "2180-02-01 18:00"),
        (3, 301, "2180-03-01 10:00", "2180-03-01 12:00"),
    ]
)


def test_study_inside_stay_links():
    links = link_stays(_studies([(11, 1, "2180-01-01 12:00")]), STAYS)
    assert links.to_dict("records") == [{"study_id": 11, "stay_id": 101, "inside": True}]


@pytest.mark.parametrize("when", ["2180-01-01 09:59", "2180-01-01 16:01"])
def test_study_before_intime_or_after_outtime_does_not_link(when):
    assert link_stays(_studies([(11, 1, when)]), STAYS).empty


def test_window_extends_the_stay_and_marks_it():
    links = link_stays(_studies([(11, 1, "2180-01-01 08:30")]), STAYS, window_hours=2)
    assert links["stay_id"].tolist() == [101]
    assert not links["inside"].iloc[0]
    assert link_stays(_studies([(11, 1, "2180-01-01 07:30")]), STAYS, window_hours=2).empty


def test_study_inside_two_stays_takes_the_nearest_intime():
    # 13:00 is inside both stays; stay 202 began at 12:00, closer than 201's 08:00.
    links = link_stays(_studies([(21, 2, "2180-02-01 13:00")]), STAYS)
    assert links["stay_id"].tolist() == [202]
    # 10:00 is only inside stay 201.
    links = link_stays(_studies([(22, 2, "2180-02-01 10:00")]), STAYS)
    assert links["stay_id"].tolist() == [201]


def test_inside_a_stay_beats_the_window_of_another():
    stays = _stays(
        [
            (5, 501, "2180-05-01 10:00", "2180-05-01 11:00"),
            (5, 502, "2180-05-01 11:30", "2180-05-01 20:00"),
        ]
    )
    # 11:40 is inside 502 and within the 1 h window after 501 ended.
    links = link_stays(_studies([(51, 5, "2180-05-01 11:40")]), stays, window_hours=1)
    assert links["stay_id"].tolist() == [502]


def test_subject_without_stays_does_not_link():
    assert link_stays(_studies([(41, 4, "2180-01-01 12:00")]), STAYS).empty


def test_other_subjects_stays_never_link():
    assert link_stays(_studies([(31, 1, "2180-03-01 11:00")]), STAYS).empty


def test_study_datetime_parses_unpadded_times_and_flags_missing():
    when, bad_date, bad_time = study_datetime(
        pd.Series([21800101, 21800101, 21800101, 99999999]),
        pd.Series([93014.5, np.nan, 250000.0, 120000.0]),
    )
    assert when.iloc[0] == T("2180-01-01 09:30:14.5")
    assert bad_time.tolist() == [False, True, True, False]
    assert bad_date.tolist() == [False, False, False, True]
    assert when.iloc[1:].isna().all()


def test_select_frontal_prefers_pa_then_lowest_dicom():
    meta = pd.DataFrame(
        {
            "study_id": [1, 1, 1, 2, 2, 3],
            "dicom_id": ["c", "b", "a", "z", "y", "x"],
            "ViewPosition": ["LATERAL", "PA", "AP", "AP", "AP", "LL"],
        }
    )
    chosen = select_frontal(meta).set_index("study_id")["dicom_id"].to_dict()
    assert chosen == {1: "b", 2: "y"}  # study 3 has no frontal image


# --------------------------------------------------------------------------------------
# A tiny file tree in the real layout
# --------------------------------------------------------------------------------------
def _write_gz(df: pd.DataFrame, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as fh:
        df.to_csv(fh, index=False)


REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___ with SOB

 FINDINGS:
 The heart is mildly enlarged.  No pleural
 effusion or pneumothorax.

 IMPRESSION:
 Mild cardiomegaly.
"""


def make_tree(tmp_path, *, corrupt_image=False):
    cxr, ed = tmp_path / "cxr", tmp_path / "ed"
    rows = [
        # dicom, subject, study, view, date, time
        ("d1", 10000001, 50000001, "PA", 21800101, 120000.0),  # inside stay -> kept
        ("d2", 10000001, 50000001, "LATERAL", 21800101, 120000.0),
        ("d3", 10000002, 50000002, "AP", 21800101, 90000.0),  # before intime -> dropped
        ("d4", 10000003, 50000003, "PA", 21800101, np.nan),  # missing StudyTime
        ("d5", 10000004, 50000004, "LATERAL", 21800101, 120000.0),  # no frontal
        ("d6", 10000005, 50000005, "PA", 21800101, 120000.0),  # subject without stay
        ("d7", 10000001, 50000007, "PA", 21800101, 130000.0),  # no report file
        ("d8", 10000006, 50000008, "PA", 21800101, 120000.0),  # report without sections
    ]
    meta = pd.DataFrame(
        rows,
        columns=["dicom_id", "subject_id", "study_id", "ViewPosition", "StudyDate", "StudyTime"],
    )
    _write_gz(meta, cxr / "mimic-cxr-2.0.0-metadata.csv.gz")
    chex = pd.DataFrame(
        {"subject_id": meta.subject_id, "study_id": meta.study_id}
    ).drop_duplicates()
    for label in CHEXPERT_LABELS:
        chex[label] = np.nan
    chex["Cardiomegaly"] = 1.0
    chex["Pleural Effusion"] = -1.0
    _write_gz(chex, cxr / "mimic-cxr-2.0.0-chexpert.csv.gz")
    stays = pd.DataFrame(
        {
            "subject_id": [10000001, 10000002, 10000003, 10000004, 10000006],
            "hadm_id": np.nan,
            "stay_id": [30000001, 30000002, 30000003, 30000004, 30000006],
            "intime": ["2180-01-01 10:00:00"] * 5,
            "outtime": ["2180-01-01 16:00:00"] * 5,
            "gender": ["F", "M", "F", "M", "X"],
            "race": ["WHITE", "ASIAN - CHINESE", "UNKNOWN", "OTHER", "BLACK/AFRICAN AMERICAN"],
            "arrival_transport": "WALK IN",
            "disposition": "HOME",
        }
    )
    _write_gz(stays, ed / "ed" / "edstays.csv.gz")
    triage = pd.DataFrame(
        {
            "subject_id": stays.subject_id,
            "stay_id": stays.stay_id,
            "temperature": [98.6, 37.0, 99.0, 980.0, 98.0],
            "heartrate": [80, 400, 90, 70, 60],
            "resprate": [16, 18, 20, 22, 14],
            "o2sat": [97, 95, 150, 99, 98],
            "sbp": [120, 130, 110, 100, 90],
            "dbp": [80, 85, 70, 60, 95],
            "pain": ["0", "UTA", "5", "3", "2"],
            "acuity": [2.0, 3.0, np.nan, 1.0, 4.0],
            "chiefcomplaint": ["SOB, CP..", "s/p Fall", "", "Dyspnea", "N/V"],
        }
    )
    _write_gz(triage, ed / "ed" / "triage.csv.gz")
    diag = pd.DataFrame(
        {
            "subject_id": [10000001, 10000001],
            "stay_id": [30000001, 30000001],
            "seq_num": [2, 1],
            "icd_code": ["R079", "I5190"],
            "icd_version": [10, 10],
            "icd_title": ["Chest pain, unspecified", "Heart failure, unspecified"],
        }
    )
    _write_gz(diag, ed / "ed" / "diagnosis.csv.gz")
    for r in rows:
        dicom, subject, study = r[0], r[1], r[2]
        p = image_path(cxr, subject, study, dicom)
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((64, 64), 128, np.uint8)).save(p)
        if study == 50000007:
            continue
        text = REPORT if study != 50000008 else "FINAL REPORT\n no sections here at all\n"
        report_path(cxr, subject, study).write_text(text)
    if corrupt_image:
        image_path(cxr, 10000001, 50000001, "d1").write_bytes(b"not a jpeg")
    return cxr, ed


def test_prepare_tiny_tree_counts_every_drop(tmp_path):
    cxr, ed = make_tree(tmp_path)
    log = prepare_mimic(cxr, ed, tmp_path / "out", MimicPrepConfig(balanced=None))
    log.check()
    dropped = log.dropped_total()
    assert dropped == {
        "missing or invalid StudyTime": 1,
        "no frontal (PA/AP) image": 1,
        "subject has no ED stay": 1,
        "no ED stay within the time window": 1,
        "report file missing": 1,
        "no FINDINGS or IMPRESSION section": 1,
    }
    ds = load_prepared(tmp_path / "out")
    assert len(ds.records) == log.rows_out == 1
    row = ds.records.iloc[0]
    assert row["study_id"] == "50000001"
    assert row["image_path"].endswith("d1.jpg")
    assert (
        row["findings_text"] == "The heart is mildly enlarged. No pleural effusion or pneumothorax."
    )
    assert row["impression_text"] == "Mild cardiomegaly."
    assert row["report_rule"] == "findings+impression"
    assert row["chief_complaint"] == "shortness of breath chest pain"
    assert row["icd_title"] == "heart failure unspecified"  # seq_num 1 is primary
    assert row["acuity"] == 2
    assert row["cardiomegaly"] == 1.0
    assert np.isnan(row["pleural_effusion"])  # uncertain -> masked by default
    assert row["ethnicity"] == "white"
    on_disk = json.loads((tmp_path / "out" / "cohort_log.json").read_text())
    assert on_disk["rows_out"] == 1


def test_window_hours_recovers_the_early_study(tmp_path):
    cxr, ed = make_tree(tmp_path)
    log = prepare_mimic(cxr, ed, tmp_path / "out", MimicPrepConfig(balanced=None, window_hours=1.5))
    assert "no ED stay within the time window" not in log.dropped_total()
    ds = load_prepared(tmp_path / "out")
    row = ds.records.set_index("study_id").loc["50000002"]
    assert row["heartrate"] != row["heartrate"]  # 400 bpm is implausible -> missing
    assert row["temperature"] == pytest.approx(98.6)  # 37.0 °C converted to °F
    assert log.values["vitals set to missing or converted"]["temperature_celsius_converted"] == 1


def test_corrupt_image_is_dropped_and_counted(tmp_path):
    cxr, ed = make_tree(tmp_path, corrupt_image=True)
    # The only linkable study has the corrupt image: no study is left, which is an error.
    with pytest.raises(DataError, match=r"no studies: .*image file corrupt or truncated 1,"):
        prepare_mimic(cxr, ed, tmp_path / "out", MimicPrepConfig(balanced=None))


def test_missing_table_and_column_give_one_line_errors(tmp_path):
    cxr, ed = make_tree(tmp_path)
    (ed / "ed" / "triage.csv.gz").unlink()
    with pytest.raises(DataError, match="triage"):
        read_mimic_tables(cxr, ed)
    cxr, ed = make_tree(tmp_path / "b")
    meta = pd.read_csv(cxr / "mimic-cxr-2.0.0-metadata.csv.gz").drop(columns=["StudyTime"])
    _write_gz(meta, cxr / "mimic-cxr-2.0.0-metadata.csv.gz")
    with pytest.raises(DataError, match=r"metadata\.csv\.gz: missing column\(s\) StudyTime"):
        read_mimic_tables(cxr, ed)


def test_failed_run_leaves_no_output(tmp_path, monkeypatch):
    cxr, ed = make_tree(tmp_path)
    import mtl_report.data.mimic as mimic

    def boom(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(mimic, "write_prepared", boom)
    with pytest.raises(RuntimeError):
        prepare_mimic(cxr, ed, tmp_path / "out", MimicPrepConfig(balanced=None))
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
