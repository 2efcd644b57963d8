"""mtl_report.data.image_table on the real pneumonia sample and on broken tables."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from mtl_report.data.errors import DataError
from mtl_report.data.image_table import (
    duplicate_images,
    prepare_image_table,
    study_ids,
    whole_subject_splits,
)
from mtl_report.data.images import verify_images
from mtl_report.data.io import load_prepared


def _prepare(csv: Path, out: Path, **kwargs):
    log = prepare_image_table(csv, None, out, **kwargs)
    log.check()
    ds = load_prepared(out)
    assert log.rows_out == len(ds.records)
    assert ds.kind == "classification"
    return log, ds


@pytest.fixture
def small(shared_data, tmp_path) -> Path:
    """A writable table of 12 pneumonia images (4 per class, whole patients) and their files."""
    src = shared_data / "pneumonia_sample"
    table = pd.read_csv(src / "labels.csv", dtype=str).drop_duplicates("image")
    table = table.groupby("label").head(4)
    root = tmp_path / "small"
    (root / "images").mkdir(parents=True)
    for image in table["image"]:
        shutil.copy(src / image, root / image)
    table.to_csv(root / "labels.csv", index=False)
    return root


def test_pneumonia_sample(shared_data, tmp_path):
    csv = shared_data / "pneumonia_sample" / "labels.csv"
    raw = pd.read_csv(csv, dtype=str)
    log, ds = _prepare(csv, tmp_path / "out", seed=0)
    rec = ds.records
    # One row per unique image; the repeated rows are counted, nothing else dropped.
    n_unique = raw["image"].nunique()
    assert log.rows_in == len(raw) and len(rec) == n_unique
    assert log.dropped_total() == {
        "duplicate row (image listed more than once)": len(raw) - n_unique
    }
    assert rec["study_id"].is_unique
    assert (rec.groupby("subject_id")["split"].nunique() == 1).all()
    assert set(rec["label"]) == {"normal", "bacterial", "viral"}
    assert ds.metadata["classes"] == ["bacterial", "normal", "viral"]
    counts = ds.metadata["class_counts"]
    assert sum(n for split in counts.values() for n in split.values()) == len(rec)
    assert counts["test"] == rec[rec["split"] == "test"]["label"].value_counts().to_dict()
    share = rec["split"].value_counts(normalize=True)
    assert share["train"] == pytest.approx(0.7, abs=0.03)
    assert share["test"] == pytest.approx(0.1, abs=0.03)
    # Stratified by label: each class has about the same share in every split.
    by_class = pd.crosstab(rec["label"], rec["split"], normalize="index")
    assert (by_class["train"] - 0.7).abs().max() < 0.06
    assert (verify_images(rec["image_path"].head(20)) == "ok").all()
    cleaning = json.loads((tmp_path / "out" / "cleaning.json").read_text())
    assert cleaning["train_class_counts"] == counts["train"]


def test_same_seed_same_split_and_source_split(shared_data, tmp_path):
    csv = shared_data / "pneumonia_sample" / "labels.csv"
    _, a = _prepare(csv, tmp_path / "a", seed=3)
    _, b = _prepare(csv, tmp_path / "b", seed=3)
    pd.testing.assert_series_equal(a.records["split"], b.records["split"])
    # The sample's val rows repeat train images: by source split, everything is train.
    log, c = _prepare(csv, tmp_path / "c", use_source_split=True)
    assert set(c.records["split"]) == {"train"}
    assert log.values["source split"] == {"images_moved_to_keep_subjects_whole": 0}


def test_bad_rows_and_images_are_counted(small, tmp_path):
    table = pd.read_csv(small / "labels.csv", dtype=str)
    images = [small / p for p in table["image"]]
    images[0].write_bytes(b"\x00garbage" * 100)
    data = images[1].read_bytes()
    images[1].write_bytes(data[: len(data) // 2])
    images[2].unlink()
    extra = pd.DataFrame(
        [
            {
                "image": table["image"].iloc[3],
                "label": table["label"].iloc[3],
                "subject_id": table["subject_id"].iloc[3],
                "source_split": "val",
            },  # repeat
            {
                "image": table["image"].iloc[4],
                "label": "viral" if table["label"].iloc[4] != "viral" else "normal",
                "subject_id": table["subject_id"].iloc[4],
            },  # conflict
            {"image": "images/new.jpg", "label": "", "subject_id": "p1"},
            {"image": "images/new2.jpg", "label": "normal", "subject_id": " "},
            {"image": "", "label": "normal", "subject_id": "p2"},
        ]
    )
    pd.concat([table, extra]).to_csv(small / "labels.csv", index=False)
    log, ds = _prepare(small / "labels.csv", tmp_path / "out")
    assert log.dropped_total() == {
        "missing image path": 1,
        "empty label": 1,
        "missing subject_id": 1,
        "image listed with conflicting labels or subject ids": 2,
        "duplicate row (image listed more than once)": 1,
        "image file corrupt or truncated": 2,
        "image file missing": 1,
    }
    assert len(ds.records) == 12 - 1 - 3


def test_verify_off_still_catches_missing_files(small, tmp_path):
    table = pd.read_csv(small / "labels.csv", dtype=str)
    (small / table["image"].iloc[0]).unlink()
    log, ds = _prepare(small / "labels.csv", tmp_path / "out", verify=False)
    assert log.dropped_total() == {"image file missing": 1}
    assert len(ds.records) == 11


def test_images_folder_argument(small, tmp_path):
    table = pd.read_csv(small / "labels.csv", dtype=str)
    table["image"] = table["image"].str.replace("images/", "", regex=False)
    table.to_csv(tmp_path / "elsewhere.csv", index=False)
    log = prepare_image_table(tmp_path / "elsewhere.csv", small / "images", tmp_path / "out")
    assert log.rows_out == 12 and log.dropped_total() == {}


def test_missing_csv_and_column(tmp_path):
    with pytest.raises(DataError, match=r"labels\.csv: file not found"):
        prepare_image_table(tmp_path / "labels.csv", None, tmp_path / "out")
    (tmp_path / "labels.csv").write_text("image,label\na.jpg,normal\n")
    with pytest.raises(DataError, match=r"labels\.csv: missing column\(s\) subject_id"):
        prepare_image_table(tmp_path / "labels.csv", None, tmp_path / "out")
    (tmp_path / "labels.csv").write_text("image,label,subject_id\na.jpg,normal,p1\n")
    with pytest.raises(DataError, match=r"missing column\(s\) source_split"):
        prepare_image_table(tmp_path / "labels.csv", None, tmp_path / "out", use_source_split=True)
    assert not (tmp_path / "out").exists()


def test_everything_dropped_is_an_error_naming_the_drops(tmp_path):
    (tmp_path / "labels.csv").write_text("image,label,subject_id\na.jpg,normal,p1\n")
    with pytest.raises(DataError, match=r"no studies: all 1 images .* \(image file missing 1\)$"):
        _prepare(tmp_path / "labels.csv", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (tmp_path / "labels.csv").write_text("image,label,subject_id\n")  # header only
    with pytest.raises(DataError, match=r"labels\.csv: no studies"):
        _prepare(tmp_path / "labels.csv", tmp_path / "out")


def test_helpers():
    table = pd.DataFrame(
        {"label": ["a", "a", "a", "b", "c"], "subject_id": ["1", "1", "2", "2", "3"]}
    )
    key = pd.Series(["x", "x", "y", "y", "z"])
    conflicting, repeated = duplicate_images(table, key)
    assert conflicting.tolist() == [False, False, True, True, False]
    assert repeated.tolist() == [False, True, False, False, False]
    paths = pd.Series(["/d/a/img.jpg", "/d/b/img.jpg", "/d/a/other.png"])
    assert study_ids(paths, Path("/d")).tolist() == ["a_img", "b_img", "other"]
    subjects = pd.Series(["s1", "s1", "s1", "s2", "s2"])
    splits = pd.Series(["train", "val", "val", "test", "train"])
    whole, moved = whole_subject_splits(subjects, splits)
    assert whole.tolist() == ["val", "val", "val", "train", "train"] and moved == 2
