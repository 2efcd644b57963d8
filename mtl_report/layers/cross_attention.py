"""Cross-attention block: image vectors as queries over the unified-data tokens."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mtl_report")
class CrossModalAttention(keras.layers.Layer):
    """Each image vector attends over the ED-data tokens; residual + layer norm.

    Call: ``visual`` ``(batch, L, d)``, ``tokens`` ``(batch, K, d)``, ``token_mask``
    ``(batch, K)`` bool (False = absent modality, never attended) → ``(batch, L, d)``;
    with ``return_attention_scores=True`` also the scores ``(batch, heads, L, K)``, which
    say which non-imaging features each image region looks at.
    """

    def __init__(self, hidden_dim: int, num_heads: int, dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.attention = keras.layers.MultiHeadAttention(
            num_heads, key_dim=hidden_dim // num_heads, dropout=dropout, name="attention"
        )
        self.dropout_layer = keras.layers.Dropout(dropout)
        self.norm = keras.layers.LayerNormalization(epsilon=1e-5, name="norm")

    def build(self, visual_shape, tokens_shape=None, token_mask_shape=None):
        tokens_shape = tokens_shape or visual_shape
        self.attention.build(visual_shape, tokens_shape)
        self.norm.build(visual_shape)
        self.built = True

    def call(self, visual, tokens, token_mask=None, training=None, return_attention_scores=False):
        mask = None
        if token_mask is not None:
            mask = ops.repeat(
                ops.expand_dims(ops.cast(token_mask, "bool"), 1), ops.shape(visual)[1], 1
            )
        attended, scores = self.attention(
            query=visual,
            value=tokens,
            attention_mask=mask,
            training=training,
            return_attention_scores=True,
        )
        out = self.norm(visual + self.dropout_layer(attended, training=training))
        return (out, scores) if return_attention_scores else out

    def compute_output_shape(self, visual_shape, tokens_shape=None, token_mask_shape=None):
        return visual_shape

    def get_config(self):
        config = super().get_config()
        config.update(hidden_dim=self.hidden_dim, num_heads=self.num_heads, dropout=self.dropout)
        return config
