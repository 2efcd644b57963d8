"""Report-text encoder: word tokens → contextual token vectors (transformer encoder)."""

from __future__ import annotations

import keras
import keras_hub
from keras import ops

from mtl_report.layers.token_transformer import TokenTransformer


@keras.saving.register_keras_serializable(package="mtl_report")
class ReportTextEncoder(TokenTransformer):
    """Token + position embedding → ``num_layers`` padding-masked transformer encoders.

    The tokens are the word-level ids of :class:`mtl_report.text.ReportTokenizer` (0 =
    padding, 2/3 = ``[START]``/``[END]``), the same ids the report decoder writes.

    Call: ``token_ids`` ``(batch, T)`` int → ``(sequence (batch, T, hidden_dim),
    mask (batch, T) bool)``; the mask is False at padding.

    Args:
        vocab_size: tokenizer vocabulary size.
        max_length: T (position table size).
        hidden_dim, num_heads, intermediate_dim, dropout: of each encoder block.
        num_layers: number of blocks.
    """

    def __init__(self, *args, **kwargs):  # the arguments of TokenTransformer
        super().__init__(*args, **kwargs)
        self.embedding = keras_hub.layers.TokenAndPositionEmbedding(
            self.vocab_size, self.max_length, self.hidden_dim, name="embedding"
        )
        self.embedding_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="embedding_norm")
        self.blocks = [
            keras_hub.layers.TransformerEncoder(
                self.intermediate_dim, self.num_heads, dropout=self.dropout, name=f"encoder_{i}"
            )
            for i in range(self.num_layers)
        ]

    def build(self, token_ids_shape):
        seq_shape = (*token_ids_shape, self.hidden_dim)
        self.embedding.build(token_ids_shape)
        self.embedding_norm.build(seq_shape)
        for block in self.blocks:
            block.build(seq_shape)
        self.built = True

    def call(self, token_ids, training=None):
        mask = ops.not_equal(token_ids, 0)
        x = self.embedding_norm(self.embedding(token_ids))
        for block in self.blocks:
            x = block(x, padding_mask=mask, training=training)
        return x, mask

    def compute_output_shape(self, token_ids_shape):
        return (*token_ids_shape, self.hidden_dim), tuple(token_ids_shape)

    def compute_output_spec(self, token_ids, training=None):
        shape = tuple(token_ids.shape)
        return (
            keras.KerasTensor((*shape, self.hidden_dim), dtype=self.compute_dtype),
            keras.KerasTensor(shape, dtype="bool"),
        )
