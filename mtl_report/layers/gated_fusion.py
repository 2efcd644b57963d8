"""Gated image–text fusion: bidirectional cross-attention, pooling, a sigmoid gate."""

from __future__ import annotations

import keras
from keras import ops

FUSION_MODES = ("gated", "average")


@keras.saving.register_keras_serializable(package="mtl_report")
class GatedCrossModalFusion(keras.layers.Layer):
    """Fuse image tokens and report-text tokens into one vector, with a learned gate.

    ::

        image' = LN(image + MHA(q=image, kv=text))     z_img  = mean over L of image'
        text'  = LN(text  + MHA(q=text,  kv=image))    z_text = masked mean over T of text'
        g = σ(W [z_img; z_text] + b)                   z = g · z_img + (1 − g) · z_text

    ``g`` is one value per feature (``gate="vector"``, W is ``2d × d``) or one per study
    (``gate="scalar"``). ``mode="average"`` replaces the learned gate by g = 0.5 (the
    "without gate" ablation). Studies without report text (``text_present`` = 0) get
    g = 1 and no text in their image branch, so they run the image path alone, exactly,
    whatever the padding tokens hold.

    Call: ``image`` ``(batch, L, d)``, ``text`` ``(batch, T, d)``, ``text_mask`` ``(batch, T)``
    bool (False = padding), ``text_present`` ``(batch,)`` 0/1 →
    ``(z (batch, d), gate (batch, 1))``; ``gate`` is the mean image weight of each study
    (1 = image only, 0 = text only).
    """

    def __init__(
        self,
        hidden_dim: int,
        num_heads: int,
        dropout: float = 0.1,
        gate: str = "vector",
        mode: str = "gated",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if gate not in ("vector", "scalar"):
            raise ValueError(f"gate must be 'vector' or 'scalar', got {gate!r}")
        if mode not in FUSION_MODES:
            raise ValueError(f"mode must be one of {FUSION_MODES}, got {mode!r}")
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.gate = gate
        self.mode = mode
        key_dim = max(1, hidden_dim // num_heads)
        self.image_to_text = keras.layers.MultiHeadAttention(
            num_heads, key_dim=key_dim, dropout=dropout, name="image_to_text"
        )
        self.text_to_image = keras.layers.MultiHeadAttention(
            num_heads, key_dim=key_dim, dropout=dropout, name="text_to_image"
        )
        self.image_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="image_norm")
        self.text_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="text_norm")
        self.dropout_layer = keras.layers.Dropout(dropout)
        self.gate_dense = keras.layers.Dense(
            hidden_dim if gate == "vector" else 1, name="gate_dense"
        )

    def build(self, image_shape, text_shape=None, text_mask_shape=None, text_present_shape=None):
        text_shape = text_shape or image_shape
        self.image_to_text.build(image_shape, text_shape)
        self.text_to_image.build(text_shape, image_shape)
        self.image_norm.build(image_shape)
        self.text_norm.build(text_shape)
        self.gate_dense.build((image_shape[0], 2 * self.hidden_dim))
        self.built = True

    def call(self, image, text, text_mask, text_present, training=None):
        dtype = image.dtype
        present = ops.reshape(ops.cast(text_present, dtype), (-1, 1))
        text_mask = ops.cast(text_mask, "bool")
        # Image queries over text tokens (a study without text attends to nothing).
        mask_it = ops.repeat(ops.expand_dims(text_mask, 1), ops.shape(image)[1], axis=1)
        attended = self.image_to_text(
            query=image, value=text, attention_mask=mask_it, training=training
        )
        attended = self.dropout_layer(attended, training=training) * present[:, :, None]
        image_seq = self.image_norm(image + attended)
        # Text queries over image tokens.
        attended = self.text_to_image(query=text, value=image, training=training)
        text_seq = self.text_norm(text + self.dropout_layer(attended, training=training))

        z_img = ops.mean(image_seq, axis=1)
        weights = ops.cast(text_mask, dtype)[:, :, None]
        z_text = ops.sum(text_seq * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)

        if self.mode == "gated":
            g = ops.sigmoid(self.gate_dense(ops.concatenate([z_img, z_text], axis=-1)))
        else:
            g = ops.full_like(z_img[:, :1], 0.5)
        g = present * g + (1.0 - present)
        z = g * z_img + (1.0 - g) * z_text
        return z, ops.mean(g, axis=-1, keepdims=True)

    def compute_output_spec(self, image, text, text_mask, text_present, training=None):
        batch = image.shape[0]
        return (
            keras.KerasTensor((batch, self.hidden_dim), dtype=self.compute_dtype),
            keras.KerasTensor((batch, 1), dtype=self.compute_dtype),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_dim=self.hidden_dim,
            num_heads=self.num_heads,
            dropout=self.dropout,
            gate=self.gate,
            mode=self.mode,
        )
        return config
