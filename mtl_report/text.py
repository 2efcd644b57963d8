"""Word-level tokenisation of report text, inside the TensorFlow graph.

The tokeniser is a :class:`keras.layers.TextVectorization` whose standardisation is the
graph function :func:`standardize_report` (only core string ops: ``StringLower``,
``RegexReplace``, ``StringJoin``), so the same tokenisation runs in ``tf.data``, in a
``.keras`` model file and in a SavedModel served by TF Serving without extra ops.

Standardisation (applied to raw report text; everything the model sees and every text the
decoder writes is in this form):

1. lower-case (UTF-8 aware);
2. de-identification masks (IU X-ray ``XXXX``, MIMIC-CXR ``___``: any run of 3+ ``x`` or
   2+ ``_``) become one token, ``[DEID]``, so ``"x-XXXX"`` → ``"x [DEID]"``;
3. list numbers that open a sentence (``"1. ..."``, ``". 2. ..."``) are dropped, as in the
   R2Gen IU X-ray / MIMIC-CXR preprocessing;
4. ``.`` is kept as a token of its own: sentence boundaries carry meaning in reports
   (one finding per sentence) and the decoder learns where sentences end. Decimal points
   between digits (``"1.5 cm"``) stay inside their number. Runs of periods collapse to one;
5. ``a.m.``/``p.m.`` → ``am``/``pm``; all other punctuation is dropped: apostrophes are
   removed (``"patient's"`` → ``"patients"``), the rest (``, ; : - / ( ) % ? ...``) becomes a space
   (``"well-expanded"`` → ``"well expanded"``, ``"and/or"`` → ``"and or"``). Commas are
   dropped rather than kept as tokens: they carry little clinical content, cost tokens of
   the 60-token budget, and the published IU X-ray / MIMIC-CXR text metrics are computed on
   text without them (R2Gen's ``clean_report``);
6. whitespace collapsed, ``[START]`` and ``[END]`` added.

``[DEID]`` and ``[UNK]`` in the input are kept, so standardising a decoded report changes
nothing (references and generated text can both be passed through it).

Times ``"a.m."``/``"p.m."`` become ``"am"``/``"pm"``; other abbreviations with periods
(``"e.g."``) are split into sentence ends (rare in reports). Letters and digits of any
script are kept.

Vocabulary (fixed layout; ``vocabulary[i]`` is the token of id ``i``)::

    0 ""  (padding)   1 "[UNK]"   2 "[START]"   3 "[END]"   4.. words by train frequency

Words seen fewer than ``min_count`` times in the training reports map to ``[UNK]``; the
vocabulary holds at most ``max_vocab`` entries including the four above. Reports longer
than ``max_length`` tokens (``[START]`` and ``[END]`` included) are cut to ``max_length``
and then have no ``[END]``: the decoder is never taught to stop in mid-sentence, and
generation stops at ``max_length`` anyway. :attr:`ReportTokenizer.stats` counts them.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

PAD = ""
UNK = "[UNK]"
START = "[START]"
END = "[END]"
DEID = "[DEID]"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, START, END)

TOKENIZER_FILE = "tokenizer.json"
FORMAT_VERSION = 1

# Sentinels are upper-case letters: after lower-casing no other upper-case letter is left,
# and the punctuation rule keeps letters, so they survive until they are swapped back.
_DEID_SENTINEL = "QQDEIDQQ"
_DECIMAL_SENTINEL = "QQDOTQQ"
_UNK_SENTINEL = "QQUNKQQ"


@keras.saving.register_keras_serializable(package="mtl_report")
def standardize_report(text: tf.Tensor) -> tf.Tensor:
    """Standardise report text and add ``[START]``/``[END]`` (graph ops only).

    Args:
        text: tf.string tensor of any shape.

    Returns:
        tf.string tensor of the same shape: space-separated tokens,
        e.g. ``"[START] the heart is normal . no effusion . [END]"``.
    """
    t = tf.strings.lower(text, encoding="utf-8")
    t = tf.strings.regex_replace(t, r"x{3,}|_{2,}|\[deid\]", f" {_DEID_SENTINEL} ")
    t = tf.strings.regex_replace(t, r"\[unk\]", f" {_UNK_SENTINEL} ")
    t = tf.strings.regex_replace(t, r"(\d)\.(\d)", rf"\1{_DECIMAL_SENTINEL}\2")
    # "1. the lungs ... . 2. no effusion": list numbers at a sentence start.
    t = tf.strings.regex_replace(t, r"(^|[.:;])\s*\d{1,2}\s*[.)](\s|$)", r"\1 ")
    t = tf.strings.regex_replace(t, r"\b([ap])\.m\.", r"\1m")
    t = tf.strings.regex_replace(t, r"['`’]", "")
    t = tf.strings.regex_replace(t, r"[^\p{L}\p{N}.\s]", " ")
    t = tf.strings.regex_replace(t, r"\.+", " . ")
    t = tf.strings.regex_replace(t, r"\s+", " ")
    t = tf.strings.regex_replace(t, r"\.( \.)+", ".")
    t = tf.strings.regex_replace(t, r"^ ?\. ?", "")
    t = tf.strings.regex_replace(t, _DECIMAL_SENTINEL, ".")
    t = tf.strings.regex_replace(t, _DEID_SENTINEL, DEID)
    t = tf.strings.regex_replace(t, _UNK_SENTINEL, UNK)
    t = tf.strings.strip(t)
    t = tf.strings.join([START, t, END], separator=" ")
    return tf.strings.regex_replace(t, r"\s+", " ")


def _as_string_list(reports: Sequence[str] | np.ndarray | Any) -> list[str]:
    """Python strings; ``None``/NaN (a missing report) become ``""``."""
    if isinstance(reports, str):
        raise TypeError("expected a sequence of reports, got one string (wrap it in a list)")
    out = []
    for r in reports:
        if r is None or (isinstance(r, float) and np.isnan(r)):
            out.append("")
        elif isinstance(r, bytes):
            out.append(r.decode("utf-8", errors="replace"))
        else:
            out.append(str(r))
    return out


class ReportTokenizer:
    """Report text ↔ fixed-length int32 token ids, word level, in the TF graph.

    Args:
        max_length: tokens per report including ``[START]`` and ``[END]`` (default 60).
        min_count: a word must occur this often in the fitted reports to get an id.
        max_vocab: cap on the vocabulary size, padding and special tokens included.

    Example::

        tok = ReportTokenizer().fit(train_reports)
        ids = tok.encode(["Heart size normal. No effusion."])  # (1, 60) int32
        dec_in, target = tok.decoder_io(ids)  # (1, 59) each
        tok.decode(ids)  # ["heart size normal . no effusion ."]
    """

    def __init__(self, max_length: int = 60, min_count: int = 2, max_vocab: int = 5000):
        if max_length < 3:
            raise ValueError("max_length must leave room for [START], a word and [END]")
        if min_count < 1:
            raise ValueError("min_count must be >= 1")
        if max_vocab < len(SPECIAL_TOKENS) + 1:
            raise ValueError(f"max_vocab must be > {len(SPECIAL_TOKENS)}")
        self.max_length = int(max_length)
        self.min_count = int(min_count)
        self.max_vocab = int(max_vocab)
        self._vocabulary: list[str] | None = None
        self._layer: keras.layers.TextVectorization | None = None
        self._vocab_tensor: tf.Tensor | None = None
        #: What :meth:`fit` saw: reports, distinct words, words cut by min_count/max_vocab,
        #: reports longer than max_length (truncated), and the longest report in tokens.
        self.stats: dict[str, int] = {}

    # ------------------------------------------------------------------ fitting
    def fit(self, reports: Sequence[str]) -> ReportTokenizer:
        """Build the vocabulary from (training) reports. Returns ``self``."""
        texts = _as_string_list(reports)
        if not texts:
            raise ValueError("cannot fit a tokenizer on zero reports")
        counts: collections.Counter[str] = collections.Counter()
        lengths = []
        for i in range(0, len(texts), 4096):
            std = standardize_report(tf.constant(texts[i : i + 4096])).numpy()
            for line in std:
                tokens = line.decode("utf-8").split()
                lengths.append(len(tokens))
                counts.update(tokens[1:-1])
        words = [w for w, c in counts.items() if c >= self.min_count and w not in SPECIAL_TOKENS]
        # Most frequent first, ties alphabetical: the same reports give the same ids.
        words.sort(key=lambda w: (-counts[w], w))
        room = self.max_vocab - len(SPECIAL_TOKENS)
        self.stats = {
            "n_reports": len(texts),
            "n_distinct_words": len(counts),
            "n_words_below_min_count": sum(1 for c in counts.values() if c < self.min_count),
            "n_words_over_max_vocab": max(0, len(words) - room),
            "n_truncated": int(sum(n > self.max_length for n in lengths)),
            "max_report_tokens": int(max(lengths)),
        }
        self._set_vocabulary([*SPECIAL_TOKENS, *words[:room]])
        return self

    def _set_vocabulary(self, vocabulary: list[str]) -> None:
        if tuple(vocabulary[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"vocabulary must start with {SPECIAL_TOKENS}")
        if len(set(vocabulary)) != len(vocabulary):
            raise ValueError("vocabulary has duplicate tokens")
        self._vocabulary = list(vocabulary)
        self._layer = None
        self._vocab_tensor = None

    def _check_fitted(self) -> list[str]:
        if self._vocabulary is None:
            raise RuntimeError("ReportTokenizer is not fitted: call fit() or load() first")
        return self._vocabulary

    # ------------------------------------------------------------------ properties
    @property
    def vocabulary(self) -> list[str]:
        """Tokens by id: ``["", "[UNK]", "[START]", "[END]", words...]``."""
        return list(self._check_fitted())

    @property
    def vocab_size(self) -> int:
        return len(self._check_fitted())

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def unk_id(self) -> int:
        return 1

    @property
    def start_id(self) -> int:
        return 2

    @property
    def end_id(self) -> int:
        return 3

    # ------------------------------------------------------------------ graph layer
    def layer(self) -> keras.layers.TextVectorization:
        """The configured, vocabulary-loaded layer: tf.string ``(n,)`` → int64 ``(n, L)``.

        The same layer object is returned on every call (it owns a lookup table).
        """
        vocab = self._check_fitted()
        if self._layer is None:
            self._layer = keras.layers.TextVectorization(
                standardize=standardize_report,
                split="whitespace",
                output_mode="int",
                output_sequence_length=self.max_length,
                # The layer adds "" and "[UNK]" itself.
                vocabulary=vocab[2:],
                name="report_tokenizer",
            )
            got = self._layer.get_vocabulary()
            if [str(t) for t in got] != vocab:  # pragma: no cover - Keras behaviour guard
                raise RuntimeError("TextVectorization reordered the report vocabulary")
        return self._layer

    # ------------------------------------------------------------------ encode
    def encode(self, reports: Sequence[str] | tf.Tensor) -> np.ndarray | tf.Tensor:
        """Token ids ``[START] w1 .. wk [END] 0 0 ..``, int32 ``(n, max_length)``.

        A ``tf.Tensor`` of strings (graph or eager) gives a ``tf.Tensor``; a Python
        sequence gives a NumPy array (missing reports ``None``/NaN count as empty).
        """
        if isinstance(reports, tf.Tensor):
            return tf.cast(self.layer()(reports), tf.int32)
        texts = _as_string_list(reports)
        if not texts:
            return np.zeros((0, self.max_length), np.int32)
        return np.asarray(self.layer()(tf.constant(texts)), dtype=np.int32)

    def token_lengths(self, reports: Sequence[str]) -> np.ndarray:
        """Untruncated length of each report in tokens, ``[START]``/``[END]`` included."""
        texts = _as_string_list(reports)
        if not texts:
            return np.zeros((0,), np.int64)
        tokens = tf.strings.split(standardize_report(tf.constant(texts)))
        return tokens.row_lengths().numpy()

    def count_truncated(self, reports: Sequence[str]) -> int:
        """How many of ``reports`` are longer than ``max_length`` tokens."""
        return int((self.token_lengths(reports) > self.max_length).sum())

    @staticmethod
    def decoder_io(token_ids):
        """Teacher forcing pair ``(ids[:, :-1], ids[:, 1:])``: decoder input and target."""
        return token_ids[:, :-1], token_ids[:, 1:]

    # ------------------------------------------------------------------ decode
    def decode(self, token_ids) -> list[str]:
        """Token ids ``(n, T)`` (or one sequence ``(T,)``) → texts, in Python.

        Stops at the first ``[END]``; drops padding and ``[START]``. ``[UNK]`` and
        ``[DEID]`` are word slots and are kept. Tokens are joined by one space, so a
        decoded in-vocabulary report equals its standardised text.
        """
        vocab = self._check_fitted()
        ids = np.asarray(token_ids)
        if ids.ndim == 1:
            ids = ids[None]
        if ids.ndim != 2:
            raise ValueError(f"token_ids must have shape (n, T) or (T,), got {ids.shape}")
        out = []
        for row in ids:
            words = []
            for i in row.tolist():
                if i == self.end_id:
                    break
                if i in (self.pad_id, self.start_id):
                    continue
                if not 0 <= i < len(vocab):
                    raise ValueError(f"token id {i} outside the vocabulary (size {len(vocab)})")
                words.append(vocab[i])
            out.append(" ".join(words))
        return out

    def detokenize_graph(self, token_ids: tf.Tensor) -> tf.Tensor:
        """Graph version of :meth:`decode`: int ``(n, T)`` → tf.string ``(n,)``.

        Uses only ``tf.gather`` on a vocabulary constant, masks and
        ``tf.strings.reduce_join``, so it can sit in an exported serving signature.
        A rank-1 input ``(T,)`` gives a scalar. Ids outside the vocabulary are an error
        (``InvalidArgumentError``), on every device.
        """
        vocab = self._check_fitted()
        if self._vocab_tensor is None:
            # Made eagerly even when the first call is being traced: a constant cached from
            # inside a tf.function graph cannot be used by any later call outside it.
            with tf.init_scope():
                self._vocab_tensor = tf.constant(vocab, dtype=tf.string)
        ids = tf.convert_to_tensor(token_ids)
        if not ids.dtype.is_integer:
            raise TypeError(f"token_ids must be integers, got {ids.dtype}")
        ids = tf.cast(ids, tf.int32)
        checks = [
            tf.debugging.assert_non_negative(ids, message="negative token id"),
            tf.debugging.assert_less(ids, len(vocab), message="token id outside the vocabulary"),
        ]
        with tf.control_dependencies(checks):
            ids = tf.identity(ids)
        scalar = ids.shape.rank == 1
        if scalar:
            ids = ids[None]
        ended = tf.cumsum(tf.cast(tf.equal(ids, self.end_id), tf.int32), axis=1) > 0
        keep = ~ended & tf.not_equal(ids, self.pad_id) & tf.not_equal(ids, self.start_id)
        words = tf.gather(self._vocab_tensor, ids)
        texts = tf.strings.reduce_join(tf.ragged.boolean_mask(words, keep), axis=1, separator=" ")
        return texts[0] if scalar else texts

    # ------------------------------------------------------------------ persistence
    def get_config(self) -> dict[str, Any]:
        return {
            "max_length": self.max_length,
            "min_count": self.min_count,
            "max_vocab": self.max_vocab,
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``<directory>/tokenizer.json`` (settings, vocabulary, fit stats)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / TOKENIZER_FILE
        data = {
            "format_version": FORMAT_VERSION,
            "standardize": "mtl_report.text.standardize_report",
            **self.get_config(),
            "stats": self.stats,
            "vocabulary": self.vocabulary,
        }
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, directory: str | Path) -> ReportTokenizer:
        """Read a tokenizer written by :meth:`save` (a directory or the JSON file itself)."""
        path = Path(directory)
        if path.is_dir():
            path = path / TOKENIZER_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no saved report tokenizer")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            tok = cls(data["max_length"], data["min_count"], data["max_vocab"])
            tok._set_vocabulary(list(data["vocabulary"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: not a valid report tokenizer file ({exc})") from exc
        tok.stats = dict(data.get("stats", {}))
        return tok

    def __repr__(self) -> str:
        size = len(self._vocabulary) if self._vocabulary is not None else "unfitted"
        return (
            f"ReportTokenizer(max_length={self.max_length}, min_count={self.min_count}, "
            f"max_vocab={self.max_vocab}, vocab_size={size})"
        )
