"""Report head: a transformer decoder over the shared encoder sequence."""

from __future__ import annotations

import keras
import keras_hub
from keras import ops

from mtl_report.layers.token_transformer import TokenTransformer


@keras.saving.register_keras_serializable(package="mtl_report")
class ReportDecoder(TokenTransformer):
    """Token + position embedding → ``num_layers`` transformer decoder blocks → vocabulary.

    Each block (``keras_hub.layers.TransformerDecoder``) has causal + padding-masked
    self-attention, cross-attention to the encoder output and a 2-layer feed-forward.

    Call: ``token_ids`` ``(batch, T)`` int (0 = padding), ``memory`` ``(batch, L, d)``,
    optional ``condition`` ``(batch, d)`` added to every token embedding (findings
    guidance, :class:`~mtl_report.layers.FindingsGuide`) → logits ``(batch, T, vocab_size)``
    float32.

    :meth:`step` runs one position with key/value caches (self-attention over the prefix,
    cross-attention over the memory computed once), so generation costs grow linearly with
    the report length instead of quadratically.
    """

    def __init__(self, *args, **kwargs):  # the arguments of TokenTransformer
        super().__init__(*args, **kwargs)
        self.token_embedding = keras.layers.Embedding(
            self.vocab_size, self.hidden_dim, name="tokens"
        )
        self.position_embedding = keras_hub.layers.PositionEmbedding(
            self.max_length, name="positions"
        )
        self.embedding_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="embedding_norm")
        self.blocks = [
            keras_hub.layers.TransformerDecoder(
                self.intermediate_dim, self.num_heads, dropout=self.dropout, name=f"decoder_{i}"
            )
            for i in range(self.num_layers)
        ]
        self.logits = keras.layers.Dense(self.vocab_size, dtype="float32", name="logits")

    def build(self, token_ids_shape, memory_shape=None, condition_shape=None):
        seq_shape = (*token_ids_shape, self.hidden_dim)
        self.token_embedding.build(token_ids_shape)
        self.position_embedding.build(seq_shape)
        self.embedding_norm.build(seq_shape)
        for block in self.blocks:
            block.build(seq_shape, memory_shape)
        self.logits.build(seq_shape)
        self.built = True

    @property
    def key_dim(self) -> int:
        return self.hidden_dim // self.num_heads

    def _embed(self, token_ids, start_index=0, condition=None):
        x = self.token_embedding(token_ids)
        x = x + self.position_embedding(x, start_index=start_index)
        x = self.embedding_norm(x)
        if condition is not None:
            x = x + ops.cast(condition, x.dtype)[:, None, :]
        return x

    def call(self, token_ids, memory, condition=None, training=None):
        padding = ops.not_equal(token_ids, 0)
        x = self._embed(token_ids, condition=condition)
        for block in self.blocks:
            x = block(x, memory, decoder_padding_mask=padding, training=training)
        return self.logits(x)

    # -- cached decoding -------------------------------------------------------------------
    def init_cache(self, memory, max_steps: int):
        """Empty self-attention caches and filled cross-attention caches for ``memory``.

        Returns ``(self_cache, cross_cache)`` of shapes
        ``(batch, layers, 2, max_steps, heads, key_dim)`` and
        ``(batch, layers, 2, L, heads, key_dim)``: batch first, as the samplers of
        :mod:`mtl_report.samplers` (and keras-hub's) expect.
        """
        batch = ops.shape(memory)[0]
        self_cache = ops.zeros(
            (batch, self.num_layers, 2, max_steps, self.num_heads, self.key_dim),
            dtype=memory.dtype,
        )
        cross = []
        for block in self.blocks:
            attn = block._cross_attention_layer
            key = attn._key_dense(memory)
            value = attn._value_dense(memory)
            cross.append(ops.stack([key, value], axis=1))
        return self_cache, ops.stack(cross, axis=1)

    def step(self, token_ids, memory, self_cache, cross_cache, index, condition=None):
        """Logits for the token at position ``index`` given the cached prefix.

        ``token_ids`` ``(batch, 1)``; ``self_cache`` and ``cross_cache`` as from
        :meth:`init_cache`; ``condition`` as for :meth:`call`; returns
        ``(logits (batch, vocab), self_cache)``.

        The new key/value row is written into the cache here with a one-hot ``where``
        rather than by ``CachedMultiHeadAttention``'s own update, which uses
        ``XlaDynamicUpdateSlice``: that op needs XLA at run time, which a standard
        TF Serving build does not enable, so an exported decoder would not load there.
        The block then attends over the full cache with an explicit mask of the
        positions ``<= index``, exactly what its causal mask would allow.
        """
        x = self._embed(token_ids, start_index=index, condition=condition)
        max_steps = ops.shape(self_cache)[3]  # (batch, layers, 2, max_steps, heads, key_dim)
        positions = ops.arange(max_steps)
        row = ops.equal(positions, index)[None, :, None, None]  # (1, S, 1, 1)
        visible = ops.less_equal(positions, index)[None, None, :]  # (1, 1, S)
        visible = ops.broadcast_to(visible, (ops.shape(x)[0], 1, max_steps))
        new_caches = []
        for i, block in enumerate(self.blocks):
            attn = block._self_attention_layer
            query_in = block._self_attention_layer_norm(x) if block.normalize_first else x
            key = ops.where(row, attn._key_dense(query_in), self_cache[:, i, 0])
            value = ops.where(row, attn._value_dense(query_in), self_cache[:, i, 1])
            layer_cache = ops.stack([key, value], axis=1)
            x, _, _ = block(
                x,
                memory,
                decoder_attention_mask=visible,
                use_causal_mask=False,
                self_attention_cache=layer_cache,
                self_attention_cache_update_index=None,
                cross_attention_cache=cross_cache[:, i],
                cross_attention_cache_update_index=None,
            )
            new_caches.append(layer_cache)
        return self.logits(x)[:, 0, :], ops.stack(new_caches, axis=1)

    def compute_output_shape(self, token_ids_shape, memory_shape=None, condition_shape=None):
        return (*token_ids_shape, self.vocab_size)
