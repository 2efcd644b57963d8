"""Training: one function from a prepared dataset to a run directory, used by the CLI and
notebooks alike (``mtl_report.train(...)``).

Keras callbacks do the bookkeeping: EarlyStopping (validation loss, restoring the best
weights), ModelCheckpoint (best model), BackupAndRestore (a run killed mid-epoch resumes
with ``resume=True`` and loses at most that epoch), TensorBoard, CSVLogger, TerminateOnNaN.
With more than one GPU visible (or explicit ``devices``) the model is built and trained under
``tf.distribute.MirroredStrategy``.

Resuming continues an interrupted run with the settings it was started with: a finished run
is refused ("already finished; nothing to resume"), and so are settings given explicitly
that differ from the run's ``config.json`` (each named), so a resume can neither retrain a
finished model from epoch 0 nor change a half-trained model's architecture or task weights.
``history.csv`` and ``history.json`` cover the whole run, epochs before and after the resume.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import shutil
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mtl_report.config import ConfigError, ModelConfig, TrainConfig
from mtl_report.data.errors import DataError
from mtl_report.data.io import PreparedDataset, load_prepared
from mtl_report.models.aksoy.aksoy_setups import get_setup
from mtl_report.run import (
    BACKBONE_FILE,
    BACKUP_DIR,
    CLEANING_FILE,
    CONFIG_FILE,
    HISTORY_CSV,
    HISTORY_FILE,
    MODEL_FILE,
    THRESHOLDS_FILE,
    TOKENIZER_DIR,
    VOCAB_FILE,
    Run,
    run_finished,
    write_run_config,
)
from mtl_report.workflows.fit import (
    op_determinism,
    precision_policy,
    set_seeds,
    strategy_for,
    warmup_optimizer,
)

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What :func:`train` did. ``history`` and ``epochs_run`` cover the whole run, also the
    epochs before a resume; ``initial_epoch`` is where this call started (0 unless resumed);
    ``setup`` is the run's own (on a resume, the one it was started with)."""

    run_dir: Path
    history: dict
    model: keras.Model
    epochs_run: int
    setup: str = "mtl_tp"
    initial_epoch: int = 0


#: Frozen backbones already loaded in this process (see :func:`load_backbone`).
_LOADED_BACKBONES: OrderedDict[tuple, keras.Model] = OrderedDict()
_LOADED_BACKBONES_MAX = 2


def _file_identity(path: Path) -> tuple:
    stat = path.stat()
    return (str(path.resolve()), stat.st_mtime_ns, stat.st_size)


def load_backbone(model_config: ModelConfig, store: Path) -> keras.Model:
    """The frozen backbone of a config; a random initialisation is created once and kept in
    ``store`` so that every run (any seed) sharing a feature cache sees the same backbone.

    The last few backbones are kept in memory, keyed by name, size and weights file (path,
    mtime, size): ``compare`` asks for the same frozen backbone for every set-up and split,
    and building one costs about 2 s (a quarter of a toy comparison's training time). They
    are only ever run for inference (the feature cache), never trained, so sharing is safe.
    """
    from mtl_report.models.backbones import build_backbone

    weights = model_config.backbone_weights
    name, size = model_config.backbone, model_config.image_size
    path = store / f"{name}-{size}px-random.weights.h5" if weights is None else None
    if path is not None and path.is_file():
        key: tuple | None = (name, size, _file_identity(path))
    elif weights is not None and Path(str(weights)).is_file():
        key = (name, size, _file_identity(Path(str(weights))))
    elif weights is not None:
        key = (name, size, str(weights))  # e.g. "imagenet": the package's own weights
    else:
        key = None  # first use of this random initialisation: built and saved below
    if key is not None and key in _LOADED_BACKBONES:
        _LOADED_BACKBONES.move_to_end(key)
        return _LOADED_BACKBONES[key]
    backbone = build_backbone(name, size, weights)
    if path is not None:
        store.mkdir(parents=True, exist_ok=True)
        if path.is_file():
            backbone.load_weights(path)
        else:
            backbone.save_weights(path)
        key = (name, size, _file_identity(path))
    _LOADED_BACKBONES[key] = backbone
    while len(_LOADED_BACKBONES) > _LOADED_BACKBONES_MAX:
        _LOADED_BACKBONES.popitem(last=False)
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
    """The bookkeeping callbacks, in an order that matters for a kill between two of them:

    - CSVLogger before BackupAndRestore: a kill between the two leaves a history row for an
      epoch the backup does not hold, which the resume redoes and :func:`read_history`
      de-duplicates (the other order would lose that row for good);
    - BackupAndRestore before ModelCheckpoint, and the backup kept (``delete_checkpoint``
      off) until :func:`train` has written ``history.json``: ``model.keras`` without
      ``backup/`` then only exists once a run has finished (:func:`mtl_report.run.run_finished`).
    """
    monitor = "val_loss" if has_val else "loss"
    return [
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.CSVLogger(str(run_dir / HISTORY_CSV), append=resume),
        keras.callbacks.BackupAndRestore(str(run_dir / BACKUP_DIR), delete_checkpoint=False),
        keras.callbacks.EarlyStopping(
            monitor=monitor,
            patience=train_config.patience,
            restore_best_weights=True,
            verbose=0,
        ),
        keras.callbacks.ModelCheckpoint(
            str(run_dir / MODEL_FILE), monitor=monitor, save_best_only=True, verbose=0
        ),
        keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False),
    ]


#: Config fields a set-up or the dataset sets: not the caller's to compare on a resume
#: (a set-up difference is reported as ``--preset``; alpha/beta/gamma given explicitly as
#: overrides still are compared).
_DERIVED_MODEL_FIELDS = frozenset({"tasks", "findings", "findings_guidance"})
_DERIVED_TRAIN_FIELDS = frozenset({"setup", "alpha", "beta", "gamma", "uncertainty_weighting"})
#: Command-line spelling of config fields whose flag is not simply ``--field-name``.
_FLAGS = {"fine_tune_backbone": "--fine-tune"}
MODEL_FIELDS = frozenset(f.name for f in dataclasses.fields(ModelConfig))


def _flag(name: str) -> str:
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def _shown(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def _same(a, b) -> bool:
    """Equal as configured values (a JSON round trip turns tuples into lists)."""
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return tuple(a) == tuple(b)
    return a == b


def resume_conflicts(
    saved: Run,
    setup: str | None,
    model_config: ModelConfig | None,
    train_config: TrainConfig | None,
    model_overrides: Mapping,
    train_overrides: Mapping,
) -> list[str]:
    """The settings asked for that differ from the run's ``config.json``, one phrase each
    (``"--epochs 5 differs from the run's 10"``); empty when the resume may go ahead.

    Only what the caller gave is compared: ``setup`` when not None, each override, and the
    fields of a config object passed in (less those the set-up or the dataset set). A
    command line passes only the flags the user typed, so argparse defaults never count.
    """
    out: list[str] = []
    saved_setup = saved.info.get("setup", saved.train_config.setup)
    if setup is not None and setup != saved_setup:
        out.append(f"--preset {setup} differs from the run's {saved_setup}")
    checks: list[tuple[str, object, object]] = []
    for given, saved_cfg, derived, overrides in (
        (model_config, saved.model_config, _DERIVED_MODEL_FIELDS, model_overrides),
        (train_config, saved.train_config, _DERIVED_TRAIN_FIELDS, train_overrides),
    ):
        asked = {}
        if given is not None:
            asked = {
                f.name: getattr(given, f.name)
                for f in dataclasses.fields(given)
                if f.name not in derived
            }
        asked.update({k: v for k, v in overrides.items() if v is not None})
        checks.extend((name, value, getattr(saved_cfg, name)) for name, value in asked.items())
    for name, value, was in checks:
        if not _same(value, was):
            out.append(f"{_flag(name)} {_shown(value)} differs from the run's {_shown(was)}")
    return out


def read_history(path: Path) -> dict[str, list[float]] | None:
    """Per-epoch values of ``history.csv`` as ``{metric: [epoch 0, 1, ...]}``, or None when
    the file is missing, empty or unreadable.

    An epoch logged twice (a kill between the CSV row and the backup, so the resume redid
    it) keeps its last row, and the file is rewritten (atomically) without the duplicate.
    """
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
            header = list(rows[0]) if rows else []
    except (OSError, csv.Error, UnicodeDecodeError):
        return None
    if not rows or "epoch" not in header:
        return None
    try:
        by_epoch = {int(row["epoch"]): row for row in rows}
        ordered = [by_epoch[e] for e in sorted(by_epoch)]
        history = {k: [float(r[k]) for r in ordered] for k in header if k != "epoch"}
    except (TypeError, ValueError):
        return None
    if ordered != rows:
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            writer.writerows(ordered)
        os.replace(tmp, path)
    return history


def _write_json_atomic(path: Path, data) -> None:
    """Write JSON so that a kill leaves either the old file or the whole new one (the run's
    ``history.json`` is its finish marker)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def train(
    data: str | Path | PreparedDataset,
    out: str | Path,
    setup: str | None = None,
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
    """Train a set-up on a prepared dataset and write a run directory.

    Args:
        data: prepared dataset directory (or a loaded one).
        out: run directory (created; with ``resume`` an interrupted run in it continues).
        setup: training set-up (``mtl_report.models.aksoy.aksoy_setups``; default
            ``mtl_tp``, or on a resume the run's own).
        model_config, train_config: base configs; the set-up sets tasks and weights.
        resume: continue the interrupted run in ``out`` with its saved configuration.
            Settings given here (``setup``, config objects, overrides) must equal the
            saved ones: a difference is an error naming each, never silently ignored.
        overrides: train-config fields (``epochs=3``, ``batch_size=8``, ``alpha=...``) or
            model-config fields (``hidden_dim=64``, ``image_size=128``); None means unset.

    Returns:
        The run directory, history (whole run), trained model (best weights), epochs run.

    Raises:
        DataError: ``out`` holds a finished run and ``resume`` is set ("already finished;
            nothing to resume"), or an interrupted run and ``resume`` is not set.
        ConfigError: unknown set-up, inconsistent settings, or (``resume``) settings that
            differ from the run's.
    """
    run_dir = Path(out)
    model_overrides = {k: overrides.pop(k) for k in list(overrides) if k in MODEL_FIELDS}
    model_overrides = {k: v for k, v in model_overrides.items() if v is not None}
    saved: Run | None = None
    if resume and (run_dir / CONFIG_FILE).is_file():
        if run_finished(run_dir):
            raise DataError(f"{run_dir}: already finished; nothing to resume")
        # A resumed run continues with the configuration it was started with. Settings
        # given again must agree with it: a typo must neither change the architecture of a
        # half-trained model nor be silently ignored.
        saved = Run.read(run_dir)
        conflicts = resume_conflicts(
            saved, setup, model_config, train_config, model_overrides, overrides
        )
        if conflicts:
            raise ConfigError(
                f"{run_dir}: cannot resume with other settings: {'; '.join(conflicts)} "
                "(omit them to continue the run as it was started, or train a new run "
                "into another --out)"
            )
        setup, model_config, train_config = (
            saved.info.get("setup", saved.train_config.setup),
            saved.model_config,
            saved.train_config,
        )
        overrides, model_overrides = {}, {}
    setup = setup or "mtl_tp"
    if model_overrides:
        model_config = replace(model_config or ModelConfig(), **model_overrides)
    # Configuration problems surface before any data is read or any training starts.
    model_config, train_config = get_setup(setup, model_config, train_config, **overrides)
    ds = data if isinstance(data, PreparedDataset) else load_prepared(Path(data))
    if ds.kind != "report":
        raise DataError(f"{ds.root}: a {ds.kind} dataset cannot train the multi-task model")
    if saved is not None:
        _check_same_data(run_dir, saved, ds)
    model_config = replace(model_config, findings=tuple(ds.findings))
    train_rec = ds.split("train")
    if train_rec.empty:  # before the run directory exists: a refused run leaves nothing
        raise DataError(f"{ds.root}: no studies in the train split")
    if not resume and run_dir.exists() and any(run_dir.iterdir()):
        if (run_dir / BACKUP_DIR).exists():
            raise DataError(f"{run_dir}: holds an interrupted run; pass --resume to continue it")
        raise DataError(f"{run_dir}: not empty (choose another --out)")
    run_dir.mkdir(parents=True, exist_ok=True)
    with op_determinism(train_config.deterministic), precision_policy(train_config.mixed_precision):
        set_seeds(train_config.seed)

        from mtl_report.inputs import make_dataset
        from mtl_report.text import ReportTokenizer

        tokenizer = ReportTokenizer(max_length=model_config.max_report_length).fit(
            train_rec["report"].tolist()
        )
        tokenizer.save(run_dir / TOKENIZER_DIR)
        from mtl_report.models.aksoy import AksoyPreprocessor, feature_vocabularies

        vocabularies = feature_vocabularies(train_rec, ds.cleaning, model_config.text_feature_vocab)
        preprocessor = AksoyPreprocessor.from_cleaning(
            ds.cleaning, vocabularies, model_config.text_feature_length
        )
        vocabulary_sizes = {**preprocessor.vocabulary_sizes(), "report": tokenizer.vocab_size}
        vocabularies["report_vocab_size"] = tokenizer.vocab_size
        (run_dir / VOCAB_FILE).write_text(json.dumps(vocabularies, indent=2) + "\n")

        features = prepare_features(ds, model_config, cache_dir, progress=verbose != 0)
        # Whether that built a backbone (drawing random numbers) or found one already
        # loaded, the model below starts from the same random state: the same seed gives
        # the same run, first in a process or not.
        set_seeds(train_config.seed)
        (run_dir / CLEANING_FILE).write_text(json.dumps(ds.cleaning, indent=2) + "\n")
        if features is not None:
            # The run carries its backbone, so generate/export never depend on the cache.
            features.backbone.save_weights(run_dir / BACKBONE_FILE)
        common = dict(
            tokenizer=tokenizer,
            preprocessor=preprocessor,
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
            from mtl_report.models.aksoy import GUIDE_INPUT, build_aksoy_model, compile_for

            feature_shape = features.feature_shape if features is not None else None
            model = build_aksoy_model(model_config, vocabulary_sizes, train_config, feature_shape)
            optimizer = warmup_optimizer(
                train_config.learning_rate,
                int(train_config.warmup_fraction * total_steps),
                weight_decay=train_config.weight_decay,
            )
            compile_for(model, train_config, optimizer, jit_compile=train_config.jit_compile)

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
            setup=setup,
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
        # The whole run's history: the CSV also holds the epochs before a resume (History only
        # the epochs of this call).
        hist = read_history(run_dir / HISTORY_CSV) or {
            k: [float(v) for v in vals] for k, vals in history.history.items()
        }
        if model.uncertainty_weighting:
            hist["learned_task_weights"] = model.learned_task_weights()
        if val_data is not None and "findings" in model.output:
            thresholds = tune_findings_thresholds(model, val_data, model_config.findings)
            (run_dir / THRESHOLDS_FILE).write_text(json.dumps(thresholds, indent=2) + "\n")
            if model_config.findings_guidance:
                # At inference the decoder is told the head's findings at these cut-offs.
                cut = [thresholds["findings"][f] for f in model_config.findings]
                model.heads.findings_guide.set_thresholds(cut)
        # EarlyStopping restored the best weights; save the final model (with the guidance
        # cut-offs) explicitly so the run directory holds it even when no epoch improved on a
        # checkpoint.
        model.save(run_dir / MODEL_FILE)
        # Last: history.json marks the run finished (run_finished); only then is the backup,
        # which a kill before this point resumes from, removed.
        _write_json_atomic(run_dir / HISTORY_FILE, hist)
        shutil.rmtree(run_dir / BACKUP_DIR, ignore_errors=True)
        epochs_run = len(hist.get("loss", []))
        return TrainResult(
            run_dir=run_dir,
            history=hist,
            model=model,
            epochs_run=epochs_run,
            setup=setup,
            initial_epoch=history.epoch[0] if history.epoch else epochs_run,
        )


def _check_same_data(run_dir: Path, saved: Run, ds: PreparedDataset) -> None:
    """A resume on another dataset would refit the tokenizer and vocabularies under the
    half-trained weights: refuse when the dataset's source or train-split size differ from
    those recorded in the run's ``config.json``."""
    was = saved.info.get("data") or {}
    n_train = len(ds.split("train"))
    now = {"source": ds.metadata.get("source"), "n_train": n_train}
    differs = [k for k in now if k in was and was[k] != now[k]]
    if differs:
        shown = ", ".join(f"{k} {now[k]} (the run's {was[k]})" for k in differs)
        raise ConfigError(
            f"{run_dir}: cannot resume with other settings: --data {ds.root} is not the "
            f"dataset the run was started on ({was.get('root')}): {shown}"
        )


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
