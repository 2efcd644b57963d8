"""RadGen three-class classification: train, evaluate, cross-validate, baselines, ablations,
export. Used by ``mtl-report classify ...`` and notebooks alike.

Data: a prepared ``"classification"`` dataset (``mtl-report prepare images`` for a CSV of
``image, label, subject_id[, report]``; ``mtl-report prepare synthetic-classes`` for the
synthetic three-class set). Labels are the dataset's classes in their metadata order, or
``RadGenConfig.classes`` when given (a label outside them is an error).

Training (:func:`train_classifier`):

- class imbalance: ``balance="weights"`` (per-example weights in the loss), ``"sampling"``
  (``tf.data`` resampling: per-class streams mixed by ``sample_from_datasets`` so that each
  class's share of the batches is proportional to *weight × frequency*, the same emphasis
  in expectation as the weights), ``"both"`` or ``"none"``. The weights are
  ``class_weights="auto"`` (8 : 1 : 3.2 for the default Normal : Pneumonia : TB classes,
  inverse frequency otherwise), ``"balanced"`` (``n / (k · n_c)`` from the train split) or
  explicit numbers;
- AdamW (weight decay 0.01), learning rate 1e-4 with linear warmup over 3 epochs (then
  constant, or with ``cosine_decay`` a cosine decay to a tenth by the last epoch), gradient
  clipping at global norm 1.0, ``mixed_float16`` as a flag;
- progressive unfreezing of the backbone: ``unfreeze_schedule`` ``((epoch, fraction), ...)``
  gives the fraction of backbone layers trainable (from the top) from each epoch on, by
  default ``((0, 0.0), (2, 0.25), (5, 1.0))`` for pretrained weights (head first, then the
  top blocks, then everything) and ``((0, 1.0),)`` for a random backbone (a frozen random
  backbone computes near-constant features; see :meth:`ClassifierTrainConfig.for_weights`);
  the optimizer is built once over all variables, so its state survives the changes;
- precise batch-norm statistics: at each epoch end the trainable batch norms get the
  average statistics of 32 training batches under the current weights, so validation and
  the saved model compute what training computed (``recalibrate_bn``);
- early stopping on validation macro-AUC (patience 10), restoring the best weights.

Run directory: ``config.json``, ``tokenizer/``, ``model.keras``, ``history.json``,
``metrics.json`` (the evaluation split), ``predictions.csv``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtl_report.config import ConfigError, _from_dict
from mtl_report.data.errors import DataError
from mtl_report.data.io import PreparedDataset, load_prepared
from mtl_report.linear_baselines import (
    PIXEL_SIZE,
    has_sources,
    pixel_features,
    run_linear_baseline,
)
from mtl_report.metrics.classification import (
    classification_metrics,
    prediction_table,
    score_predictions,
)
from mtl_report.models.radgen import DEFAULT_CLASSES, RadGenClassifier, RadGenConfig
from mtl_report.run import CLASSIFIER, MODEL_FILE, TOKENIZER_DIR, write_run_info

log = logging.getLogger(__name__)

BALANCE_MODES = ("weights", "sampling", "both", "none")
#: Default unfreezing of a pretrained backbone: head, then the top quarter, then all.
PRETRAINED_UNFREEZE: tuple[tuple[int, float], ...] = ((0, 0.0), (2, 0.25), (5, 1.0))
#: Default for a randomly initialised backbone: everything trains from the start.
RANDOM_INIT_UNFREEZE: tuple[tuple[int, float], ...] = ((0, 1.0),)
#: RadGen's class weights for Normal : Pneumonia : TB (inverse of 519 : 4202 : 1312).
DEFAULT_CLASS_WEIGHTS = (8.0, 1.0, 3.2)
#: Training batches whose statistics replace the moving ones of trainable batch norms.
CALIBRATION_BATCHES = 32


@dataclass
class ClassifierTrainConfig:
    """How the RadGen classifier is trained (see the module docstring)."""

    epochs: int = 50
    batch_size: int = 16
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    warmup_epochs: float = 3.0
    clipnorm: float = 1.0
    mixed_precision: bool = False
    #: ``((epoch, fraction), ...)``; None: :data:`PRETRAINED_UNFREEZE` for pretrained
    #: weights, :data:`RANDOM_INIT_UNFREEZE` for a random backbone (:meth:`for_weights`).
    unfreeze_schedule: tuple[tuple[int, float], ...] | None = None
    patience: int = 10
    balance: str = "weights"
    class_weights: Any = "auto"
    report_free: bool = False
    augment: bool = False
    cosine_decay: bool = False
    #: Precise batch-norm statistics at each epoch end (see ``recalibrate_batch_norm``).
    recalibrate_bn: bool = True
    seed: int = 0
    val_fraction: float = 0.15
    min_count: int = 2
    jit_compile: bool = False

    def __post_init__(self) -> None:
        if self.unfreeze_schedule is not None:
            self.unfreeze_schedule = tuple(
                (int(e), float(f)) for e, f in sorted(self.unfreeze_schedule, key=lambda p: p[0])
            )
        if self.balance not in BALANCE_MODES:
            raise ConfigError(f"balance must be one of {BALANCE_MODES}, got {self.balance!r}")
        if isinstance(self.class_weights, list | tuple):
            self.class_weights = tuple(float(w) for w in self.class_weights)
            if any(w <= 0 for w in self.class_weights):
                raise ConfigError("class weights must be positive")
        elif self.class_weights not in ("auto", "balanced"):
            raise ConfigError("class_weights must be 'auto', 'balanced' or a list of numbers")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch_size must be >= 1")
        if self.unfreeze_schedule is not None:
            if not self.unfreeze_schedule or self.unfreeze_schedule[0][0] != 0:
                raise ConfigError("unfreeze_schedule must start at epoch 0")
            if any(not 0.0 <= f <= 1.0 for _, f in self.unfreeze_schedule):
                raise ConfigError("unfreeze fractions must be in [0, 1]")
        if not 0.0 < self.val_fraction < 0.5:
            raise ConfigError("val_fraction must be in (0, 0.5)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClassifierTrainConfig:
        return _from_dict(cls, dict(data))

    def for_weights(self, pretrained: bool) -> ClassifierTrainConfig:
        """This config with the default unfreezing schedule resolved for the backbone.

        A pretrained backbone trains the head first, then its top blocks, then everything
        (:data:`PRETRAINED_UNFREEZE`). A random one trains everything from the first step
        (:data:`RANDOM_INIT_UNFREEZE`): frozen, its batch norms normalise with their initial
        statistics (mean 0, variance 1), and a random DenseNet121's pooled features then
        vary ~100× less between images than with batch statistics, nearly a constant, so
        the head learns the class prior (the "never predicts normal" of issue 16; measured
        in ``bench/diag_frozen_random_backbone.py``).
        """
        if self.unfreeze_schedule is not None:
            return self
        schedule = PRETRAINED_UNFREEZE if pretrained else RANDOM_INIT_UNFREEZE
        return replace(self, unfreeze_schedule=schedule)

    def unfreeze_fraction(self, epoch: int) -> float:
        """Backbone fraction trainable at ``epoch`` (0-based; default schedule: pretrained)."""
        if self.unfreeze_schedule is None:
            return self.for_weights(True).unfreeze_fraction(epoch)
        fraction = self.unfreeze_schedule[0][1]
        for start, f in self.unfreeze_schedule:
            if epoch >= start:
                fraction = f
        return fraction


def parse_unfreeze(text: str) -> tuple[tuple[int, float], ...]:
    """``"0:0,2:0.25,5:1"`` → ``((0, 0.0), (2, 0.25), (5, 1.0))``."""
    out = []
    for part in text.split(","):
        try:
            epoch, frac = part.split(":")
            out.append((int(epoch), float(frac)))
        except ValueError:
            raise ConfigError(f"unfreeze schedule {text!r}: use EPOCH:FRACTION,...") from None
    return tuple(out)


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------
def load_classification(data: str | Path | PreparedDataset) -> PreparedDataset:
    ds = data if isinstance(data, PreparedDataset) else load_prepared(Path(data))
    if ds.kind != "classification":
        raise DataError(
            f"{ds.root}: a {ds.kind!r} dataset cannot train the classifier "
            "(prepare one with `mtl-report prepare images` or `prepare synthetic-classes`)"
        )
    if ds.records.empty:
        raise DataError(f"{ds.root}: the dataset has no studies")
    return ds


def resolve_classes(ds: PreparedDataset, classes: Sequence[str] | None) -> tuple[str, ...]:
    """The class order: ``classes`` if given (every label must be one), else the dataset's."""
    present = sorted(ds.records["label"].astype(str).unique())
    if classes:
        unknown = sorted(set(present) - set(classes))
        if unknown:
            raise DataError(
                f"{ds.root}: unknown label(s) {unknown}; the configured classes are "
                f"{list(classes)} (set --labels)"
            )
        return tuple(classes)
    meta = ds.metadata.get("classes")
    return tuple(meta) if meta else tuple(present)


def has_report_text(records: pd.DataFrame) -> bool:
    reports = records.get("report")
    if reports is None:
        return False
    return bool(reports.fillna("").astype(str).str.strip().ne("").any())


def class_weight_vector(
    cfg: ClassifierTrainConfig, classes: Sequence[str], train_labels: np.ndarray
) -> np.ndarray:
    """Per-class weights (mean over the train studies normalised to 1)."""
    k = len(classes)
    counts = np.bincount(train_labels, minlength=k).astype(float)
    spec = cfg.class_weights
    if isinstance(spec, tuple):
        if len(spec) != k:
            raise ConfigError(f"{len(spec)} class weights given for {k} classes")
        w = np.asarray(spec, float)
    elif spec == "auto" and tuple(c.lower() for c in classes) == DEFAULT_CLASSES:
        w = np.asarray(DEFAULT_CLASS_WEIGHTS, float)
    else:
        w = np.where(counts > 0, counts.sum() / (k * np.maximum(counts, 1)), 0.0)
    mean = (w * counts).sum() / max(counts.sum(), 1)
    return w / mean if mean > 0 else w


def make_classify_dataset(
    records: pd.DataFrame,
    classes: Sequence[str],
    tokenizer,
    *,
    image_size: int,
    batch_size: int,
    input_names: Sequence[str],
    shuffle: bool = False,
    seed: int = 0,
    class_weights: np.ndarray | None = None,
    sampling: np.ndarray | None = None,
    augment: bool = False,
):
    """``tf.data`` of ``(x, y)`` batches for the RadGen model.

    ``x``: ``image`` ``(B, S, S, 3)`` float32 [0, 255], ``text_tokens`` ``(B, T)`` int32,
    ``report_tokens`` ``(B, T-1)`` (those in ``input_names``). ``y``: ``label`` ``(B,)``
    int32, ``weight`` ``(B,)`` float32 (class weight, 1 without), ``report`` ``(B, T-1)``.
    Decoded images are cached in memory (small images; one decode per file). With
    ``sampling`` (per-class probabilities) batches are drawn from per-class streams.
    """
    import tensorflow as tf

    from mtl_report.inputs import augmentation, read_image

    if records.empty:
        raise DataError("no studies to build a dataset from")
    index = {c: i for i, c in enumerate(classes)}
    labels = records["label"].astype(str).map(index)
    if labels.isna().any():
        bad = sorted(set(records["label"].astype(str)) - set(classes))
        raise DataError(f"unknown label(s) {bad}; classes are {list(classes)}")
    labels = labels.to_numpy(np.int32)
    weights = (
        class_weights[labels].astype(np.float32)
        if class_weights is not None
        else np.ones(len(labels), np.float32)
    )
    reports = (
        records["report"].fillna("").astype(str).tolist()
        if "report" in records
        else [""] * len(records)
    )
    use_image = "image" in input_names
    paths = records["image_path"].fillna("").astype(str).tolist()
    if use_image and any(not p for p in paths):
        raise DataError("studies without an image path cannot train an image model")

    ds = tf.data.Dataset.from_tensor_slices(
        {"path": paths, "report": reports, "label": labels, "weight": weights}
    )

    def load(e):
        out = {"report": e["report"], "label": e["label"], "weight": e["weight"]}
        if use_image:
            out["image"] = read_image(e["path"], image_size)
        return out

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).cache()
    n = len(records)
    if sampling is not None:
        streams, probs = [], []
        for c in range(len(classes)):
            if (labels == c).any() and sampling[c] > 0:
                streams.append(
                    ds.filter(lambda e, c=c: tf.equal(e["label"], c))
                    .shuffle(int((labels == c).sum()), seed=seed + c)
                    .repeat()
                )
                probs.append(float(sampling[c]))
        probs = np.asarray(probs) / np.sum(probs)
        ds = tf.data.Dataset.sample_from_datasets(streams, probs.tolist(), seed=seed).take(n)
    elif shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    aug = augmentation(seed) if (augment and use_image) else None
    tokenizer.layer()  # created eagerly: its lookup table cannot be built inside a map

    def to_xy(b):
        tokens = tokenizer.encode(b["report"])
        x = {}
        if use_image:
            x["image"] = aug(b["image"], training=True) if aug is not None else b["image"]
        x["text_tokens"] = tokens
        x["report_tokens"] = tokens[:, :-1]
        x = {k: v for k, v in x.items() if k in input_names}
        y = {"label": b["label"], "weight": b["weight"], "report": tokens[:, 1:]}
        return x, y

    return ds.map(to_xy, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------
def report_text_metrics(generated: Sequence[str], references: Sequence[str]) -> dict | None:
    """BLEU-1..4, ROUGE-L, CIDEr of generated reports against the references, with the
    shared metrics module (:func:`mtl_report.metrics.coco_scores`, the same normalisation
    as ``text_metrics``; METEOR/BERTScore are left to ``mtl-report evaluate``). None when no
    study has a reference report."""
    from mtl_report.metrics import coco_scores

    pairs = [(g, r) for g, r in zip(generated, references) if isinstance(r, str) and r.strip()]
    if not pairs:
        return None
    corpus, _ = coco_scores([g for g, _ in pairs], [r for _, r in pairs])
    return corpus


# --------------------------------------------------------------------------------------
# Callbacks
# --------------------------------------------------------------------------------------
def _callbacks_module():
    import keras

    class ProgressiveUnfreezing(keras.callbacks.Callback):
        """Set the backbone's trainable fraction at each epoch from the schedule."""

        def __init__(self, backbone, schedule: Callable[[int], float]):
            super().__init__()
            self.backbone = backbone
            self.schedule = schedule
            self.current: float | None = None
            self.log: list[tuple[int, float, int]] = []

        def on_epoch_begin(self, epoch, logs=None):
            from mtl_report.models.backbones import unfreeze_top

            fraction = self.schedule(epoch)
            if fraction != self.current:
                n = unfreeze_top(self.backbone, fraction)
                self.current = fraction
                self.log.append((epoch, fraction, n))
                # The traced train step captured the old trainable variables.
                self.model.make_train_function(force=True)

    class BatchNormRecalibration(keras.callbacks.Callback):
        """Precise batch-norm statistics at each epoch end, before validation and before
        the best weights are kept (:func:`~mtl_report.models.backbones.recalibrate_batch_norm`)."""

        def __init__(self, data):
            super().__init__()
            self.data = data
            self.layers = 0

        def on_epoch_end(self, epoch, logs=None):
            from mtl_report.models.backbones import recalibrate_batch_norm

            self.layers = recalibrate_batch_norm(self.model, self.data)

    class ValidationAUCStopping(keras.callbacks.Callback):
        """Validation macro-AUC each epoch; early stopping with best-weight restore."""

        def __init__(self, val_data, labels, classes, patience: int):
            super().__init__()
            self.val_data = val_data
            self.labels = labels
            self.classes = classes
            self.patience = patience
            self.best = -np.inf
            self.best_epoch = -1
            self.best_weights = None
            self.wait = 0
            self.history: dict[str, list[float]] = {"val_macro_auc": [], "val_macro_f1": []}

        def on_epoch_end(self, epoch, logs=None):
            out = self.model.predict(self.val_data, verbose=0)
            m = classification_metrics(self.labels, out["probabilities"], self.classes)
            auc = m["macro_auc"] if m["macro_auc"] is not None else float("nan")
            self.history["val_macro_auc"].append(auc)
            self.history["val_macro_f1"].append(m["macro_f1"])
            if logs is not None:
                logs["val_macro_auc"] = auc
                logs["val_macro_f1"] = m["macro_f1"]
            score = auc if np.isfinite(auc) else m["macro_f1"]
            if score > self.best:
                self.best, self.best_epoch, self.wait = score, epoch, 0
                self.best_weights = self.model.get_weights()
            else:
                self.wait += 1
                if self.wait >= self.patience:
                    self.model.stop_training = True

        def on_train_end(self, logs=None):
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    return ProgressiveUnfreezing, BatchNormRecalibration, ValidationAUCStopping


# --------------------------------------------------------------------------------------
# Train
# --------------------------------------------------------------------------------------
@dataclass
class ClassifyResult:
    run_dir: Path
    history: dict
    model: Any
    metrics: dict | None
    epochs_run: int


def _prepare_reports(
    ds: PreparedDataset, model_config: RadGenConfig, train_config: ClassifierTrainConfig
) -> tuple[PreparedDataset, RadGenConfig]:
    """Blank the reports in report-free mode; refuse text models on report-free data."""
    records = ds.records.copy()
    if "report" not in records:
        records["report"] = ""
    if train_config.report_free:
        if model_config.fusion == "text":
            raise ConfigError("report-free mode needs an image model (fusion 'text' given)")
        records["report"] = ""
        model_config = replace(model_config, report_loss_weight=0.0)
    elif model_config.uses_text and not has_report_text(records[records["split"] == "train"]):
        raise DataError(
            f"{ds.root}: no report text in the train split, but fusion {model_config.fusion!r} "
            "reads reports; pass --report-free (image path of the fusion model) or "
            "--fusion image"
        )
    elif model_config.has_report_head and not has_report_text(records):
        model_config = replace(model_config, report_loss_weight=0.0)
    return replace(ds, records=records), model_config


def train_classifier(
    data: str | Path | PreparedDataset,
    out: str | Path,
    model_config: RadGenConfig | None = None,
    train_config: ClassifierTrainConfig | None = None,
    *,
    eval_split: str | None = "test",
    verbose: int | str = "auto",
    extra_callbacks: Sequence[Any] = (),
) -> ClassifyResult:
    """Train the RadGen classifier on a prepared classification dataset; write a run dir.

    Args:
        data: prepared dataset (directory or loaded); its ``split`` column decides
            train / val (early stopping) / test.
        out: run directory (must be empty or absent).
        model_config, train_config: configs; classes default to the dataset's.
        eval_split: split scored into ``metrics.json`` at the end (None: none).

    Returns:
        :class:`ClassifyResult` (the model holds the best validation weights).
    """
    import keras

    from mtl_report.models.radgen import build_radgen_model
    from mtl_report.schedules import LinearWarmup
    from mtl_report.text import ReportTokenizer

    model_config = model_config or RadGenConfig()
    train_config = train_config or ClassifierTrainConfig()
    train_config = train_config.for_weights(model_config.backbone_weights is not None)
    ds = load_classification(data)
    classes = classes_for(ds, model_config)
    model_config = replace(model_config, classes=classes)
    ds, model_config = _prepare_reports(ds, model_config, train_config)
    run_dir = Path(out)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise DataError(f"{run_dir}: not empty (choose another --out)")
    train_rec = ds.split("train")
    val_rec = ds.split("val")
    if train_rec.empty:
        raise DataError(f"{ds.root}: no studies in the train split")
    run_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(train_config.seed)
    previous_policy = keras.mixed_precision.global_policy()
    if train_config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        tokenizer = ReportTokenizer(
            max_length=model_config.max_report_length, min_count=train_config.min_count
        ).fit(train_rec["report"].fillna("").astype(str).tolist())
        tokenizer.save(run_dir / TOKENIZER_DIR)
        index = {c: i for i, c in enumerate(classes)}
        train_labels = train_rec["label"].astype(str).map(index).to_numpy(int)
        weights = class_weight_vector(train_config, classes, train_labels)
        counts = np.bincount(train_labels, minlength=len(classes)).astype(float)
        use_weights = train_config.balance in ("weights", "both")
        use_sampling = train_config.balance in ("sampling", "both")
        sampling = None
        if use_sampling:
            sampling = weights * counts if train_config.balance == "sampling" else counts**0.5
            sampling = sampling / sampling.sum()

        model = build_radgen_model(model_config, tokenizer.vocab_size)
        input_names = list(model.input.keys())
        common = dict(
            tokenizer=tokenizer,
            image_size=model_config.image_size,
            batch_size=train_config.batch_size,
            input_names=input_names,
        )
        train_data = make_classify_dataset(
            train_rec,
            classes,
            shuffle=True,
            seed=train_config.seed,
            class_weights=weights if use_weights else None,
            sampling=sampling,
            augment=train_config.augment,
            **common,
        )
        val_data = make_classify_dataset(val_rec, classes, **common) if len(val_rec) else None

        steps = math.ceil(len(train_rec) / train_config.batch_size)
        schedule = LinearWarmup(
            train_config.learning_rate,
            round(train_config.warmup_epochs * steps),
            total_steps=train_config.epochs * steps,
            decay=train_config.cosine_decay,
        )
        optimizer = keras.optimizers.AdamW(
            schedule, weight_decay=train_config.weight_decay, clipnorm=train_config.clipnorm
        )
        model.compile(optimizer=optimizer, jit_compile=train_config.jit_compile)
        # Build the optimizer over every variable once, so unfreezing keeps its state.
        model.optimizer.build(model.trainable_variables)

        ProgressiveUnfreezing, BatchNormRecalibration, ValidationAUCStopping = _callbacks_module()
        callbacks: list = [keras.callbacks.TerminateOnNaN()]
        unfreezer = None
        if model.backbone is not None:
            unfreezer = ProgressiveUnfreezing(model.backbone, train_config.unfreeze_fraction)
            callbacks.append(unfreezer)
            if train_config.recalibrate_bn:
                n_calib = min(len(train_rec), CALIBRATION_BATCHES * train_config.batch_size)
                calib = train_rec.sample(n_calib, random_state=train_config.seed)
                callbacks.append(
                    BatchNormRecalibration(make_classify_dataset(calib, classes, **common))
                )
        stopper = None
        if val_data is not None:
            val_labels = val_rec["label"].astype(str).map(index).to_numpy(int)
            stopper = ValidationAUCStopping(val_data, val_labels, classes, train_config.patience)
            callbacks.append(stopper)
        callbacks.append(keras.callbacks.CSVLogger(str(run_dir / "history.csv")))
        write_run_info(
            run_dir,
            CLASSIFIER,
            model=model_config.to_dict(),
            train=train_config.to_dict(),
            classes=list(classes),
            class_weights=weights.tolist(),
            sampling_probabilities=None if sampling is None else sampling.tolist(),
            data={
                "root": str(ds.root),
                "source": ds.metadata.get("source"),
                "synthetic": ds.metadata.get("synthetic", False),
                "n_train": len(train_rec),
                "n_val": len(val_rec),
                "train_class_counts": dict(zip(classes, counts.astype(int).tolist())),
            },
        )
        start = time.time()
        history = model.fit(
            train_data,
            validation_data=None,
            epochs=train_config.epochs,
            callbacks=[*callbacks, *extra_callbacks],
            verbose=verbose,
            shuffle=False,  # the tf.data pipeline shuffles
        )
        hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        if stopper is not None:
            hist.update(stopper.history)
            hist["best_epoch"] = stopper.best_epoch
        if unfreezer is not None:
            hist["unfreezing"] = [
                {"epoch": e, "fraction": f, "trainable_layers": n} for e, f, n in unfreezer.log
            ]
        hist["train_seconds"] = time.time() - start
        model.save(run_dir / MODEL_FILE)
        (run_dir / "history.json").write_text(json.dumps(hist, indent=2) + "\n")
        metrics = None
        if eval_split and len(ds.split(eval_split)):
            metrics = evaluate_model(
                model,
                tokenizer,
                ds.split(eval_split),
                classes,
                model_config,
                batch_size=train_config.batch_size,
                out_dir=run_dir,
            )
            metrics["split"] = eval_split
            _write_json(run_dir / "metrics.json", metrics)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    return ClassifyResult(run_dir, hist, model, metrics, len(hist.get("loss", [])))


def classes_for(ds: PreparedDataset, model_config: RadGenConfig) -> tuple[str, ...]:
    """The configured classes when every label is one of them; the dataset's classes when
    the configured ones are the (unchanged) default; otherwise a DataError."""
    present = set(ds.records["label"].astype(str))
    if present <= set(model_config.classes):
        return tuple(model_config.classes)
    if tuple(model_config.classes) == DEFAULT_CLASSES:
        return resolve_classes(ds, None)
    return resolve_classes(ds, model_config.classes)


def _jsonable(obj: Any) -> Any:
    from mtl_report.metrics import jsonable

    return jsonable(obj)


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(_jsonable(obj), indent=2) + "\n")


# --------------------------------------------------------------------------------------
# Predict / evaluate
# --------------------------------------------------------------------------------------
def greedy_reports(model, images: np.ndarray, tokenizer, batch_size: int = 32) -> list[str]:
    """Greedy auxiliary reports from images ``(N, S, S, 3)`` (the model's report head),
    with the cached decoder and the sampler the report model uses."""
    import tensorflow as tf

    from mtl_report.samplers import GreedySampler

    decoder = model.report_decoder
    steps = decoder.max_length - 1
    sampler = GreedySampler(tokenizer.end_id, forbidden_ids=(0, tokenizer.start_id))

    def next_token(token_ids, state, index, memory):
        cross = memory["cross_cache"]
        return decoder.step(token_ids, memory["memory"], state, cross, index)

    @tf.function(reduce_retracing=True)
    def generate(batch):
        memory = model.encode_image(batch)
        state, cross = decoder.init_cache(memory, steps)
        start = tf.fill([tf.shape(memory)[0]], tokenizer.start_id)
        constants = {"memory": memory, "cross_cache": cross}
        return sampler(next_token, start, state, steps - 1, constants)

    texts: list[str] = []
    for i in range(0, len(images), batch_size):
        tokens = generate(tf.constant(images[i : i + batch_size], tf.float32)).numpy()
        texts.extend(tokenizer.decode(tokens))
    return texts


def inference_dataset(model, tokenizer, records: pd.DataFrame, classes, model_config, batch_size):
    """Unshuffled, unaugmented ``(x, y)`` batches of ``records`` for ``model``'s inputs."""
    return make_classify_dataset(
        records,
        classes,
        tokenizer,
        image_size=model_config.image_size,
        batch_size=batch_size,
        input_names=list(model.input.keys()),
    )


def predict_records(model, tokenizer, records: pd.DataFrame, classes, model_config, batch_size=32):
    """``(probabilities (N, k), gate (N,) or None, images or None)`` for ``records``."""
    data = inference_dataset(model, tokenizer, records, classes, model_config, batch_size)
    probs, gates, images = [], [], []
    for x, _ in data:
        out = model(x, training=False)
        probs.append(np.asarray(out["probabilities"]))
        if "gate" in out:
            gates.append(np.asarray(out["gate"])[:, 0])
        if "image" in x:
            images.append(np.asarray(x["image"]))
    return (
        np.concatenate(probs),
        np.concatenate(gates) if gates else None,
        np.concatenate(images) if images else None,
    )


def evaluate_model(
    model,
    tokenizer,
    records: pd.DataFrame,
    classes: Sequence[str],
    model_config: RadGenConfig,
    *,
    batch_size: int = 32,
    out_dir: Path | None = None,
    reports: bool = True,
) -> dict[str, Any]:
    """Score a model on ``records``: classification metrics, gate summary, report metrics,
    and per-source recalls when ``records`` has a ``source`` column.

    Writes ``predictions.csv`` (study, label, probabilities, gate, generated report) to
    ``out_dir`` when given.
    """
    index = {c: i for i, c in enumerate(classes)}
    labels = records["label"].astype(str).map(index).to_numpy(int)
    probs, gate, images = predict_records(
        model, tokenizer, records, classes, model_config, batch_size
    )
    metrics = score_predictions(records, probs, classes)
    if gate is not None:
        metrics["gate"] = {
            "mean": float(gate.mean()),
            "by_class": {
                c: float(gate[labels == i].mean())
                for i, c in enumerate(classes)
                if (labels == i).any()
            },
        }
    generated = None
    if reports and model_config.has_report_head and images is not None and "report" in model.output:
        generated = greedy_reports(model, images, tokenizer, batch_size)
        text = report_text_metrics(generated, records["report"].tolist())
        if text is not None:
            metrics["text"] = text
    if out_dir is not None:
        table = prediction_table(records, probs, classes)
        if gate is not None:
            table["gate"] = gate
        if generated is not None:
            table["generated_report"] = generated
        table.to_csv(Path(out_dir) / "predictions.csv", index=False)
    return metrics


def evaluate_run(
    run_dir: str | Path,
    data: str | Path | PreparedDataset,
    split: str = "test",
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate a saved run on a split of a prepared dataset (``metrics.json`` to ``out``)."""
    classifier = RadGenClassifier.from_preset(run_dir)
    ds = load_classification(data)
    classes = classifier.classes
    resolve_classes(ds, classes)
    records = ds.split(split) if split != "all" else ds.records
    if records.empty:
        raise DataError(f"{ds.root}: no studies in the {split!r} split")
    records = records.copy()
    if classifier.run.info["train"].get("report_free") or "report" not in records:
        records["report"] = ""
    metrics = evaluate_model(
        classifier.model,
        classifier.tokenizer,
        records,
        classes,
        classifier.config,
        out_dir=Path(run_dir),
    )
    metrics["split"] = split
    if out is not None:
        _write_json(Path(out), metrics)
    return metrics


# --------------------------------------------------------------------------------------
# Cross-validation
# --------------------------------------------------------------------------------------
def cv_splits(
    records: pd.DataFrame, folds: int = 5, seed: int = 0, val_fraction: float = 0.15
) -> list[pd.Series]:
    """Per fold, a ``split`` column: ``test`` (the fold), ``val`` and ``train``.

    Outer folds: :class:`sklearn.model_selection.StratifiedGroupKFold` by ``subject_id``
    (stratified by label). The validation part (early stopping) is one fold of a second
    stratified group split of the remaining patients, about ``val_fraction`` of them.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if folds < 2:
        raise ConfigError(f"folds must be >= 2, got {folds}")
    labels = records["label"].astype(str).to_numpy()
    groups = records["subject_id"].astype(str).to_numpy()
    n_groups = len(set(groups))
    if n_groups < folds:
        raise DataError(f"{n_groups} patients cannot make {folds} folds")
    small = {c: n for c, n in pd.Series(labels).value_counts().items() if n < folds}
    if small:
        raise DataError(f"class(es) with fewer studies than folds ({folds}): {small}")
    outer = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    out = []
    for train_idx, test_idx in outer.split(np.zeros(len(labels)), labels, groups):
        split = np.array(["train"] * len(labels), dtype=object)
        split[test_idx] = "test"
        inner_k = max(2, round(1.0 / val_fraction))
        inner = StratifiedGroupKFold(n_splits=inner_k, shuffle=True, random_state=seed + 1)
        _, val_pos = next(
            inner.split(np.zeros(len(train_idx)), labels[train_idx], groups[train_idx])
        )
        split[train_idx[val_pos]] = "val"
        out.append(pd.Series(split, index=records.index, name="split"))
    return out


def _run_or_reuse(ds, run_dir: Path, model_config, train_config, verbose, resume: bool) -> dict:
    """Train one run (test split scored) or, with ``resume``, reuse its ``metrics.json``."""
    if resume and (run_dir / "metrics.json").is_file():
        m = json.loads((run_dir / "metrics.json").read_text())
        history = json.loads((run_dir / "history.json").read_text())
        m["epochs_run"] = len(history.get("loss", []))
        return m
    if resume and run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)  # an interrupted run starts again
    result = train_classifier(
        ds, run_dir, model_config, train_config, eval_split="test", verbose=verbose
    )
    m = dict(result.metrics or {})
    m["epochs_run"] = result.epochs_run
    return m


def summarize_folds(fold_metrics: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Mean ± std over folds of every numeric metric (``mean_std_table``)."""
    from mtl_report.metrics import mean_std_table

    cleaned = []
    for m in fold_metrics:
        m = dict(m)
        cls = dict(m.get("classification", {}))
        cls.pop("confusion_matrix", None)
        cls.pop("classes", None)
        m["classification"] = cls
        m.pop("split", None)
        cleaned.append(m)
    return mean_std_table(cleaned)


def cross_validate(
    data: str | Path | PreparedDataset,
    out: str | Path,
    model_config: RadGenConfig | None = None,
    train_config: ClassifierTrainConfig | None = None,
    *,
    folds: int = 5,
    verbose: int | str = 0,
    progress: Callable[[str], None] | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """K-fold patient-grouped stratified CV; one run per fold under ``out/fold_<k>``.

    With ``resume`` a fold whose run already has ``metrics.json`` is not trained again
    (an interrupted CV continues; same data, seed and folds give the same splits).

    Returns ``{"folds": [metrics...], "summary": {metric: {mean, std, n}}, "confusion_matrix":
    summed over folds}``; also written to ``out/cv_metrics.json`` and ``out/cv_summary.csv``.
    """
    ds = load_classification(data)
    train_config = train_config or ClassifierTrainConfig()
    out = Path(out)
    if not resume and out.exists() and any(out.iterdir()):
        raise DataError(f"{out}: not empty (choose another --out, or --resume)")
    splits = cv_splits(ds.records, folds, train_config.seed, train_config.val_fraction)
    fold_metrics = []
    for k, split in enumerate(splits):
        if progress:
            progress(f"fold {k + 1}/{folds}")
        records = ds.records.assign(split=split.to_numpy())
        m = _run_or_reuse(
            replace(ds, records=records),
            out / f"fold_{k}",
            model_config,
            train_config,
            verbose,
            resume,
        )
        fold_metrics.append(m)
    summary = summarize_folds(fold_metrics)
    cm = np.sum([m["classification"]["confusion_matrix"] for m in fold_metrics], axis=0)
    result = {
        "folds": fold_metrics,
        "summary": {
            name: {"mean": r["mean"], "std": r["std"], "n": int(r["n"])}
            for name, r in summary.iterrows()
        },
        "confusion_matrix": cm.tolist(),
        "classes": fold_metrics[0]["classification"]["classes"],
    }
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "cv_metrics.json", result)
    summary.to_csv(out / "cv_summary.csv")
    return result


# --------------------------------------------------------------------------------------
# Baselines and ablations
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """One row of the comparison: model/train overrides of the base configs."""

    name: str
    model: Mapping[str, Any]
    train: Mapping[str, Any]
    description: str
    needs_text: bool = True
    #: "network" (a RadGen model), or a scikit-learn baseline of
    #: :mod:`mtl_report.linear_baselines`: "pixels" or "source".
    kind: str = "network"


def default_variants(image_backbones: Sequence[str], ablations: bool = True) -> list[Variant]:
    """The full model, the baselines and (optionally) the ablations."""
    rows = [Variant("full", {}, {}, "gated fusion + report loss + class weights")]
    for bb in image_backbones:
        rows.append(
            Variant(
                f"image_{bb}",
                {"fusion": "image", "backbone": bb, "report_loss_weight": 0.0},
                {},
                f"image only ({bb})",
                False,
            )
        )
    rows += [
        Variant("text", {"fusion": "text"}, {}, "report text only"),
        Variant("early_fusion", {"fusion": "early"}, {}, "concatenate pooled features, MLP"),
        Variant("late_fusion", {}, {}, "average of image-only and text-only probabilities"),
        Variant(
            "pixels_pca_lr",
            {},
            {},
            f"PCA + logistic regression on {PIXEL_SIZE} px pixels",
            False,
            "pixels",
        ),
        Variant(
            "source_only",
            {},
            {},
            "predicts the image source, then the class shares of that source",
            False,
            "source",
        ),
    ]
    if ablations:
        rows += [
            Variant("no_gate", {"fusion": "average"}, {}, "ablation: g = 0.5 (no gate)"),
            Variant("no_report_loss", {"report_loss_weight": 0.0}, {}, "ablation: λ = 0"),
            Variant("no_class_weights", {}, {"balance": "none"}, "ablation: no balancing"),
            Variant("sampling", {}, {"balance": "sampling"}, "ablation: resampling, no weights"),
        ]
    return rows


TABLE_METRICS = (
    "classification.macro_auc",
    "classification.macro_f1",
    "classification.accuracy",
    "gate.mean",
    "text.bleu_4",
    "text.rouge_l",
    "text.cider",
)


def _late_fusion_metrics(image_dir: Path, text_dir: Path, classes, labels_by_study) -> dict:
    a = pd.read_csv(image_dir / "predictions.csv")
    b = pd.read_csv(text_dir / "predictions.csv").set_index("study_id").loc[a["study_id"]]
    cols = [f"p_{c}" for c in classes]
    probs = 0.5 * (a[cols].to_numpy() + b[cols].to_numpy())
    labels = a["label"].astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy(int)
    return {"classification": classification_metrics(labels, probs, classes), "n": len(a)}


def compare_variants(
    data: str | Path | PreparedDataset,
    out: str | Path,
    model_config: RadGenConfig | None = None,
    train_config: ClassifierTrainConfig | None = None,
    *,
    variants: Sequence[Variant] | None = None,
    image_backbones: Sequence[str] = ("densenet121", "swin_base"),
    folds: int = 0,
    verbose: int | str = 0,
    progress: Callable[[str], None] | None = None,
    resume: bool = False,
) -> pd.DataFrame:
    """Train every variant (single split, or ``folds``-fold CV) and tabulate them.

    Late fusion trains nothing: it averages the probabilities of the image-only model with
    the first backbone of ``image_backbones`` and the text-only model on the same test
    studies (both must be among the variants). On a dataset without reports the text
    variants are skipped (noted in the table) and the full model runs report-free.

    Returns the table (also ``out/comparison.csv``, ``out/comparison.md``,
    ``out/comparison.json``): one row per variant, ``mean ± std`` cells with folds.
    """
    ds = load_classification(data)
    model_config = model_config or RadGenConfig()
    train_config = train_config or ClassifierTrainConfig()
    out = Path(out)
    if not resume and out.exists() and any(out.iterdir()):
        raise DataError(f"{out}: not empty (choose another --out, or --resume)")
    variants = list(variants or default_variants(image_backbones))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ConfigError(f"duplicate variant names {names}")
    text_ok = has_report_text(ds.records) and not train_config.report_free
    classes = classes_for(ds, model_config)
    splits = (
        cv_splits(ds.records, folds, train_config.seed, train_config.val_fraction)
        if folds
        else [ds.records["split"]]
    )
    per_variant: dict[str, list[dict]] = {}
    notes: dict[str, str] = {}
    first_image = f"image_{image_backbones[0]}" if image_backbones else None
    features = None
    for v in variants:
        if v.name == "late_fusion":
            continue
        if v.kind != "network":
            if v.kind == "source" and not has_sources(ds.records):
                notes[v.name] = "skipped: no 'source' column with two sources or more"
                continue
            if features is None:
                if progress:
                    progress(f"{v.name}: reading {PIXEL_SIZE} px pixels")
                paths = ds.records["image_path"].tolist()
                features = dict(zip(paths, pixel_features(paths)))
            per_variant[v.name] = [
                run_linear_baseline(
                    v.kind,
                    ds.records.assign(split=np.asarray(split)),
                    classes,
                    features,
                    out / v.name / (f"fold_{k}" if folds else "run"),
                    train_config.seed,
                )
                for k, split in enumerate(splits)
            ]
            continue
        if v.needs_text and not text_ok and v.model.get("fusion") in ("text", "early", "average"):
            notes[v.name] = "skipped: no report text"
            continue
        mc = replace(model_config, classes=classes, **dict(v.model))
        tc = replace(train_config, **dict(v.train))
        if not text_ok and mc.fusion != "image":
            tc = replace(tc, report_free=True)
        per_variant[v.name] = []
        for k, split in enumerate(splits):
            if progress:
                progress(f"{v.name}: fold {k + 1}/{len(splits)}" if folds else v.name)
            records = ds.records.assign(split=np.asarray(split))
            run = out / v.name / (f"fold_{k}" if folds else "run")
            per_variant[v.name].append(
                _run_or_reuse(replace(ds, records=records), run, mc, tc, verbose, resume)
            )
    if "late_fusion" in names:
        if first_image in per_variant and "text" in per_variant:
            per_variant["late_fusion"] = [
                _late_fusion_metrics(
                    out / first_image / (f"fold_{k}" if folds else "run"),
                    out / "text" / (f"fold_{k}" if folds else "run"),
                    classes,
                    None,
                )
                for k in range(len(splits))
            ]
        else:
            notes["late_fusion"] = f"skipped: needs {first_image} and text"
    rows = []
    for v in variants:
        row: dict[str, Any] = {"variant": v.name, "description": v.description}
        if v.name in per_variant:
            summary = summarize_folds(per_variant[v.name])
            for metric in TABLE_METRICS:
                if metric in summary.index:
                    r = summary.loc[metric]
                    label = "gate_mean" if metric == "gate.mean" else metric.split(".")[-1]
                    row[label] = r["mean_std"] if folds else f"{r['mean']:.3f}"
            for c in classes:
                for key, label in (
                    (f"classification.auc.{c}", f"auc_{c}"),
                    (f"classification.sensitivity_at_95_specificity.{c}", f"sens@95spec_{c}"),
                ):
                    if key in summary.index:
                        r = summary.loc[key]
                        row[label] = r["mean_std"] if folds else f"{r['mean']:.3f}"
        else:
            row["note"] = notes.get(v.name, "")
        rows.append(row)
    table = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "comparison.csv", index=False)
    (out / "comparison.md").write_text(table.fillna("").to_markdown(index=False) + "\n")
    _write_json(out / "comparison.json", {"folds": folds, "variants": per_variant, "notes": notes})
    return table


# --------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------
def export_classifier(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Write a SavedModel whose ``serving_default`` takes raw inputs.

    Signature: ``image_bytes`` ``(None,)`` tf.string (encoded PNG/JPEG/...), ``report``
    ``(None,)`` tf.string (raw report text, ``""`` when there is none: the gate then falls
    back to the image) → ``probabilities`` ``(None, k)`` float32, ``gate`` ``(None, 1)``
    float32 (1 for an image-only model, 0 for a text-only one), ``label`` ``(None,)``
    tf.string. Image decoding (:func:`mtl_report.inputs.decode_image`) and tokenisation
    (the tokenizer's ``TextVectorization``) are in the graph.
    """
    import keras
    import tensorflow as tf

    from mtl_report.inputs import decode_image

    classifier = RadGenClassifier.from_preset(run_dir)
    size = classifier.image_size
    archive = keras.export.ExportArchive()
    archive.track(classifier.model)
    archive.track(classifier.vectorizer)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="image_bytes"),
            tf.TensorSpec([None], tf.string, name="report"),
        ]
    )
    def serve(image_bytes, report):
        images = None
        if classifier.reads_images:
            images = tf.map_fn(
                lambda b: decode_image(b, size),
                image_bytes,
                fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32),
            )
        return classifier.outputs_graph(images, report)

    archive.add_endpoint("serving_default", serve)
    out_dir = Path(out_dir)
    archive.write_out(str(out_dir), verbose=False)
    return out_dir
