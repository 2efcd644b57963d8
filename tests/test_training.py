"""Training runs end to end on the real IU X-ray sample: run directory, evaluation,
generation, a killed run resumed, and MirroredStrategy on two logical CPU devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from mtl_report.config import ModelConfig
from mtl_report.run import Run

SMALL = dict(image_size=64, hidden_dim=24, num_heads=3, intermediate_dim=32, max_report_length=24)
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def iu_dataset(shared_data, tmp_path_factory):
    from mtl_report.data.iu_xray import prepare_iu_xray

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
    assert info["setup"] == "mtl_tp" and info["seeds"]["train"] == 0
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
    from mtl_report.models.aksoy import AksoyReportGenerator

    run, _ = trained_run
    image = next((shared_data / "iu_xray_sample" / "images").glob("*.jpg"))
    generator = AksoyReportGenerator.from_preset(run)
    out = generator.generate(
        [str(image)], [{"heartrate": 120, "o2sat": 88, "chief_complaint": "SOB", "gender": "F"}]
    )[0]
    assert isinstance(out["report"], str)
    assert 1 <= out["acuity_level"] <= 5
    assert sum(out["acuity_probs"]) == pytest.approx(1.0, abs=1e-5)
    assert set(out["findings"]) == set(ModelConfig().findings)
    # Present/absent with the cut-offs chosen on the validation split (thresholds.json).
    cuts = dict(zip(generator.findings, Run.read(run).findings_thresholds()))
    assert generator.findings_thresholds == list(cuts.values())
    assert out["findings_present"] == {k: p >= cuts[k] for k, p in out["findings"].items()}
    again = generator.generate([str(image)], [{"heartrate": 120, "o2sat": 88}])[0]
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


def test_killed_run_resumes_and_loses_at_most_one_epoch(iu_dataset, tmp_path, capsys):
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
    # A resume asking for other settings is refused, naming each; the run stays resumable.
    resume = ["train", "--data", str(iu_dataset), "--out", str(run), "--resume", "--quiet"]
    capsys.readouterr()
    assert main([*resume, "--epochs", "7", "--batch-size", "2"]) == 2
    err = capsys.readouterr().err
    assert "--epochs 7 differs from the run's 5" in err and "batch-size" not in err
    assert (run / "backup").is_dir()
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
    # history.json and the summary line cover the whole run, not only the resumed epochs.
    history = json.loads((run / "history.json").read_text())
    assert len(history["loss"]) == len(history["val_loss"]) == 5
    assert history["loss"][:2] == pd.read_csv(run / "history.csv")["loss"].tolist()[:2]
    out = capsys.readouterr().out
    assert "trained stl_findings for 5 epoch(s) (resumed at epoch 2)" in out
    # Now finished: a second resume trains nothing and leaves the model alone.
    before = (run / "model.keras").read_bytes()
    assert main(resume) == 2
    assert "already finished; nothing to resume" in capsys.readouterr().err
    assert (run / "model.keras").read_bytes() == before


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from mtl_report.config import ModelConfig
    from mtl_report.training import train
    from mtl_report.workflows.fit import strategy_for
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
    from mtl_report.data.errors import DataError
    from mtl_report.data.iu_xray import prepare_iu_xray
    from mtl_report.evaluate import evaluate
    from mtl_report.models.aksoy import AksoyReportGenerator
    from mtl_report.training import train

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
        AksoyReportGenerator(Run.read(run))


# --------------------------------------------------------------------------------------
# train --resume: finished runs and other settings are refused (before any data or TF work)
# --------------------------------------------------------------------------------------
def _resume_argv(data, run, *extra):
    return ["train", "--data", str(data), "--out", str(run), "--resume", "--quiet", *extra]


def _fingerprint(path: Path) -> tuple[int, bytes]:
    return path.stat().st_mtime_ns, path.read_bytes()


def test_resume_of_a_finished_run_is_refused(trained_run, iu_dataset, capsys):
    from mtl_report.cli import main

    run, _ = trained_run
    model = _fingerprint(run / "model.keras")
    history = _fingerprint(run / "history.csv")
    assert main(_resume_argv(iu_dataset, run)) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"mtl-report: error: {run}: already finished; nothing to resume"
    assert _fingerprint(run / "model.keras") == model
    assert _fingerprint(run / "history.csv") == history


def test_run_finished_marker_and_runs_from_before_it(tmp_path):
    from mtl_report.run import run_finished

    run = tmp_path / "run"
    (run / "backup").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    assert not run_finished(run)  # killed in the first epoch: nothing to lose
    (run / "model.keras").write_bytes(b"checkpoint")
    assert not run_finished(run)  # a checkpoint while the backup exists: interrupted
    (run / "history.json").write_text("{}")
    assert run_finished(run)  # written last by train(): finished even if killed after it
    (run / "history.json").unlink()
    (run / "backup").rmdir()
    assert run_finished(run)  # an older run: model.keras and no backup/ once done


def test_resume_with_other_settings_is_refused_naming_them(
    trained_run, iu_dataset, tmp_path, capsys
):
    import shutil

    from mtl_report.cli import main

    run = tmp_path / "interrupted"
    shutil.copytree(trained_run[0], run, ignore=shutil.ignore_patterns("logs"))
    (run / "history.json").unlink()  # as if killed before the end: resumable
    (run / "backup").mkdir()
    model = _fingerprint(run / "model.keras")
    argv = _resume_argv(iu_dataset, run, "--preset", "stl_text", "--epochs", "5")
    assert main([*argv, "--hidden-dim", "24", "--image-size", "224", "--seed", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("mtl-report: error:")
    assert "--preset stl_text differs from the run's mtl_tp" in err
    assert "--epochs 5 differs from the run's 3" in err
    assert "--image-size 224 differs from the run's 64" in err
    assert "hidden-dim" not in err and "seed" not in err  # equal to the saved ones
    assert _fingerprint(run / "model.keras") == model
    # Another dataset under the half-trained weights is refused too (here: the run says it
    # was started on one more train study than --data has).
    info = json.loads((run / "config.json").read_text())
    info["data"]["n_train"] += 1
    (run / "config.json").write_text(json.dumps(info))
    assert main(_resume_argv(iu_dataset, run)) == 2
    err = capsys.readouterr().err
    assert "is not the dataset the run was started on" in err and "n_train" in err
    assert _fingerprint(run / "model.keras") == model


def test_history_csv_keeps_the_last_row_of_an_epoch_logged_twice(tmp_path):
    from mtl_report.training import read_history

    path = tmp_path / "history.csv"
    path.write_text("epoch,loss,val_loss\n0,3.0,3.5\n1,2.0,2.5\n2,1.9,2.4\n2,1.5,2.0\n3,1.0,1.8\n")
    history = read_history(path)
    assert history == {"loss": [3.0, 2.0, 1.5, 1.0], "val_loss": [3.5, 2.5, 2.0, 1.8]}
    assert pd.read_csv(path)["epoch"].tolist() == [0, 1, 2, 3]
    assert read_history(tmp_path / "missing.csv") is None


# --------------------------------------------------------------------------------------
# generate: every argument checked before the model load; implausible vitals named
# --------------------------------------------------------------------------------------
@pytest.fixture
def no_model_load(monkeypatch):
    """Run.load_model fails loudly: a test using it proves its error came before."""
    from mtl_report.data.errors import DataError
    from mtl_report.run import Run

    calls = []

    def refuse(self):
        calls.append(self.root)
        raise DataError("model load reached")

    monkeypatch.setattr(Run, "load_model", refuse)
    return calls


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--vitals", "pulse=80"], "unknown vital 'pulse'; use one of o2sat, heartrate, resprate"),
        (["--vitals", "hr=fast"], "--vitals heartrate: 'fast' is not a number"),
        (["--vitals", "hr=nan"], "--vitals heartrate: 'nan' is not a finite number"),
        (["--vitals", "hr=80", "heartrate=90"], "--vitals heartrate given twice"),
        (["--vitals", "hr"], "--vitals expects name=value"),
        (["--complaint", "x" * 1001], "--complaint: 1001 characters, at most 1000"),
        (["--beam", "0"], "--beam must be at least 1"),
        (["--explain", "empty.png/maps.png"], "empty.png is a file, not a folder"),
        (["IMAGE=missing.png"], "missing.png: image file not found"),
        (["IMAGE=empty.png"], "empty.png: empty file, not an image"),
    ],
    ids=[
        "unknown-vital",
        "not-a-number",
        "nan",
        "twice",
        "no-equals",
        "long-text",
        "beam",
        "explain-folder",
        "missing-image",
        "empty-image",
    ],
)
def test_generate_checks_its_arguments_before_loading_the_model(
    extra, message, trained_run, shared_data, no_model_load, tmp_path, monkeypatch, capsys
):
    from mtl_report.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.png").write_bytes(b"")
    image = str(next((shared_data / "iu_xray_sample" / "images").glob("*.jpg")))
    if extra[0].startswith("IMAGE="):
        image, extra = extra[0].split("=", 1)[1], []
    assert main(["generate", "--run", str(trained_run[0]), image, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("mtl-report: error:"), err
    assert message in err
    assert no_model_load == []


def test_generate_names_the_implausible_vitals_it_ignores(
    trained_run, shared_data, no_model_load, capsys
):
    from mtl_report.cli import main

    image = next((shared_data / "iu_xray_sample" / "images").glob("*.jpg"))
    vitals = ["hr=900", "o2sat=95", "temp=37", "sbp=80", "dbp=120", "resprate=-1"]
    argv = ["generate", "--run", str(trained_run[0]), str(image), "--vitals", *vitals]
    assert main(argv) == 2  # stopped by the fixture at the model load, after the warning
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "mtl-report: ignored implausible vitals: heartrate=900 (plausible 20-300), "
        "resprate=-1 (plausible 3-80), sbp=80 and dbp=120 (diastolic not below systolic)",
        "mtl-report: error: model load reached",
    ]
    assert len(no_model_load) == 1


def test_frozen_backbone_is_loaded_once_per_weights_file(tmp_path):
    """compare asks for the same frozen backbone per set-up and split: one build per
    process; a changed weights file (another initialisation) is loaded anew."""
    import keras

    from mtl_report.training import load_backbone

    cfg = ModelConfig(**SMALL)
    first = load_backbone(cfg, tmp_path)
    assert load_backbone(cfg, tmp_path) is first
    (saved,) = tmp_path.glob("*-random.weights.h5")
    other = load_backbone(cfg, tmp_path / "elsewhere")  # another random initialisation
    assert other is not first
    other.save_weights(saved)  # the file now holds other weights
    reloaded = load_backbone(cfg, tmp_path)
    assert reloaded is not first
    for a, b in zip(reloaded.weights, other.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_deterministic_training_repeats_exactly_and_is_scoped_to_the_run(iu_dataset, tmp_path):
    """--deterministic: two runs with the same seed and data give the same history and
    weights; op determinism is on while a run trains and off again afterwards."""
    from tensorflow.python.framework import config as tf_config

    from mtl_report.training import train
    from mtl_report.workflows.fit import op_determinism

    assert not tf_config.is_op_determinism_enabled()
    with op_determinism(True):
        assert tf_config.is_op_determinism_enabled()
    assert not tf_config.is_op_determinism_enabled()

    results = [
        train(
            iu_dataset,
            tmp_path / name,
            "mtl_tp",
            model_config=ModelConfig(**SMALL),
            epochs=2,
            batch_size=4,
            learning_rate=1e-3,
            verbose=0,
            deterministic=True,
        )
        for name in ("a", "b")
    ]
    assert not tf_config.is_op_determinism_enabled()
    info = json.loads((tmp_path / "a" / "config.json").read_text())
    assert info["train"]["deterministic"] is True
    assert results[0].history == results[1].history
    for a, b in zip(results[0].model.weights, results[1].model.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_mixed_precision_run_computes_in_float16_and_leaves_the_process_in_float32(
    iu_dataset, tmp_path
):
    """--mixed-precision: the run's layers compute in float16 with float32 weights and
    outputs, and the global policy is float32 again afterwards (it once stayed mixed, so
    every later model of a notebook silently computed in float16)."""
    from mtl_report.training import train

    before = keras.mixed_precision.global_policy().name
    result = train(
        iu_dataset,
        tmp_path / "mixed",
        "mtl_tp",
        model_config=ModelConfig(**SMALL),
        epochs=1,
        batch_size=4,
        verbose=0,
        mixed_precision=True,
    )
    assert keras.mixed_precision.global_policy().name == before
    assert result.model.backbone.visual_encoder.compute_dtype == "float16"
    assert all(w.dtype == "float32" for w in result.model.weights)
    assert np.isfinite(result.history["loss"]).all()
