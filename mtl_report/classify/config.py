"""Settings of classifier training (:class:`ClassifierTrainConfig`) and the small helpers
every step shares (classes of a dataset, JSON output)."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mtl_report.config import ConfigError, _from_dict

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


def _jsonable(obj: Any) -> Any:
    from mtl_report.metrics import jsonable

    return jsonable(obj)


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(_jsonable(obj), indent=2) + "\n")
