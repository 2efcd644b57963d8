"""The classifier's scikit-learn baselines (pixels PCA + logistic regression, source-only)
and the clinical measures beside them (sensitivity at 95% specificity, per-source recall),
on a small slice of the real Normal / Pneumonia / TB table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mtl_report import classify
from mtl_report.cli import main
from mtl_report.data.errors import DataError
from mtl_report.data.image_table import prepare_image_table
from mtl_report.data.io import load_prepared
from mtl_report.linear_baselines import linear_baseline, pixel_features
from mtl_report.metrics.classification import by_source, sensitivity_at_specificity


# ----------------------------------------------------------------------------- measures
def test_sensitivity_at_specificity_reads_the_roc():
    positive = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], bool)
    scores = np.array([0.9, 0.8, 0.3, 0.1] + [0.05] * 15 + [0.85])
    # 95% specificity allows 0 of 16 negatives above the threshold: only 0.9 clears 0.85.
    assert sensitivity_at_specificity(positive, scores, 0.95) == pytest.approx(0.25)
    # 90% allows one false positive (the 0.85): every positive is above the other 15.
    assert sensitivity_at_specificity(positive, scores, 0.90) == pytest.approx(1.0)
    # All scores tied: the only threshold with 95% specificity takes nothing.
    assert sensitivity_at_specificity(positive, np.full(20, 0.5), 0.95) == 0.0
    assert sensitivity_at_specificity(positive, positive.astype(float), 0.95) == 1.0
    assert sensitivity_at_specificity(np.ones(3, bool), np.ones(3)) is None
    m = classify.classification_metrics(
        positive.astype(int), np.stack([1 - scores, scores], 1), ["no", "yes"]
    )
    assert m["sensitivity_at_95_specificity"]["yes"] == pytest.approx(0.25)


def test_by_source_separates_the_normals_of_each_source():
    classes = ["normal", "pneumonia", "tuberculosis"]
    labels = np.array([0, 0, 1, 0, 0, 2])
    pred = np.array([1, 0, 1, 2, 2, 2])  # pediatric normals half right, adult normals all wrong
    out = by_source(
        labels, np.eye(3)[pred], classes, ["kid", "kid", "kid", "adult", "adult", "adult"]
    )
    assert out["kid"]["recall"] == {"normal": 0.5, "pneumonia": 1.0}
    assert out["adult"]["recall"] == {"normal": 0.0, "tuberculosis": 1.0}
    assert out["adult"]["class_counts"] == {"normal": 2, "tuberculosis": 1}
    assert out["kid"]["n"] == 3 and out["adult"]["accuracy"] == pytest.approx(1 / 3)


# ----------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def npt(shared_data, tmp_path_factory):
    """20 images per (label, source) pair of the real three-class table, prepared."""
    folder = shared_data / "normal_pneumonia_tb"
    table = pd.read_csv(folder / "labels.csv")
    table = table.groupby(["label", "source"], group_keys=False).head(20)
    tmp = tmp_path_factory.mktemp("npt")
    csv = tmp / "labels.csv"
    table.assign(image=[str(folder / p) for p in table["image"]]).to_csv(csv, index=False)
    prepare_image_table(csv, None, tmp / "prep", fractions=(0.6, 0.2, 0.2), verify=False)
    return tmp / "prep"


def test_prepare_keeps_the_source_column(npt):
    records = load_prepared(npt).records
    assert set(records["source"]) == {"kermany_pediatric", "shenzhen", "montgomery"}


def test_pixel_and_source_baselines_on_real_images(npt):
    ds = load_prepared(npt)
    classes = ("normal", "pneumonia", "tuberculosis")
    paths = ds.records["image_path"].tolist()
    x = pixel_features(paths)
    assert x.shape == (len(paths), 64 * 64) and x.min() >= 0.0 and x.max() <= 1.0
    features = dict(zip(paths, x))
    test = ds.records[ds.records["split"] == "test"]
    labels = test["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()

    probs, chosen = linear_baseline("pixels", ds.records, classes, features)
    assert probs.shape == (len(test), 3)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
    assert classify.classification_metrics(labels, probs, classes)["macro_auc"] > 0.7

    probs, chosen = linear_baseline("source", ds.records, classes, features)
    # Source is easy to see (child vs adult, different scanners) ...
    assert chosen["source_accuracy"] > 0.8
    # ... and carries no pneumonia for adult sources, no TB for the pediatric one.
    shares = chosen["class_share_by_source"]
    assert shares["shenzhen"]["pneumonia"] == 0 and shares["kermany_pediatric"]["tuberculosis"] == 0
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)

    with pytest.raises(DataError, match="'source' column"):
        linear_baseline("source", ds.records.drop(columns="source"), classes, features)
    with pytest.raises(ValueError, match="kind"):
        linear_baseline("knn", ds.records, classes, features)


def test_cli_baselines_writes_the_linear_rows(npt, tmp_path, capsys):
    out = tmp_path / "cmp"
    rc = main(
        ["classify", "baselines", "--data", str(npt), "--out", str(out),
         "--variants", "pixels_pca_lr,source_only", "--folds", "0", "--quiet"]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    table = pd.read_csv(out / "comparison.csv")
    assert list(table["variant"]) == ["pixels_pca_lr", "source_only"]
    assert table["macro_auc"].notna().all()
    assert "sens@95spec_tuberculosis" in table
    metrics = json.loads((out / "source_only" / "run" / "metrics.json").read_text())
    assert set(metrics["by_source"]) == {"kermany_pediatric", "shenzhen", "montgomery"}
    predictions = pd.read_csv(out / "pixels_pca_lr" / "run" / "predictions.csv")
    assert len(predictions) == metrics["n"] and "source" in predictions


def test_source_only_is_skipped_without_sources(shared_data, tmp_path):
    table = pd.read_csv(shared_data / "pneumonia_sample" / "labels.csv")
    table = table.drop_duplicates("image").groupby("label").head(8)
    csv = tmp_path / "labels.csv"
    folder = shared_data / "pneumonia_sample"
    table.assign(image=[str(folder / p) for p in table["image"]]).to_csv(csv, index=False)
    prepare_image_table(csv, None, tmp_path / "prep", fractions=(0.5, 0.25, 0.25), verify=False)
    variants = [v for v in classify.default_variants([]) if v.kind != "network"]
    table = classify.compare_variants(tmp_path / "prep", tmp_path / "cmp", variants=variants)
    row = table.set_index("variant").loc["source_only"]
    assert "no 'source' column" in row["note"]
    assert float(table.set_index("variant").loc["pixels_pca_lr", "macro_auc"]) > 0
