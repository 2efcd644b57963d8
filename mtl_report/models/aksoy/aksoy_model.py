"""The Aksoy et al. cross-modal multi-task model as a Keras functional model.

::

    image ─► backbone ─► L×C vectors ─► VisualEncoder (self-attention) ─┐ queries
    vitals, gender, ethnicity, complaint, ICD ─► UnifiedDataBlock ──────┤ keys/values
                                                   CrossModalAttention ◄┘
                                                            │
                                                  shared TransformerEncoder
                                   ┌────────────────────────┼──────────────────────┐
                            ReportDecoder        CumulativeOrdinalHead      MultiLabelHead
                          (report logits)         (P(acuity > k), 4)        (findings, 5)

Only the heads of the configured tasks are built. With a frozen backbone the model takes
cached ``image_features`` (fast experiments); with ``fine_tune_backbone`` the backbone is
part of the model and it takes ``image``. The loss is ``α·text + β·acuity + γ·findings``
over masked per-task losses, or learned uncertainty weights (Kendall et al. 2018).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import keras
from keras import ops

from mtl_report.config import ModelConfig, TrainConfig, check_consistent
from mtl_report.layers import (
    CrossModalAttention,
    CumulativeOrdinalHead,
    FindingsGuide,
    MultiLabelHead,
    ReportDecoder,
    UnifiedDataBlock,
    VisualEncoder,
)
from mtl_report.losses import TASK_LOSSES
from mtl_report.models import backbones
from mtl_report.models.aksoy.aksoy_preprocessor import ED_INPUTS

#: ``AksoyModel``'s ``vocabulary_sizes`` keys: the ED inputs' index ranges and the report's.
VOCABULARY_SIZE_KEYS = ("gender", "ethnicity", "chief_complaint", "icd_title", "report")
OUTPUT_OF_TASK = {"text": "report", "acuity": "acuity", "findings": "findings"}
#: Input of a findings-guided model (``ModelConfig.findings_guidance``): per finding 1, 0,
#: or NaN (unknown: the findings head decides). Training feeds the labels; inference NaN.
GUIDE_INPUT = "findings_guide"


def complete_inputs(model: keras.Model, x: dict) -> dict:
    """``x`` with an all-unknown ``findings_guide`` added where ``model`` takes one.

    Inference callers (generate, evaluate, export) know no findings; the model then uses
    its own findings head. Other inputs are left as they are.
    """
    names = model.input if isinstance(model.input, dict) else {}
    if GUIDE_INPUT not in names or GUIDE_INPUT in x:
        return x
    import tensorflow as tf

    width = names[GUIDE_INPUT].shape[-1]
    batch = tf.shape(next(iter(v for k, v in x.items() if k != "report_tokens")))[0]
    return {**x, GUIDE_INPUT: tf.fill(tf.stack([batch, width]), float("nan"))}


@dataclass
class AksoyLayers:
    """The model's layers and the one function that wires the encoder and the heads.

    :class:`AksoyModel` calls :meth:`encode` once on symbolic inputs to build its graph, and
    again on tensors for generation (:meth:`AksoyModel.encode`): one definition of the
    forward pass, no sub-model cut out by layer names.
    """

    backbone: keras.Model | None
    visual_encoder: VisualEncoder
    unified_data: UnifiedDataBlock
    cross_attention: CrossModalAttention
    shared: list
    findings_head: MultiLabelHead | None
    findings_guide: FindingsGuide | None
    acuity_head: CumulativeOrdinalHead | None
    report_decoder: ReportDecoder | None

    def encode(self, inputs: Mapping, training=None) -> dict:
        """Model inputs → ``memory`` (what the decoder reads), ``condition`` (findings
        guidance), and the ``acuity`` / ``findings`` outputs."""
        if self.backbone is not None:
            features = self.backbone(inputs["image"], training=training)
        else:
            features = inputs["image_features"]
        visual = self.visual_encoder(features, training=training)
        tokens, token_mask = self.unified_data(*(inputs[k] for k in ED_INPUTS), training=training)
        memory = self.cross_attention(visual, tokens, token_mask, training=training)
        for block in self.shared:
            memory = block(memory, training=training)
        out = {"memory": memory}
        if self.acuity_head is not None:
            out["acuity"] = self.acuity_head(memory)
        if self.findings_head is not None:
            out["findings"] = self.findings_head(memory)
        if self.findings_guide is not None:  # the decoder reads the head's prediction
            out["memory"], out["condition"] = self.findings_guide(
                memory, out["findings"], inputs[GUIDE_INPUT]
            )
        return out


@keras.saving.register_keras_serializable(package="mtl_report")
class AksoyModel(keras.Model):
    """Cross-modal multi-task report model (functional, serialisable).

    Args:
        config: :class:`ModelConfig` as a dict.
        vocabulary_sizes: index range per ED input (``gender``, ``ethnicity``,
            ``chief_complaint``, ``icd_title``: :meth:`AksoyPreprocessor.vocabulary_sizes`)
            and ``report`` (the report tokenizer's vocabulary size).
        task_weights: ``{"text": α, "acuity": β, "findings": γ}``.
        uncertainty_weighting: learn one log-variance per task instead of fixed weights.
        feature_shape: ``(L, C)`` of cached features (frozen backbone).
        backbone: a backbone model (``image → (L, C)``) to include; then the input is
            ``image`` instead of ``image_features``.

    Inputs (dict), numbers only: ``image_features`` ``(L, C)`` or ``image`` ``(S, S, 3)``,
    the ED inputs of :class:`~mtl_report.models.aksoy.AksoyPreprocessor` (``vitals`` and
    ``vitals_mask`` ``(6,)``, ``gender`` and ``ethnicity`` int32 ``()``, ``chief_complaint``
    and ``icd_title`` int32 ``(text_length,)``), and with the text task ``report_tokens``
    ``(T,)`` (teacher forcing).
    Outputs (dict): ``report`` logits ``(T, vocab)``, ``acuity`` ``(4,)`` cumulative
    probabilities, ``findings`` ``(n_findings,)`` probabilities.
    """

    def __init__(
        self,
        config: Mapping,
        vocabulary_sizes: Mapping[str, int],
        task_weights: Mapping[str, float] | None = None,
        uncertainty_weighting: bool = False,
        feature_shape: tuple[int, int] | None = None,
        backbone: keras.Model | None = None,
        **kwargs,
    ):
        cfg = ModelConfig.from_dict(dict(config))
        if isinstance(backbone, dict):
            backbone = keras.saving.deserialize_keras_object(backbone)
        d = cfg.hidden_dim
        missing = [k for k in VOCABULARY_SIZE_KEYS if k not in vocabulary_sizes]
        if missing:
            raise ValueError(f"vocabulary_sizes lacks {missing}")
        sizes = {k: int(vocabulary_sizes[k]) for k in VOCABULARY_SIZE_KEYS}

        # === Inputs ===
        inputs: dict[str, keras.KerasTensor] = {}
        if backbone is not None:
            inputs["image"] = keras.Input((cfg.image_size, cfg.image_size, 3), name="image")
        else:
            shape = tuple(feature_shape or backbones.feature_shape(cfg.backbone, cfg.image_size))
            inputs["image_features"] = keras.Input(shape, name="image_features")
        inputs["vitals"] = keras.Input((6,), name="vitals")
        inputs["vitals_mask"] = keras.Input((6,), name="vitals_mask")
        for name in ("gender", "ethnicity"):
            inputs[name] = keras.Input((), dtype="int32", name=name)
        for name in ("chief_complaint", "icd_title"):
            inputs[name] = keras.Input((cfg.text_feature_length,), dtype="int32", name=name)
        if "text" in cfg.tasks:
            inputs["report_tokens"] = keras.Input(
                (cfg.max_report_length - 1,), dtype="int32", name="report_tokens"
            )
        if cfg.findings_guidance:
            inputs[GUIDE_INPUT] = keras.Input((len(cfg.findings),), name=GUIDE_INPUT)

        # === Layers ===
        import keras_hub

        layers = AksoyLayers(
            backbone=backbone,
            visual_encoder=VisualEncoder(
                d,
                cfg.num_heads,
                cfg.intermediate_dim,
                cfg.num_visual_layers,
                cfg.dropout,
                name="visual_encoder",
            ),
            unified_data=UnifiedDataBlock(
                d,
                sizes["gender"],
                sizes["ethnicity"],
                sizes["chief_complaint"],
                sizes["icd_title"],
                dropout=cfg.dropout,
                name="unified_data",
            ),
            cross_attention=CrossModalAttention(
                d, cfg.num_heads, cfg.dropout, name="cross_attention"
            ),
            shared=[
                keras_hub.layers.TransformerEncoder(
                    cfg.intermediate_dim, cfg.num_heads, dropout=cfg.dropout, name=f"shared_{i}"
                )
                for i in range(cfg.num_shared_layers)
            ],
            findings_head=(
                MultiLabelHead(len(cfg.findings), name="findings")
                if "findings" in cfg.tasks
                else None
            ),
            findings_guide=(
                FindingsGuide(len(cfg.findings), d, name="findings_tokens")
                if cfg.findings_guidance
                else None
            ),
            acuity_head=CumulativeOrdinalHead(name="acuity") if "acuity" in cfg.tasks else None,
            report_decoder=(
                ReportDecoder(
                    sizes["report"],
                    cfg.max_report_length,
                    d,
                    cfg.num_heads,
                    cfg.intermediate_dim,
                    cfg.num_decoder_layers,
                    cfg.dropout,
                    name="report",
                )
                if "text" in cfg.tasks
                else None
            ),
        )

        # === Graph ===
        encoded = layers.encode(inputs)
        outputs = {k: encoded[k] for k in ("acuity", "findings") if k in encoded}
        if layers.report_decoder is not None:
            outputs["report"] = layers.report_decoder(
                inputs["report_tokens"], encoded["memory"], encoded.get("condition")
            )

        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.model_config = cfg
        self.vocabulary_sizes = sizes
        self.task_weights = dict(task_weights or {t: 1.0 for t in cfg.tasks})
        self.uncertainty_weighting = uncertainty_weighting
        self.feature_shape = (
            None if backbone is not None else tuple(inputs["image_features"].shape[1:])
        )
        self.backbone = backbone
        self.parts = layers
        self.tasks = cfg.tasks
        self.task_loss_trackers = {t: keras.metrics.Mean(name=f"{t}_loss") for t in self.tasks}
        if uncertainty_weighting:
            self.log_variances = self.add_weight(
                shape=(len(self.tasks),), initializer="zeros", name="task_log_variances"
            )

    # -- training --------------------------------------------------------------------------
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        total = ops.convert_to_tensor(0.0)
        for i, task in enumerate(self.tasks):
            key, loss_fn = TASK_LOSSES[task]
            loss = loss_fn(y[key], y_pred[key])
            self.task_loss_trackers[task].update_state(loss)
            if self.uncertainty_weighting:
                s = ops.cast(self.log_variances[i], "float32")
                total = total + ops.exp(-s) * loss + 0.5 * s
            else:
                total = total + float(self.task_weights.get(task, 0.0)) * loss
        if self.losses:
            total = total + ops.sum(ops.stack([ops.cast(v, "float32") for v in self.losses]))
        return total

    # -- inference -------------------------------------------------------------------------
    def encode(self, inputs: Mapping, training: bool = False) -> dict:
        """Everything but the report: ``memory`` ``(batch, L, d)`` the decoder attends to
        (with findings guidance, followed by the finding tokens), ``condition``
        ``(batch, d)`` with findings guidance, and the ``acuity`` / ``findings`` outputs of
        the model's heads. ``inputs`` as for the model, without ``report_tokens``
        (a findings guide, when the model reads one, defaults to unknown)."""
        inputs = complete_inputs(self, {k: v for k, v in inputs.items() if k != "report_tokens"})
        return self.parts.encode(inputs, training=training)

    def init_cache(self, encoded: Mapping, max_steps: int) -> tuple:
        """``(state, constants)`` for :meth:`call_with_cache` and :mod:`mtl_report.samplers`:
        the empty self-attention cache for ``max_steps`` positions, and what every step
        reads unchanged (memory, its cross-attention keys/values, the condition)."""
        decoder = self._decoder()
        state, cross = decoder.init_cache(encoded["memory"], max_steps)
        constants = {"memory": encoded["memory"], "cross_cache": cross}
        if encoded.get("condition") is not None:
            constants["condition"] = encoded["condition"]
        return state, constants

    def call_with_cache(self, token_ids, state, index, constants):
        """One decoding step, the ``next`` function of :mod:`mtl_report.samplers`:
        ``token_ids`` ``(batch, 1)`` at position ``index`` → ``(logits (batch, vocab),
        state)``."""
        return self._decoder().step(
            token_ids,
            constants["memory"],
            state,
            constants["cross_cache"],
            index,
            constants.get("condition"),
        )

    def _decoder(self) -> ReportDecoder:
        if self.parts.report_decoder is None:
            raise ValueError("this model has no report head (preset without the text task)")
        return self.parts.report_decoder

    def learned_task_weights(self) -> dict[str, float] | None:
        """``exp(-s_t)`` per task for ``mtl_uw`` (what the model learned), else None."""
        if not self.uncertainty_weighting:
            return None
        values = ops.convert_to_numpy(ops.exp(-self.log_variances))
        return {t: float(v) for t, v in zip(self.tasks, values)}

    # -- serialisation ---------------------------------------------------------------------
    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "config": self.model_config.to_dict(),
            "vocabulary_sizes": self.vocabulary_sizes,
            "task_weights": self.task_weights,
            "uncertainty_weighting": self.uncertainty_weighting,
            "feature_shape": self.feature_shape,
            "backbone": (
                keras.saving.serialize_keras_object(self.backbone) if self.backbone else None
            ),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def build_aksoy_model(
    model_config: ModelConfig,
    vocabulary_sizes: Mapping[str, int],
    train_config: TrainConfig | None = None,
    feature_shape: tuple[int, int] | None = None,
    backbone: keras.Model | None = None,
) -> AksoyModel:
    """Build the model for a config (checking it against the training set-up first)."""
    train_config = train_config or TrainConfig()
    check_consistent(model_config, train_config)
    if model_config.fine_tune_backbone and backbone is None:
        backbone = backbones.build_backbone(
            model_config.backbone, model_config.image_size, model_config.backbone_weights
        )
    return AksoyModel(
        model_config.to_dict(),
        vocabulary_sizes,
        task_weights=train_config.task_weights(),
        uncertainty_weighting=train_config.uncertainty_weighting,
        feature_shape=feature_shape,
        backbone=backbone,
        name=f"aksoy_{train_config.preset}",
    )
