"""Training one classifier run: callbacks (progressive unfreezing, batch-norm recalibration,
early stopping on validation macro-AUC) and :func:`train_classifier`."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mtl_report.classify.config import CALIBRATION_BATCHES, ClassifierTrainConfig, _write_json
from mtl_report.classify.data import (
    class_weight_vector,
    classes_for,
    has_report_text,
    load_classification,
    make_classify_dataset,
)
from mtl_report.classify.evaluate import evaluate_model
from mtl_report.config import ConfigError
from mtl_report.data.errors import DataError
from mtl_report.data.io import PreparedDataset
from mtl_report.metrics.classification import (
    classification_metrics,
)
from mtl_report.models.radgen import RadGenConfig
from mtl_report.run import CLASSIFIER, MODEL_FILE, TOKENIZER_DIR, write_run_info
from mtl_report.workflows.fit import precision_policy, set_seeds, warmup_optimizer

log = logging.getLogger(__name__)


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
    set_seeds(train_config.seed)
    with precision_policy(train_config.mixed_precision):
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
        optimizer = warmup_optimizer(
            train_config.learning_rate,
            round(train_config.warmup_epochs * steps),
            total_steps=train_config.epochs * steps,
            cosine_decay=train_config.cosine_decay,
            weight_decay=train_config.weight_decay,
            clipnorm=train_config.clipnorm,
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
    return ClassifyResult(run_dir, hist, model, metrics, len(hist.get("loss", [])))
