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
            features = backbone(inputs["image"])
        else:
            shape = tuple(feature_shape or backbones.feature_shape(cfg.backbone, cfg.image_size))
            inputs["image_features"] = keras.Input(shape, name="image_features")
            features = inputs["image_features"]
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

        # === Encoder ===
        visual = VisualEncoder(
            d,
            cfg.num_heads,
            cfg.intermediate_dim,
            cfg.num_visual_layers,
            cfg.dropout,
            name="visual_encoder",
        )(features)
        tokens, token_mask = UnifiedDataBlock(
            d,
            sizes["gender"],
            sizes["ethnicity"],
            sizes["chief_complaint"],
            sizes["icd_title"],
            dropout=cfg.dropout,
            name="unified_data",
        )(*(inputs[k] for k in ED_INPUTS))
        fused = CrossModalAttention(d, cfg.num_heads, cfg.dropout, name="cross_attention")(
            visual, tokens, token_mask
        )
        import keras_hub

        memory = fused
        for i in range(cfg.num_shared_layers):
            memory = keras_hub.layers.TransformerEncoder(
                cfg.intermediate_dim, cfg.num_heads, dropout=cfg.dropout, name=f"shared_{i}"
            )(memory)

        # === Heads ===
        outputs = {}
        findings_head = (
            MultiLabelHead(len(cfg.findings), name="findings") if "findings" in cfg.tasks else None
        )
        findings = None
        decoder_memory, condition = memory, None
        if cfg.findings_guidance:  # the head first: the decoder reads its prediction
            findings = findings_head(memory)
            decoder_memory, condition = FindingsGuide(len(cfg.findings), d, name="findings_tokens")(
                memory, findings, inputs[GUIDE_INPUT]
            )
        if "text" in cfg.tasks:
            outputs["report"] = ReportDecoder(
                sizes["report"],
                cfg.max_report_length,
                d,
                cfg.num_heads,
                cfg.intermediate_dim,
                cfg.num_decoder_layers,
                cfg.dropout,
                name="report",
            )(inputs["report_tokens"], decoder_memory, condition)
        if "acuity" in cfg.tasks:
            outputs["acuity"] = CumulativeOrdinalHead(name="acuity")(memory)
        if findings_head is not None:
            outputs["findings"] = findings if findings is not None else findings_head(memory)

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
