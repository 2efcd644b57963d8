"""The synthetic MIMIC-shaped generator: determinism, agreement with its own latent truth,
visible signs in the phantoms, and the prepared-dataset format it ends in."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from mtl_report.data.cohort import CohortLog
from mtl_report.data.io import load_prepared
from mtl_report.data.mimic import MimicPrepConfig, link_mimic, read_mimic_tables
from mtl_report.data.summary import SYNTHETIC_BANNER, dataset_summary
from mtl_report.data.synthetic import (
    CXR_DIR,
    RAW_DIR,
    SYNTHETIC_MARK,
    TRUTH_FILE,
    generate_raw_mimic,
    generate_tables,
    prepare_synthetic,
    render_phantom,
)

SIZES = {"n_subjects": 40, "n_studies": 140, "n_images": 230, "n_stays": 260}


def _hash_tree(root, pattern):
    digest = hashlib.sha256()
    for path in sorted(root.rglob(pattern)):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "data"
    prepare_synthetic(out, n_studies=160, seed=3)
    return out


def test_tables_are_deterministic_for_a_seed_and_differ_across_seeds():
    a = generate_tables(**SIZES, seed=7)
    b = generate_tables(**SIZES, seed=7)
    c = generate_tables(**SIZES, seed=8)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name])
    assert not a["metadata"]["study_id"].equals(c["metadata"]["study_id"])
    assert set(a) >= {"metadata", "chexpert", "edstays", "triage", "diagnosis", "reports"}


def test_raw_files_are_byte_identical_for_a_seed(tmp_path):
    first = generate_raw_mimic(tmp_path / "a", n_studies=25, seed=1)
    second = generate_raw_mimic(tmp_path / "b", n_studies=25, seed=1)
    for pattern in ("*.jpg", "*.txt", "*.csv.gz"):
        assert _hash_tree(first.cxr_root, pattern) == _hash_tree(second.cxr_root, pattern)
    assert _hash_tree(first.ed_root, "*.csv.gz") == _hash_tree(second.ed_root, "*.csv.gz")
    other = generate_raw_mimic(tmp_path / "c", n_studies=25, seed=2, with_images=False)
    assert not list(other.cxr_root.rglob("*.jpg"))
    assert _hash_tree(first.cxr_root, "*.txt") != _hash_tree(other.cxr_root, "*.txt")


def test_raw_layout_is_mimics_and_says_it_is_synthetic(tmp_path):
    roots = generate_raw_mimic(tmp_path, n_studies=20, seed=0, with_images=False)
    assert (roots.cxr_root / "mimic-cxr-2.0.0-metadata.csv.gz").is_file()
    assert (roots.cxr_root / "mimic-cxr-2.0.0-chexpert.csv.gz").is_file()
    for table in ("edstays", "triage", "diagnosis"):
        assert (roots.ed_root / "ed" / f"{table}.csv.gz").is_file()
    for root in (tmp_path, roots.cxr_root, roots.ed_root):
        assert "SYNTHETIC" in (root / "SYNTHETIC_README.txt").read_text()
    reports = list(roots.cxr_root.glob("files/p1*/p*/s*.txt"))
    assert reports, "reports live at files/p1X/pSUBJECT/sSTUDY.txt"


def test_linkage_recovers_the_stays_the_studies_were_generated_in(tmp_path):
    roots = generate_raw_mimic(tmp_path, n_studies=400, seed=5, with_images=False)
    truth = pd.read_csv(tmp_path / TRUTH_FILE)
    tables = read_mimic_tables(roots.cxr_root, roots.ed_root)
    from mtl_report.data.mimic import read_reports

    log = CohortLog("synthetic")
    linked = link_mimic(
        tables, MimicPrepConfig(balanced=None), log, lambda s: read_reports(roots.cxr_root, s)
    )
    log.check()
    merged = linked.merge(truth, on="study_id", suffixes=("", "_truth"))
    assert len(merged) == len(linked) > 100
    # Every linked study was generated inside (or next to) the stay it was linked to...
    assert set(merged["relation"]) <= {"inside", "before", "after"}
    stays = tables.edstays.assign(
        intime=pd.to_datetime(tables.edstays["intime"]),
        outtime=pd.to_datetime(tables.edstays["outtime"]),
    ).set_index("stay_id")
    linked_in = stays.loc[merged["stay_id"]].reset_index()
    # The linked stay contains the study (window 0)...
    assert (linked_in["intime"].to_numpy() <= merged["study_datetime"].to_numpy()).all()
    assert (merged["study_datetime"].to_numpy() <= linked_in["outtime"].to_numpy()).all()
    # ...and is the generating stay, unless overlapping stays both contain the study, where
    # the rule takes the visit in progress (the later intime).
    other = merged["stay_id"] != merged["stay_id_truth"]
    assert other.mean() < 0.05
    generating = stays.loc[merged.loc[other, "stay_id_truth"].astype("int64")]
    assert (generating["intime"].to_numpy() < linked_in.loc[other, "intime"].to_numpy()).all()
    assert (
        generating["outtime"].to_numpy() >= merged.loc[other, "study_datetime"].to_numpy()
    ).all()
    # ...and the studies generated far from every stay, or for subjects without one, are out.
    far = truth.loc[truth["relation"].isin(["far", "no_stay"]), "study_id"]
    assert not set(far) & set(linked["study_id"])


def test_prepared_dataset_format_and_marking(prepared):
    ds = load_prepared(prepared)
    assert ds.metadata["synthetic"] is True and ds.metadata["source"] == "synthetic"
    assert ds.metadata["generator"]["seed"] == 3
    rec = ds.records
    assert set(rec["split"]) == {"train", "val", "test"}
    # Paths are stored relative to the dataset (it can move), inside its raw/ tree.
    stored = pd.read_parquet(prepared / "records.parquet")["image_path"]
    assert stored.str.startswith(f"{RAW_DIR}/{CXR_DIR}/files/p1").all()
    assert all((prepared / p).is_file() for p in stored)
    assert (prepared / RAW_DIR / TRUTH_FILE).is_file()
    # The cohort log adds up from the metadata rows to the records written.
    log = json.loads((prepared / "cohort_log.json").read_text())
    steps = log["steps"]
    assert steps[-1]["rows_out"] == len(rec)
    for step in steps:
        assert step["rows_in"] - step["rows_out"] == sum(step["dropped"].values())
    # No subject in two splits.
    assert rec.groupby("subject_id")["split"].nunique().max() == 1
    summary = dataset_summary(prepared)
    assert summary.startswith(SYNTHETIC_BANNER) and summary.endswith(SYNTHETIC_BANNER)


def test_prepared_dataset_is_deterministic(prepared, tmp_path):
    again = tmp_path / "again"
    prepare_synthetic(again, n_studies=160, seed=3)
    a = pd.read_parquet(prepared / "records.parquet")
    b = pd.read_parquet(again / "records.parquet")
    pd.testing.assert_frame_equal(a, b)
    assert _hash_tree(prepared / RAW_DIR, "*.jpg") == _hash_tree(again / RAW_DIR, "*.jpg")


def test_labels_and_reports_agree_with_the_latent_truth(prepared):
    ds = load_prepared(prepared)
    truth = pd.read_csv(prepared / RAW_DIR / TRUTH_FILE, dtype={"study_id": str})
    merged = ds.records.merge(truth, on="study_id")
    assert len(merged) == len(ds.records)
    for name, column in zip(ds.findings, ds.finding_columns):
        certain = ~merged[f"{name} uncertain"].astype(bool) & merged[column].notna()
        assert (merged.loc[certain, column] == merged.loc[certain, name]).all(), name
    # A certain pneumothorax is named in its report without a negation in the sentence.
    ptx = merged[(merged["Pneumothorax"] == 1) & ~merged["Pneumothorax uncertain"].astype(bool)]
    for report in ptx["report"]:
        sentences = [s for s in report.lower().split(".") if "pneumothorax" in s]
        assert any("no " not in s and "without" not in s for s in sentences), report
    # Sicker studies are triaged as more urgent (acuity 1 = most urgent).
    sick = merged["severity"] > merged["severity"].median()
    assert merged.loc[sick, "acuity"].mean() < merged.loc[~sick, "acuity"].mean()


def _region_mean(image, rows, cols):
    h, w = image.shape
    return float(
        image[int(rows[0] * h) : int(rows[1] * h), int(cols[0] * w) : int(cols[1] * w)].mean()
    )


def _sign(finding, seed, side="right"):
    """Pixel difference of the same phantom patient with and without ``finding``."""
    sides = {finding: side}
    normal = render_phantom({}, np.random.default_rng(seed), 128, sides)
    sick = render_phantom({finding: 1.0}, np.random.default_rng(seed), 128, sides)
    return sick.astype(float) - normal.astype(float)


@pytest.mark.parametrize(
    ("finding", "rows", "cols"),
    [
        # Effusion: fluid density at the right base (image left), the costophrenic angle.
        ("Pleural Effusion", (0.62, 0.8), (0.1, 0.3)),
        # Cardiomegaly: a wider heart shadow left of the spine (image right of centre).
        ("Cardiomegaly", (0.5, 0.75), (0.6, 0.75)),
    ],
)
def test_phantoms_show_dense_signs_where_they_belong(finding, rows, cols):
    for seed in range(6):
        diff = _sign(finding, seed)
        assert _region_mean(diff, rows, cols) > 3, (finding, seed)


def test_pneumothorax_is_a_lucent_rim_at_the_apex_of_its_side():
    for seed in range(6):
        for side, image_half in (("right", slice(0, 64)), ("left", slice(64, 128))):
            darker = _sign("Pneumothorax", seed, side) < -8
            assert darker.sum() > 150, (seed, side)
            # Nearly all of it in the upper lung of the named side (patient right = image left).
            assert darker[:77, image_half].sum() >= 0.9 * darker.sum(), (seed, side)


def test_phantoms_are_marked_and_vary(prepared):
    a = render_phantom({}, np.random.default_rng(0), 128)
    b = render_phantom({}, np.random.default_rng(1), 128)
    assert a.dtype == np.uint8 and a.shape == (128, 128)
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 1
    assert SYNTHETIC_MARK == "SYNTHETIC"
    # The mark is a bright stamp in the top-left corner of every image.
    from PIL import Image

    path = load_prepared(prepared).records["image_path"].iloc[0]
    pixels = np.asarray(Image.open(path).convert("L"))
    corner = pixels[: pixels.shape[0] // 20, : pixels.shape[1] // 6]
    assert corner.max() > 200 and corner.min() < 60


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="n_studies"):
        generate_raw_mimic(tmp_path, n_studies=0)
