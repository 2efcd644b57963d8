"""The Aksoy model's backbone: image vectors + ED inputs → the shared sequence every head reads.

::

    image ─► image encoder ─► L×C vectors ─► VisualEncoder (self-attention) ─┐ queries
    vitals, gender, ethnicity, complaint, ICD ─► UnifiedDataBlock ───────────┤ keys/values
                                                        CrossModalAttention ◄┘
                                                                 │
                                                       shared TransformerEncoder
                                                                 ▼
                                                      memory (batch, L, hidden_dim)

As in keras-hub, the backbone knows no task: it has no heads, no loss and no tokenizer, and
takes numbers only (the :class:`~mtl_report.models.aksoy.AksoyPreprocessor` turns raw ED
fields into them). :class:`~mtl_report.models.aksoy.AksoyModel` adds the heads. Its
constructor takes flat keyword arguments and ``get_config`` echoes them.
"""

from __future__ import annotations

import keras
import keras_hub

from mtl_report.layers import CrossModalAttention, UnifiedDataBlock, VisualEncoder
from mtl_report.models.aksoy.aksoy_preprocessor import ED_INPUTS


@keras.saving.register_keras_serializable(package="mtl_report")
class AksoyBackbone(keras.Model):
    """Cross-modal encoder of the Aksoy et al. model (functional, serialisable).

    Args:
        gender_vocabulary_size, ethnicity_vocabulary_size: index range of the categorical
            inputs (:meth:`AksoyPreprocessor.vocabulary_sizes`).
        chief_complaint_vocabulary_size, icd_title_vocabulary_size: word-id range of the
            two ED texts.
        text_feature_length: word ids per ED text.
        hidden_dim: width of every transformer block.
        num_heads: attention heads.
        intermediate_dim: feed-forward width.
        num_visual_layers: self-attention blocks over the image vectors.
        num_shared_layers: shared encoder blocks after the cross-attention.
        dropout: dropout in every block.
        feature_shape: ``(L, C)`` of cached image features (frozen image encoder); the
            input is then ``image_features``.
        image_encoder: an image model (``image → (L, C)``) trained with the rest; the input
            is then ``image`` ``(image_size, image_size, 3)``. Give one of the two.
        image_size: side of the ``image`` input (with ``image_encoder``).

    Inputs (dict): ``image_features`` ``(L, C)`` or ``image``; ``vitals`` and
    ``vitals_mask`` ``(6,)``; ``gender`` and ``ethnicity`` int32 ``()``;
    ``chief_complaint`` and ``icd_title`` int32 ``(text_feature_length,)``.
    Output: the shared sequence ``(L, hidden_dim)``, one vector per image region.
    """

    def __init__(
        self,
        gender_vocabulary_size: int,
        ethnicity_vocabulary_size: int,
        chief_complaint_vocabulary_size: int,
        icd_title_vocabulary_size: int,
        text_feature_length: int = 16,
        hidden_dim: int = 192,
        num_heads: int = 3,
        intermediate_dim: int = 256,
        num_visual_layers: int = 1,
        num_shared_layers: int = 1,
        dropout: float = 0.1,
        feature_shape: tuple[int, int] | None = None,
        image_encoder: keras.Model | None = None,
        image_size: int = 224,
        **kwargs,
    ):
        if isinstance(image_encoder, dict):
            image_encoder = keras.saving.deserialize_keras_object(image_encoder)
        if (image_encoder is None) == (feature_shape is None):
            raise ValueError("give either feature_shape (cached features) or image_encoder")
        if hidden_dim % num_heads:
            raise ValueError(f"hidden_dim {hidden_dim} is not divisible by num_heads {num_heads}")

        # === Layers ===
        visual_encoder = VisualEncoder(
            hidden_dim,
            num_heads,
            intermediate_dim,
            num_visual_layers,
            dropout,
            name="visual_encoder",
        )
        unified_data = UnifiedDataBlock(
            hidden_dim,
            gender_vocabulary_size,
            ethnicity_vocabulary_size,
            chief_complaint_vocabulary_size,
            icd_title_vocabulary_size,
            dropout=dropout,
            name="unified_data",
        )
        cross_attention = CrossModalAttention(
            hidden_dim, num_heads, dropout, name="cross_attention"
        )
        shared_layers = [
            keras_hub.layers.TransformerEncoder(
                intermediate_dim, num_heads, dropout=dropout, name=f"shared_{i}"
            )
            for i in range(num_shared_layers)
        ]

        # === Inputs ===
        inputs: dict[str, keras.KerasTensor] = {}
        if image_encoder is not None:
            inputs["image"] = keras.Input((image_size, image_size, 3), name="image")
        else:
            inputs["image_features"] = keras.Input(tuple(feature_shape), name="image_features")
        inputs["vitals"] = keras.Input((6,), name="vitals")
        inputs["vitals_mask"] = keras.Input((6,), name="vitals_mask")
        for name in ("gender", "ethnicity"):
            inputs[name] = keras.Input((), dtype="int32", name=name)
        for name in ("chief_complaint", "icd_title"):
            inputs[name] = keras.Input((text_feature_length,), dtype="int32", name=name)

        # === Graph ===
        if image_encoder is not None:
            features = image_encoder(inputs["image"])
        else:
            features = inputs["image_features"]
        visual = visual_encoder(features)
        tokens, token_mask = unified_data(*(inputs[k] for k in ED_INPUTS))
        memory = cross_attention(visual, tokens, token_mask)
        for block in shared_layers:
            memory = block(memory)
        super().__init__(inputs=inputs, outputs=memory, **kwargs)

        # === Config ===
        self.gender_vocabulary_size = int(gender_vocabulary_size)
        self.ethnicity_vocabulary_size = int(ethnicity_vocabulary_size)
        self.chief_complaint_vocabulary_size = int(chief_complaint_vocabulary_size)
        self.icd_title_vocabulary_size = int(icd_title_vocabulary_size)
        self.text_feature_length = int(text_feature_length)
        self.hidden_dim = int(hidden_dim)
        self.num_heads = int(num_heads)
        self.intermediate_dim = int(intermediate_dim)
        self.num_visual_layers = int(num_visual_layers)
        self.num_shared_layers = int(num_shared_layers)
        self.dropout = float(dropout)
        self.feature_shape = None if feature_shape is None else tuple(int(s) for s in feature_shape)
        self.image_encoder = image_encoder
        self.image_size = int(image_size)
        self.visual_encoder = visual_encoder
        self.unified_data = unified_data
        self.cross_attention = cross_attention
        self.shared_layers = shared_layers

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "gender_vocabulary_size": self.gender_vocabulary_size,
            "ethnicity_vocabulary_size": self.ethnicity_vocabulary_size,
            "chief_complaint_vocabulary_size": self.chief_complaint_vocabulary_size,
            "icd_title_vocabulary_size": self.icd_title_vocabulary_size,
            "text_feature_length": self.text_feature_length,
            "hidden_dim": self.hidden_dim,
            "num_heads": self.num_heads,
            "intermediate_dim": self.intermediate_dim,
            "num_visual_layers": self.num_visual_layers,
            "num_shared_layers": self.num_shared_layers,
            "dropout": self.dropout,
            "feature_shape": self.feature_shape,
            "image_encoder": (
                keras.saving.serialize_keras_object(self.image_encoder)
                if self.image_encoder is not None
                else None
            ),
            "image_size": self.image_size,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
