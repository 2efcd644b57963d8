"""RadGen classification orchestration: data, weighting, metrics, CV splits, train,
evaluate, export, CV and baselines end to end (tiny configs), and the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from model_helpers import TINY_RADGEN

from mtl_report import classify
from mtl_report.classify import (
    ClassifierTrainConfig,
    class_weight_vector,
    classification_metrics,
    cv_splits,
    make_classify_dataset,
    parse_unfreeze,
)
from mtl_report.cli import main
from mtl_report.config import ConfigError
from mtl_report.data.errors import DataError
from mtl_report.data.io import load_prepared
from mtl_report.data.synthetic.classes import prepare_synthetic_classes
from mtl_report.models.radgen import RadGenClassifier, RadGenConfig

TINY_MODEL = dict(TINY_RADGEN, max_report_length=32)
TINY_TRAIN = dict(epochs=1, batch_size=8, unfreeze_schedule=((0, 1.0),), warmup_epochs=0.5)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("radgen") / "syn"
    prepare_synthetic_classes(out, 36, seed=1, image_size=32)
    return out


@pytest.fixture(scope="module")
def trained(synth, tmp_path_factory):
    run = tmp_path_factory.mktemp("radgen_run") / "run"
    result = classify.train_classifier(
        synth, run, RadGenConfig(**TINY_MODEL), ClassifierTrainConfig(**TINY_TRAIN), verbose=0
    )
    return result


# ----------------------------------------------------------------------------- units
def test_default_class_weights_are_radgens_ratio():
    cfg = ClassifierTrainConfig()
    labels = np.array([0] * 5 + [1] * 40 + [2] * 13)
    w = class_weight_vector(cfg, ("normal", "pneumonia", "tuberculosis"), labels)
    assert w[0] / w[1] == pytest.approx(8.0) and w[2] / w[1] == pytest.approx(3.2)
    # Other labels: inverse frequency, normalised to mean 1 over the studies.
    w = class_weight_vector(cfg, ("a", "b", "c"), labels)
    assert (w[labels]).mean() == pytest.approx(1.0)
    assert w[0] > w[2] > w[1]
    with pytest.raises(ConfigError, match="2 class weights"):
        class_weight_vector(replace(cfg, class_weights=(1.0, 2.0)), ("a", "b", "c"), labels)


def test_train_config_validation():
    assert parse_unfreeze("0:0,2:0.25,5:1") == ((0, 0.0), (2, 0.25), (5, 1.0))
    cfg = ClassifierTrainConfig(unfreeze_schedule=parse_unfreeze("0:0,2:0.25,5:1"))
    assert [cfg.unfreeze_fraction(e) for e in range(7)] == [0, 0, 0.25, 0.25, 0.25, 1, 1]
    for bad in (
        {"balance": "oversample"},
        {"class_weights": "magic"},
        {"unfreeze_schedule": ((1, 0.5),)},
    ):
        with pytest.raises(ConfigError):
            ClassifierTrainConfig(**bad)
    with pytest.raises(ConfigError, match="EPOCH:FRACTION"):
        parse_unfreeze("two")
    assert ClassifierTrainConfig.from_dict(cfg.to_dict()) == cfg


def test_default_unfreezing_depends_on_the_weights():
    """A random backbone trains whole from the start (frozen, its batch norms use their
    initial statistics and its features are nearly constant); pretrained: head first."""
    cfg = ClassifierTrainConfig()
    assert cfg.for_weights(False).unfreeze_schedule == ((0, 1.0),)
    assert cfg.for_weights(True).unfreeze_schedule == ((0, 0.0), (2, 0.25), (5, 1.0))
    assert [cfg.for_weights(False).unfreeze_fraction(e) for e in (0, 3)] == [1.0, 1.0]
    explicit = ClassifierTrainConfig(unfreeze_schedule=((0, 0.5),))
    assert explicit.for_weights(False) is explicit


def test_classification_metrics_known_values():
    labels = np.array([0, 0, 1, 1, 2, 2])
    probs = np.eye(3)[[0, 1, 1, 1, 2, 0]] * 0.8 + 0.2 / 3
    m = classification_metrics(labels, probs, ["n", "p", "t"])
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["sensitivity"] == {"n": 0.5, "p": 1.0, "t": 0.5}
    assert m["specificity"]["p"] == pytest.approx(3 / 4)
    perfect = classification_metrics(labels, np.eye(3)[labels], ["n", "p", "t"])
    assert perfect["macro_auc"] == 1.0 and perfect["macro_f1"] == 1.0
    one_class = classification_metrics(np.array([1, 1]), np.eye(3)[[1, 1]], ["n", "p", "t"])
    assert one_class["auc"]["p"] is None and one_class["macro_auc"] is None


def test_cv_splits_are_grouped_stratified_and_cover_everything(synth):
    records = load_prepared(synth).records
    splits = cv_splits(records, folds=3, seed=0)
    tested = np.zeros(len(records), int)
    for split in splits:
        assert set(split) == {"train", "val", "test"}
        per_subject = pd.DataFrame({"s": records["subject_id"], "split": split})
        assert per_subject.groupby("s")["split"].nunique().max() == 1
        tested += (split == "test").to_numpy()
        assert records.loc[split == "test", "label"].nunique() == 3
    assert (tested == 1).all()
    with pytest.raises(DataError, match="fewer studies than folds"):
        cv_splits(records, folds=12)


def test_resampling_draws_classes_at_the_target_share(synth):
    from mtl_report.text import ReportTokenizer

    ds = load_prepared(synth)
    records = pd.concat([ds.records] * 4, ignore_index=True)
    tok = ReportTokenizer(max_length=32).fit(records["report"].tolist())
    data = make_classify_dataset(
        records,
        ("normal", "pneumonia", "tuberculosis"),
        tok,
        image_size=32,
        batch_size=16,
        input_names=["text_tokens"],
        sampling=np.array([1 / 3, 1 / 3, 1 / 3]),
    )
    labels = np.concatenate([y["label"].numpy() for _, y in data])
    assert len(labels) == len(records)
    share = np.bincount(labels, minlength=3) / len(labels)
    natural = records["label"].value_counts(normalize=True)["normal"]
    assert share[0] > 2 * natural  # normals are rare in the data, a third of the batches


# ----------------------------------------------------------------------------- errors
def test_a_report_dataset_is_refused(tmp_path, synth):
    meta = json.loads((synth / "dataset.json").read_text())
    assert meta["kind"] == "classification"
    bad = load_prepared(synth)
    bad.metadata["kind"] = "report"
    with pytest.raises(DataError, match="cannot train the classifier"):
        classify.train_classifier(bad, tmp_path / "r")


def test_unknown_labels_and_missing_reports_are_clear(synth, tmp_path):
    ds = load_prepared(synth)
    with pytest.raises(DataError, match=r"unknown label\(s\) \['tuberculosis'\]"):
        classify.train_classifier(
            ds, tmp_path / "a", RadGenConfig(**TINY_MODEL, classes=("normal", "pneumonia"))
        )
    no_text = replace(ds, records=ds.records.assign(report=""))
    with pytest.raises(DataError, match=r"no report text.*--report-free"):
        classify.train_classifier(no_text, tmp_path / "b", RadGenConfig(**TINY_MODEL))
    with pytest.raises(ConfigError, match="report-free"):
        classify.train_classifier(
            ds,
            tmp_path / "c",
            RadGenConfig(**{**TINY_MODEL, "fusion": "text"}),
            ClassifierTrainConfig(report_free=True),
        )
    empty = replace(ds, records=ds.records.iloc[:0])
    with pytest.raises(DataError, match="no studies"):
        classify.train_classifier(empty, tmp_path / "d")


# ----------------------------------------------------------------------------- end to end
def test_train_writes_a_complete_run(trained):
    run = trained.run_dir
    for name in ("config.json", "model.keras", "history.json", "metrics.json", "predictions.csv"):
        assert (run / name).is_file(), name
    assert (run / "tokenizer" / "tokenizer.json").is_file()
    m = json.loads((run / "metrics.json").read_text())
    assert set(m["classification"]) >= {"macro_auc", "macro_f1", "sensitivity", "specificity"}
    assert 0.0 <= m["gate"]["mean"] <= 1.0
    assert {"bleu_4", "rouge_l", "cider"} <= set(m["text"])
    history = json.loads((run / "history.json").read_text())
    assert "val_macro_auc" in history and history["unfreezing"][0]["fraction"] == 1.0
    info = json.loads((run / "config.json").read_text())
    assert info["classes"] == ["normal", "pneumonia", "tuberculosis"]
    assert info["class_weights"][0] / info["class_weights"][1] == pytest.approx(8.0)


def test_evaluate_run_reproduces_the_training_metrics(trained, synth, tmp_path):
    m = classify.evaluate_run(trained.run_dir, synth, "test", tmp_path / "m.json")
    saved = json.loads((trained.run_dir / "metrics.json").read_text())
    assert m["classification"]["confusion_matrix"] == saved["classification"]["confusion_matrix"]
    assert json.loads((tmp_path / "m.json").read_text())["n"] == m["n"]


def test_export_serves_bytes_and_text(trained, synth, tmp_path):
    import tensorflow as tf

    out = classify.export_classifier(trained.run_dir, tmp_path / "export")
    served = tf.saved_model.load(str(out)).signatures["serving_default"]
    records = load_prepared(synth).split("test").iloc[:2]
    images = [Path(p).read_bytes() for p in records["image_path"]]
    y = served(image_bytes=tf.constant(images), report=tf.constant([records["report"].iloc[0], ""]))
    probs = y["probabilities"].numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert y["gate"].numpy()[1, 0] == 1.0  # no report: image only
    # Same probabilities as the Keras model on the same inputs (the evaluation path), and
    # as the preset's predict on the image files.
    classifier = RadGenClassifier.from_preset(trained.run_dir)
    recs = records.assign(report=[records["report"].iloc[0], ""])
    p, _, _ = classify.predict_records(
        classifier.model, classifier.tokenizer, recs, classifier.classes, classifier.config
    )
    np.testing.assert_allclose(probs, p, atol=1e-4)
    local = classifier.predict(list(records["image_path"]), list(recs["report"]))
    np.testing.assert_allclose([list(r["probabilities"].values()) for r in local], probs, atol=1e-4)
    assert [r["label"] for r in local] == [b.decode() for b in y["label"].numpy()]
    assert local[1]["gate"] == 1.0


def test_classifier_presets_refuse_the_other_kind_of_run(trained, tmp_path):
    """One run-directory reader for both kinds: each loader names what it was given."""
    from mtl_report.models.aksoy import AksoyReportGenerator
    from mtl_report.run import CLASSIFIER

    info = json.loads((trained.run_dir / "config.json").read_text())
    assert info["kind"] == CLASSIFIER and info["run_format"] == 1
    with pytest.raises(DataError, match="a classifier run, not a report run"):
        AksoyReportGenerator.from_preset(trained.run_dir)
    report_like = tmp_path / "r"
    report_like.mkdir()
    (report_like / "config.json").write_text(json.dumps({"run_format": 2, "kind": "report"}))
    with pytest.raises(DataError, match="a report run, not a classifier run"):
        RadGenClassifier.from_preset(report_like)
    with pytest.raises(DataError, match="not a run directory"):
        RadGenClassifier.from_preset(tmp_path / "missing")


def test_report_free_mode_on_real_images(shared_data, tmp_path):
    """The pneumonia sample (no reports) trains the gated model's image path."""
    from mtl_report.data.image_table import prepare_image_table

    table = pd.read_csv(shared_data / "pneumonia_sample" / "labels.csv")
    table = table.drop_duplicates("image").groupby("label").head(6)
    csv = tmp_path / "labels.csv"
    table.assign(image=[str(shared_data / "pneumonia_sample" / p) for p in table["image"]]).to_csv(
        csv, index=False
    )
    prepare_image_table(csv, None, tmp_path / "prep", fractions=(0.5, 0.25, 0.25), verify=False)
    result = classify.train_classifier(
        tmp_path / "prep",
        tmp_path / "run",
        RadGenConfig(**TINY_MODEL),
        ClassifierTrainConfig(**TINY_TRAIN, report_free=True),
        verbose=0,
    )
    assert result.metrics["classification"]["classes"] == ["bacterial", "normal", "viral"]
    assert result.metrics["gate"]["mean"] == 1.0
    assert "report" not in result.model.output  # no reports: no report loss


@pytest.mark.slow
def test_cross_validation_and_baselines(synth, tmp_path):
    cv = classify.cross_validate(
        synth,
        tmp_path / "cv",
        RadGenConfig(**TINY_MODEL),
        ClassifierTrainConfig(**TINY_TRAIN),
        folds=2,
    )
    assert len(cv["folds"]) == 2
    assert "classification.macro_auc" in cv["summary"]
    assert np.sum(cv["confusion_matrix"]) == 36
    variants = [
        v
        for v in classify.default_variants(["swin_micro"], ablations=True)
        if v.name in ("image_swin_micro", "text", "late_fusion", "sampling")
    ]
    table = classify.compare_variants(
        synth,
        tmp_path / "cmp",
        RadGenConfig(**TINY_MODEL),
        ClassifierTrainConfig(**TINY_TRAIN),
        variants=variants,
        image_backbones=["swin_micro"],
    )
    assert list(table["variant"]) == ["image_swin_micro", "text", "late_fusion", "sampling"]
    assert table["macro_auc"].notna().all()
    assert (tmp_path / "cmp" / "comparison.md").is_file()


# ----------------------------------------------------------------------------- CLI
def test_cli_errors_are_one_line(synth, tmp_path, capsys):
    rc = main(["classify", "train", "--data", str(synth), "--out", str(tmp_path / "r"),
               "--backbone", "vgg"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "unknown backbone 'vgg'" in err[0]
    rc = main(["classify", "evaluate", "--data", str(synth)])
    assert rc == 2 and "--run" in capsys.readouterr().err
    rc = main(["classify", "baselines", "--data", str(synth), "--out", str(tmp_path / "b"),
               "--variants", "full,magic"])  # fmt: skip
    assert rc == 2 and "unknown variant" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_prepare_and_train(tmp_path, capsys):
    data = tmp_path / "syn"
    assert main(["prepare", "synthetic-classes", "--out", str(data), "--studies", "30",
                 "--image-size", "32", "--quiet"]) == 0  # fmt: skip
    rc = main(["classify", "train", "--data", str(data), "--out", str(tmp_path / "run"),
               "--backbone", "swin_micro", "--image-size", "32", "--epochs", "1",
               "--hidden-dim", "16", "--num-heads", "2", "--intermediate-dim", "32",
               "--mlp-units", "32,16", "--unfreeze", "0:1", "--quiet"])  # fmt: skip
    assert rc == 0
    assert "macro_auc" in capsys.readouterr().out
    assert (tmp_path / "run" / "model.keras").is_file()


def test_cv_resume_summarises_finished_folds_without_training(synth, tmp_path):
    """Fold runs that already hold metrics.json are reused; the summary is mean ± std."""
    out = tmp_path / "cv"
    for k, auc in enumerate([0.6, 0.8]):
        run = out / f"fold_{k}"
        run.mkdir(parents=True)
        m = classification_metrics(np.array([0, 1, 2]), np.eye(3)[[0, 1, 2]], ["n", "p", "t"])
        m["macro_auc"] = auc
        (run / "metrics.json").write_text(json.dumps({"classification": m, "n": 3}))
        (run / "history.json").write_text(json.dumps({"loss": [1.0, 0.5]}))
    with pytest.raises(DataError, match="not empty"):
        classify.cross_validate(synth, out, folds=2)
    cv = classify.cross_validate(synth, out, folds=2, resume=True)
    s = cv["summary"]["classification.macro_auc"]
    assert s["mean"] == pytest.approx(0.7) and s["std"] == pytest.approx(0.1414, abs=1e-3)
    assert cv["summary"]["epochs_run"]["mean"] == 2
    assert np.trace(cv["confusion_matrix"]) == 6
    assert (out / "cv_summary.csv").is_file()
