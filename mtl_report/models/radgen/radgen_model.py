"""RadGen: a three-class (Normal / Pneumonia / Tuberculosis) image + report-text classifier.

::

    image ─► backbone (registry) ─► L×C ─► VisualEncoder ─► image tokens (L, d) ──┬──► ReportDecoder
                                                                                   │   (auxiliary
    report text ─► word tokens ─► ReportTextEncoder ─► text tokens (T, d) ──┐      │    report loss)
                                                                            ▼      ▼
                                             GatedCrossModalFusion: image⇄text cross-attention,
                                             pooled z_img, z_text; g = σ(W[z_img; z_text]);
                                             z = g·z_img + (1−g)·z_text            ─► gate (1,)
                                                            │
                                       MLP 512 → 256 → 128 (GELU, dropout) → softmax (classes)

The auxiliary decoder writes the report from the *image* tokens only (attending to the fused
or text tokens would let it copy the report it is given). The loss is
``L = L_cls + λ · L_report`` with class-weighted cross-entropy for ``L_cls``
(per-example weights in the targets) and the masked token loss of the Aksoy model.

Fusion variants (``RadGenConfig.fusion``), one builder for the full model and its baselines:

- ``"gated"``: the full model; ``"average"``: the same without the gate (g = 0.5);
- ``"early"``: mean-pooled image and text vectors concatenated, then the MLP (no attention
  between the modalities, no gate);
- ``"image"``: image path only; ``"text"``: report text only (no image input).

**Report-free mode**: a study whose report is empty (no word between ``[START]`` and
``[END]``) has ``text_present = 0``; the fusion layer then sets g = 1 and masks the text
out of the image branch, so the gated model *is* the image model for it. Train with empty
reports (``report_free=True`` in :mod:`mtl_report.classify`) for data without reports such
as the pneumonia sample; serve a fused model with ``report=""`` when a report is missing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import keras
from keras import ops

from mtl_report.config import ConfigError, _from_dict
from mtl_report.layers import (
    GatedCrossModalFusion,
    ReportDecoder,
    ReportTextEncoder,
    VisualEncoder,
)
from mtl_report.losses import masked_report_loss
from mtl_report.models import backbones

FUSIONS: tuple[str, ...] = ("gated", "average", "early", "image", "text")
DEFAULT_CLASSES: tuple[str, ...] = ("normal", "pneumonia", "tuberculosis")
#: Token ids that carry no word: padding, [START], [END] (ReportTokenizer layout).
_NON_WORD_IDS = (0, 2, 3)


@dataclass
class RadGenConfig:
    """Architecture of the RadGen classifier.

    Attributes:
        classes: class names in output order (at least 2).
        backbone: registry name (:data:`mtl_report.models.backbones.BACKBONES`).
        backbone_weights: None (random), ``"imagenet"`` or a weights file path.
        image_size: S (pixels per side).
        fusion: one of :data:`FUSIONS`.
        gate: ``"vector"`` (one gate per feature) or ``"scalar"`` (one per study).
        hidden_dim, num_heads, intermediate_dim, dropout: transformer sizes.
        num_visual_layers: self-attention blocks over the image tokens.
        num_text_layers: transformer encoder blocks over the report tokens.
        num_decoder_layers: auxiliary report decoder blocks.
        mlp_units: classifier hidden layers (512 → 256 → 128).
        mlp_dropout: dropout after each hidden layer.
        max_report_length: tokens per report incl. ``[START]``/``[END]``.
        report_loss_weight: λ of the auxiliary report loss; 0 = no decoder.
    """

    classes: tuple[str, ...] = DEFAULT_CLASSES
    backbone: str = "densenet121"
    backbone_weights: str | None = None
    image_size: int = 224
    fusion: str = "gated"
    gate: str = "vector"
    hidden_dim: int = 256
    num_heads: int = 4
    intermediate_dim: int = 512
    num_visual_layers: int = 1
    num_text_layers: int = 2
    num_decoder_layers: int = 1
    dropout: float = 0.1
    mlp_units: tuple[int, ...] = (512, 256, 128)
    mlp_dropout: float = 0.3
    max_report_length: int = 60
    report_loss_weight: float = 0.3

    def __post_init__(self) -> None:
        self.classes = tuple(str(c) for c in self.classes)
        self.mlp_units = tuple(int(u) for u in self.mlp_units)
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"classes must be >= 2 distinct names, got {list(self.classes)}")
        if self.fusion not in FUSIONS:
            raise ConfigError(f"unknown fusion {self.fusion!r}; choose from {list(FUSIONS)}")
        if self.backbone not in backbones.BACKBONES:
            raise ConfigError(
                f"unknown backbone {self.backbone!r}; choose from {sorted(backbones.BACKBONES)}"
            )
        if self.gate not in ("vector", "scalar"):
            raise ConfigError(f"gate must be 'vector' or 'scalar', got {self.gate!r}")
        if self.hidden_dim % self.num_heads:
            raise ConfigError("hidden_dim must be divisible by num_heads")
        if self.report_loss_weight < 0:
            raise ConfigError("report_loss_weight must be >= 0")
        if self.image_size < 16:
            raise ConfigError(f"image_size must be >= 16, got {self.image_size}")
        multiple = backbones.get_spec(self.backbone).size_multiple
        if self.uses_image and self.image_size % multiple:
            raise ConfigError(
                f"backbone {self.backbone} needs image_size a multiple of {multiple}, "
                f"got {self.image_size}"
            )

    @property
    def uses_image(self) -> bool:
        return self.fusion != "text"

    @property
    def uses_text(self) -> bool:
        return self.fusion != "image"

    @property
    def has_report_head(self) -> bool:
        return self.report_loss_weight > 0 and self.uses_image

    @property
    def has_gate(self) -> bool:
        return self.fusion in ("gated", "average")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RadGenConfig:
        return _from_dict(cls, dict(data))


def text_present(token_ids):
    """1.0 where a tokenised report holds at least one word, else 0.0: ``(batch,)``."""
    word = ops.ones_like(token_ids, dtype="bool")
    for i in _NON_WORD_IDS:
        word = ops.logical_and(word, ops.not_equal(token_ids, i))
    return ops.cast(ops.any(word, axis=-1), "float32")


@keras.saving.register_keras_serializable(package="mtl_report")
class RadGenModel(keras.Model):
    """The RadGen classifier (functional, serialisable).

    Args:
        config: :class:`RadGenConfig` as a dict.
        vocab_size: report tokenizer vocabulary size (text encoder and decoder).
        backbone: the image backbone model (``image → (L, C)``); built from the config when
            None (random or configured weights).

    Inputs (dict): ``image`` ``(S, S, 3)`` float32 in [0, 255] (not for ``fusion="text"``),
    ``text_tokens`` ``(T,)`` int32 report tokens (not for ``"image"``), and with the report
    head ``report_tokens`` ``(T-1,)`` int32 (decoder input, teacher forcing).

    Outputs (dict): ``probabilities`` ``(n_classes,)`` float32; ``gate`` ``(1,)`` float32
    image weight (gated/average fusion); ``report`` logits ``(T-1, vocab)`` (report head).
    """

    def __init__(
        self,
        config: Mapping,
        vocab_size: int,
        backbone: keras.Model | Mapping | None = None,
        **kwargs,
    ):
        cfg = RadGenConfig.from_dict(dict(config))
        if isinstance(backbone, Mapping):
            backbone = keras.saving.deserialize_keras_object(dict(backbone))
        if cfg.uses_image and backbone is None:
            backbone = backbones.build_backbone(cfg.backbone, cfg.image_size, cfg.backbone_weights)
        if not cfg.uses_image:
            backbone = None
        d = cfg.hidden_dim
        T = cfg.max_report_length

        inputs: dict[str, keras.KerasTensor] = {}
        image_tokens = text_tokens = text_mask = present = None
        visual_encoder = report_decoder = None
        if cfg.uses_image:
            inputs["image"] = keras.Input((cfg.image_size, cfg.image_size, 3), name="image")
            visual_encoder = VisualEncoder(
                d,
                cfg.num_heads,
                cfg.intermediate_dim,
                cfg.num_visual_layers,
                cfg.dropout,
                name="visual_encoder",
            )
            image_tokens = visual_encoder(backbone(inputs["image"]))
        if cfg.uses_text:
            inputs["text_tokens"] = keras.Input((T,), dtype="int32", name="text_tokens")
            text_tokens, text_mask = ReportTextEncoder(
                int(vocab_size),
                T,
                d,
                cfg.num_heads,
                cfg.intermediate_dim,
                cfg.num_text_layers,
                cfg.dropout,
                name="text_encoder",
            )(inputs["text_tokens"])
            present = keras.layers.Lambda(text_present, name="text_present")(inputs["text_tokens"])
        if cfg.has_report_head:
            inputs["report_tokens"] = keras.Input((T - 1,), dtype="int32", name="report_tokens")

        outputs: dict[str, keras.KerasTensor] = {}
        if cfg.has_gate:
            z, gate = GatedCrossModalFusion(
                d, cfg.num_heads, cfg.dropout, gate=cfg.gate, mode=cfg.fusion, name="fusion"
            )(image_tokens, text_tokens, text_mask, present)
            outputs["gate"] = keras.layers.Activation("linear", dtype="float32", name="gate")(gate)
        elif cfg.fusion == "early":
            z_img = keras.layers.GlobalAveragePooling1D(name="pool_image")(image_tokens)
            z_text = keras.layers.GlobalAveragePooling1D(name="pool_text")(
                text_tokens, mask=text_mask
            )
            z = keras.layers.Concatenate(name="early_fusion")([z_img, z_text])
        elif cfg.fusion == "image":
            z = keras.layers.GlobalAveragePooling1D(name="pool_image")(image_tokens)
        else:
            z = keras.layers.GlobalAveragePooling1D(name="pool_text")(text_tokens, mask=text_mask)

        x = z
        for i, units in enumerate(cfg.mlp_units):
            x = keras.layers.Dense(units, activation="gelu", name=f"mlp_{i}")(x)
            x = keras.layers.Dropout(cfg.mlp_dropout, name=f"mlp_dropout_{i}")(x)
        outputs["probabilities"] = keras.layers.Dense(
            len(cfg.classes), activation="softmax", dtype="float32", name="probabilities"
        )(x)
        if cfg.has_report_head:
            report_decoder = ReportDecoder(
                int(vocab_size),
                T,
                d,
                cfg.num_heads,
                cfg.intermediate_dim,
                cfg.num_decoder_layers,
                cfg.dropout,
                name="report",
            )
            outputs["report"] = report_decoder(inputs["report_tokens"], image_tokens)

        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.visual_encoder = visual_encoder
        self.report_decoder = report_decoder
        self.model_config = cfg
        self.vocab_size = int(vocab_size)
        self.backbone = backbone
        self.cls_loss_tracker = keras.metrics.Mean(name="cls_loss")
        self.report_loss_tracker = keras.metrics.Mean(name="report_loss")

    def encode_image(self, images, training: bool = False):
        """Image tokens ``(batch, L, d)`` of images ``(batch, S, S, 3)``: what the fusion
        and the auxiliary report decoder read."""
        if self.visual_encoder is None:
            raise ValueError(f"a {self.model_config.fusion!r} model reads no image")
        features = self.backbone(images, training=training)
        return self.visual_encoder(features, training=training)

    # -- training --------------------------------------------------------------------------
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """``L = weighted CE(label) + λ · masked token CE(report)``.

        ``y``: ``label`` ``(batch,)`` int class index, optional ``weight`` ``(batch,)``
        per-example weights (class weighting), ``report`` ``(batch, T-1)`` targets.
        """
        probs = ops.clip(ops.cast(y_pred["probabilities"], "float32"), 1e-7, 1.0)
        label = ops.cast(ops.reshape(y["label"], (-1,)), "int32")
        ce = -ops.log(ops.take_along_axis(probs, label[:, None], axis=1)[:, 0])
        weight = y.get("weight")
        weight = (
            ops.ones_like(ce) if weight is None else ops.cast(ops.reshape(weight, (-1,)), "float32")
        )
        cls_loss = ops.sum(ce * weight) / ops.maximum(ops.sum(weight), 1e-7)
        self.cls_loss_tracker.update_state(cls_loss)
        total = cls_loss
        if self.model_config.has_report_head and "report" in y:
            report_loss = masked_report_loss(y["report"], y_pred["report"])
            self.report_loss_tracker.update_state(report_loss)
            total = total + self.model_config.report_loss_weight * report_loss
        if self.losses:
            total = total + ops.sum(ops.stack([ops.cast(v, "float32") for v in self.losses]))
        return total

    # -- serialisation ---------------------------------------------------------------------
    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "config": self.model_config.to_dict(),
            "vocab_size": self.vocab_size,
            "backbone": (
                keras.saving.serialize_keras_object(self.backbone) if self.backbone else None
            ),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def build_radgen_model(
    config: RadGenConfig, vocab_size: int, backbone: keras.Model | None = None
) -> RadGenModel:
    """The RadGen classifier for ``config`` (backbone built from the registry if not given)."""
    if vocab_size < 4:
        raise ConfigError(f"vocab_size must be >= 4 (the special tokens), got {vocab_size}")
    return RadGenModel(config.to_dict(), vocab_size, backbone, name=f"radgen_{config.fusion}")
