"""Run directories: everything needed to evaluate, resume or export a trained model.

A run directory holds::

    config.json          model + train config, preset, data reference, seeds, versions
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
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mtl_report.config import ModelConfig, TrainConfig
from preprocessing.errors import DataError

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


def word_vocabulary(texts: Iterable[str], max_size: int, min_count: int = 1) -> list[str]:
    """Most frequent words of normalised texts (ties broken alphabetically, deterministic)."""
    counts = Counter(w for t in texts if isinstance(t, str) for w in t.split())
    ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return ranked[:max_size]


def feature_vocabularies(train: pd.DataFrame, cleaning: Mapping, max_words: int) -> dict:
    """Vocabularies of the ED features, fitted on the train split only."""
    categories = cleaning.get("categories", {})
    return {
        "gender": list(categories.get("gender", ["unknown"])),
        "ethnicity": list(categories.get("ethnicity", ["unknown"])),
        "chief_complaint": word_vocabulary(train["chief_complaint"], max_words),
        "icd_title": word_vocabulary(train["icd_title"], max_words),
    }


@dataclass
class Run:
    """A loaded run directory."""

    root: Path
    model_config: ModelConfig
    train_config: TrainConfig
    info: dict
    vocabularies: dict

    @classmethod
    def read(cls, root: Path) -> Run:
        root = Path(root)
        if not (root / CONFIG_FILE).is_file():
            raise DataError(f"{root}: not a run directory ({CONFIG_FILE} missing)")
        info = json.loads((root / CONFIG_FILE).read_text())
        return cls(
            root=root,
            model_config=ModelConfig.from_dict(info["model"]),
            train_config=TrainConfig.from_dict(info["train"]),
            info=info,
            vocabularies=json.loads((root / VOCAB_FILE).read_text()),
        )

    def tokenizer(self):
        from mtl_report.text import ReportTokenizer

        return ReportTokenizer.load(self.root / TOKENIZER_DIR)

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
        import keras

        import mtl_report.models.aksoy  # noqa: F401 - registers the custom classes

        path = self.root / MODEL_FILE
        if not path.is_file():
            raise DataError(f"{self.root}: no trained model ({MODEL_FILE} missing)")
        return keras.models.load_model(path, compile=False)


def write_run_config(root: Path, model_config: ModelConfig, train_config: TrainConfig, **info):
    import keras
    import tensorflow as tf

    from mtl_report.version import __version__

    data = {
        "model": model_config.to_dict(),
        "train": train_config.to_dict(),
        "versions": {
            "mtl_report": __version__,
            "keras": keras.__version__,
            "tensorflow": tf.__version__,
        },
        **info,
    }
    (Path(root) / CONFIG_FILE).write_text(json.dumps(data, indent=2, default=str) + "\n")
