"""The settings both word-token transformers share (the report-text encoder and the report
decoder): one constructor and one ``get_config`` instead of two copies."""

from __future__ import annotations

import keras


class TokenTransformer(keras.layers.Layer):
    """Base of :class:`~mtl_report.layers.ReportTextEncoder` and
    :class:`~mtl_report.layers.ReportDecoder`: stores and echoes their flat config.

    Args:
        vocab_size: tokenizer vocabulary size.
        max_length: position table size.
        hidden_dim, num_heads, intermediate_dim, dropout: of each transformer block.
        num_layers: number of blocks.
    """

    def __init__(
        self,
        vocab_size: int,
        max_length: int,
        hidden_dim: int,
        num_heads: int,
        intermediate_dim: int,
        num_layers: int = 1,
        dropout: float = 0.1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.max_length = max_length
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.num_layers = num_layers
        self.dropout = dropout

    def get_config(self):
        config = super().get_config()
        config.update(
            vocab_size=self.vocab_size,
            max_length=self.max_length,
            hidden_dim=self.hidden_dim,
            num_heads=self.num_heads,
            intermediate_dim=self.intermediate_dim,
            num_layers=self.num_layers,
            dropout=self.dropout,
        )
        return config
