"""Unified data block: the ED record as a short sequence of modality tokens."""

from __future__ import annotations

import keras
from keras import ops

TOKEN_NAMES: tuple[str, ...] = ("none", "vitals", "demographics", "chief_complaint", "icd_title")


@keras.saving.register_keras_serializable(package="mtl_report")
class UnifiedDataBlock(keras.layers.Layer):
    """Embed vitals, demographics, chief complaint and ICD title as ``hidden_dim`` tokens.

    Tokens, in order (:data:`TOKEN_NAMES`): a learned *none* token that is always present
    (so cross-attention always has something to attend to, even for a study with no ED data,
    like IU X-ray), the six vitals (values and presence mask → dense), gender + ethnicity
    (one-hot → dense), the chief complaint and the ICD title (each: its own word embedding,
    masked mean → dense). A learned type embedding tells the tokens apart.

    Call: ``vitals`` ``(batch, 6)`` scaled to [0, 1] with missing = 0, ``vitals_mask``
    ``(batch, 6)`` (1 = present), ``gender``, ``ethnicity`` int ``(batch,)`` (0 = unknown),
    ``chief_complaint``, ``icd_title`` word ids int ``(batch, T)`` (0 = padding, 1 = out of
    vocabulary), all as :class:`~mtl_report.models.aksoy.AksoyPreprocessor` makes them →
    ``tokens`` ``(batch, 5, d)``, ``token_mask`` ``(batch, 5)`` bool. A modality is absent
    (masked) when all vitals are missing, both categories are unknown, or a text is empty or
    all out of vocabulary.

    Args:
        hidden_dim: token width.
        gender_size, ethnicity_size: number of category indices (with 0 = unknown).
        complaint_size, icd_size: number of word ids (with padding and out of vocabulary).
        dropout: on the tokens.
    """

    def __init__(
        self,
        hidden_dim: int,
        gender_size: int,
        ethnicity_size: int,
        complaint_size: int,
        icd_size: int,
        dropout: float = 0.1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        self.gender_size = int(gender_size)
        self.ethnicity_size = int(ethnicity_size)
        self.complaint_size = int(complaint_size)
        self.icd_size = int(icd_size)
        self.dropout = dropout
        self.complaint_embedding = keras.layers.Embedding(
            self.complaint_size, hidden_dim, name="complaint_embedding"
        )
        self.icd_embedding = keras.layers.Embedding(self.icd_size, hidden_dim, name="icd_embedding")
        self.vitals_dense = keras.layers.Dense(hidden_dim, activation="gelu", name="vitals")
        self.demographics_dense = keras.layers.Dense(
            hidden_dim, activation="gelu", name="demographics"
        )
        self.complaint_dense = keras.layers.Dense(hidden_dim, activation="gelu", name="complaint")
        self.icd_dense = keras.layers.Dense(hidden_dim, activation="gelu", name="icd")
        self.norm = keras.layers.LayerNormalization(epsilon=1e-5, name="norm")
        self.dropout_layer = keras.layers.Dropout(dropout)

    def build(
        self,
        vitals_shape,
        vitals_mask_shape=None,
        gender_shape=None,
        ethnicity_shape=None,
        chief_complaint_shape=None,
        icd_title_shape=None,
    ):
        batch = vitals_shape[0]
        d = self.hidden_dim
        self.none_token = self.add_weight(
            shape=(1, 1, d), initializer="random_normal", name="none_token"
        )
        self.type_embedding = self.add_weight(
            shape=(1, len(TOKEN_NAMES), d), initializer="random_normal", name="type_embedding"
        )
        self.vitals_dense.build((batch, 12))
        self.demographics_dense.build((batch, self.gender_size + self.ethnicity_size))
        self.complaint_embedding.build(chief_complaint_shape)
        self.icd_embedding.build(icd_title_shape)
        self.complaint_dense.build((batch, d))
        self.icd_dense.build((batch, d))
        self.norm.build((batch, len(TOKEN_NAMES), d))
        self.built = True

    def _text_token(self, ids, embedding, dense):
        # Out-of-vocabulary words (id 1) carry no meaning on their own: treat like padding.
        known = ops.cast(ops.greater(ids, 1), self.compute_dtype)
        vectors = embedding(ids)
        pooled = ops.sum(vectors * known[..., None], axis=1) / ops.maximum(
            ops.sum(known, axis=1, keepdims=True), 1.0
        )
        return dense(pooled), ops.any(ops.greater(ids, 1), axis=1)

    def call(
        self, vitals, vitals_mask, gender, ethnicity, chief_complaint, icd_title, training=None
    ):
        vitals = ops.cast(vitals, self.compute_dtype)
        vitals_mask = ops.cast(vitals_mask, self.compute_dtype)
        vitals = ops.where(ops.isnan(vitals), ops.zeros_like(vitals), vitals) * vitals_mask
        vitals_token = self.vitals_dense(ops.concatenate([vitals, vitals_mask], axis=-1))
        vitals_present = ops.sum(vitals_mask, axis=-1) > 0

        gender = ops.reshape(ops.cast(gender, "int32"), (-1,))
        ethnicity = ops.reshape(ops.cast(ethnicity, "int32"), (-1,))
        categories = ops.concatenate(
            [
                ops.one_hot(gender, self.gender_size, dtype=self.compute_dtype),
                ops.one_hot(ethnicity, self.ethnicity_size, dtype=self.compute_dtype),
            ],
            axis=-1,
        )
        demo_token = self.demographics_dense(categories)
        demo_present = ops.logical_or(ops.greater(gender, 0), ops.greater(ethnicity, 0))

        cc_token, cc_present = self._text_token(
            ops.cast(chief_complaint, "int32"), self.complaint_embedding, self.complaint_dense
        )
        icd_token, icd_present = self._text_token(
            ops.cast(icd_title, "int32"), self.icd_embedding, self.icd_dense
        )
        batch = ops.shape(vitals)[0]
        none = ops.broadcast_to(
            ops.cast(self.none_token, self.compute_dtype), (batch, 1, self.hidden_dim)
        )
        tokens = ops.concatenate(
            [none]
            + [ops.expand_dims(t, 1) for t in (vitals_token, demo_token, cc_token, icd_token)],
            axis=1,
        )
        tokens = self.norm(tokens + ops.cast(self.type_embedding, self.compute_dtype))
        tokens = self.dropout_layer(tokens, training=training)
        mask = ops.stack(
            [ops.ones_like(vitals_present), vitals_present, demo_present, cc_present, icd_present],
            axis=1,
        )
        return tokens, mask

    def compute_output_shape(
        self,
        vitals_shape,
        vitals_mask_shape=None,
        gender_shape=None,
        ethnicity_shape=None,
        chief_complaint_shape=None,
        icd_title_shape=None,
    ):
        batch = vitals_shape[0]
        return (batch, len(TOKEN_NAMES), self.hidden_dim), (batch, len(TOKEN_NAMES))

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_dim=self.hidden_dim,
            gender_size=self.gender_size,
            ethnicity_size=self.ethnicity_size,
            complaint_size=self.complaint_size,
            icd_size=self.icd_size,
            dropout=self.dropout,
        )
        return config
