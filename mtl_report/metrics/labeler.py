"""Negation-aware rule-based findings labeler for chest X-ray reports (CheXpert-labeler style).

Why rules: clinical-efficacy (CE) metrics compare the findings stated in a generated report
with those in the reference report, so both texts must be labelled the same way, offline,
without a trained model. The CheXpert labeler does this with mention phrases plus negation
and uncertainty rules; this module does the same with spaCy and negspacy (a maintained NegEx
implementation), on a blank English pipeline, so no spaCy model has to be downloaded:

    sentencizer -> EntityRuler (mention phrases of ``data/findings_mentions.json``)
                -> negex (negation cues) -> negex (uncertainty cues, second extension)

Each mention is positive (1), negated (0) or uncertain (-1); a report's label per finding is
1 if any mention is positive, else -1 if any is uncertain, else 0 if any is negative, else
NaN (not mentioned) -- the CheXpert aggregation. Negation beats uncertainty within a mention
("no definite effusion, possibly atelectasis" -> effusion 0). Uncertainty comes from NegEx's
sentence-wide cues ("may represent", "possible", "cannot exclude") and from ``uncertain``
phrases ("borderline cardiomegaly").

Two departures from CheXpert, both measured against the IU X-ray MeSH annotations on the
development split (``labeler_agreement``) and both editable in the JSON file:

* a mention next to an alternative ("atelectasis or scarring", "atelectasis versus
  infiltrate") is positive (``alternatives.value`` = 1; CheXpert: uncertain). The IU MeSH
  indexers index both members of such a two-way differential: 59 of 62 development reports
  with only this kind of hedge on a finding have that finding in MeSH, and labelling them -1
  made most of the atelectasis misses (recall 0.69). A NegEx uncertainty cue still wins
  ("may represent atelectasis or scar" -> -1; MeSH indexes those in 4 of 34);
* "probable"/"probably" are no uncertainty cues, like "likely" (high-confidence wording);
  MeSH indexes "probable X" as X in 10 of 12 development mentions.

Known limit of NegEx (no parse): a negation cue reaches to the end of its sentence or to a
termination cue ("but", "with", ";"), so "no acute disease, cardiomegaly is stable" negates
cardiomegaly. Such sentences are rare in reports; lists ("no effusion, pneumothorax or
consolidation"), which need the long scope, are everywhere.

Two choices of this vocabulary, both editable in the JSON file:

* explicit normality phrases give 0 without a negation word: "heart size is normal",
  "normal heart size" (Cardiomegaly), "costophrenic angles are sharp" (Pleural Effusion),
  and "the lungs are clear" (Lung Opacity: clear lungs state that there is no parenchymal
  opacity). Equivocal size statements ("borderline heart size", "upper limits of normal")
  and costophrenic blunting (effusion vs pleural thickening) give -1, as in CheXpert;
* Lung Opacity covers opacity, consolidation, airspace disease, infiltrate and pneumonia
  (CheXpert's "Lung Opacity" with its Consolidation and Pneumonia children folded in);
  nodular/calcified opacities are excluded (they are lesions/granulomas).

Agreement with the IU X-ray MeSH annotations: ``python -m mtl_report.metrics.labeler_agreement``
(tuned on the R2Gen train + val reports only; the other 896 held aside), asserted in
``tests/metrics/test_labeler.py``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtl_report.data.schema import DEFAULT_FINDINGS, finding_column

#: The vocabulary shipped with the package (user-editable; pass another via ``mentions_path``).
MENTIONS_PATH = Path(__file__).with_name("data") / "findings_mentions.json"

POSITIVE, NEGATIVE, UNCERTAIN = 1.0, 0.0, -1.0
_EXCLUDED = "_EXCLUDED"
_KINDS = ("mention", "negative", "uncertain", "exclude")
_SENTENCE_END = [".", ";", "!", "?"]
_CLAUSE_BREAKS = frozenset({",", ";", ":", ".", "!", "?"})

__all__ = [
    "DEFAULT_FINDINGS",
    "MENTIONS_PATH",
    "build_pipeline",
    "label_reports",
    "load_vocabulary",
    "mention_table",
]


def load_vocabulary(path: str | Path | None = None) -> dict[str, Any]:
    """Read the mention/negation vocabulary JSON (default: the packaged one)."""
    with open(path or MENTIONS_PATH, encoding="utf-8") as f:
        vocab = json.load(f)
    for key in ("findings", "negation", "uncertainty"):
        if key not in vocab:
            raise ValueError(f"vocabulary file {path or MENTIONS_PATH} has no '{key}' section")
    return vocab


def _literal_phrases(phrase: str) -> list[str] | None:
    """All literal spellings of a phrase without ``*``, or None when it has a wildcard.

    ``"sharp costophrenic angle|angles"`` -> ``["sharp costophrenic angle", "sharp
    costophrenic angles"]``; ``"small? effusion"`` -> ``["small effusion", "effusion"]``.
    Literal phrases go to spaCy's PhraseMatcher, which is much faster than the token Matcher.
    """
    options: list[list[str]] = [[]]
    for part in phrase.lower().split():
        if part == "*":
            return None
        optional = len(part) > 1 and part.endswith("?")
        word = part[:-1] if optional else part
        choices = [w for w in word.split("|") if w] + ([""] if optional else [])
        options = [[*o, c] if c else o for o in options for c in choices]
    return sorted({" ".join(o) for o in options if o})


def _token_pattern(phrase: str, tokenizer: Any, wildcard: dict[str, Any]) -> list[dict]:
    """Compile a phrase with wildcards into a spaCy token pattern.

    ``"heart * not enlarged"`` -> ``[{"LOWER": "heart"}, <wildcard>, {"LOWER": "not"},
    {"LOWER": "enlarged"}]``; ``"a|b"`` -> ``{"LOWER": {"IN": ["a", "b"]}}``; ``"w?"`` ->
    optional token. Literal words go through the spaCy tokenizer so that ``"air-space"``
    becomes the same three tokens as in the text.
    """
    pattern: list[dict[str, Any]] = []
    for part in phrase.lower().split():
        if part == "*":
            pattern.append(dict(wildcard))
            continue
        optional = len(part) > 1 and part.endswith("?")
        word = part[:-1] if optional else part
        if "|" in word:
            token: dict[str, Any] = {"LOWER": {"IN": [w for w in word.split("|") if w]}}
            pattern.append({**token, "OP": "?"} if optional else token)
            continue
        pieces = [t.lower_ for t in tokenizer(word)]
        if optional and len(pieces) != 1:
            raise ValueError(f"optional token '{part}' in '{phrase}' is more than one token")
        for piece in pieces:
            pattern.append({"LOWER": piece, "OP": "?"} if optional else {"LOWER": piece})
    return pattern


def _ruler_patterns(
    phrase: str, label: str, kind: str, tokenizer: Any, wildcard: dict[str, Any]
) -> list[dict[str, Any]]:
    """EntityRuler patterns of one vocabulary phrase (strings where possible: faster)."""
    if not phrase.split():
        raise ValueError("empty phrase in the findings vocabulary")
    literal = _literal_phrases(phrase)
    if literal is not None:
        return [{"label": label, "pattern": p, "id": kind} for p in literal]
    return [{"label": label, "pattern": _token_pattern(phrase, tokenizer, wildcard), "id": kind}]


def _negation_termset(vocab: dict[str, Any]) -> dict[str, list[str]]:
    """negspacy's ``en_clinical`` termset with the vocabulary's additions and removals.

    The termset is copied: negspacy's ``termset`` object edits a module-level dict in place.
    """
    from negspacy.termsets import termset

    terms = {k: list(v) for k, v in termset("en_clinical").get_patterns().items()}
    for key, values in vocab["negation"].get("remove", {}).items():
        drop = set(values)
        terms[key] = [t for t in terms[key] if t not in drop]
    for key, values in vocab["negation"].get("add", {}).items():
        terms[key] = sorted(set(terms[key]) | set(values))
    return terms


@functools.lru_cache(maxsize=4)
def build_pipeline(findings: tuple[str, ...] = DEFAULT_FINDINGS, mentions_path: str = "") -> Any:
    """The spaCy pipeline of the labeler (cached per findings and vocabulary file).

    Returns:
        ``spacy.Language``: blank English + sentencizer + entity_ruler + two negex components.
        Entities carry the finding name as ``label_`` and the phrase kind (mention, negative,
        uncertain) as ``ent_id_``; ``ent._.negex`` and ``ent._.uncertain`` are the cues.
    """
    import negspacy.negation  # noqa: F401  (registers the "negex" factory)
    import spacy

    vocab = load_vocabulary(mentions_path or None)
    unknown = [f for f in findings if f not in vocab["findings"]]
    if unknown:
        raise ValueError(f"no mention phrases for {unknown} in the findings vocabulary")

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    ruler = nlp.add_pipe("entity_ruler", config={"validate": True, "phrase_matcher_attr": "LOWER"})
    stop = sorted(set(vocab.get("wildcard_stop", [])) | set(_SENTENCE_END))
    wildcard = {"LOWER": {"NOT_IN": stop}, "OP": "*"}
    patterns = []
    # A literal phrase listed under several findings ("hydropneumothorax": effusion and
    # pneumothorax) can be only one entity; the others are added back when labelling.
    owners: dict[tuple[str, str], list[str]] = {}
    for finding in findings:
        for kind in ("mention", "negative", "uncertain"):
            for phrase in vocab["findings"][finding].get(kind, []):
                for literal in _literal_phrases(phrase) or []:
                    owners.setdefault((kind, literal), []).append(finding)
    for finding in findings:
        spec = vocab["findings"][finding]
        for kind in _KINDS:
            label = _EXCLUDED if kind == "exclude" else finding
            for phrase in spec.get(kind, []):
                patterns += _ruler_patterns(phrase, label, kind, nlp.tokenizer, wildcard)
    ruler.add_patterns(patterns)
    nlp.add_pipe(
        "negex",
        name="negex",
        config={"neg_termset": _negation_termset(vocab), "ent_types": list(findings)},
    )
    nlp.add_pipe(
        "negex",
        name="uncertainty",
        config={
            "neg_termset": {k: list(v) for k, v in vocab["uncertainty"].items()},
            "ent_types": list(findings),
            "extension_name": "uncertain",
        },
    )
    nlp.meta["mtl_shared_phrases"] = {
        f"{kind}|{literal}": names for (kind, literal), names in owners.items() if len(names) > 1
    }
    alternatives = vocab.get("alternatives", {})
    nlp.meta["mtl_alternatives"] = {
        "cues": [c.lower() for c in alternatives.get("cues", [])],
        "window": int(alternatives.get("window", 0)),
        "value": float(alternatives.get("value", UNCERTAIN)),
    }
    return nlp


def _prepare(text: Any) -> str:
    """Plain one-line text: ``None``/NaN -> ``""``; ``"clear.There"`` -> ``"clear. There"``."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return ""
    text = re.sub(r"\.{2,}", ".", str(text))
    text = re.sub(r"\.(?=[A-Za-z])", ". ", text)
    return re.sub(r"\s+", " ", text).strip()


def _next_to_alternative(ent: Any, cues: frozenset[str], window: int) -> bool:
    """Whether an alternative cue ("or", "versus") is within ``window`` tokens of ``ent``.

    NegEx scopes run to the end of the sentence, which is right for "no" but far too wide
    for "or": in "opacities, likely atelectasis or scarring" only atelectasis is uncertain.
    The search stops at clause punctuation (, ; : .).
    """
    if not cues or window <= 0:
        return False
    doc, sent = ent.doc, ent.sent
    for step, start, stop in ((-1, ent.start - 1, sent.start - 1), (1, ent.end, sent.end)):
        for i in range(start, stop, step)[:window]:
            if doc[i].text in _CLAUSE_BREAKS:
                break
            if doc[i].lower_ in cues:
                return True
    return False


def _mention_value(
    ent: Any,
    cues: frozenset[str] = frozenset(),
    window: int = 0,
    alternative: float = UNCERTAIN,
) -> float:
    """1 / 0 / -1 of one entity: fixed for negative/uncertain phrases, NegEx otherwise.

    A mention next to an alternative cue ("atelectasis or scarring") gets ``alternative``
    (the vocabulary's ``alternatives.value``) unless a NegEx cue already decided it.
    """
    if ent.ent_id_ == "negative":
        return NEGATIVE
    if ent.ent_id_ == "uncertain":
        return UNCERTAIN
    if ent._.negex:
        return NEGATIVE
    if ent._.uncertain:
        return UNCERTAIN
    if _next_to_alternative(ent, cues, window):
        return alternative
    return POSITIVE


def _aggregate(values: list[float]) -> float:
    """CheXpert aggregation of a report's mention values for one finding."""
    if not values:
        return np.nan
    if POSITIVE in values:
        return POSITIVE
    if UNCERTAIN in values:
        return UNCERTAIN
    return NEGATIVE


def _labelled_mentions(
    texts: Sequence[str],
    findings: Sequence[str],
    mentions_path: str | Path | None,
    batch_size: int,
) -> Iterator[list[tuple[str, Any, float]]]:
    """Per report: ``(finding, entity, value)`` of each mention (excluded phrases dropped)."""
    if isinstance(texts, str):
        raise TypeError("expected a sequence of reports, got one string (wrap it in a list)")
    nlp = build_pipeline(tuple(findings), str(mentions_path or ""))
    cues = frozenset(nlp.meta["mtl_alternatives"]["cues"])
    window = nlp.meta["mtl_alternatives"]["window"]
    alternative = nlp.meta["mtl_alternatives"]["value"]
    shared = nlp.meta["mtl_shared_phrases"]
    for doc in nlp.pipe((_prepare(t) for t in texts), batch_size=batch_size):
        mentions = []
        for ent in doc.ents:
            if ent.label_ == _EXCLUDED:
                continue
            value = _mention_value(ent, cues, window, alternative)
            names = shared.get(f"{ent.ent_id_}|{ent.text.lower()}", [ent.label_])
            mentions += [(name, ent, value) for name in names]
        yield mentions


def label_reports(
    texts: Sequence[str],
    findings: Sequence[str] = DEFAULT_FINDINGS,
    *,
    mentions_path: str | Path | None = None,
    batch_size: int = 256,
) -> pd.DataFrame:
    """Label reports per finding: 1 positive, 0 negative, -1 uncertain, NaN not mentioned.

    Args:
        texts: N report strings (findings + impression); ``None``/NaN count as empty.
        findings: finding names with phrases in the vocabulary (default: the five modelled).
        mentions_path: another vocabulary JSON (default: the packaged one).
        batch_size: documents per ``nlp.pipe`` batch.

    Returns:
        DataFrame of shape (N, len(findings)), float, columns ``finding_column(name)``
        (``"pleural_effusion"``...), index 0..N-1.
    """
    columns = [finding_column(f) for f in findings]
    rows = []
    for mentions in _labelled_mentions(texts, findings, mentions_path, batch_size):
        found: dict[str, list[float]] = {f: [] for f in findings}
        for name, _, value in mentions:
            found[name].append(value)
        rows.append([_aggregate(found[f]) for f in findings])
    return pd.DataFrame(np.asarray(rows, dtype=float).reshape(-1, len(findings)), columns=columns)


def mention_table(
    texts: Sequence[str],
    findings: Sequence[str] = DEFAULT_FINDINGS,
    *,
    mentions_path: str | Path | None = None,
    batch_size: int = 256,
) -> pd.DataFrame:
    """Every matched mention, for checking and editing the vocabulary.

    Returns:
        DataFrame with one row per mention: ``report`` (index into ``texts``), ``finding``,
        ``text`` (matched words), ``kind`` (mention/negative/uncertain), ``negated``,
        ``uncertain`` (the NegEx cues) and ``value`` (1/0/-1), plus ``sentence``.
    """
    rows = []
    for i, mentions in enumerate(_labelled_mentions(texts, findings, mentions_path, batch_size)):
        for name, ent, value in mentions:
            rows.append(
                {
                    "report": i,
                    "finding": name,
                    "text": ent.text,
                    "kind": ent.ent_id_,
                    "negated": bool(ent._.negex),
                    "uncertain": bool(ent._.uncertain),
                    "value": value,
                    "sentence": ent.sent.text,
                }
            )
    cols = ["report", "finding", "text", "kind", "negated", "uncertain", "value", "sentence"]
    return pd.DataFrame(rows, columns=cols)
