"""Unified data block: the ED record as a short sequence of modality tokens."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

TOKEN_NAMES: tuple[str, ...] = ("none", "vitals", "demographics", "chief_complaint", "icd_title")
EMPTY_VOCABULARY_WORD = "[no-text-in-training]"


@keras.saving.register_keras_serializable(package="mtl_report")
class UnifiedDataBlock(keras.layers.Layer):
    """Embed vitals, demographics, chief complaint and ICD title as ``hidden_dim`` tokens.

    Tokens, in order (:data:`TOKEN_NAMES`): a learned *none* token that is always present
    (so cross-attention always has something to attend to, even for a study with no ED data,
    like IU X-ray), the six vitals (values and presence mask → dense), gender + ethnicity
    (one-hot → dense), the chief complaint and the ICD title (each: its own word embedding,
    masked mean → dense). A learned type embedding tells the tokens apart.

    Call: ``vitals`` ``(batch, 6)`` scaled to [0, 1] with missing = 0, ``vitals_mask``
    ``(batch, 6)`` (1 = present), ``gender``, ``ethnicity``, ``chief_complaint``,
    ``icd_title`` string ``(batch,)`` → ``tokens`` ``(batch, 5, d)``, ``token_mask``
    ``(batch, 5)`` bool. A modality is absent (masked) when all vitals are missing, both
    categories are unknown, or a text is empty or all out of vocabulary.

    Args:
        hidden_dim: token width.
        gender_vocabulary, ethnicity_vocabulary: categories seen in training (values outside
            map to an out-of-vocabulary bucket).
        complaint_vocabulary, icd_vocabulary: words of the train split's texts.
        text_length: tokens kept of each text.
    """

    def __init__(
        self,
        hidden_dim: int,
        gender_vocabulary: Sequence[str],
        ethnicity_vocabulary: Sequence[str],
        complaint_vocabulary: Sequence[str],
        icd_vocabulary: Sequence[str],
        text_length: int = 16,
        dropout: float = 0.1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        self.gender_vocabulary = list(gender_vocabulary)
        self.ethnicity_vocabulary = list(ethnicity_vocabulary)
        # An empty vocabulary (a dataset without that text, like IU X-ray's ICD titles)
        # gets one placeholder word, so the lookup table exists and every input is absent.
        self.complaint_vocabulary = list(complaint_vocabulary) or [EMPTY_VOCABULARY_WORD]
        self.icd_vocabulary = list(icd_vocabulary) or [EMPTY_VOCABULARY_WORD]
        self.text_length = text_length
        self.dropout = dropout

        self.gender_lookup = keras.layers.StringLookup(
            vocabulary=self.gender_vocabulary, output_mode="one_hot", name="gender_lookup"
        )
        self.ethnicity_lookup = keras.layers.StringLookup(
            vocabulary=self.ethnicity_vocabulary, output_mode="one_hot", name="ethnicity_lookup"
        )
        self.complaint_vectorizer = self._vectorizer(self.complaint_vocabulary, "complaint")
        self.icd_vectorizer = self._vectorizer(self.icd_vocabulary, "icd")
        self.complaint_embedding = keras.layers.Embedding(
            len(self.complaint_vocabulary) + 2, hidden_dim, name="complaint_embedding"
        )
        self.icd_embedding = keras.layers.Embedding(
            len(self.icd_vocabulary) + 2, hidden_dim, name="icd_embedding"
        )
        self.vitals_dense = keras.layers.Dense(hidden_dim, activation="gelu", name="vitals")
        self.demographics_dense = keras.layers.Dense(
            hidden_dim, activation="gelu", name="demographics"
        )
        self.complaint_dense = keras.layers.Dense(hidden_dim, activation="gelu", name="complaint")
        self.icd_dense = keras.layers.Dense(hidden_dim, activation="gelu", name="icd")
        self.norm = keras.layers.LayerNormalization(epsilon=1e-5, name="norm")
        self.dropout_layer = keras.layers.Dropout(dropout)

    def _vectorizer(self, vocabulary, name):
        return keras.layers.TextVectorization(
            standardize="lower_and_strip_punctuation",
            output_mode="int",
            output_sequence_length=self.text_length,
            vocabulary=vocabulary,
            name=f"{name}_vectorizer",
        )

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
        self.demographics_dense.build(
            (batch, len(self.gender_vocabulary) + len(self.ethnicity_vocabulary) + 2)
        )
        self.complaint_embedding.build((batch, self.text_length))
        self.icd_embedding.build((batch, self.text_length))
        self.complaint_dense.build((batch, d))
        self.icd_dense.build((batch, d))
        self.norm.build((batch, len(TOKEN_NAMES), d))
        self.built = True

    def _text_token(self, text, vectorizer, embedding, dense):
        ids = vectorizer(text)
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

        gender = ops.reshape(gender, (-1,))
        ethnicity = ops.reshape(ethnicity, (-1,))
        categories = ops.concatenate(
            [
                ops.cast(self.gender_lookup(gender), self.compute_dtype),
                ops.cast(self.ethnicity_lookup(ethnicity), self.compute_dtype),
            ],
            axis=-1,
        )
        demo_token = self.demographics_dense(categories)
        demo_present = ops.logical_or(_known(gender), _known(ethnicity))

        cc_token, cc_present = self._text_token(
            ops.reshape(chief_complaint, (-1,)),
            self.complaint_vectorizer,
            self.complaint_embedding,
            self.complaint_dense,
        )
        icd_token, icd_present = self._text_token(
            ops.reshape(icd_title, (-1,)), self.icd_vectorizer, self.icd_embedding, self.icd_dense
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
            gender_vocabulary=self.gender_vocabulary,
            ethnicity_vocabulary=self.ethnicity_vocabulary,
            complaint_vocabulary=self.complaint_vocabulary,
            icd_vocabulary=self.icd_vocabulary,
            text_length=self.text_length,
            dropout=self.dropout,
        )
        return config


def _known(values):
    """True where a category string is neither empty nor ``unknown``."""
    import tensorflow as tf

    return tf.logical_and(tf.not_equal(values, ""), tf.not_equal(values, "unknown"))
