"""Attention maps of a trained model: what each image region, ED feature and word looks at.

Three families of attention are read from a trained :class:`~mtl_report.models.aksoy.AksoyModel`
without touching its layers, outputs or serialisation: while the model runs once, every
``MultiHeadAttention`` of interest has its ``_compute_attention`` wrapped (on the instance,
for that call only) so that its softmax scores are recorded.

- **visual self-attention** (:class:`~mtl_report.layers.VisualEncoder`), per block
  ``(heads, L, L)``: image region → image region;
- **cross-modal attention** (:class:`~mtl_report.layers.CrossModalAttention`)
  ``(heads, L, K)``: which of the K unified-data tokens (*none*, vitals, demographics,
  chief complaint, ICD title) each image region attends to;
- **decoder cross-attention** (:class:`~mtl_report.layers.ReportDecoder`), per block
  ``(heads, words, L)``: which image regions the decoder looked at to write each word of the
  generated report (the generated report is fed back with teacher forcing, so row ``j`` is
  the step that produced word ``j``).

Geometry: the backbone's ``h × w`` feature grid is flattened row by row
(``keras.layers.Reshape``), so visual vector ``l`` is grid cell ``(l // w, l % w)``, row 0 at
the top of the image. :meth:`Explanation.region_map` undoes that flattening; the overlay in
:func:`mtl_report.plots.plot_attention_overlay` stretches the grid over the model's input
image (the letterboxed ``S × S`` image returned by :func:`mtl_report.image_decoding.load_image`),
which is the image the backbone saw.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtl_report.layers.unified_data import TOKEN_NAMES
from mtl_report.models.aksoy import AksoyReportGenerator

__all__ = [
    "Explanation",
    "attention_layers",
    "describe",
    "explain_batch",
    "explain_image",
    "grid_shape",
    "record_attention",
    "top_tokens",
]


@dataclass
class Explanation:
    """Attention maps of one study (NumPy arrays, batch axis removed).

    Attributes:
        image: the model's input image ``(S, S, 3)`` in [0, 255] (None when not given).
        grid: ``(h, w)`` of the backbone feature grid; ``h * w == L``.
        visual_self_attention: one ``(heads, L, L)`` array per visual self-attention block.
        cross_modal_attention: ``(heads, L, K)``, image regions over the unified-data tokens.
        token_names: names of the K tokens (:data:`mtl_report.layers.unified_data.TOKEN_NAMES`).
        token_mask: ``(K,)`` bool, False where the study lacks that modality (never attended).
        words: the generated report as words (empty without a text head).
        decoder_cross_attention: one ``(heads, len(words), L)`` array per decoder block.
        report: the generated report text (None without a text head).
        outputs: the other heads' outputs for this study (``acuity``, ``findings``).
    """

    image: np.ndarray | None
    grid: tuple[int, int]
    visual_self_attention: list[np.ndarray]
    cross_modal_attention: np.ndarray
    token_names: tuple[str, ...] = TOKEN_NAMES
    token_mask: np.ndarray | None = None
    words: list[str] = field(default_factory=list)
    decoder_cross_attention: list[np.ndarray] = field(default_factory=list)
    report: str | None = None
    outputs: dict = field(default_factory=dict)

    @property
    def num_regions(self) -> int:
        return self.grid[0] * self.grid[1]

    def region_map(self, values: np.ndarray) -> np.ndarray:
        """``(L,)`` values per visual vector → ``(h, w)`` grid (row-major, row 0 on top)."""
        values = np.asarray(values, dtype="float64")
        if values.shape != (self.num_regions,):
            raise ValueError(f"expected {self.num_regions} region values, got {values.shape}")
        return values.reshape(self.grid)

    def visual_saliency(self, layer: int = -1) -> np.ndarray:
        """``(h, w)``: attention each region *receives* in a visual self-attention block,
        averaged over heads and query regions (sums to 1 over the grid)."""
        scores = self.visual_self_attention[layer]  # (heads, L, L)
        return self.region_map(scores.mean(axis=(0, 1)))

    def query_map(self, row: int, col: int, layer: int = -1) -> np.ndarray:
        """``(h, w)``: where region ``(row, col)`` looks in a visual self-attention block."""
        scores = self.visual_self_attention[layer].mean(axis=0)
        return self.region_map(scores[row * self.grid[1] + col])

    def token_maps(self) -> dict[str, np.ndarray]:
        """Token name → ``(h, w)`` share of each region's cross-modal attention on it
        (mean over heads); an absent modality's map is all zeros."""
        mean = self.cross_modal_attention.mean(axis=0)  # (L, K)
        return {name: self.region_map(mean[:, k]) for k, name in enumerate(self.token_names)}

    def region_token_attention(self) -> np.ndarray:
        """``(L, K)`` cross-modal attention averaged over heads (each row sums to 1)."""
        return self.cross_modal_attention.mean(axis=0)

    def word_maps(self, layer: int = -1) -> list[np.ndarray]:
        """One ``(h, w)`` map per generated word: the decoder's cross-attention over the
        image regions at the step that wrote it (mean over heads)."""
        if not self.decoder_cross_attention:
            return []
        scores = self.decoder_cross_attention[layer].mean(axis=0)  # (words, L)
        return [self.region_map(row) for row in scores]


def grid_shape(num_regions: int, image_size: int | None = None) -> tuple[int, int]:
    """``(h, w)`` of a square feature grid of ``num_regions`` vectors.

    Raises:
        ValueError: when ``num_regions`` is not a square number.
    """
    side = math.isqrt(int(num_regions))
    if side * side != num_regions:
        raise ValueError(f"{num_regions} visual vectors are not a square grid")
    return side, side


def attention_layers(model) -> dict[str, object]:
    """The model's attention layers worth explaining, by a readable name.

    ``visual_self_<i>`` (VisualEncoder blocks), ``cross_modal`` (CrossModalAttention) and
    ``decoder_cross_<i>`` (ReportDecoder blocks, only with a text head): the underlying
    ``keras.layers.MultiHeadAttention`` objects.
    """
    backbone, decoder = model.backbone, model.heads.report_decoder
    layers: dict[str, object] = {}
    for i, block in enumerate(backbone.visual_encoder.blocks):
        layers[f"visual_self_{i}"] = block._self_attention_layer
    layers["cross_modal"] = backbone.cross_attention.attention
    if decoder is not None:
        for i, block in enumerate(decoder.blocks):
            layers[f"decoder_cross_{i}"] = block._cross_attention_layer
    return layers


@contextlib.contextmanager
def record_attention(layers: Mapping[str, object]) -> Iterator[dict[str, list[np.ndarray]]]:
    """Record the softmax scores of ``MultiHeadAttention`` layers while the block runs.

    Yields a dict name → list of score arrays ``(batch, heads, queries, keys)``, one per call
    of that layer. Each layer's ``_compute_attention`` is wrapped on the instance (asking for
    the scores, which Keras computes identically to its fused path) and restored on exit, so
    outputs, weights and serialisation are unchanged. Run the model eagerly inside the block
    (a plain ``model(x)``, not a ``tf.function``).
    """
    records: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    patched = []
    try:
        for name, layer in layers.items():
            original = layer._compute_attention
            signature = inspect.signature(original)

            def wrapped(*args, _original=original, _name=name, _sig=signature, **kwargs):
                bound = _sig.bind(*args, **kwargs)
                bound.arguments["return_attention_scores"] = True
                output, scores = _original(*bound.args, **bound.kwargs)
                records[_name].append(np.asarray(scores, dtype="float32"))
                return output, scores

            object.__setattr__(layer, "_compute_attention", wrapped)
            patched.append(layer)
        yield records
    finally:
        for layer in patched:
            with contextlib.suppress(AttributeError):
                object.__delattr__(layer, "_compute_attention")


def _teacher_forcing_tokens(generated: np.ndarray, start_id: int, length: int) -> np.ndarray:
    """``[START] + generated`` cut or zero-padded to ``length`` (the model's token input)."""
    batch = generated.shape[0]
    tokens = np.zeros((batch, length), dtype="int32")
    tokens[:, 0] = start_id
    n = min(length - 1, generated.shape[1])
    tokens[:, 1 : n + 1] = generated[:, :n]
    return tokens


def _words(row: np.ndarray, tokenizer) -> list[str]:
    vocab = tokenizer.vocabulary
    out = []
    for i in row.tolist():
        if i == tokenizer.end_id or i == tokenizer.pad_id:
            break
        out.append(vocab[i])
    return out


def explain_batch(
    model,
    inputs: Mapping,
    tokenizer=None,
    images: np.ndarray | None = None,
    decoding=None,
    generator=None,
) -> list[Explanation]:
    """Attention maps of every study of a batch.

    Args:
        model: a trained :class:`~mtl_report.models.aksoy.AksoyModel`.
        inputs: model inputs without ``report_tokens`` (as for
            :meth:`~mtl_report.models.aksoy.AksoyReportGenerator.model_inputs`), batch size n.
        tokenizer: the run's :class:`~mtl_report.text.ReportTokenizer` (needed with a text
            head: the report is generated first, then explained word by word).
        images: ``(n, S, S, 3)`` model-input images, kept for plotting (optional).
        decoding: :class:`~mtl_report.decoding.DecodingConfig` of the generated report.
        generator: a :class:`~mtl_report.decoding.ReportGenerator` of ``model`` to reuse
            (saves tracing a new one; ``decoding`` is then ignored).

    Returns:
        One :class:`Explanation` per study.
    """
    import tensorflow as tf

    x = {k: tf.convert_to_tensor(v) for k, v in inputs.items() if k in model.input}
    batch = int(next(iter(x.values())).shape[0])
    generated = None
    if "report" in model.output:
        if tokenizer is None:
            raise ValueError("a model with a report head needs its tokenizer to be explained")
        from mtl_report.decoding import ReportGenerator

        gen = generator or ReportGenerator(model, tokenizer.start_id, tokenizer.end_id, decoding)
        generated = np.asarray(gen(x)["tokens"])
        length = int(model.input["report_tokens"].shape[1])
        x["report_tokens"] = tf.constant(
            _teacher_forcing_tokens(generated, tokenizer.start_id, length)
        )
    from mtl_report.models.aksoy import complete_inputs

    layers = attention_layers(model)
    with record_attention(layers) as rec:
        outputs = model(complete_inputs(model, x), training=False)
    missing = [name for name, calls in rec.items() if not calls]
    if missing:  # pragma: no cover - guards against a Keras change of the attention path
        raise RuntimeError(f"attention scores not recorded for {missing}")
    scores = {name: calls[-1] for name, calls in rec.items()}
    num_regions = scores["cross_modal"].shape[2]
    grid = grid_shape(num_regions)
    token_mask = _token_mask(model, x)
    visual_names = sorted((n for n in scores if n.startswith("visual_self_")), key=_index)
    decoder_names = sorted((n for n in scores if n.startswith("decoder_cross_")), key=_index)
    result = []
    for i in range(batch):
        words = _words(generated[i], tokenizer) if generated is not None else []
        n_words = len(words)
        result.append(
            Explanation(
                image=None if images is None else np.asarray(images[i]),
                grid=grid,
                visual_self_attention=[scores[n][i] for n in visual_names],
                cross_modal_attention=scores["cross_modal"][i],
                token_names=TOKEN_NAMES,
                token_mask=token_mask[i],
                words=words,
                # image regions only (a findings-guided decoder also attends to F finding
                # tokens after them)
                decoder_cross_attention=[
                    scores[n][i, :, :n_words, :num_regions] for n in decoder_names
                ],
                report=" ".join(words) if generated is not None else None,
                outputs={
                    k: np.asarray(v)[i] for k, v in outputs.items() if k in ("acuity", "findings")
                },
            )
        )
    return result


def _index(name: str) -> int:
    return int(name.rsplit("_", 1)[1])


def _token_mask(model, x) -> np.ndarray:
    """``(batch, K)`` which unified-data tokens are present (the block's own mask)."""
    from mtl_report.models.aksoy import ED_INPUTS

    _, mask = model.backbone.unified_data(*(x[k] for k in ED_INPUTS), training=False)
    return np.asarray(mask, dtype=bool)


def explain_image(
    run: str | Path | AksoyReportGenerator,
    image: str | Path | np.ndarray,
    study: Mapping | None = None,
    decoding=None,
) -> Explanation:
    """Attention maps of a trained run on one X-ray (the path behind ``generate --explain``).

    Args:
        run: run directory (a preset), or an :class:`AksoyReportGenerator` already loaded
            from one (reused: no second model load).
        image: image file, or an already prepared ``(S, S, 3)`` array in [0, 255].
        study: ED data of the study (vitals by name, ``chief_complaint``, ``icd_title``,
            ``gender``, ``ethnicity``); missing values are treated as absent.
        decoding: :class:`~mtl_report.decoding.DecodingConfig` (default: the generator's).
    """
    from mtl_report.image_decoding import load_image

    if isinstance(run, AksoyReportGenerator):
        generator = run
        # its text generator serves unless other decoding settings are asked for
        text_generator = generator.text_generator if decoding is None else None
    else:
        generator = AksoyReportGenerator.from_preset(run, decoding)
        text_generator = generator.text_generator
    if isinstance(image, str | Path):
        pixels = load_image(image, generator.image_size)
    else:
        pixels = np.asarray(image, dtype="float32")
    images = pixels[None]
    x = generator.model_inputs(images, [dict(study or {})])
    tokenizer = generator.tokenizer if "report" in generator.model.output else None
    return explain_batch(generator.model, x, tokenizer, images, decoding, text_generator)[0]


def top_tokens(explanation: Explanation, k: int = 1) -> list[list[str]]:
    """Per region (row-major), the ``k`` unified-data tokens it attends to most."""
    att = explanation.region_token_attention()
    order = np.argsort(-att, axis=1)[:, :k]
    return [[explanation.token_names[j] for j in row] for row in order]


def describe(explanation: Explanation, words: Sequence[int] | None = None) -> str:
    """A short text summary: per token the mean attention share, per word the peak cell."""
    att = explanation.region_token_attention().mean(axis=0)
    lines = ["cross-modal attention share per ED token (mean over regions and heads):"]
    for name, share, present in zip(
        explanation.token_names,
        att,
        explanation.token_mask
        if explanation.token_mask is not None
        else [True] * len(explanation.token_names),
    ):
        lines.append(f"  {name:<16} {share:6.3f}{'' if present else '  (absent)'}")
    maps = explanation.word_maps()
    if maps:
        lines.append("decoder: peak image cell (row, col) per generated word:")
        chosen = range(len(maps)) if words is None else words
        for j in chosen:
            r, c = np.unravel_index(int(np.argmax(maps[j])), explanation.grid)
            lines.append(f"  {explanation.words[j]:<16} ({r}, {c})")
    return "\n".join(lines)
