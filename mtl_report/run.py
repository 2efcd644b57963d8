"""Run directories: everything needed to evaluate, resume, serve or export a trained model.

One reader and writer for both kinds of run: a report run (the Aksoy model, ``mtl-report
train``; :class:`Run`, loaded as a preset by
:meth:`mtl_report.models.aksoy.AksoyReportGenerator.from_preset`) and a classifier run
(RadGen, ``mtl-report classify train``; :class:`ClassifierRun`, loaded by
:meth:`mtl_report.models.radgen.RadGenClassifier.from_preset`). ``config.json`` names the
``kind`` and the layout version (``run_format``); a run of the other kind or of another
layout is refused with a one-line reason.

A report run directory holds::

    config.json          model + train config, set-up, data reference, seeds, versions
    vocabularies.json    ED-feature vocabularies (categories, complaint / ICD words)
    cleaning.json        the dataset's fitted cleaning transform (vital scaling, categories)
    backbone.weights.h5  the frozen backbone's weights (when features were cached)
    thresholds.json      per-finding cut-offs chosen on the validation split (F1-optimal)
    tokenizer/           report tokenizer (vocabulary and settings)
    model.keras          the trained model (best weights when early stopping restored them)
    history.json/.csv    per-epoch losses (total and per task), whole across a resume
    backup/              BackupAndRestore state while training (removed when done)
    logs/                TensorBoard

``history.json`` is written last, when training has finished: a run directory that has it
is finished (:func:`run_finished`) and ``train --resume`` refuses to train it again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mtl_report.config import ModelConfig, TrainConfig
from mtl_report.data.errors import DataError

CONFIG_FILE = "config.json"
VOCAB_FILE = "vocabularies.json"
MODEL_FILE = "model.keras"
TOKENIZER_DIR = "tokenizer"
CLEANING_FILE = "cleaning.json"
BACKBONE_FILE = "backbone.weights.h5"
THRESHOLDS_FILE = "thresholds.json"
HISTORY_FILE = "history.json"
HISTORY_CSV = "history.csv"
BACKUP_DIR = "backup"
#: Version of the report run-directory layout this package reads and writes. 2: the model
#: takes numbers and the preprocessor (``cleaning.json`` + ``vocabularies.json``) makes them.
#: 3: ``model.keras`` holds an ``AksoyModel`` task over an ``AksoyBackbone``.
RUN_FORMAT = 3
REPORT, CLASSIFIER = "report", "classifier"
#: Layout version read and written per kind of run (classifier runs: config.json, model.keras,
#: tokenizer/, history and metrics; unchanged since the first version).
RUN_FORMATS = {REPORT: RUN_FORMAT, CLASSIFIER: 1}
_COMMANDS = {REPORT: "mtl-report generate / evaluate / export", CLASSIFIER: "mtl-report classify"}


def run_kind(info: Mapping) -> str:
    """``"report"`` or ``"classifier"`` (runs written before ``kind`` was recorded are told
    apart by the classifier's ``classes`` entry)."""
    return str(info.get("kind") or (CLASSIFIER if "classes" in info else REPORT))


def read_run_info(root: Path, kind: str) -> dict:
    """``config.json`` of a run directory of ``kind``, its kind and layout checked.

    Raises:
        DataError: not a run directory, unreadable, another kind, another layout version.
    """
    root = Path(root)
    path = root / CONFIG_FILE
    if not path.is_file():
        raise DataError(f"{root}: not a run directory ({CONFIG_FILE} missing)")
    try:
        info = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(info, dict):
        raise DataError(f"{path}: not a run configuration")
    found = run_kind(info)
    if found != kind:
        raise DataError(f"{root}: a {found} run, not a {kind} run (use {_COMMANDS[found]})")
    check_run_format(root, info, kind)
    return info


def run_versions() -> dict[str, str]:
    """Versions recorded in every run's ``config.json``."""
    import keras
    import tensorflow as tf

    from mtl_report.version import __version__

    return {"mtl_report": __version__, "keras": keras.__version__, "tensorflow": tf.__version__}


def write_run_info(root: Path, kind: str, **info) -> None:
    """Write ``config.json`` of a run of ``kind``: its layout version, kind and versions
    first, then ``info``."""
    data = {"run_format": RUN_FORMATS[kind], "kind": kind, "versions": run_versions(), **info}
    (Path(root) / CONFIG_FILE).write_text(json.dumps(data, indent=2, default=str) + "\n")


def run_finished(root: Path) -> bool:
    """Whether training of the run directory ``root`` ran to its end.

    ``history.json`` is written last by :func:`mtl_report.training.train` (atomically), so
    its presence is the finish marker. Runs written before that order was fixed left
    ``model.keras`` without ``backup/`` once done (and during training ``backup/`` is written
    before ``model.keras``), so that pair counts as finished as well: resuming such a run
    would silently train it again from epoch 0.
    """
    root = Path(root)
    if (root / HISTORY_FILE).is_file():
        return True
    return (root / MODEL_FILE).is_file() and not (root / BACKUP_DIR).exists()


class _RunFiles:
    """What every kind of run directory has: a tokenizer and a Keras model file."""

    root: Path

    def tokenizer(self):
        from mtl_report.text import ReportTokenizer

        return ReportTokenizer.load(self.root / TOKENIZER_DIR)

    def _load_keras_model(self, registering_module: str):
        """``model.keras``, after importing the module that registers its custom classes."""
        import importlib

        import keras

        importlib.import_module(registering_module)
        path = self.root / MODEL_FILE
        if not path.is_file():
            raise DataError(f"{self.root}: no trained model ({MODEL_FILE} missing)")
        return keras.models.load_model(path, compile=False)


@dataclass
class Run(_RunFiles):
    """A loaded report run directory."""

    root: Path
    model_config: ModelConfig
    train_config: TrainConfig
    info: dict
    vocabularies: dict

    @classmethod
    def read(cls, root: Path) -> Run:
        root = Path(root)
        info = read_run_info(root, REPORT)
        return cls(
            root=root,
            model_config=ModelConfig.from_dict(info["model"]),
            train_config=TrainConfig.from_dict(info["train"]),
            info=info,
            vocabularies=json.loads((root / VOCAB_FILE).read_text()),
        )

    def preprocessor(self):
        """The run's :class:`~mtl_report.models.aksoy.AksoyPreprocessor`: raw ED fields →
        model inputs, with the dataset's cleaning and the train vocabularies."""
        from mtl_report.models.aksoy import AksoyPreprocessor

        return AksoyPreprocessor.from_cleaning(
            self.cleaning, self.vocabularies, self.model_config.text_feature_length
        )

    @property
    def cleaning(self) -> dict:
        path = self.root / CLEANING_FILE
        if not path.is_file():
            raise DataError(f"{self.root}: {CLEANING_FILE} missing (an incomplete run directory)")
        return json.loads(path.read_text())

    def _check_not_text_only(self) -> None:
        if self.info.get("text_only"):
            raise DataError(
                f"{self.root}: trained on a text-only dataset (a report language model that "
                "never saw an image); it cannot read images: generate and export need an "
                "image run"
            )

    def check_reads_images(self) -> None:
        """Fail now, before any model load, when the run cannot serve images: trained on
        text only, or its model or frozen backbone weights missing.

        Raises:
            DataError: naming the reason.
        """
        self._check_not_text_only()
        if not (self.root / MODEL_FILE).is_file():
            raise DataError(f"{self.root}: no trained model ({MODEL_FILE} missing)")
        if not self.model_config.fine_tune_backbone and not (self.root / BACKBONE_FILE).is_file():
            raise DataError(f"{self.root}: {BACKBONE_FILE} missing (was the backbone fine-tuned?)")

    def findings_thresholds(self) -> list[float] | None:
        """Per-finding cut-offs chosen on the validation split (None: use 0.5)."""
        path = self.root / THRESHOLDS_FILE
        if not path.is_file():
            return None
        values = json.loads(path.read_text())["findings"]
        return [float(values[f]) for f in self.model_config.findings]

    def load_backbone(self):
        """The frozen backbone the run was trained on (weights from the run directory)."""
        from mtl_report.models.backbones import build_backbone

        self._check_not_text_only()
        cfg = self.model_config
        backbone = build_backbone(cfg.backbone, cfg.image_size, None)
        path = self.root / BACKBONE_FILE
        if not path.is_file():
            raise DataError(f"{self.root}: {BACKBONE_FILE} missing (was the backbone fine-tuned?)")
        backbone.load_weights(path)
        return backbone

    def load_model(self):
        return self._load_keras_model("mtl_report.models.aksoy")


def check_run_format(root: Path, info: Mapping, kind: str = REPORT) -> None:
    """DataError when ``config.json`` was written for another run-directory layout."""
    found = int(info.get("run_format", 1))
    expected = RUN_FORMATS[kind]
    if found != expected:
        version = info.get("versions", {}).get("mtl_report", "an older version")
        raise DataError(
            f"{root}: run written by mtl_report {version} (run format {found}); this version "
            f"reads run format {expected}: train the run again"
        )


def write_run_config(root: Path, model_config: ModelConfig, train_config: TrainConfig, **info):
    """``config.json`` of a report run."""
    write_run_info(root, REPORT, model=model_config.to_dict(), train=train_config.to_dict(), **info)


@dataclass
class ClassifierRun(_RunFiles):
    """A loaded classifier (RadGen) run directory: ``config.json``, ``model.keras``,
    ``tokenizer/``."""

    root: Path
    info: dict

    @classmethod
    def read(cls, root: Path) -> ClassifierRun:
        root = Path(root)
        info = read_run_info(root, CLASSIFIER)
        if not (root / MODEL_FILE).is_file():
            raise DataError(f"{root}: no trained model ({MODEL_FILE} missing)")
        return cls(root=root, info=info)

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.info["classes"])

    def load_model(self):
        return self._load_keras_model("mtl_report.models.radgen")
