"""The Aksoy et al. multi-task model: the task over :class:`AksoyBackbone`.

::

    AksoyBackbone (image vectors + ED inputs → shared sequence)
                 ┌───────────────────────┼──────────────────────┐
          ReportDecoder        CumulativeOrdinalHead      MultiLabelHead
        (report logits)         (P(acuity > k), 4)        (findings, 5)

Only the heads of the configured tasks are built. With a frozen image encoder the model
takes cached ``image_features`` (fast experiments); with ``fine_tune_backbone`` the image
encoder is part of the backbone and the model takes ``image``. The loss is
``α·text + β·acuity + γ·findings`` over masked per-task losses, the weights given at
:meth:`AksoyModel.compile`, or learned uncertainty weights (Kendall et al. 2018).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import keras
from keras import ops

from mtl_report.config import TASKS, ModelConfig, TrainConfig, check_consistent
from mtl_report.layers import CumulativeOrdinalHead, FindingsGuide, MultiLabelHead, ReportDecoder
from mtl_report.losses import TASK_LOSSES
from mtl_report.models import backbones
from mtl_report.models.aksoy.aksoy_backbone import AksoyBackbone

#: :func:`build_aksoy_model`'s ``vocabulary_sizes`` keys: the ED inputs' index ranges and
#: the report's.
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
class AksoyHeads:
    """The task's heads over the backbone's shared sequence, and the one function that wires
    them.

    :class:`AksoyModel` calls :meth:`encode` once on symbolic tensors to build its graph and
    again on real ones for generation (:meth:`AksoyModel.encode`): one definition of the
    forward pass, no sub-model cut out by layer names.
    """

    findings: MultiLabelHead | None
    findings_guide: FindingsGuide | None
    acuity: CumulativeOrdinalHead | None
    report_decoder: ReportDecoder | None

    def encode(self, memory, guide=None) -> dict:
        """Shared sequence → ``memory`` (what the decoder reads), ``condition`` (findings
        guidance), and the ``acuity`` / ``findings`` outputs."""
        out = {"memory": memory}
        if self.acuity is not None:
            out["acuity"] = self.acuity(memory)
        if self.findings is not None:
            out["findings"] = self.findings(memory)
        if self.findings_guide is not None:  # the decoder reads the head's prediction
            out["memory"], out["condition"] = self.findings_guide(memory, out["findings"], guide)
        return out


@keras.saving.register_keras_serializable(package="mtl_report")
class AksoyModel(keras.Model):
    """The multi-task report model: an :class:`AksoyBackbone` and the heads of its tasks.

    The task in keras-hub's sense: heads, the weighted loss (weights given to
    :meth:`compile`), and cached decoding (:meth:`encode`, :meth:`init_cache`,
    :meth:`call_with_cache`) for the samplers of :mod:`mtl_report.samplers`. Only the
    heads of ``tasks`` are built.

    Args:
        backbone: the :class:`AksoyBackbone` (its inputs are the model's).
        tasks: a subset of ``("text", "acuity", "findings")``.
        report_vocabulary_size: the report tokenizer's vocabulary size (text task).
        max_report_length: report tokens including ``[START]``/``[END]``.
        num_decoder_layers: transformer decoder blocks of the report head.
        num_findings: outputs of the multi-label findings head.
        findings_guidance: the decoder is told the findings (:class:`FindingsGuide`); the
            model then takes ``findings_guide`` (per finding 1, 0 or NaN = unknown).
        uncertainty_weighting: learn one log-variance per task (Kendall et al. 2018)
            instead of fixed task weights.

    Inputs (dict): the backbone's, plus ``report_tokens`` ``(max_report_length - 1,)`` with
    the text task (teacher forcing) and ``findings_guide`` ``(num_findings,)`` with
    guidance. Outputs (dict): ``report`` logits ``(T, vocab)``, ``acuity`` ``(4,)``
    cumulative probabilities, ``findings`` ``(num_findings,)`` probabilities.
    """

    def __init__(
        self,
        backbone: AksoyBackbone,
        tasks: Sequence[str] = TASKS,
        report_vocabulary_size: int | None = None,
        max_report_length: int = 60,
        num_decoder_layers: int = 1,
        num_findings: int = 5,
        findings_guidance: bool = False,
        uncertainty_weighting: bool = False,
        **kwargs,
    ):
        if isinstance(backbone, dict):
            backbone = keras.saving.deserialize_keras_object(backbone)
        tasks = tuple(tasks)
        if not tasks or set(tasks) - set(TASKS):
            raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {tasks}")
        if "text" in tasks and not report_vocabulary_size:
            raise ValueError("the text task needs report_vocabulary_size")
        if findings_guidance and not {"text", "findings"} <= set(tasks):
            raise ValueError("findings_guidance needs the text and findings tasks")

        # === Layers ===
        d = backbone.hidden_dim
        heads = AksoyHeads(
            findings=MultiLabelHead(num_findings, name="findings") if "findings" in tasks else None,
            findings_guide=(
                FindingsGuide(num_findings, d, name="findings_tokens")
                if findings_guidance
                else None
            ),
            acuity=CumulativeOrdinalHead(name="acuity") if "acuity" in tasks else None,
            report_decoder=(
                ReportDecoder(
                    int(report_vocabulary_size),
                    max_report_length,
                    d,
                    backbone.num_heads,
                    backbone.intermediate_dim,
                    num_decoder_layers,
                    backbone.dropout,
                    name="report",
                )
                if "text" in tasks
                else None
            ),
        )

        # === Inputs ===
        inputs = dict(backbone.input)
        if "text" in tasks:
            inputs["report_tokens"] = keras.Input(
                (max_report_length - 1,), dtype="int32", name="report_tokens"
            )
        if findings_guidance:
            inputs[GUIDE_INPUT] = keras.Input((num_findings,), name=GUIDE_INPUT)

        # === Graph ===
        memory = backbone({k: inputs[k] for k in backbone.input})
        encoded = heads.encode(memory, inputs.get(GUIDE_INPUT))
        outputs = {k: encoded[k] for k in ("acuity", "findings") if k in encoded}
        if heads.report_decoder is not None:
            outputs["report"] = heads.report_decoder(
                inputs["report_tokens"], encoded["memory"], encoded.get("condition")
            )
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.backbone = backbone
        self.tasks = tasks
        self.report_vocabulary_size = (
            int(report_vocabulary_size) if report_vocabulary_size else None
        )
        self.max_report_length = int(max_report_length)
        self.num_decoder_layers = int(num_decoder_layers)
        self.num_findings = int(num_findings)
        self.findings_guidance = bool(findings_guidance)
        self.uncertainty_weighting = bool(uncertainty_weighting)
        self.heads = heads
        self.task_weights = self.check_task_weights(None)  # equal until compiled
        self.task_loss_trackers = {t: keras.metrics.Mean(name=f"{t}_loss") for t in tasks}
        if uncertainty_weighting:
            self.log_variances = self.add_weight(
                shape=(len(tasks),), initializer="zeros", name="task_log_variances"
            )

    # -- training --------------------------------------------------------------------------
    def compile(self, optimizer="adam", task_weights: Mapping[str, float] | None = None, **kwargs):
        """Compile with the loss ``Σ weight_t · L_t`` over the model's tasks.

        Args:
            task_weights: ``{"text": α, "acuity": β, "findings": γ}`` (default 1 each);
                every built task needs a positive weight, and a task without a head has
                weight 0 or none. Not with ``uncertainty_weighting`` (the model learns
                them).
            **kwargs: as :meth:`keras.Model.compile` (the loss is the model's own).
        """
        weights = self.check_task_weights(task_weights)
        super().compile(optimizer=optimizer, **kwargs)
        self.task_weights = weights
        self._compile_config.config["task_weights"] = task_weights and dict(task_weights)

    def compile_from_config(self, config):
        """Compile a loaded model as it was saved, task weights included (Keras skips a
        custom ``compile`` unless this is overridden)."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def check_task_weights(self, task_weights: Mapping[str, float] | None) -> dict[str, float]:
        """The loss weight per task of the model, or ValueError for weights that cannot
        train it (a built head without weight, a weight without head)."""
        if task_weights is None:
            return {t: 1.0 for t in self.tasks}
        if self.uncertainty_weighting:
            raise ValueError("this model learns its task weights; compile it without them")
        weights = {t: float(task_weights.get(t, 0.0)) for t in self.tasks}
        unweighted = [t for t, w in weights.items() if w <= 0]
        headless = [t for t, w in task_weights.items() if t not in self.tasks and w > 0]
        if unweighted or headless:
            raise ValueError(
                f"task weights {dict(task_weights)} do not fit the tasks {list(self.tasks)}: "
                f"each built head needs a positive weight and only built heads may have one"
            )
        return weights

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
                total = total + self.task_weights[task] * loss
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
        memory = self.backbone({k: inputs[k] for k in self.backbone.input}, training=training)
        return self.heads.encode(memory, inputs.get(GUIDE_INPUT))

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
        if self.heads.report_decoder is None:
            raise ValueError("this model has no report head (set-up without the text task)")
        return self.heads.report_decoder

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
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "tasks": list(self.tasks),
            "report_vocabulary_size": self.report_vocabulary_size,
            "max_report_length": self.max_report_length,
            "num_decoder_layers": self.num_decoder_layers,
            "num_findings": self.num_findings,
            "findings_guidance": self.findings_guidance,
            "uncertainty_weighting": self.uncertainty_weighting,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def build_aksoy_model(
    model_config: ModelConfig,
    vocabulary_sizes: Mapping[str, int],
    train_config: TrainConfig | None = None,
    feature_shape: tuple[int, int] | None = None,
    image_encoder: keras.Model | None = None,
) -> AksoyModel:
    """The model of a :class:`~mtl_report.config.ModelConfig`, checked against its
    training set-up first: an :class:`AksoyBackbone` over cached features of
    ``feature_shape`` (or, with ``fine_tune_backbone``, over images through
    ``image_encoder``, the config's backbone by default) and the set-up's heads.

    Args:
        vocabulary_sizes: index range per ED input (``gender``, ``ethnicity``,
            ``chief_complaint``, ``icd_title``: :meth:`AksoyPreprocessor.vocabulary_sizes`)
            and ``report`` (the report tokenizer's vocabulary size).
    """
    train_config = train_config or TrainConfig()
    check_consistent(model_config, train_config)
    missing = [k for k in VOCABULARY_SIZE_KEYS if k not in vocabulary_sizes]
    if missing:
        raise ValueError(f"vocabulary_sizes lacks {missing}")
    cfg = model_config
    if cfg.fine_tune_backbone:
        image_encoder = image_encoder or backbones.build_backbone(
            cfg.backbone, cfg.image_size, cfg.backbone_weights
        )
        feature_shape = None
    else:
        image_encoder = None
        feature_shape = feature_shape or backbones.feature_shape(cfg.backbone, cfg.image_size)
    backbone = AksoyBackbone(
        gender_vocabulary_size=vocabulary_sizes["gender"],
        ethnicity_vocabulary_size=vocabulary_sizes["ethnicity"],
        chief_complaint_vocabulary_size=vocabulary_sizes["chief_complaint"],
        icd_title_vocabulary_size=vocabulary_sizes["icd_title"],
        text_feature_length=cfg.text_feature_length,
        hidden_dim=cfg.hidden_dim,
        num_heads=cfg.num_heads,
        intermediate_dim=cfg.intermediate_dim,
        num_visual_layers=cfg.num_visual_layers,
        num_shared_layers=cfg.num_shared_layers,
        dropout=cfg.dropout,
        feature_shape=feature_shape,
        image_encoder=image_encoder,
        image_size=cfg.image_size,
        name="backbone",
    )
    return AksoyModel(
        backbone,
        tasks=cfg.tasks,
        report_vocabulary_size=vocabulary_sizes["report"] if "text" in cfg.tasks else None,
        max_report_length=cfg.max_report_length,
        num_decoder_layers=cfg.num_decoder_layers,
        num_findings=len(cfg.findings),
        findings_guidance=cfg.findings_guidance,
        uncertainty_weighting=train_config.uncertainty_weighting,
        name=f"aksoy_{train_config.setup}",
    )


def compile_for(model: AksoyModel, train_config: TrainConfig, optimizer, **kwargs) -> None:
    """Compile ``model`` with the loss weights of its training set-up (α, β, γ; none with
    learned weights)."""
    weights = None if model.uncertainty_weighting else train_config.task_weights()
    model.compile(optimizer=optimizer, task_weights=weights, **kwargs)
