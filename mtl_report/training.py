"""Training: one function from a prepared dataset to a run directory, used by the CLI and
notebooks alike (``mtl_report.train(...)``).

Keras callbacks do the bookkeeping: EarlyStopping (validation loss, restoring the best
weights), ModelCheckpoint (best model), BackupAndRestore (a run killed mid-epoch resumes
with ``resume=True`` and loses at most that epoch), TensorBoard, CSVLogger, TerminateOnNaN.
With more than one GPU visible (or explicit ``devices``) the model is built and trained under
``tf.distribute.MirroredStrategy``.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mtl_report.config import ModelConfig, TrainConfig
from mtl_report.presets import get_preset
from mtl_report.run import (
    BACKBONE_FILE,
    CLEANING_FILE,
    CONFIG_FILE,
    MODEL_FILE,
    THRESHOLDS_FILE,
    TOKENIZER_DIR,
    VOCAB_FILE,
    Run,
    feature_vocabularies,
    write_run_config,
)
from mtl_report.schedules import LinearWarmup
from preprocessing.errors import DataError
from preprocessing.io import PreparedDataset, load_prepared

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    history: dict
    model: keras.Model
    epochs_run: int


def strategy_for(devices: Sequence[str] | None = None) -> tf.distribute.Strategy:
    """MirroredStrategy over ``devices`` or over all GPUs when there are several; else the
    default (single-device) strategy."""
    if devices:
        return tf.distribute.MirroredStrategy(list(devices))
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def set_seeds(seed: int) -> None:
    """Python, NumPy and TensorFlow seeds (``keras.utils.set_random_seed``)."""
    keras.utils.set_random_seed(seed)


def load_backbone(model_config: ModelConfig, store: Path) -> keras.Model:
    """The backbone of a config; a random initialisation is created once and kept in
    ``store`` so that every run (any seed) sharing a feature cache sees the same backbone."""
    from mtl_report.models.backbones import build_backbone

    weights = model_config.backbone_weights
    backbone = build_backbone(model_config.backbone, model_config.image_size, weights)
    if weights is None:
        store.mkdir(parents=True, exist_ok=True)
        path = store / f"{model_config.backbone}-{model_config.image_size}px-random.weights.h5"
        if path.is_file():
            backbone.load_weights(path)
        else:
            backbone.save_weights(path)
    return backbone


class BlankFeatures:
    """Image features of a text-only dataset (IU X-ray reports without images): zeros.

    Why: on the text side alone the model is a report language model conditioned on the
    non-imaging data (an IU study's indication is its "chief complaint"), which is how the
    real report language is learnt and measured when no images are at hand. The image
    branch then sees one constant input and carries no information; the run records
    ``text_only`` so that ``generate`` and ``export`` refuse it.
    """

    def __init__(self, backbone: keras.Model, image_size: int):
        self.backbone = backbone
        self.image_size = int(image_size)
        self._shape: tuple[int, int] | None = None

    @property
    def feature_shape(self) -> tuple[int, int]:
        if self._shape is None:
            from mtl_report.feature_cache import _as_sequence

            blank = np.zeros((1, self.image_size, self.image_size, 3), "float32")
            out = _as_sequence(self.backbone(blank, training=False))
            self._shape = (int(out.shape[1]), int(out.shape[2]))
        return self._shape

    def ensure(self, image_paths, progress: bool = False) -> int:
        return 0

    def lookup(self, image_paths, dtype="float32") -> np.ndarray:
        return np.zeros((len(list(image_paths)), *self.feature_shape), dtype=dtype)


def prepare_features(
    ds: PreparedDataset,
    model_config: ModelConfig,
    cache_dir: Path | None,
    progress: bool = True,
):
    """The feature cache for a frozen backbone, filled for every image of the dataset
    (``None`` when the backbone is fine-tuned end to end)."""
    from mtl_report.feature_cache import FeatureCache

    if ds.metadata.get("text_only"):
        if model_config.fine_tune_backbone:
            raise DataError(f"{ds.root}: a text-only dataset has no images to fine-tune on")
        root = Path(cache_dir) if cache_dir else ds.root / ".feature_cache"
        return BlankFeatures(load_backbone(model_config, root), model_config.image_size)
    if model_config.fine_tune_backbone:
        return None
    root = Path(cache_dir) if cache_dir else ds.root / ".feature_cache"
    backbone = load_backbone(model_config, root)
    cache = FeatureCache(root, backbone, model_config.backbone, model_config.image_size)
    paths = [p for p in ds.records["image_path"] if isinstance(p, str) and p]
    if len(paths) != len(ds.records):
        raise DataError(f"{ds.root}: studies without an image cannot train an image model")
    cache.ensure(paths, progress=progress)
    return cache


def _callbacks(run_dir: Path, train_config: TrainConfig, resume: bool, has_val: bool):
    monitor = "val_loss" if has_val else "loss"
    return [
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.BackupAndRestore(str(run_dir / "backup"), delete_checkpoint=True),
        keras.callbacks.EarlyStopping(
            monitor=monitor,
            patience=train_config.patience,
            restore_best_weights=True,
            verbose=0,
        ),
        keras.callbacks.ModelCheckpoint(
            str(run_dir / MODEL_FILE), monitor=monitor, save_best_only=True, verbose=0
        ),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=resume),
        keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False),
    ]


def train(
    data: str | Path | PreparedDataset,
    out: str | Path,
    preset: str = "mtl_tp",
    *,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    resume: bool = False,
    cache_dir: str | Path | None = None,
    devices: Sequence[str] | None = None,
    verbose: int | str = "auto",
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
    **overrides,
) -> TrainResult:
    """Train a preset on a prepared dataset and write a run directory.

    Args:
        data: prepared dataset directory (or a loaded one).
        out: run directory (created; with ``resume`` an interrupted run in it continues).
        preset: training set-up (``mtl_report.presets``).
        model_config, train_config: base configs; the preset sets tasks and weights.
        overrides: train-config fields (``epochs=3``, ``batch_size=8``, ``alpha=...``).

    Returns:
        The run directory, history, trained model (best weights) and epochs run.
    """
    run_dir = Path(out)
    if resume and (run_dir / CONFIG_FILE).is_file():
        # A resumed run continues with the configuration it was started with; flags given
        # again are ignored, so a typo cannot change the architecture of a half-trained model.
        saved = Run.read(run_dir)
        preset, model_config, train_config = (
            saved.info.get("preset", preset),
            saved.model_config,
            saved.train_config,
        )
        overrides = {}
    # Configuration problems surface before any data is read or any training starts.
    model_config, train_config = get_preset(preset, model_config, train_config, **overrides)
    ds = data if isinstance(data, PreparedDataset) else load_prepared(Path(data))
    if ds.kind != "report":
        raise DataError(f"{ds.root}: a {ds.kind} dataset cannot train the multi-task model")
    model_config = replace(model_config, findings=tuple(ds.findings))
    if not resume and run_dir.exists() and any(run_dir.iterdir()):
        if (run_dir / "backup").exists():
            raise DataError(f"{run_dir}: holds an interrupted run; pass --resume to continue it")
        raise DataError(f"{run_dir}: not empty (choose another --out)")
    run_dir.mkdir(parents=True, exist_ok=True)
    set_seeds(train_config.seed)
    if train_config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")

    from mtl_report.inputs import make_dataset
    from mtl_report.text import ReportTokenizer

    train_rec = ds.split("train")
    if train_rec.empty:
        raise DataError(f"{ds.root}: no studies in the train split")
    tokenizer = ReportTokenizer(max_length=model_config.max_report_length).fit(
        train_rec["report"].tolist()
    )
    tokenizer.save(run_dir / TOKENIZER_DIR)
    vocabularies = feature_vocabularies(train_rec, ds.cleaning, model_config.text_feature_vocab)
    vocabularies["report_vocab_size"] = tokenizer.vocab_size
    (run_dir / VOCAB_FILE).write_text(json.dumps(vocabularies, indent=2) + "\n")

    features = prepare_features(ds, model_config, cache_dir, progress=verbose != 0)
    (run_dir / CLEANING_FILE).write_text(json.dumps(ds.cleaning, indent=2) + "\n")
    if features is not None:
        # The run carries its backbone, so generate/export never depend on the cache.
        features.backbone.save_weights(run_dir / BACKBONE_FILE)
    common = dict(
        tokenizer=tokenizer,
        batch_size=train_config.batch_size,
        image_size=model_config.image_size,
        features=features,
        seed=train_config.seed,
    )
    train_data = make_dataset(ds, "train", shuffle=True, augment=train_config.augment, **common)
    has_val = not ds.split("val").empty
    val_data = make_dataset(ds, "val", shuffle=False, **common) if has_val else None

    steps_per_epoch = math.ceil(len(train_rec) / train_config.batch_size)
    total_steps = steps_per_epoch * train_config.epochs
    strategy = strategy_for(devices)
    with strategy.scope():
        from mtl_report.models.aksoy import GUIDE_INPUT, build_aksoy_model

        feature_shape = features.feature_shape if features is not None else None
        model = build_aksoy_model(model_config, vocabularies, train_config, feature_shape)
        schedule = LinearWarmup(
            train_config.learning_rate, int(train_config.warmup_fraction * total_steps)
        )
        optimizer = (
            keras.optimizers.AdamW(schedule, weight_decay=train_config.weight_decay)
            if train_config.weight_decay
            else keras.optimizers.Adam(schedule)
        )
        model.compile(optimizer=optimizer, jit_compile=train_config.jit_compile)

    inputs_wanted = set(model.input)
    outputs_wanted = set(model.output)

    def select(x, y):
        if GUIDE_INPUT in inputs_wanted:  # teacher forcing: the decoder is told the labels
            x = {**x, GUIDE_INPUT: y["findings"]}
        return {k: v for k, v in x.items() if k in inputs_wanted}, {
            k: v for k, v in y.items() if k in outputs_wanted
        }

    train_data = train_data.map(select)
    val_data = val_data.map(select) if val_data is not None else None
    write_run_config(
        run_dir,
        model_config,
        train_config,
        preset=preset,
        data={
            "root": str(ds.root),
            "source": ds.metadata.get("source"),
            "synthetic": ds.metadata.get("synthetic", False),
            "n_train": len(train_rec),
        },
        seeds={"train": train_config.seed, "data": ds.metadata.get("seed")},
        feature_shape=feature_shape,
        text_only=bool(ds.metadata.get("text_only", False)),
        tokenizer_stats=tokenizer.stats,
    )
    history = model.fit(
        train_data,
        validation_data=val_data,
        epochs=train_config.epochs,
        callbacks=[*_callbacks(run_dir, train_config, resume, has_val), *extra_callbacks],
        verbose=verbose,
        shuffle=False,
    )
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    if model.uncertainty_weighting:
        hist["learned_task_weights"] = model.learned_task_weights()
    if val_data is not None and "findings" in model.output:
        thresholds = tune_findings_thresholds(model, val_data, model_config.findings)
        (run_dir / THRESHOLDS_FILE).write_text(json.dumps(thresholds, indent=2) + "\n")
        if model_config.findings_guidance:
            # At inference the decoder is told the head's findings at these cut-offs.
            cut = [thresholds["findings"][f] for f in model_config.findings]
            model.get_layer("findings_tokens").set_thresholds(cut)
    # EarlyStopping restored the best weights; save the final model (with the guidance
    # cut-offs) explicitly so the run directory holds it even when no epoch improved on a
    # checkpoint.
    model.save(run_dir / MODEL_FILE)
    (run_dir / "history.json").write_text(json.dumps(hist, indent=2) + "\n")
    shutil.rmtree(run_dir / "backup", ignore_errors=True)
    epochs_run = len(hist.get("loss", []))
    return TrainResult(run_dir=run_dir, history=hist, model=model, epochs_run=epochs_run)


def tune_findings_thresholds(model: keras.Model, val_data, findings) -> dict:
    """F1-optimal cut-off per finding on the validation split (see
    :func:`mtl_report.metrics.clinical.best_f1_thresholds`), with the validation AUCs."""
    from mtl_report.metrics.clinical import best_f1_thresholds

    probs, truth = [], []
    for x, y in val_data:
        probs.append(np.asarray(model(x, training=False)["findings"], dtype="float64"))
        truth.append(np.asarray(y["findings"], dtype="float64"))
    y_prob, y_true = np.concatenate(probs), np.concatenate(truth)
    cut = best_f1_thresholds(y_true, y_prob)
    return {
        "split": "val",
        "rule": "max F1 over 0.05..0.95, ties to 0.5",
        "findings": {name: float(c) for name, c in zip(findings, cut)},
        "n": len(y_true),
    }


def numpy_batches(dataset: tf.data.Dataset):
    """Iterate a dataset as NumPy (helper for evaluation loops)."""
    for x, y in dataset:
        yield {k: v.numpy() for k, v in x.items()}, {k: np.asarray(v) for k, v in y.items()}
