"""Token samplers that know nothing of the model: greedy and beam search.

A sampler drives a ``next`` function, as keras-hub's samplers do::

    logits, state = next(token_ids, state, index, constants)

``token_ids`` ``(batch, 1)`` is the token at position ``index`` (a scalar int32 tensor);
``logits`` ``(batch, vocab)`` score the token at ``index + 1``. ``state`` is whatever the
model carries from step to step (key/value caches), a nested structure of tensors with the
batch first; ``constants`` the same for what does not change (encoder memory, cross-attention
caches): beam search repeats both per beam once, and reorders only ``state`` when beams are
re-ranked, so a step never re-gathers the constant part.

Everything is TensorFlow ops, so a sampler runs inside ``tf.function`` and inside an exported
SavedModel (no XLA-only ops: TF Serving runs the loop as it is). Both samplers:

- never produce the ids in ``forbidden_ids`` (padding and ``[START]``);
- with ``no_repeat_ngram_size`` n > 0, never produce a token that completes an n-gram
  already in the sequence (as in fairseq and Hugging Face generation);
- stop when every sequence has produced ``end_id`` (or after ``max_length`` tokens), and pad
  with 0 after it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

NEG_INF = -1e9

NextFn = Callable[[tf.Tensor, Any, tf.Tensor, Any], tuple[tf.Tensor, Any]]


def banned_ngram_tokens(tokens: tf.Tensor, t: tf.Tensor, n: int, vocab_size: int) -> tf.Tensor:
    """Tokens that would repeat an n-gram, shape ``(batch, vocab)`` bool.

    ``tokens`` ``(batch, T)`` holds the sequence up to and including position ``t`` (later
    positions are ignored); the next token goes to ``t + 1``.
    """
    batch = tf.shape(tokens)[0]
    total = tokens.shape[1]
    if n < 1 or total is None or total < n:
        return tf.zeros((batch, vocab_size), tf.bool)
    if n == 1:
        positions = tf.range(total)[None, :] <= t
        idx = tf.stack([tf.repeat(tf.range(batch), total), tf.reshape(tokens, [-1])], axis=1)
        flags = tf.reshape(tf.broadcast_to(positions, tf.shape(tokens)), [-1])
        return (
            tf.tensor_scatter_nd_max(
                tf.zeros((batch, vocab_size), tf.int32), idx, tf.cast(flags, tf.int32)
            )
            > 0
        )
    width = total - n + 1
    prefix_start = tf.maximum(t - n + 2, 0)
    prefix = tf.slice(tokens, [0, prefix_start], [-1, n - 1])  # (batch, n-1)
    windows = tf.stack([tokens[:, k : k + width] for k in range(n - 1)], axis=-1)
    match = tf.reduce_all(tf.equal(windows, prefix[:, None, :]), axis=-1)  # (batch, width)
    valid = tf.range(width)[None, :] <= t - n + 1
    match = tf.logical_and(match, valid)
    following = tokens[:, n - 1 :]  # (batch, width)
    idx = tf.stack([tf.repeat(tf.range(batch), width), tf.reshape(following, [-1])], axis=1)
    banned = tf.tensor_scatter_nd_max(
        tf.zeros((batch, vocab_size), tf.int32), idx, tf.cast(tf.reshape(match, [-1]), tf.int32)
    )
    return banned > 0


def set_column(tokens: tf.Tensor, index: tf.Tensor, values: tf.Tensor) -> tf.Tensor:
    """``tokens[:, index] = values`` for a dynamic ``index`` (no XLA-only update op)."""
    width = tf.shape(tokens)[1]
    column = tf.one_hot(index, width, on_value=True, off_value=False, dtype=tf.bool)[None, :]
    return tf.where(column, values[:, None], tokens)


class Sampler:
    """What greedy and beam search share: masking, the loop bounds, the output layout.

    Args:
        end_id: the token that ends a sequence.
        forbidden_ids: tokens never produced (default padding, 0).
        no_repeat_ngram_size: ban tokens that would repeat an n-gram of this size (0 = off).
    """

    def __init__(
        self, end_id: int, forbidden_ids: Sequence[int] = (0,), no_repeat_ngram_size: int = 0
    ):
        if no_repeat_ngram_size < 0:
            raise ValueError("no_repeat_ngram_size must be >= 0")
        self.end_id = int(end_id)
        self.forbidden_ids = tuple(int(i) for i in forbidden_ids)
        self.no_repeat_ngram_size = int(no_repeat_ngram_size)

    def mask_logits(self, logits: tf.Tensor, tokens: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
        """``logits`` ``(batch, vocab)`` with forbidden and n-gram-repeating tokens at −∞."""
        logits = tf.cast(logits, tf.float32)
        vocab = logits.shape[-1] or tf.shape(logits)[-1]
        forbid = tf.reduce_any(
            tf.one_hot(list(self.forbidden_ids), vocab, on_value=True, off_value=False), axis=0
        )[None, :]
        if self.no_repeat_ngram_size:
            forbid = tf.logical_or(
                forbid, banned_ngram_tokens(tokens, t, self.no_repeat_ngram_size, vocab)
            )
        return tf.where(forbid, tf.fill(tf.shape(logits), NEG_INF), logits)

    def __call__(
        self,
        next: NextFn,
        start_ids: tf.Tensor,
        state: Any,
        max_length: int,
        constants: Any = None,
    ) -> tf.Tensor:
        """Generate ``max_length`` tokens after ``start_ids`` ``(batch,)``.

        Returns int32 ``(batch, max_length)``: the tokens after the start token, 0 after
        ``end_id``.
        """
        raise NotImplementedError


class GreedySampler(Sampler):
    """The most probable token at every step."""

    def __call__(self, next, start_ids, state, max_length, constants=None):
        start_ids = tf.cast(start_ids, tf.int32)
        batch = tf.shape(start_ids)[0]
        tokens = tf.pad(start_ids[:, None], [[0, 0], [0, max_length]])  # (batch, max + 1)
        finished = tf.zeros([batch], tf.bool)
        for t in tf.range(max_length):
            current = tf.slice(tokens, [0, t], [-1, 1])
            logits, state = next(current, state, t, constants)
            logits = self.mask_logits(logits, tokens, t)
            nxt = tf.cast(tf.argmax(logits, axis=-1), tf.int32)
            nxt = tf.where(finished, tf.zeros_like(nxt), nxt)
            tokens = set_column(tokens, t + 1, nxt)
            finished = tf.logical_or(finished, tf.equal(nxt, self.end_id))
            if tf.reduce_all(finished):
                break
        return tokens[:, 1:]


class BeamSampler(Sampler):
    """Beam search: the ``beam_width`` best partial sequences per example; the final one
    is the best by ``log p / length ** length_penalty`` (so beams are not rewarded for
    stopping early).

    Args:
        beam_width: beams kept per example.
        length_penalty: exponent of the length normalisation.
        end_id, forbidden_ids, no_repeat_ngram_size: as :class:`Sampler`.
    """

    def __init__(
        self,
        end_id: int,
        beam_width: int = 3,
        length_penalty: float = 1.0,
        forbidden_ids: Sequence[int] = (0,),
        no_repeat_ngram_size: int = 0,
    ):
        super().__init__(end_id, forbidden_ids, no_repeat_ngram_size)
        if beam_width < 1:
            raise ValueError("beam_width must be >= 1")
        self.beam_width = int(beam_width)
        self.length_penalty = float(length_penalty)

    def __call__(self, next, start_ids, state, max_length, constants=None):
        k = self.beam_width
        start_ids = tf.cast(start_ids, tf.int32)
        batch = tf.shape(start_ids)[0]

        def repeat(structure):
            return tf.nest.map_structure(lambda x: tf.repeat(x, k, axis=0), structure)

        state, constants = repeat(state), repeat(constants)
        tokens = tf.pad(tf.repeat(start_ids, k)[:, None], [[0, 0], [0, max_length]])
        scores = tf.tile(
            tf.concat([tf.zeros([1, 1]), tf.fill([1, k - 1], NEG_INF)], axis=1), [batch, 1]
        )  # (batch, k): only the first beam is live at the start
        finished = tf.zeros([batch * k], tf.bool)
        lengths = tf.zeros([batch * k], tf.float32)
        for t in tf.range(max_length):
            current = tf.slice(tokens, [0, t], [-1, 1])
            logits, state = next(current, state, t, constants)
            logp = tf.nn.log_softmax(self.mask_logits(logits, tokens, t), axis=-1)
            v = tf.shape(logp)[-1]
            # A finished beam only continues with padding, at no cost.
            pad_only = tf.one_hot(
                tf.zeros([batch * k], tf.int32), v, on_value=0.0, off_value=NEG_INF
            )
            logp = tf.where(finished[:, None], pad_only, logp)
            total = tf.reshape(tf.reshape(scores, [-1, 1]) + logp, [batch, k * v])
            top_scores, top_idx = tf.math.top_k(total, k=k)
            beam = top_idx // v
            token = tf.cast(top_idx % v, tf.int32)
            gather = tf.reshape(beam + tf.range(batch)[:, None] * k, [-1])
            tokens = tf.gather(tokens, gather)
            state = tf.nest.map_structure(lambda x, g=gather: tf.gather(x, g), state)
            was_finished = tf.gather(finished, gather)
            lengths = tf.gather(lengths, gather) + tf.cast(tf.logical_not(was_finished), tf.float32)
            tokens = set_column(tokens, t + 1, tf.reshape(token, [-1]))
            finished = tf.logical_or(was_finished, tf.equal(tf.reshape(token, [-1]), self.end_id))
            scores = top_scores
            if tf.reduce_all(finished):
                break
        norm = tf.reshape(scores, [-1]) / tf.pow(tf.maximum(lengths, 1.0), self.length_penalty)
        best = tf.argmax(tf.reshape(norm, [batch, k]), axis=-1, output_type=tf.int32)
        return tf.gather(tokens, best + tf.range(batch) * k)[:, 1:]
