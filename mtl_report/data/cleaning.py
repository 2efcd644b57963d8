"""Cleaning rules for the non-imaging ED data and the labels.

Each rule is a small pure function over pandas objects, vectorised, returning the cleaned
values and counts of what it changed (for the cohort log). :func:`fit_cleaning` fits the
parts that learn from data (min-max statistics, category vocabularies) on the **train split
only**; the fitted transform is a JSON-able dict stored as ``cleaning.json`` with the dataset
so that inference applies exactly the same transform.

Vital-sign plausibility ranges (inclusive; MIMIC-IV-ED records temperature in °F):

=============  ========  ========  ===========
vital          low       high      unit
=============  ========  ========  ===========
o2sat          50        100       %
heartrate      20        300       beats/min
resprate       3         80        breaths/min
sbp            40        300       mmHg
dbp            20        200       mmHg
temperature    86        113       °F (30–45 °C)
=============  ========  ========  ===========

A temperature between 30 and 45 is taken as Celsius typed into the Fahrenheit field and
converted (counted); a diastolic pressure not below the systolic one makes both missing.
Values outside the ranges become missing (never the whole study): the model masks missing
vitals, and dropping studies would bias the cohort towards complete triage records.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from mtl_report.data.errors import DataError
from mtl_report.data.schema import CATEGORICAL, UNKNOWN, VITALS, finding_column

ABBREVIATIONS_FILE = Path(__file__).parent / "resources" / "abbreviations.tsv"

DEFAULT_VITAL_RANGES: dict[str, tuple[float, float]] = {
    "o2sat": (50.0, 100.0),
    "heartrate": (20.0, 300.0),
    "resprate": (3.0, 80.0),
    "sbp": (40.0, 300.0),
    "dbp": (20.0, 200.0),
    "temperature": (86.0, 113.0),
}

#: A temperature in this range (inclusive) typed into the °F field is read as °C.
CELSIUS_RANGE = (30.0, 45.0)

UNCERTAIN_POLICIES = ("masked", "positive", "negative")


@dataclass
class CleaningConfig:
    """How raw ED data and labels are cleaned. Stored with the dataset.

    Attributes:
        vital_ranges: plausible inclusive range per vital; outside → missing.
        convert_celsius: treat temperatures in [30, 45] as °C and convert to °F.
        findings: CheXpert labels to model, in order.
        uncertain: policy for CheXpert's uncertain label (-1.0): ``"masked"`` (missing, the
            loss ignores it; default), ``"positive"`` (U-Ones) or ``"negative"`` (U-Zeros).
        abbreviation_files: extra abbreviation tables (TSV) merged over the built-in one.
    """

    vital_ranges: dict[str, tuple[float, float]] = field(
        default_factory=lambda: dict(DEFAULT_VITAL_RANGES)
    )
    convert_celsius: bool = True
    findings: tuple[str, ...] = (
        "Atelectasis",
        "Cardiomegaly",
        "Pleural Effusion",
        "Pneumothorax",
        "Lung Opacity",
    )
    uncertain: str = "masked"
    abbreviation_files: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.uncertain not in UNCERTAIN_POLICIES:
            raise DataError(
                f"uncertain-label policy {self.uncertain!r} is not one of {UNCERTAIN_POLICIES}"
            )
        unknown = set(self.vital_ranges) - set(VITALS)
        if unknown:
            raise DataError(f"vital ranges for unknown vital(s) {sorted(unknown)}")
        for name, (low, high) in self.vital_ranges.items():
            if not low < high:
                raise DataError(f"vital range for {name}: low {low} is not below high {high}")
        self.findings = tuple(self.findings)
        if not self.findings:
            raise DataError("at least one finding must be configured")


# --------------------------------------------------------------------------------------
# Vitals
# --------------------------------------------------------------------------------------
def clean_vitals(
    df: pd.DataFrame,
    ranges: Mapping[str, tuple[float, float]] = DEFAULT_VITAL_RANGES,
    convert_celsius: bool = True,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Coerce vitals to numbers and set implausible values to missing.

    Returns the cleaned copy of the vitals columns and counts per reason
    (``"<vital>_implausible"``, ``"<vital>_unparseable"``, ``"temperature_celsius_converted"``,
    ``"bp_dbp_not_below_sbp"``).
    """
    out = pd.DataFrame(index=df.index)
    counts: dict[str, int] = {}
    for vital in VITALS:
        raw = df[vital] if vital in df.columns else pd.Series(np.nan, index=df.index)
        values = pd.to_numeric(raw, errors="coerce").astype("float64")
        unparseable = raw.notna() & values.isna()
        counts[f"{vital}_unparseable"] = int(unparseable.sum())
        if vital == "temperature" and convert_celsius:
            celsius = values.between(*CELSIUS_RANGE)
            counts["temperature_celsius_converted"] = int(celsius.sum())
            values = values.where(~celsius, values * 9.0 / 5.0 + 32.0)
        low, high = ranges.get(vital, DEFAULT_VITAL_RANGES[vital])
        implausible = values.notna() & ~values.between(low, high)
        counts[f"{vital}_implausible"] = int(implausible.sum())
        out[vital] = values.mask(implausible)
    inverted = out["dbp"].notna() & out["sbp"].notna() & (out["dbp"] >= out["sbp"])
    counts["bp_dbp_not_below_sbp"] = int(inverted.sum())
    out.loc[inverted, ["sbp", "dbp"]] = np.nan
    return out, {k: v for k, v in counts.items() if v}


def fit_minmax(train: pd.DataFrame, ranges: Mapping[str, tuple[float, float]]) -> dict:
    """Min and max of each vital over the train split (plausible range when none observed).

    Only finite values inside the plausible range count (the split is cleaned already;
    this keeps the statistics finite, with ``lo < hi``, whatever reaches it).
    """
    stats = {}
    for vital in VITALS:
        values = pd.to_numeric(train[vital], errors="coerce").astype("float64")
        low, high = ranges.get(vital, DEFAULT_VITAL_RANGES[vital])
        values = values[values.between(low, high)]
        lo, hi = (float(values.min()), float(values.max())) if len(values) else (low, high)
        if not hi > lo:  # a constant column would divide by zero
            lo, hi = lo - 0.5, hi + 0.5
        stats[vital] = [lo, hi]
    return stats


def apply_minmax(df: pd.DataFrame, stats: Mapping[str, Sequence[float]]) -> pd.DataFrame:
    """Scale vitals to [0, 1] with train statistics; values beyond are clipped, missing or
    non-numeric values and ±inf (not a measurement) are NaN."""
    out = pd.DataFrame(index=df.index)
    for vital in VITALS:
        lo, hi = stats[vital]
        values = pd.to_numeric(df[vital], errors="coerce").astype("float64")
        values = values.where(np.isfinite(values)).clip(lo, hi)
        out[vital] = ((values - lo) / (hi - lo)).clip(0.0, 1.0)
    return out


# --------------------------------------------------------------------------------------
# Categories
# --------------------------------------------------------------------------------------
#: Raw gender spellings (stripped, upper-cased) → group; anything else is ``unknown``.
GENDER_GROUPS = {"F": "F", "FEMALE": "F", "W": "F", "M": "M", "MALE": "M"}

#: MIMIC-IV race prefixes → group, first match wins (the serving graph reads this table too).
ETHNICITY_PREFIXES: tuple[tuple[str, str], ...] = (
    ("WHITE", "white"),
    ("PORTUGUESE", "white"),
    ("BLACK", "black"),
    ("AFRICAN", "black"),
    ("HISPANIC", "hispanic"),
    ("LATINO", "hispanic"),
    ("SOUTH AMERICAN", "hispanic"),
    ("ASIAN", "asian"),
    ("AMERICAN INDIAN", "other"),
    ("NATIVE HAWAIIAN", "other"),
    ("MULTIPLE RACE", "other"),
    ("OTHER", "other"),
)


def normalise_gender(values: pd.Series) -> pd.Series:
    """``F``/``M``; anything else (blank, ``U``, typos) → ``unknown``."""
    key = values.astype("string").str.strip().str.upper()
    return key.map(GENDER_GROUPS).fillna(UNKNOWN).astype(object)


def ethnicity_group(race: pd.Series) -> pd.Series:
    """Group MIMIC-IV's ~33 race strings into white/black/hispanic/asian/other/unknown.

    ``UNKNOWN``, ``UNABLE TO OBTAIN``, ``PATIENT DECLINED TO ANSWER`` and blanks are
    ``unknown``. Already-grouped values pass through, so the function is idempotent.
    """
    key = race.astype("string").str.strip().str.upper().fillna("")
    out = pd.Series(UNKNOWN, index=race.index, dtype=object)
    for prefix, group in reversed(ETHNICITY_PREFIXES):
        out[key.str.startswith(prefix)] = group
    return out


def fit_categories(train: pd.DataFrame, columns: Iterable[str] = CATEGORICAL) -> dict:
    """Vocabulary of each categorical column in the train split, plus ``unknown``."""
    vocab = {}
    for col in columns:
        seen = sorted(set(train[col].dropna().astype(str)) - {UNKNOWN})
        vocab[col] = [*seen, UNKNOWN]
    return vocab


def apply_categories(
    df: pd.DataFrame, vocab: Mapping[str, Sequence[str]]
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Map values outside the train vocabulary to ``unknown``; count how many."""
    out = df.copy()
    counts = {}
    for col, values in vocab.items():
        known = out[col].isin(list(values))
        counts[f"{col}_unknown_category"] = int((~known & (out[col] != UNKNOWN)).sum())
        out[col] = out[col].where(known, UNKNOWN)
    return out, {k: v for k, v in counts.items() if v}


# --------------------------------------------------------------------------------------
# Free text: chief complaint and ICD title
# --------------------------------------------------------------------------------------
#: Normalised text is cut to at most this many characters, at a word boundary (the model
#: reads a few dozen tokens; the bound keeps every downstream buffer small).
MAX_TEXT_CHARS = 1000
#: Only this many characters of the raw text are read: a bound on the work one field costs
#: (a 10 MB "complaint" is not read whole, neither here nor in the serving graph).
MAX_RAW_TEXT_CHARS = 10 * MAX_TEXT_CHARS
#: Normalised texts that say "no complaint recorded"; they become missing (``""``).
#: ``UNKNOWN-CC`` is MIMIC-IV-ED's placeholder (→ ``"unknown cc"``); de-identified ``___``
#: and a lone ``?`` normalise to ``""`` by themselves.
MISSING_TEXT: tuple[str, ...] = (
    "unknown cc",
    "unknown chief complaint",
    "unknown",
    "unk",
    "none",
    "n a",
    "na",
    "not applicable",
    "not available",
)


def _separators(text: pd.Series) -> pd.Series:
    """Lower-cased text as letter/digit tokens with one separator, ``" "`` or ``"/"``, between.

    Every character that is not a letter, digit or ``/`` (punctuation, ``_``, whitespace,
    control characters) is a space; a run of separators holding a ``/`` is one ``/``.
    Lower-casing is made the same everywhere (Python's ``str.lower``, pyarrow's, ICU's in
    the serving graph): ``İ`` is ``i`` (not ``i`` + combining dot) and a final ``ς`` is
    ``σ`` (context-free, as pyarrow does it).
    """
    text = text.str.replace("\u0130", "I", regex=False).str.lower()
    text = text.str.replace("\u03c2", "\u03c3", regex=False)
    text = text.str.replace(r"[^\w/]|_", " ", regex=True)
    text = text.str.replace(r"[ /]*/[ /]*", "/", regex=True)
    text = text.str.replace(r" {2,}", " ", regex=True)
    return text.str.replace(r"^ | $", "", regex=True)


def _token_text(text: str) -> str:
    return _separators(pd.Series([text], dtype="string")).iloc[0]


def load_abbreviations(extra_files: Iterable[str | Path] = ()) -> dict[str, str]:
    """Built-in abbreviation table merged with user tables (later files win).

    An abbreviation must start with a letter or digit once normalised (``"+ve"`` is the
    token ``ve``); one that normalises to nothing or starts with ``/`` is an error.
    """
    table: dict[str, str] = {}
    for path in (ABBREVIATIONS_FILE, *extra_files):
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: abbreviation file not found")
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
                raise DataError(f"{path}:{lineno}: expected 'abbreviation<TAB>expansion'")
            key = _token_text(parts[0])
            if not key or key.startswith("/"):
                raise DataError(
                    f"{path}:{lineno}: abbreviation {parts[0].strip()!r} must start with a "
                    "letter or digit"
                )
            table[parts[0].strip().lower()] = parts[1].strip().lower()
    return table


@lru_cache(maxsize=8)
def _prepared(items: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    pairs: dict[str, str] = {}
    for key, expansion in items:
        key = _token_text(key)
        if key and not key.startswith("/"):  # tables of old runs are not re-validated
            pairs[key] = _token_text(expansion).replace("/", " ")
    return tuple(sorted(pairs.items(), key=lambda kv: (-len(kv[0]), kv[0])))


def prepared_abbreviations(abbreviations: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """``(key, expansion)`` pairs as the matcher uses them, in matching priority.

    Keys and expansions are put in the normalised form of the text (:func:`_separators`;
    expansions with ``/`` as a space, so an expansion is already normalised text); longer
    keys come first (``n/v/d`` before ``n/v``), then alphabetical order. Two raw keys with
    the same normalised form (``a-fib``, ``a fib``) keep the later one. The model's graph
    (:func:`mtl_report.layers.clinical_text.normalise_text_graph`) builds its matcher from
    these pairs.
    """
    return _prepared(tuple(abbreviations.items()))


@lru_cache(maxsize=8)
def _abbreviation_regex(pairs: tuple[tuple[str, str], ...]) -> re.Pattern:
    # One capturing group per key, in priority order: leftmost-first alternation picks the
    # longest key at each position and ``lastindex`` says which key matched. A key's space
    # also matches "/" ("a/fib"); its "/" only matches "/". A key is a whole token run: not
    # preceded by a letter or digit, nor followed by one unless it ends with "/" ("w/cp").
    alternatives = []
    for key, _ in pairs:
        body = "".join("[ /]" if c == " " else re.escape(c) for c in key)
        alternatives.append(f"({body})" if key.endswith("/") else f"({body})(?![^ /])")
    return re.compile(rf"(?<![^ /])(?:{'|'.join(alternatives)})")


def _cut(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit]
    return cut.rsplit(" ", 1)[0] if " " in cut else cut


def normalise_text(values: pd.Series, abbreviations: Mapping[str, str]) -> pd.Series:
    """Lower-case, expand abbreviations, strip punctuation, bound the length.

    ``"SOB, CP.."`` → ``"shortness of breath chest pain"``; ``"s/p Fall"`` → ``"status
    post fall"``; ``"LETHARGY/SOB"`` → ``"lethargy shortness of breath"``. Steps:

    1. only the first :data:`MAX_RAW_TEXT_CHARS` characters are read; lower-cased;
    2. tokens are runs of letters and digits; between them one separator, ``"/"`` where
       the original had a slash, else a space (:func:`_separators`);
    3. abbreviations are whole token runs, longest first, in one pass (an expansion is
       never expanded again): a ``/`` separates tokens (``sob/abnl labs``) unless it is
       part of a table entry (``s/p``, ``n/v/d``, ``w/``);
    4. every ``/`` becomes a space; the text is cut at a word boundary to at most
       :data:`MAX_TEXT_CHARS` characters;
    5. a placeholder for "no complaint" (:data:`MISSING_TEXT`, e.g. ``UNKNOWN-CC``) and
       missing or blank text become ``""`` (the model treats it as an absent modality).

    The result is a fixed point (normalising it again changes nothing) for any table whose
    expansions hold no entry; the built-in one is such a table (tested). The serving graph
    repeats these steps exactly (:func:`mtl_report.layers.clinical_text.normalise_text_graph`).
    """
    text = values.astype("string").fillna("").str.slice(0, MAX_RAW_TEXT_CHARS)
    text = _separators(text)
    pairs = prepared_abbreviations(abbreviations)
    if pairs:
        pattern = _abbreviation_regex(pairs)
        text = text.str.replace(pattern, lambda m: f" {pairs[m.lastindex - 1][1]} ", regex=True)
    text = text.str.replace(r"[ /]+", " ", regex=True).str.strip(" ")
    text = text.map(_cut, na_action="ignore").astype("string")
    text = text.where(~text.isin(MISSING_TEXT), "")
    return text.astype(object)


# --------------------------------------------------------------------------------------
# Targets: acuity and findings
# --------------------------------------------------------------------------------------
N_ACUITY_LEVELS = 5


def clean_acuity(values: pd.Series) -> tuple[pd.Series, int]:
    """Acuity as a nullable integer 1–5; anything else becomes missing (counted)."""
    numeric = pd.to_numeric(values, errors="coerce")
    valid = numeric.isin(range(1, N_ACUITY_LEVELS + 1))
    invalid = int((values.notna() & ~valid).sum())
    return numeric.where(valid).astype("Int64"), invalid


def cumulative_encoding(levels: Sequence[float] | np.ndarray) -> np.ndarray:
    """Ordinal targets for acuity 1–5 as 4 cumulative binary targets ``[y>1, y>2, y>3, y>4]``.

    Level 1 → ``[0,0,0,0]``, level 3 → ``[1,1,0,0]``, level 5 → ``[1,1,1,1]``. Missing levels
    give a row of NaN (masked by the loss). Shape ``(n, 4)``, float32.
    """
    levels = np.asarray(pd.to_numeric(pd.Series(levels), errors="coerce"), dtype="float64")
    known = levels[~np.isnan(levels)]
    if np.any((known < 1) | (known > N_ACUITY_LEVELS) | (known % 1 != 0)):
        raise ValueError(f"acuity levels must be integers 1–{N_ACUITY_LEVELS}")
    thresholds = np.arange(1, N_ACUITY_LEVELS, dtype="float64")
    encoded = (levels[:, None] > thresholds[None, :]).astype("float32")
    encoded[np.isnan(levels)] = np.nan
    return encoded


def chexpert_findings(
    labels: pd.DataFrame, findings: Sequence[str], uncertain: str = "masked"
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Findings targets from CheXpert-style labels (1.0 / 0.0 / -1.0 / blank).

    Blank means the labeler found no mention, which CheXpert treats as negative; ``-1.0``
    (uncertain) follows ``uncertain``: ``masked`` → missing (the loss skips it), ``positive``
    → 1, ``negative`` → 0. Output columns are :func:`finding_column` names, float (0/1/NaN).
    """
    if uncertain not in UNCERTAIN_POLICIES:
        raise DataError(f"uncertain-label policy {uncertain!r} is not one of {UNCERTAIN_POLICIES}")
    replacement = {"masked": math.nan, "positive": 1.0, "negative": 0.0}[uncertain]
    out = pd.DataFrame(index=labels.index)
    counts = {}
    for label in findings:
        if label not in labels.columns:
            raise DataError(f"finding {label!r} is not a label column of the source")
        values = pd.to_numeric(labels[label], errors="coerce")
        is_uncertain = values == -1.0
        counts[f"{finding_column(label)}_uncertain_{uncertain}"] = int(is_uncertain.sum())
        values = values.fillna(0.0).where(~is_uncertain, replacement)
        out[finding_column(label)] = values.clip(0.0, 1.0).astype("float64")
    return out, {k: v for k, v in counts.items() if v}


# --------------------------------------------------------------------------------------
# The fitted transform
# --------------------------------------------------------------------------------------
def fit_cleaning(train: pd.DataFrame, config: CleaningConfig) -> dict:
    """Fit the train-split transform, as stored in ``cleaning.json``."""
    return {
        "vital_order": list(VITALS),
        "vital_ranges": {k: list(v) for k, v in config.vital_ranges.items()},
        "convert_celsius": config.convert_celsius,
        "minmax": fit_minmax(train, config.vital_ranges),
        "categories": fit_categories(train),
        "uncertain": config.uncertain,
        "findings": list(config.findings),
        "abbreviations": load_abbreviations(config.abbreviation_files),
        "fitted_on": "train",
        "n_train": len(train),
    }


def scaled_vitals(records: pd.DataFrame, cleaning: Mapping) -> pd.DataFrame:
    """Vitals of ``records`` scaled with a fitted transform, columns ``<vital>_scaled``."""
    scaled = apply_minmax(records, cleaning["minmax"])
    return scaled.add_suffix("_scaled")


def ignored_vitals(vitals: Mapping[str, float], cleaning: Mapping) -> list[str]:
    """The vitals that a run's cleaning transform will treat as missing, one phrase each
    (``"heartrate=900 (plausible 20-300)"``); empty when all are used.

    Decided by :func:`mtl_report.data.cleaning.clean_vitals` itself (the rules the serving
    graph repeats) with the run's ranges from ``cleaning.json``: non-finite values, values
    outside the plausible range (after a 30-45 temperature is read as °C and converted),
    and a diastolic pressure not below the systolic one. Why: the model masks a missing
    vital, so an implausible one is not an error, but a user who typed it must be told it
    was not used.
    """
    ranges = {k: tuple(r) for k, r in cleaning.get("vital_ranges", DEFAULT_VITAL_RANGES).items()}
    celsius = bool(cleaning.get("convert_celsius", True))
    values = {name: float(raw) for name, raw in vitals.items()}
    _, counts = clean_vitals(pd.DataFrame([values]), ranges, celsius)
    out: list[str] = []
    for name, value in values.items():
        if not math.isfinite(value):
            out.append(f"{name}={value} (not a finite number)")
        elif counts.get(f"{name}_implausible"):
            low, high = ranges.get(name, DEFAULT_VITAL_RANGES[name])
            also = " °F, or 30-45 °C" if name == "temperature" and celsius else ""
            out.append(f"{name}={value:g} (plausible {low:g}-{high:g}{also})")
    if counts.get("bp_dbp_not_below_sbp"):
        sbp, dbp = values["sbp"], values["dbp"]
        out.append(f"sbp={sbp:g} and dbp={dbp:g} (diastolic not below systolic)")
    return out
