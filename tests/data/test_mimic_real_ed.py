"""``prepare mimic`` on the real MIMIC-IV-ED Demo 2.2 tables.

The ED side is the real demo release (222 stays of 64 patients: upper-case abbreviated
complaints, ``UNKNOWN-CC``, free-text pain, empty triage rows, a temperature typed in °C).
The CXR side cannot be real (MIMIC-CXR is credentialed), so the test writes a small
MIMIC-CXR-JPG tree in the real layout: one study inside every real stay (real subject_id,
a StudyDate/StudyTime one minute after the real intime) with a real chest X-ray of the
pneumonia sample, plus studies made to hit every drop reason of the preparation once or
twice. Everything is read through the same ``prepare_mimic`` a MIMIC user runs.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mtl_report.data.cleaning import load_abbreviations, prepared_abbreviations
from mtl_report.data.io import load_prepared
from mtl_report.data.mimic import MimicPrepConfig, image_path, prepare_mimic, report_path
from mtl_report.data.schema import CHEXPERT_LABELS, VITALS
from mtl_report.data.synthetic.files import _write_csv_gz

STUDY0 = 50_000_000
UNKNOWN_SUBJECT = 19_999_999  # not a demo patient

REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___ with {complaint}

 FINDINGS:
 Study {n}: the cardiomediastinal silhouette is normal.  No pleural effusion or
 pneumothorax.

 IMPRESSION:
 No acute cardiopulmonary process.
"""
NO_SECTIONS = "FINAL REPORT\n portable chest, comparison none, see prior.\n"

#: Each drop reason of the MIMIC preparation, with how many studies the tree gives it.
EXPECTED_DROPS = {
    "unparseable StudyDate": 1,
    "missing or invalid StudyTime": 2,
    "no frontal (PA/AP) image": 1,
    "subject has no ED stay": 1,
    "no ED stay within the time window": 2,
    "report file missing": 1,
    "no FINDINGS or IMPRESSION section": 1,
    "same subject and report as an earlier study": 1,
    "image file missing": 1,
    "image file corrupt or truncated": 2,
    "image too large": 1,
    "image too small": 1,
}


@pytest.fixture(scope="module")
def demo(shared_data):
    root = shared_data / "mimic_iv_ed_demo"
    if not (root / "ed" / "edstays.csv.gz").is_file():
        pytest.skip(f"MIMIC-IV-ED demo not found under {root}")
    ed = root / "ed"
    stays = pd.read_csv(ed / "edstays.csv.gz", parse_dates=["intime", "outtime"])
    triage = pd.read_csv(ed / "triage.csv.gz", dtype={"chiefcomplaint": str, "pain": str})
    return root, stays.sort_values("stay_id").reset_index(drop=True), triage


def _date_time(when: pd.Timestamp) -> tuple[int, float]:
    """MIMIC-CXR's StudyDate (YYYYMMDD) and StudyTime (HHMMSS.fff)."""
    return int(when.strftime("%Y%m%d")), float(when.strftime("%H%M%S"))


def _too_large_jpeg(data: bytes, side: int = 10_000) -> bytes:
    """A real JPEG whose frame header declares ``side``×``side`` pixels (a bomb header)."""
    for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2"):
        at = data.find(marker)
        if at >= 0:
            dims = side.to_bytes(2, "big") * 2  # height, width
            return data[: at + 5] + dims + data[at + 9 :]
    raise AssertionError("no SOF marker in the sample JPEG")


@pytest.fixture(scope="module")
def tree(demo, shared_data, tmp_path_factory):
    """The CXR tree: one good study per real stay, then the studies that must be dropped."""
    ed_root, stays, _ = demo
    cxr = tmp_path_factory.mktemp("real_ed") / "mimic-cxr-jpg"
    samples = sorted((shared_data / "pneumonia_sample" / "images").glob("*.jpg"))[:6]
    jpegs = [p.read_bytes() for p in samples]
    rows, reports, images = [], {}, {}

    def study(subject, when, view="PA", *, report="default", image="default", date=None, time=None):
        study_id = STUDY0 + len(rows)
        d, t = _date_time(when)
        rows.append((f"dcm{study_id}", subject, study_id, view, date or d, time or t))
        reports[(subject, study_id)] = (
            REPORT.format(complaint="SOB", n=study_id) if report == "default" else report
        )
        images[(subject, study_id, f"dcm{study_id}")] = (
            jpegs[study_id % len(jpegs)] if image == "default" else image
        )
        return study_id

    minute = pd.Timedelta(minutes=1)
    good = {
        study(s, intime + minute): stay
        for s, intime, stay in zip(stays.subject_id, stays.intime, stays.stay_id)
    }
    first = stays.iloc[0]
    subject, t0 = int(first.subject_id), first.intime
    earliest = stays.loc[stays.subject_id == subject, "intime"].min()
    study(subject, t0 + minute, date=21251399)  # unparseable StudyDate
    study(subject, t0 + minute, time=math.nan)  # missing StudyTime
    study(subject, t0 + minute, time=250000.0)  # an hour of 25: invalid StudyTime
    study(subject, t0 + 2 * minute, view="LATERAL")  # no frontal image
    study(UNKNOWN_SUBJECT, t0 + minute)  # subject has no ED stay
    study(subject, earliest - pd.Timedelta(days=2))  # outside every stay of the subject
    study(subject, earliest - pd.Timedelta(days=3))
    study(subject, t0 + 3 * minute, report=None)  # report file missing
    study(subject, t0 + 4 * minute, report=NO_SECTIONS)
    # The same words as the stay's first study, later: copied forward, dropped.
    study(subject, t0 + 5 * minute, report=reports[(subject, STUDY0)])
    study(subject, t0 + 6 * minute, image=None)  # image file missing
    study(subject, t0 + 7 * minute, image=jpegs[0][: len(jpegs[0]) // 2])  # truncated
    study(subject, t0 + 8 * minute, image=b"not a jpeg at all")
    study(subject, t0 + 9 * minute, image=_too_large_jpeg(jpegs[0]))
    small = Image.fromarray(np.full((16, 16), 90, np.uint8))
    study(subject, t0 + 10 * minute, image=small)

    meta = pd.DataFrame(
        rows,
        columns=["dicom_id", "subject_id", "study_id", "ViewPosition", "StudyDate", "StudyTime"],
    )
    # A metadata row without a dicom_id: counted and left out before any study is made.
    meta = pd.concat([meta, meta.iloc[[0]].assign(dicom_id=None, study_id=STUDY0 + 9999)])
    _write_csv_gz(meta, cxr / "mimic-cxr-2.0.0-metadata.csv.gz")
    chex = meta[["subject_id", "study_id"]].drop_duplicates().copy()
    for label in CHEXPERT_LABELS:
        chex[label] = np.nan
    chex["Cardiomegaly"] = np.where(chex["study_id"] % 3 == 0, 1.0, 0.0)
    chex["Lung Opacity"] = np.where(chex["study_id"] % 5 == 0, 1.0, np.nan)
    chex["Pleural Effusion"] = np.where(chex["study_id"] % 7 == 0, -1.0, 0.0)
    _write_csv_gz(chex, cxr / "mimic-cxr-2.0.0-chexpert.csv.gz")
    for (subject, study_id), text in reports.items():
        if text is not None:
            path = report_path(cxr, subject, study_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for (subject, study_id, dicom), content in images.items():
        path = image_path(cxr, subject, study_id, dicom)
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Image.Image):
            content.save(path, format="JPEG")
        elif content is not None:
            path.write_bytes(content)
    return cxr, ed_root, good


@pytest.fixture(scope="module")
def prepared(tree, tmp_path_factory):
    cxr, ed_root, good = tree
    out = tmp_path_factory.mktemp("prepared") / "ds"
    log = prepare_mimic(cxr, ed_root, out, MimicPrepConfig(balanced=None))
    return log, load_prepared(out), good


def test_every_drop_reason_is_counted_exactly(prepared, demo):
    log, ds, good = prepared
    _, stays, _ = demo
    log.check()
    assert log.dropped_total() == EXPECTED_DROPS
    assert log.rows_in == len(stays) + sum(EXPECTED_DROPS.values())
    assert len(ds.records) == log.rows_out == len(stays) == 222
    # One study per real stay survives: the one placed in it.
    assert sorted(ds.records["study_id"].astype(int)) == sorted(good)
    assert log.values["metadata rows left out"] == {"missing_ids": 1}
    after_linkage = ["report file missing", "no FINDINGS or IMPRESSION section"]
    after_linkage += ["same subject and report as an earlier study", "image file missing"]
    after_linkage += ["image file corrupt or truncated", "image too large", "image too small"]
    linked = 222 + sum(EXPECTED_DROPS[r] for r in after_linkage)
    assert log.values["linkage"] == {"inside_stay": linked, "within_window_only": 0}


def test_real_temperature_in_celsius_is_converted(prepared, demo):
    log, ds, good = prepared
    _, _, triage = demo
    celsius = triage[triage["temperature"].between(30, 45)]
    assert len(celsius) == 1 and celsius["temperature"].iloc[0] == 36.5  # the real one
    stay_of = pd.Series(good)
    records = ds.records.assign(stay_id=stay_of.loc[ds.records["study_id"].astype(int)].values)
    row = records.set_index("stay_id").loc[celsius["stay_id"].iloc[0]]
    assert row["temperature"] == pytest.approx(36.5 * 9 / 5 + 32)  # 97.7 °F
    counts = log.values["vitals set to missing or converted"]
    assert counts["temperature_celsius_converted"] == 1
    # Every stored temperature is a plausible °F value or missing.
    temps = ds.records["temperature"].dropna()
    assert temps.between(86, 113).all()
    # Empty real triage rows give all-missing vitals, not zeros.
    empty = triage.set_index("stay_id")[list(VITALS)].isna().all(axis=1)
    assert empty.sum() >= 20
    blank = records.set_index("stay_id").loc[empty[empty].index, list(VITALS)]
    assert blank.isna().all().all()


def _unexpanded(text: str, keys: list[str]) -> list[str]:
    """Table entries whose tokens still stand, in order, as whole words of ``text``.

    An entry ending in ``/`` (``w/``) is left out: its bare token (ICD's ``W LOC``) is not
    the abbreviation, and with the slash it is always expanded.
    """
    padded = f" {text} "
    keys = [k for k in keys if not k.endswith("/")]
    return [k for k in keys if f" {' '.join(k.replace('/', ' ').split())} " in padded]


def test_all_222_real_complaints_are_normalised(prepared, demo):
    _, ds, good = prepared
    _, _, triage = demo
    stay_of = pd.Series(good)
    records = ds.records.assign(stay_id=stay_of.loc[ds.records["study_id"].astype(int)].values)
    complaint = records.set_index("stay_id")["chief_complaint"]
    raw = triage.set_index("stay_id")["chiefcomplaint"]
    assert complaint.index.sort_values().equals(raw.index.sort_values())
    keys = [k for k, _ in prepared_abbreviations(load_abbreviations())]
    left = {raw[s]: _unexpanded(complaint[s], keys) for s in raw.index}
    assert {r: k for r, k in left.items() if k} == {}
    for title in ds.records["icd_title"]:
        assert _unexpanded(title, keys) == [], title
    by_raw = dict(zip(raw.loc[complaint.index], complaint))
    assert by_raw["LETHARGY/SOB"] == "lethargy shortness of breath"
    assert by_raw["SOB/ABNL LABS"] == "shortness of breath abnormal labs"
    assert by_raw["MVC/INTUBATED TRAUMA"] == "motor vehicle collision intubated trauma"
    assert by_raw["S/P ARREST"] == "status post arrest"
    assert by_raw["Abd pain, n/v/d"] == "abdominal pain nausea vomiting diarrhea"
    assert by_raw["LARYNGITIS/SOB WITH TALKING"] == "laryngitis shortness of breath with talking"
    # The placeholder is a missing complaint, not the words "unknown cc".
    assert by_raw["UNKNOWN-CC"] == ""
    assert (complaint == "").sum() == (raw == "UNKNOWN-CC").sum() >= 1
    assert all(t == t.lower() and "/" not in t and "  " not in t for t in complaint)
