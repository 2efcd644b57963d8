"""Report generation: greedy and beam search with cached attention and n-gram blocking.

The encoder (image + ED data → shared sequence) runs once per study; the decoder then runs
one position at a time with key/value caches (:meth:`AksoyModel.call_with_cache`), so a
report of T tokens costs T small steps instead of T full passes over the prefix. The loops
are the model-free samplers of :mod:`mtl_report.samplers`; everything is TensorFlow ops
inside ``tf.function`` so the same code is exported into the SavedModel.

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

from mtl_report.samplers import BeamSampler, GreedySampler, Sampler


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


def sampler_for(config: DecodingConfig, start_id: int, end_id: int) -> Sampler:
    """The :mod:`mtl_report.samplers` sampler of a decoding config: padding and
    ``[START]`` are never generated."""
    common = dict(
        end_id=end_id,
        forbidden_ids=(0, start_id),
        no_repeat_ngram_size=config.no_repeat_ngram_size,
    )
    if config.method == "beam" and config.beam_width > 1:
        return BeamSampler(
            beam_width=config.beam_width, length_penalty=config.length_penalty, **common
        )
    return GreedySampler(**common)


class ReportGenerator:
    """Generate report token ids (and the other heads' outputs) for a batch of inputs.

    The model encodes once (:meth:`AksoyModel.encode`), then a sampler
    (:func:`sampler_for`) calls :meth:`AksoyModel.call_with_cache` once per token.

    Args:
        model: a trained :class:`~mtl_report.models.aksoy.AksoyModel` with the text task.
        start_id, end_id: ids of ``[START]`` and ``[END]``; 0 is padding.
        config: :class:`DecodingConfig`.
    """

    def __init__(self, model: keras.Model, start_id: int, end_id: int, config=None):
        if "report" not in model.output:
            raise ValueError("this model has no report head (set-up without the text task)")
        self.model = model
        self.config = config or DecodingConfig()
        self.start_id = int(start_id)
        self.end_id = int(end_id)
        self.sampler = sampler_for(self.config, self.start_id, self.end_id)
        self.max_length = int(self.config.max_length or model.max_report_length - 1)
        #: The inputs generation reads: the model's, without the teacher-forced tokens.
        self.input_names = [k for k in model.input if k != "report_tokens"]
        self.generate_graph = tf.function(self._generate_graph, reduce_retracing=True)

    def __call__(self, inputs: dict) -> dict[str, np.ndarray]:
        """``inputs`` as for the model (no ``report_tokens``) → ``tokens`` ``(batch, T)``
        plus ``acuity``/``findings`` when the model has those heads."""
        inputs = {k: tf.convert_to_tensor(v) for k, v in inputs.items() if k in self.input_names}
        out = self.generate_graph(inputs)
        return {k: v.numpy() for k, v in out.items()}

    def _generate_graph(self, inputs):
        """Graph version of :meth:`__call__` (tensors in and out; the SavedModel calls it)."""
        inputs = {k: v for k, v in inputs.items() if k in self.input_names}
        encoded = self.model.encode(inputs, training=False)
        state, constants = self.model.init_cache(encoded, self.max_length + 1)
        batch = tf.shape(encoded["memory"])[0]
        tokens = self.sampler(
            self.model.call_with_cache,
            tf.fill([batch], self.start_id),
            state,
            self.max_length,
            constants,
        )
        heads = {k: v for k, v in encoded.items() if k in ("acuity", "findings")}
        return {"tokens": tokens, **heads}
