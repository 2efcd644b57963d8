"""Visual block: backbone feature grid → projected vectors → self-attention."""

from __future__ import annotations

import keras
import keras_hub


@keras.saving.register_keras_serializable(package="mtl_report")
class VisualEncoder(keras.layers.Layer):
    """Project L backbone vectors to the model width, add positions, self-attend.

    Call: ``features`` ``(batch, L, C)`` (e.g. 49 × 1280 for EfficientNetB0 at 224 px) →
    ``(batch, L, hidden_dim)``.

    Args:
        hidden_dim: model width.
        num_heads, intermediate_dim, dropout: of each transformer encoder block.
        num_layers: number of self-attention blocks.
    """

    def __init__(
        self,
        hidden_dim: int,
        num_heads: int,
        intermediate_dim: int,
        num_layers: int = 1,
        dropout: float = 0.1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.num_layers = num_layers
        self.dropout = dropout
        # Per-channel standardisation of the backbone features (statistics over batch and
        # positions), not per-vector layer norm: a layer norm after the projection divides
        # out each vector's magnitude, and with it how strongly a region fires, which is
        # exactly what tells a dense heart or an effusion from lung (measured on the
        # synthetic phantoms: with it, cardiomegaly was not learned at all).
        self.feature_norm = keras.layers.BatchNormalization(name="feature_norm")
        self.projection = keras.layers.Dense(hidden_dim, name="projection")
        self.positions = None
        self.blocks = [
            keras_hub.layers.TransformerEncoder(
                intermediate_dim, num_heads, dropout=dropout, name=f"self_attention_{i}"
            )
            for i in range(num_layers)
        ]

    def build(self, input_shape):
        length = input_shape[1]
        self.positions = keras_hub.layers.PositionEmbedding(length, name="positions")
        self.feature_norm.build(input_shape)
        self.projection.build(input_shape)
        proj_shape = (*input_shape[:-1], self.hidden_dim)
        self.positions.build(proj_shape)
        for block in self.blocks:
            block.build(proj_shape)
        self.built = True

    def call(self, features, training=None):
        x = self.projection(self.feature_norm(features, training=training))
        x = x + self.positions(x)
        for block in self.blocks:
            x = block(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_dim=self.hidden_dim,
            num_heads=self.num_heads,
            intermediate_dim=self.intermediate_dim,
            num_layers=self.num_layers,
            dropout=self.dropout,
        )
        return config
