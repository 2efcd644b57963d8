"""Configuration dataclasses: what a model is, and how it is trained.

Configs are plain dataclasses with a JSON round trip (``to_dict``/``from_dict``), written to
every run directory so that a run can be evaluated, resumed or exported on another machine.
They import nothing heavy.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TASKS: tuple[str, ...] = ("text", "acuity", "findings")


class ConfigError(ValueError):
    """An inconsistent configuration, reported before any training starts."""


def _from_dict(cls, data: dict[str, Any]):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}")
    kwargs = dict(data)
    for f in dataclasses.fields(cls):
        if f.name in kwargs and isinstance(kwargs[f.name], list):
            kwargs[f.name] = tuple(kwargs[f.name])
    return cls(**kwargs)


@dataclass
class ModelConfig:
    """Architecture of the Aksoy multi-task model.

    Defaults follow the paper where it says (3 attention heads, feed-forward 256); the model
    width is 192 so that each head has 64 dimensions.

    Attributes:
        tasks: heads to build, a subset of ``("text", "acuity", "findings")``.
        backbone: registry name of the image backbone (``mtl_report.models.backbones``).
        backbone_weights: ``"imagenet"`` (download, online users), a weights file path
            (offline), or ``None`` (random initialisation: tests only).
        image_size: square input size of the backbone.
        fine_tune_backbone: train the backbone end to end instead of caching its features.
        hidden_dim: model width of all transformer blocks.
        num_heads: attention heads.
        intermediate_dim: feed-forward width.
        num_visual_layers: self-attention blocks over the image vectors.
        num_shared_layers: shared encoder blocks after the cross-attention.
        num_decoder_layers: transformer decoder blocks of the report head.
        dropout: dropout in every block.
        max_report_length: report tokens including ``[START]``/``[END]``.
        text_feature_length: tokens kept of the chief complaint and of the ICD title.
        text_feature_vocab: vocabulary cap of the complaint/ICD embeddings.
        findings: names of the multi-label findings, in output order.
        findings_guidance: the report decoder is told the findings, as one "present" or
            "absent" vector per finding in its memory and their sum added to its word
            embeddings (the labels in training, the findings head's thresholded prediction
            at inference; :class:`~mtl_report.layers.FindingsGuide`). Needs the text and
            findings heads. Not in the paper; set-up ``mtl_tp_guided``.
    """

    tasks: tuple[str, ...] = TASKS
    backbone: str = "efficientnet_b0"
    backbone_weights: str | None = None
    image_size: int = 224
    fine_tune_backbone: bool = False
    hidden_dim: int = 192
    num_heads: int = 3
    intermediate_dim: int = 256
    num_visual_layers: int = 1
    num_shared_layers: int = 1
    num_decoder_layers: int = 1
    dropout: float = 0.1
    max_report_length: int = 60
    text_feature_length: int = 16
    text_feature_vocab: int = 2000
    findings: tuple[str, ...] = (
        "Atelectasis",
        "Cardiomegaly",
        "Pleural Effusion",
        "Pneumothorax",
        "Lung Opacity",
    )
    findings_guidance: bool = False

    def __post_init__(self) -> None:
        self.tasks = tuple(self.tasks)
        self.findings = tuple(self.findings)
        bad = set(self.tasks) - set(TASKS)
        if bad or not self.tasks:
            raise ConfigError(f"tasks must be a non-empty subset of {TASKS}, got {self.tasks}")
        if self.hidden_dim % self.num_heads:
            raise ConfigError(
                f"hidden_dim {self.hidden_dim} is not divisible by num_heads {self.num_heads}"
            )
        if self.findings_guidance and not {"text", "findings"} <= set(self.tasks):
            raise ConfigError(
                f"findings_guidance needs the text and findings heads, tasks are {self.tasks}"
            )
        if self.max_report_length < 3:
            raise ConfigError("max_report_length must leave room for [START], a word, [END]")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return _from_dict(cls, data)


@dataclass
class TrainConfig:
    """How a model is trained: task weights, optimiser, schedule, stopping.

    Paper settings as defaults: Adam with linear warmup over 10% of the steps to 3e-5,
    batch 32, up to 100 epochs, early stopping on validation loss with patience 10
    restoring the best weights.

    Attributes:
        setup: name of the training set-up (``mtl_report.models.aksoy.aksoy_setups``).
        alpha, beta, gamma: weights of the text, acuity and findings losses.
        uncertainty_weighting: learn the task weights (Kendall et al. 2018) instead.
        deterministic: run TensorFlow's ops deterministically while this run trains
            (``tf.config.experimental.enable_op_determinism``), so that the same seed, data
            and machine give the same weights and metrics twice; recorded in
            ``config.json``.
    """

    setup: str = "mtl_tp"
    alpha: float = 1.0
    beta: float = 0.5
    gamma: float = 0.25
    uncertainty_weighting: bool = False
    learning_rate: float = 3e-5
    warmup_fraction: float = 0.1
    weight_decay: float = 0.0
    batch_size: int = 32
    epochs: int = 100
    patience: int = 10
    seed: int = 0
    mixed_precision: bool = False
    augment: bool = False
    jit_compile: bool | str = "auto"
    deterministic: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "gamma"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ConfigError("learning_rate must be positive")
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError("warmup_fraction must be in [0, 1)")
        if self.batch_size < 1 or self.epochs < 1:
            raise ConfigError("batch_size and epochs must be >= 1")

    def task_weights(self) -> dict[str, float]:
        return {"text": self.alpha, "acuity": self.beta, "findings": self.gamma}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return _from_dict(cls, data)


def check_consistent(model: ModelConfig, train: TrainConfig) -> None:
    """Fail before training when the task weights and the built heads disagree.

    A head that is built must have a positive weight (or learned weights), and a positive
    weight needs its head: ``stl_text`` with ``gamma > 0`` is an error, not a silent no-op.
    """
    weights = train.task_weights()
    for task, weight in weights.items():
        if task in model.tasks and weight == 0 and not train.uncertainty_weighting:
            raise ConfigError(
                f"task {task!r} has a head but weight 0 (set-up {train.setup}); "
                f"drop it from tasks or give it a weight"
            )
        if task not in model.tasks and weight > 0:
            raise ConfigError(
                f"weight {weight} for task {task!r}, which set-up {train.setup} does not "
                f"build (tasks {list(model.tasks)}); set it to 0"
            )


def save_json(obj: ModelConfig | TrainConfig, path: Path) -> None:
    Path(path).write_text(json.dumps(obj.to_dict(), indent=2) + "\n")
