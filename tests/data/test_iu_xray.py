"""mtl_report.data.iu_xray on the real IU X-ray sample and reports, and on broken copies of them."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mtl_report.data.cleaning import CleaningConfig
from mtl_report.data.errors import DataError
from mtl_report.data.image_table import relative_to_out
from mtl_report.data.images import verify_images
from mtl_report.data.io import load_prepared
from mtl_report.data.iu_xray import (
    detect_layout,
    load_findings_map,
    mesh_findings,
    prepare_iu_xray,
    terms_of,
)
from mtl_report.data.schema import CHEXPERT_LABELS
from mtl_report.data.splits import fractions_for_rest


def _check(log, root: Path) -> pd.DataFrame:
    """The funnel adds up and matches the records written."""
    log.check()
    ds = load_prepared(root)
    assert log.rows_out == len(ds.records)
    assert ds.records["study_id"].is_unique
    return ds.records


@pytest.fixture
def sample(shared_data, tmp_path) -> Path:
    """A writable copy of the 9-study IU sample."""
    return Path(shutil.copytree(shared_data / "iu_xray_sample", tmp_path / "iu_sample"))


@pytest.fixture(scope="module")
def reports_dir(shared_data) -> Path:
    return shared_data / "iu_xray_reports"


@pytest.fixture(scope="module")
def text_only(reports_dir, tmp_path_factory):
    """The 3,261 real reports prepared without images (r2gen_split.csv found beside)."""
    out = tmp_path_factory.mktemp("iu") / "reports"
    log = prepare_iu_xray(out, csv=reports_dir / "indiana_reports.csv", text_only=True)
    return log, load_prepared(out)


# --------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------
def test_sample_csv_layout(shared_data, tmp_path):
    csv = shared_data / "iu_xray_sample" / "train.csv"
    assert detect_layout(csv) == "csv"
    log = prepare_iu_xray(tmp_path / "out", csv=csv)
    records = _check(log, tmp_path / "out")
    raw = pd.read_csv(csv)
    assert log.rows_in == len(raw) == len(records) == 9
    assert sorted(records["study_id"]) == sorted(raw["study_id"])
    assert (records["subject_id"] == records["study_id"].str.removeprefix("iu_")).all()
    assert (verify_images(records["image_path"]) == "ok").all()
    assert set(records["split"]) <= {"train", "val", "test"}
    by_id = records.set_index("study_id")
    # iu_25: "...airspace disease;pleural effusion"; iu_3: "normal"; iu_1002: impression only.
    assert by_id.loc["iu_25", ["pleural_effusion", "lung_opacity"]].tolist() == [1.0, 1.0]
    assert by_id.loc["iu_25", "atelectasis"] == 0.0
    assert (by_id.loc["iu_3", ["atelectasis", "cardiomegaly", "lung_opacity"]] == 0).all()
    assert by_id.loc["iu_1002", "report_rule"] == "impression"
    assert by_id.loc["iu_54", "report_rule"] == "findings+impression"
    assert "There is XXXX increased opacity" in by_id.loc["iu_1000", "report"]
    assert by_id.loc["iu_1003", "chief_complaint"] == "acute bronchitis"
    assert records["acuity"].isna().all() and records["heartrate"].isna().all()
    assert (records["gender"] == "unknown").all()
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert meta["source"] == "iu_xray" and meta["synthetic"] is False
    assert meta["finding_columns"] == [
        "atelectasis",
        "cardiomegaly",
        "pleural_effusion",
        "pneumothorax",
        "lung_opacity",
    ]


def test_sample_with_images_folder_and_split_all(shared_data, tmp_path):
    sample = shared_data / "iu_xray_sample"
    log = prepare_iu_xray(
        tmp_path / "out", csv=sample / "train.csv", images=sample / "images", split_all="test"
    )
    records = _check(log, tmp_path / "out")
    assert len(records) == 9
    assert (records["split"] == "test").all()
    assert (verify_images(records["image_path"]) == "ok").all()


def test_reports_text_only(text_only, reports_dir):
    log, ds = text_only
    records = ds.records
    log.check()
    raw = pd.read_csv(reports_dir / "indiana_reports.csv", dtype=str)
    no_text = raw["findings"].isna() & raw["impression"].isna()
    assert log.rows_in == len(raw) == 3261
    assert log.dropped_total() == {"no FINDINGS or IMPRESSION text": int(no_text.sum())}
    assert len(records) == log.rows_out == int((~no_text).sum())
    assert (records["image_path"] == "").all()
    assert set(records["report_rule"]) <= {"findings+impression", "findings", "impression"}
    # R2Gen's split is honoured for every study it lists ...
    r2gen = pd.read_csv(reports_dir / "r2gen_split.csv", dtype=str).set_index("uid")["split"]
    listed = records["subject_id"].map(r2gen)
    assert listed.notna().sum() == len(r2gen)
    assert (records.loc[listed.notna(), "split"] == listed.dropna()).all()
    # ... and the rest is split so that the whole is near 70/20/10, with a real test split.
    share = records["split"].value_counts(normalize=True)
    assert share["train"] == pytest.approx(0.7, abs=0.02)
    assert share["test"] == pytest.approx(0.1, abs=0.02)
    assert set(records.loc[listed.isna(), "split"]) == {"train", "val", "test"}


def _mesh_mentions(mesh: pd.Series, pattern: str) -> pd.Series:
    """Reports with a ``;``-separated MeSH term matching ``pattern`` (lower case)."""
    terms = mesh.fillna("").str.lower().str.split(";")
    return terms.map(lambda ts: any(re.fullmatch(pattern, t.strip()) for t in ts))


def test_mesh_prevalence_matches_an_independent_count(text_only, reports_dir):
    _, ds = text_only
    raw = pd.read_csv(reports_dir / "indiana_reports.csv", dtype=str).set_index("uid")
    mesh = raw.loc[ds.records["subject_id"], "MeSH"].reset_index(drop=True)
    rec = ds.records.reset_index(drop=True)
    expected = {
        "cardiomegaly": r"cardiomegaly(/.*)?|cardiac shadow/(.*/)?enlarged(/.*)?",
        "pleural_effusion": r"(pleural effusion|hydropneumothorax|hemopneumothorax|hemothorax)"
        r"(/.*)?",
        "pneumothorax": r"(pneumothorax|hydropneumothorax|hemopneumothorax)(/.*)?",
        "atelectasis": r"pulmonary atelectasis(/.*)?",
    }
    for column, pattern in expected.items():
        assert int((rec[column] == 1).sum()) == int(_mesh_mentions(mesh, pattern).sum()), column
    # Sensible prevalence: cardiomegaly about a tenth of IU, pneumothorax rare.
    assert 0.08 < rec["cardiomegaly"].mean() < 0.13
    assert rec["pneumothorax"].mean() < 0.02
    normal = mesh.str.strip().str.lower() == "normal"
    cols = ds.finding_columns
    assert normal.sum() > 1000 and (rec.loc[normal, cols] == 0).all().all()
    not_indexed = mesh.str.strip().str.lower() == "no indexing"
    assert rec.loc[not_indexed, cols].isna().all().all()
    assert rec.loc[~not_indexed, cols].notna().all().all()


def test_kaggle_layout_with_images(shared_data, reports_dir, tmp_path):
    """Kaggle reports + projections, images from the sample (.dcm.png names → .jpg copies)."""
    csv = reports_dir / "indiana_reports.csv"
    assert detect_layout(csv) == "kaggle"
    images = shared_data / "iu_xray_sample" / "images"
    log = prepare_iu_xray(tmp_path / "out", csv=csv, images=images)
    records = _check(log, tmp_path / "out")
    assert sorted(records["study_id"]) == sorted(
        pd.read_csv(images.parent / "train.csv")["study_id"]
    )
    dropped = log.dropped_total()
    assert set(dropped) == {
        "no FINDINGS or IMPRESSION text",
        "no frontal image listed",
        "image file missing",
    }
    assert (verify_images(records["image_path"]) == "ok").all()


def test_kaggle_layout_drops_studies_without_frontal(reports_dir, tmp_path):
    reports = pd.read_csv(reports_dir / "indiana_reports.csv", dtype=str).head(40)
    proj = pd.read_csv(reports_dir / "indiana_projections.csv", dtype=str)
    proj = proj[proj["uid"].isin(reports["uid"])]
    lateral_only = proj["uid"].isin(reports["uid"].iloc[:3]) & (proj["projection"] == "Frontal")
    proj = proj[~lateral_only]
    reports.to_csv(tmp_path / "indiana_reports.csv", index=False)
    proj.to_csv(tmp_path / "indiana_projections.csv", index=False)
    no_text = reports["findings"].isna() & reports["impression"].isna()
    frontal = set(proj.loc[proj["projection"] == "Frontal", "uid"])
    expected_no_frontal = int((~no_text & ~reports["uid"].isin(frontal)).sum())
    assert expected_no_frontal >= 3
    # No image folder here: every listed frontal image is missing, so no study is left,
    # which is an error naming every drop reason and count.
    expected = rf"no studies: all 40 studies .*no frontal image listed {expected_no_frontal}\b"
    with pytest.raises(DataError, match=expected):
        prepare_iu_xray(tmp_path / "out", csv=tmp_path / "indiana_reports.csv")


def test_r2gen_annotation(shared_data, tmp_path):
    sample = pd.read_csv(shared_data / "iu_xray_sample" / "train.csv", dtype=str)
    root = tmp_path / "iu_xray"
    ann: dict[str, list] = {"train": [], "val": [], "test": []}
    splits = ["train"] * 5 + ["val"] * 2 + ["test"] * 2
    for i, (row, split) in enumerate(zip(sample.itertuples(), splits)):
        uid = row.study_id.removeprefix("iu_")
        sid = f"CXR{uid}_IM-{1000 + i}"
        (root / "images" / sid).mkdir(parents=True)
        with Image.open(shared_data / "iu_xray_sample" / row.image) as img:
            img.save(root / "images" / sid / "0.png")
        report = " ".join(t for t in (row.findings, row.impression) if isinstance(t, str))
        paths = [f"{sid}/0.png", f"{sid}/1.png"] if i != 3 else []
        ann[split].append(
            {"id": sid, "report": report if i != 4 else "  ", "image_path": paths, "split": split}
        )
    (root / "annotation.json").write_text(json.dumps(ann))

    assert detect_layout(root / "annotation.json") == "r2gen"
    log = prepare_iu_xray(tmp_path / "out", annotation=root / "annotation.json")
    records = _check(log, tmp_path / "out")
    assert log.dropped_total() == {
        "no FINDINGS or IMPRESSION text": 1,
        "no frontal image listed": 1,
    }
    assert len(records) == 7
    expected = {
        f"iu_{r.study_id.removeprefix('iu_')}": s for r, s in zip(sample.itertuples(), splits)
    }
    assert all(expected[s] == split for s, split in zip(records["study_id"], records["split"]))
    assert (records["report_rule"] == "report").all()
    assert records[["atelectasis", "cardiomegaly", "lung_opacity"]].isna().all().all()
    assert (verify_images(records["image_path"]) == "ok").all()
    # The same file through --csv (recognised by its suffix) gives the same records.
    log2 = prepare_iu_xray(tmp_path / "out2", csv=root / "annotation.json")
    assert log2.to_dict()["steps"] == log.to_dict()["steps"]


# --------------------------------------------------------------------------------------
# Broken input: counted, never a crash; or a one-line DataError naming the file
# --------------------------------------------------------------------------------------
def test_bad_images_are_counted(sample, tmp_path):
    images = sorted((sample / "images").glob("*.jpg"))
    images[0].write_bytes(b"this is not a jpeg" * 10)
    data = images[1].read_bytes()
    images[1].write_bytes(data[: len(data) // 2])
    images[2].unlink()
    log = prepare_iu_xray(tmp_path / "out", csv=sample / "train.csv")
    records = _check(log, tmp_path / "out")
    assert log.dropped_total() == {"image file corrupt or truncated": 2, "image file missing": 1}
    assert len(records) == 6


def test_text_only_ignores_images(sample, tmp_path):
    shutil.rmtree(sample / "images")
    log = prepare_iu_xray(tmp_path / "out", csv=sample / "train.csv", text_only=True)
    records = _check(log, tmp_path / "out")
    assert len(records) == 9 and (records["image_path"] == "").all()


def test_rows_without_text_or_image_and_duplicates(sample, tmp_path):
    table = pd.read_csv(sample / "train.csv", dtype=str)
    table.loc[0, ["findings", "impression"]] = np.nan
    table.loc[1, "image"] = np.nan
    table = pd.concat([table, table.iloc[[2]]])
    table.to_csv(sample / "train.csv", index=False)
    log = prepare_iu_xray(tmp_path / "out", csv=sample / "train.csv")
    records = _check(log, tmp_path / "out")
    assert log.dropped_total() == {
        "study id listed more than once": 1,
        "no FINDINGS or IMPRESSION text": 1,
        "no frontal image listed": 1,
    }
    assert len(records) == 7


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        prepare_iu_xray(tmp_path / "out", csv=tmp_path / "nope.csv")
    assert not (tmp_path / "out").exists()


def test_missing_column(sample, tmp_path):
    table = pd.read_csv(sample / "train.csv").drop(columns="findings")
    table.to_csv(sample / "train.csv", index=False)
    with pytest.raises(DataError, match=r"train\.csv: missing column\(s\) findings"):
        prepare_iu_xray(tmp_path / "out", csv=sample / "train.csv")


def test_unknown_table_and_malformed_json(tmp_path):
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"t\.csv: not an IU X-ray table"):
        prepare_iu_xray(tmp_path / "out", csv=tmp_path / "t.csv")
    (tmp_path / "annotation.json").write_text('{"train": [')
    with pytest.raises(DataError, match=r"annotation\.json: not valid JSON"):
        prepare_iu_xray(tmp_path / "out", annotation=tmp_path / "annotation.json")
    (tmp_path / "annotation.json").write_text('{"train": [{"id": "CXR1_IM-1"}]}')
    with pytest.raises(DataError, match=r"annotation\.json: a study in 'train' lacks"):
        prepare_iu_xray(tmp_path / "out", annotation=tmp_path / "annotation.json")


def test_bad_split_file(sample, tmp_path):
    (tmp_path / "split.csv").write_text("uid,split\n3,training\n")
    with pytest.raises(DataError, match=r"split\.csv: unknown split name"):
        prepare_iu_xray(
            tmp_path / "out", csv=sample / "train.csv", r2gen_split=tmp_path / "split.csv"
        )


# --------------------------------------------------------------------------------------
# The MeSH mapping
# --------------------------------------------------------------------------------------
def test_findings_map_file_is_valid_and_covers_every_label():
    rules = load_findings_map()
    assert set(rules["finding"]) == set(CHEXPERT_LABELS) - {"No Finding"}


def test_mesh_rules_match_heads_and_qualifiers():
    rules = load_findings_map()
    terms = pd.Series(
        [
            "Cardiac Shadow/enlarged/mild;Lung/hypoinflation",
            "Cardiac Shadow/borderline",
            "normal",
            "No Indexing",
            None,
            "Subcutaneous  Emphysema;Opacity/lung/base/left",
            "Hydropneumothorax/right",
            "Catheters, Indwelling/right",
        ],
        index=[10, 11, 12, 13, 14, 15, 16, 17],
    )
    labels = [
        "Cardiomegaly",
        "Atelectasis",
        "Lung Opacity",
        "Pleural Effusion",
        "Pneumothorax",
        "No Finding",
    ]
    out, counts = mesh_findings(terms, labels, rules)
    assert out.loc[10].tolist() == [1, 0, 0, 0, 0, 0]  # hypoinflation is not atelectasis
    assert out.loc[11].tolist() == [0, 0, 0, 0, 0, 1]
    assert out.loc[12].tolist() == [0, 0, 0, 0, 0, 1]
    assert out.loc[[13, 14]].isna().all().all()
    assert out.loc[15].tolist() == [0, 0, 1, 0, 0, 0]
    assert out.loc[16].tolist() == [0, 0, 0, 1, 1, 0]
    assert out.loc[17].tolist() == [0, 0, 0, 0, 0, 1]  # a device is not a pathology
    assert counts["normal_studies"] == 1 and counts["unlabelled_studies"] == 2


def test_problems_used_where_mesh_is_empty_or_normal():
    mesh = pd.Series(["Cardiomegaly/mild", "", "normal", "normal"])
    problems = pd.Series(["Cardiomegaly", "Pneumothorax", "Pleural Effusion", "normal"])
    assert terms_of(mesh, problems).tolist() == [
        "Cardiomegaly/mild",
        "Pneumothorax",
        "Pleural Effusion",
        "normal",
    ]


def test_custom_map_and_unmapped_finding(sample, tmp_path):
    custom = tmp_path / "map.tsv"
    custom.write_text("# only one rule\nmastectomy\tFracture\n")
    config = CleaningConfig(findings=("Fracture",))
    log = prepare_iu_xray(
        tmp_path / "out", csv=sample / "train.csv", config=config, findings_map=custom
    )
    records = _check(log, tmp_path / "out").set_index("study_id")
    assert records["fracture"].sum() == 1 and records.loc["iu_1002", "fracture"] == 1
    with pytest.raises(DataError, match="no rule for configured finding"):
        prepare_iu_xray(tmp_path / "out", csv=sample / "train.csv", findings_map=custom)
    custom.write_text("mastectomy\tBroken Bone\n")
    with pytest.raises(DataError, match=r"map\.tsv:1: 'Broken Bone' is not a CheXpert label"):
        prepare_iu_xray(tmp_path / "out", csv=sample / "train.csv", findings_map=custom)


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------
def test_fractions_for_rest_fill_what_each_split_lacks():
    preset = pd.Series(["train"] * 60 + ["val"] * 10)
    assert fractions_for_rest(preset, 100) == pytest.approx([10 / 30, 10 / 30, 10 / 30])
    # only train preset: the rest fills val and test
    assert fractions_for_rest(pd.Series(["train"] * 80), 100) == pytest.approx([0, 2 / 3, 1 / 3])
    # every share already met: the plain fractions
    full = pd.Series(["train"] * 7 + ["val"] * 2 + ["test"])
    assert fractions_for_rest(full, 10) == pytest.approx([0.7, 0.2, 0.1])


def test_paths_inside_the_output_are_stored_relative(tmp_path):
    paths = pd.Series([str(tmp_path / "out" / "images" / "a.png"), "/elsewhere/b.png", ""])
    rel = relative_to_out(paths, [tmp_path / "out"])
    assert rel.tolist() == ["images/a.png", "/elsewhere/b.png", ""]
