"""Training runs end to end on the real IU X-ray sample: run directory, evaluation,
generation, a killed run resumed, and MirroredStrategy on two logical CPU devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtl_report.config import ModelConfig
from mtl_report.run import Run

SMALL = dict(image_size=64, hidden_dim=24, num_heads=3, intermediate_dim=32, max_report_length=24)
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def iu_dataset(shared_data, tmp_path_factory):
    from preprocessing.iu_xray import prepare_iu_xray

    out = tmp_path_factory.mktemp("iu") / "data"
    prepare_iu_xray(out, csv=shared_data / "iu_xray_sample" / "train.csv", seed=0)
    return out


@pytest.fixture(scope="module")
def trained_run(iu_dataset, tmp_path_factory):
    from mtl_report.training import train

    run = tmp_path_factory.mktemp("runs") / "mtl_tp"
    result = train(
        iu_dataset,
        run,
        "mtl_tp",
        model_config=ModelConfig(**SMALL),
        epochs=3,
        batch_size=4,
        learning_rate=1e-3,
        verbose=0,
    )
    return run, result


def test_run_directory_holds_everything_to_evaluate_elsewhere(trained_run):
    run, result = trained_run
    for name in (
        "config.json",
        "vocabularies.json",
        "cleaning.json",
        "backbone.weights.h5",
        "model.keras",
        "history.json",
        "history.csv",
        "tokenizer/tokenizer.json",
    ):
        assert (run / name).is_file(), name
    assert not (run / "backup").exists()
    info = json.loads((run / "config.json").read_text())
    assert info["preset"] == "mtl_tp" and info["seeds"]["train"] == 0
    history = json.loads((run / "history.json").read_text())
    assert len(history["loss"]) == result.epochs_run == 3
    assert {"text_loss", "acuity_loss", "findings_loss", "val_loss"} <= set(history)
    assert history["text_loss"][-1] < history["text_loss"][0]
    # Findings cut-offs were chosen on the validation split and are used by evaluation.
    thresholds = json.loads((run / "thresholds.json").read_text())
    assert thresholds["split"] == "val" and thresholds["n"] == 2
    assert list(thresholds["findings"]) == list(Run.read(run).model_config.findings)
    assert all(0.05 <= t <= 0.95 for t in thresholds["findings"].values())
    assert Run.read(run).findings_thresholds() == list(thresholds["findings"].values())


def test_evaluate_writes_the_metrics_contract(trained_run, iu_dataset, tmp_path):
    from mtl_report.evaluate import evaluate

    run, _ = trained_run
    metrics = evaluate(run, iu_dataset, split="val", out=tmp_path / "metrics.json", progress=False)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["n"] == metrics["n"] == 2
    for key in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider"):
        assert 0.0 <= on_disk["text"][key] <= 10.0
    assert {"precision", "recall", "f1_micro", "f1_macro", "hamming_loss", "exact_match"} <= set(
        on_disk["findings"]
    )
    preds = pd.read_csv(tmp_path / "predictions.csv")
    assert len(preds) == 2 and {"study_id", "reference", "generated"} <= set(preds.columns)


def test_generate_from_an_image_file(trained_run, shared_data):
    from mtl_report.predict import ReportPredictor

    run, _ = trained_run
    image = next((shared_data / "iu_xray_sample" / "images").glob("*.jpg"))
    predictor = ReportPredictor.from_run(run)
    out = predictor.predict(
        [str(image)], [{"heartrate": 120, "o2sat": 88, "chief_complaint": "SOB", "gender": "F"}]
    )[0]
    assert isinstance(out["report"], str)
    assert 1 <= out["acuity_level"] <= 5
    assert sum(out["acuity_probs"]) == pytest.approx(1.0, abs=1e-5)
    assert set(out["findings"]) == set(ModelConfig().findings)
    again = predictor.predict([str(image)], [{"heartrate": 120, "o2sat": 88}])[0]
    assert again["report"] == out["report"] or again["findings"] != out["findings"]


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import keras
    from mtl_report.config import ModelConfig
    from mtl_report.training import train

    class KillMidEpoch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 2 and batch == 0:
                os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, like a lost machine
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    train(sys.argv[1], sys.argv[2], "stl_findings", model_config=ModelConfig(**{small}),
          epochs=5, batch_size=2, patience=100, verbose=0, extra_callbacks=[KillMidEpoch()])
    """
)


def test_killed_run_resumes_and_loses_at_most_one_epoch(iu_dataset, tmp_path):
    from mtl_report.cli import main

    run = tmp_path / "run"
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT.format(small=SMALL))
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, str(script), str(iu_dataset), str(run)], env=env)
    assert proc.returncode == -9  # killed in epoch 3 (index 2)
    assert (run / "backup").is_dir()
    epochs_before = pd.read_csv(run / "history.csv")["epoch"].tolist()
    assert epochs_before == [0, 1]

    # Without --resume the interrupted run is not silently overwritten.
    assert (
        main(["train", "--data", str(iu_dataset), "--out", str(run), "--preset", "stl_findings"])
        == 2
    )
    code = main(
        [
            "train",
            "--data",
            str(iu_dataset),
            "--out",
            str(run),
            "--preset",
            "stl_findings",
            "--resume",
            "--quiet",
        ]
    )
    assert code == 0
    epochs = pd.read_csv(run / "history.csv")["epoch"].tolist()
    assert epochs == [0, 1, 2, 3, 4]  # epoch 2 redone once, nothing else repeated
    info = json.loads((run / "config.json").read_text())
    assert info["model"]["hidden_dim"] == SMALL["hidden_dim"]  # the saved config was reused
    assert (run / "model.keras").is_file() and not (run / "backup").exists()


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from mtl_report.config import ModelConfig
    from mtl_report.training import strategy_for, train
    devices = ["/cpu:0", "/cpu:1"]
    assert strategy_for(devices).num_replicas_in_sync == 2
    result = train(sys.argv[1], sys.argv[2], "mtl_eq", model_config=ModelConfig(**{small}),
                   epochs=2, batch_size=4, verbose=0, devices=devices)
    print("LOSS", result.history["loss"][-1])
    """
)


def test_mirrored_strategy_on_two_logical_cpus(iu_dataset, tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT.format(small=SMALL))
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, str(script), str(iu_dataset), str(tmp_path / "run")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    loss = float(proc.stdout.split("LOSS")[-1])
    assert np.isfinite(loss)


@pytest.mark.slow
def test_text_only_reports_train_a_report_language_model(shared_data, tmp_path):
    """IU X-ray reports without images: the decoder learns the real report language from
    the indication alone; such a run refuses to read images."""
    from mtl_report.evaluate import evaluate
    from mtl_report.predict import ReportPredictor
    from mtl_report.training import train
    from preprocessing.errors import DataError
    from preprocessing.iu_xray import prepare_iu_xray

    data = tmp_path / "iu_text"
    prepare_iu_xray(
        data, csv=shared_data / "iu_xray_reports" / "indiana_reports.csv", text_only=True
    )
    run = tmp_path / "lm"
    result = train(
        data,
        run,
        "stl_text",
        model_config=ModelConfig(**SMALL),
        epochs=2,
        batch_size=64,
        learning_rate=3e-3,
        verbose=0,
    )
    losses = result.history["loss"]
    assert losses[-1] < losses[0]
    assert Run.read(run).info["text_only"] is True
    metrics = evaluate(run, data, split="test", progress=False)
    assert metrics["n"] == 324 and metrics["text"]["bleu_1"] > 0.1
    with pytest.raises(DataError, match="text-only"):
        ReportPredictor(Run.read(run))
