"""Report generation: greedy and beam search with cached attention and n-gram blocking.

The encoder (image + ED data → shared sequence) runs once per study; the decoder then runs
one position at a time with key/value caches (:meth:`ReportDecoder.step`), so a report of T
tokens costs T small steps instead of T full passes over the prefix. Everything is written in
TensorFlow ops inside ``tf.function`` so the same code is exported into the SavedModel.

Options that fight the field's main qualitative failure, repetition:

- ``no_repeat_ngram_size`` (default 3): a token that would complete an n-gram already in the
  report is banned (as in fairseq / Hugging Face generation);
- ``length_penalty`` (beam search): final scores are ``log p / length ** length_penalty``, so
  beams are not rewarded for stopping early.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

NEG_INF = -1e9


@dataclass
class DecodingConfig:
    """How reports are generated.

    Attributes:
        method: ``"greedy"`` or ``"beam"``.
        beam_width: beams kept (beam search).
        max_length: generated tokens at most (default: the model's ``max_report_length - 1``).
        no_repeat_ngram_size: ban repeating n-grams of this size (0 = off).
        length_penalty: exponent of the length normalisation (beam search).
    """

    method: str = "greedy"
    beam_width: int = 3
    max_length: int | None = None
    no_repeat_ngram_size: int = 3
    length_penalty: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in ("greedy", "beam"):
            raise ValueError(f"decoding method must be greedy or beam, got {self.method!r}")
        if self.beam_width < 1:
            raise ValueError("beam_width must be >= 1")
        if self.no_repeat_ngram_size < 0:
            raise ValueError("no_repeat_ngram_size must be >= 0")


def encoder_model(model: keras.Model) -> keras.Model:
    """Sub-model from the model's non-text inputs to the decoder's ``memory`` and the other
    heads' outputs (with findings guidance, the memory includes the findings tokens)."""
    inputs = {k: v for k, v in model.input.items() if k != "report_tokens"}
    n_shared = model.model_config.num_shared_layers
    if model.model_config.findings_guidance:
        memory, condition = model.get_layer("findings_tokens").output
        outputs = {"memory": memory, "condition": condition}
    else:
        memory_layer = model.get_layer(f"shared_{n_shared - 1}" if n_shared else "cross_attention")
        outputs = {"memory": memory_layer.output}
    for name in ("acuity", "findings"):
        if name in model.output:
            outputs[name] = model.output[name]
    return keras.Model(inputs, outputs, name="report_encoder")


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


class ReportGenerator:
    """Generate report token ids (and the other heads' outputs) for a batch of inputs.

    Args:
        model: a trained :class:`~mtl_report.models.aksoy.AksoyModel` with the text task.
        start_id, end_id: ids of ``[START]`` and ``[END]``; 0 is padding.
        config: :class:`DecodingConfig`.
    """

    def __init__(self, model: keras.Model, start_id: int, end_id: int, config=None):
        if "report" not in model.output:
            raise ValueError("this model has no report head (preset without the text task)")
        self.model = model
        self.config = config or DecodingConfig()
        self.start_id = int(start_id)
        self.end_id = int(end_id)
        self.decoder = model.get_layer("report")
        self.encoder = encoder_model(model)
        self.max_length = int(self.config.max_length or model.model_config.max_report_length - 1)
        self.vocab_size = int(self.decoder.vocab_size)
        self._generate = tf.function(self._generate_graph, reduce_retracing=True)

    def __call__(self, inputs: dict) -> dict[str, np.ndarray]:
        """``inputs`` as for the model (no ``report_tokens``) → ``tokens`` ``(batch, T)``
        plus ``acuity``/``findings`` when the model has those heads."""
        inputs = {k: tf.convert_to_tensor(v) for k, v in inputs.items() if k in self.encoder.input}
        out = self._generate(inputs)
        return {k: v.numpy() for k, v in out.items()}

    # -- graph -----------------------------------------------------------------------------
    def _generate_graph(self, inputs):
        from mtl_report.models.aksoy import complete_inputs

        enc = self.encoder(complete_inputs(self.encoder, dict(inputs)), training=False)
        memory = enc.pop("memory")
        condition = enc.pop("condition", None)
        if self.config.method == "beam" and self.config.beam_width > 1:
            tokens = self._beam(memory, condition)
        else:
            tokens = self._greedy(memory, condition)
        return {"tokens": tokens, **enc}

    def _mask_logits(self, logits, tokens, t):
        logits = tf.cast(logits, tf.float32)
        # Never generate padding or [START].
        forbid = tf.one_hot([0, self.start_id], self.vocab_size, on_value=True, off_value=False)
        forbid = tf.reduce_any(tf.cast(forbid, tf.bool), axis=0)[None, :]
        if self.config.no_repeat_ngram_size:
            forbid = tf.logical_or(
                forbid,
                banned_ngram_tokens(tokens, t, self.config.no_repeat_ngram_size, self.vocab_size),
            )
        return tf.where(forbid, tf.fill(tf.shape(logits), NEG_INF), logits)

    def _greedy(self, memory, condition=None):
        batch = tf.shape(memory)[0]
        steps = self.max_length
        self_cache, cross_cache = self.decoder.init_cache(memory, steps + 1)
        tokens = tf.pad(
            tf.fill([batch, 1], self.start_id), [[0, 0], [0, steps]]
        )  # (batch, steps + 1)
        finished = tf.zeros([batch], tf.bool)
        for t in tf.range(steps):
            current = tf.slice(tokens, [0, t], [-1, 1])
            logits, self_cache = self.decoder.step(
                current, memory, self_cache, cross_cache, t, condition
            )
            logits = self._mask_logits(logits, tokens, t)
            nxt = tf.cast(tf.argmax(logits, axis=-1), tokens.dtype)
            nxt = tf.where(finished, tf.zeros_like(nxt), nxt)
            tokens = _set_column(tokens, t + 1, nxt)
            finished = tf.logical_or(finished, tf.equal(nxt, self.end_id))
            if tf.reduce_all(finished):
                break
        return tokens[:, 1:]

    def _beam(self, memory, condition=None):
        k = self.config.beam_width
        batch = tf.shape(memory)[0]
        steps = self.max_length
        memory = tf.repeat(memory, k, axis=0)  # (batch*k, L, d)
        if condition is not None:
            condition = tf.repeat(condition, k, axis=0)
        self_cache, cross_cache = self.decoder.init_cache(memory, steps + 1)
        tokens = tf.pad(tf.fill([batch * k, 1], self.start_id), [[0, 0], [0, steps]])
        scores = tf.tile(
            tf.concat([tf.zeros([1, 1]), tf.fill([1, k - 1], NEG_INF)], axis=1), [batch, 1]
        )  # (batch, k): only the first beam is live at the start
        finished = tf.zeros([batch * k], tf.bool)
        lengths = tf.zeros([batch * k], tf.float32)
        v = self.vocab_size
        for t in tf.range(steps):
            current = tf.slice(tokens, [0, t], [-1, 1])
            logits, self_cache = self.decoder.step(
                current, memory, self_cache, cross_cache, t, condition
            )
            logp = tf.nn.log_softmax(self._mask_logits(logits, tokens, t), axis=-1)
            # A finished beam only continues with padding, at no cost.
            pad_only = tf.one_hot(
                tf.zeros([batch * k], tf.int32), v, on_value=0.0, off_value=NEG_INF
            )
            logp = tf.where(finished[:, None], pad_only, logp)
            total = tf.reshape(scores, [-1, 1]) + logp  # (batch*k, v)
            total = tf.reshape(total, [batch, k * v])
            top_scores, top_idx = tf.math.top_k(total, k=k)
            beam = top_idx // v
            token = tf.cast(top_idx % v, tokens.dtype)
            gather = tf.reshape(beam + tf.range(batch)[:, None] * k, [-1])
            tokens = tf.gather(tokens, gather)
            self_cache = tf.gather(self_cache, gather, axis=1)
            was_finished = tf.gather(finished, gather)
            lengths = tf.gather(lengths, gather) + tf.cast(tf.logical_not(was_finished), tf.float32)
            tokens = _set_column(tokens, t + 1, tf.reshape(token, [-1]))
            finished = tf.logical_or(was_finished, tf.equal(tf.reshape(token, [-1]), self.end_id))
            scores = top_scores
            if tf.reduce_all(finished):
                break
        norm = tf.reshape(scores, [-1]) / tf.pow(
            tf.maximum(lengths, 1.0), self.config.length_penalty
        )
        best = tf.argmax(tf.reshape(norm, [batch, k]), axis=-1, output_type=tf.int32)
        chosen = tf.gather(tokens, best + tf.range(batch) * k)
        return chosen[:, 1:]


def _set_column(tokens, index, values):
    """``tokens[:, index] = values`` for a dynamic ``index``."""
    width = tf.shape(tokens)[1]
    column = tf.one_hot(index, width, on_value=True, off_value=False, dtype=tf.bool)[None, :]
    return tf.where(column, values[:, None], tokens)
