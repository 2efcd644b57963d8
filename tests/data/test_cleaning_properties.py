"""Property tests (hypothesis) of the cleaning rules: any input gives a defined value.

Whatever a CSV or a request holds (any string: unicode, control characters, very long; any
float: NaN, ±inf, huge, -0.0; numbers as text; None), every rule returns a value of its
documented kind or missing, never raises, and never gives NaN where a category is due.
Normalised text is a fixed point, bounded in length. Examples are derandomised (the
same inputs on every run) and few, so the whole file runs in seconds.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtl_report.data.cleaning import (
    DEFAULT_VITAL_RANGES,
    MAX_RAW_TEXT_CHARS,
    MAX_TEXT_CHARS,
    MISSING_TEXT,
    apply_minmax,
    clean_acuity,
    clean_vitals,
    ethnicity_group,
    fit_minmax,
    load_abbreviations,
    normalise_gender,
    normalise_text,
    prepared_abbreviations,
)
from mtl_report.data.schema import UNKNOWN, VITALS

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
TABLE = load_abbreviations()
PAIRS = prepared_abbreviations(TABLE)

floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [-0.0, 0.0, 1e308, -1e308, 5e-324, 36.6, 98.6, 30.0, 45.0, 86.0, 113.0]
)
texts = st.text(max_size=40) | st.sampled_from(
    ["", " ", "\x00", "\x00\x01\x7f\x85", "nan", "NaN", "inf", "-inf", "1e400", "٣٧", "３７",
     "37,5", "98.6°F", "UNKNOWN-CC", "\u2028", "İSTANBUL", "ΟΔΟΣ"]
)  # fmt: skip
# One raw cell of a table: anything pandas may hold after reading a CSV or a request.
cells = st.none() | floats | texts | st.integers(-(10**30), 10**30) | st.booleans()
long_texts = st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=8), st.integers(0, 3000))
# Text made of table entries, in any case, between separators and other words: the cases
# where expansion, "/" and idempotence interact.
words = st.sampled_from([k for k, _ in PAIRS] + list(TABLE) + ["pain", "x", "a", "fib", "o"])
seps = st.sampled_from([" ", "/", ", ", "-", "_", "..", " / ", "//", "\t", "(", ")"])
complaints = st.builds(
    lambda parts, upper: "".join(parts).upper() if upper else "".join(parts),
    st.lists(st.one_of(words, seps), max_size=12),
    st.booleans(),
)

NORMALISED = re.compile(r"(?:[^\W_]+(?: [^\W_]+)*)?")


def _series(values) -> pd.Series:
    return pd.Series(list(values), dtype=object)


def _check_normalised(raw: list, out: list) -> None:
    assert len(out) == len(raw)
    for r, o in zip(raw, out):
        assert isinstance(o, str), (r, o)
        assert NORMALISED.fullmatch(o), (r, o)  # letters/digits, single spaces
        assert len(o) <= MAX_TEXT_CHARS
        assert o not in MISSING_TEXT
    again = normalise_text(_series(out), TABLE).tolist()
    assert again == out  # a fixed point: prepared records normalise to themselves


@FUZZ
@given(st.lists(cells | long_texts, min_size=1, max_size=6))
def test_normalise_text_any_input_gives_bounded_fixed_point(raw):
    _check_normalised(raw, normalise_text(_series(raw), TABLE).tolist())


@FUZZ
@given(st.lists(complaints, min_size=1, max_size=8))
def test_normalise_text_expands_every_entry_and_is_idempotent(raw):
    out = normalise_text(_series(raw), TABLE).tolist()
    _check_normalised(raw, out)
    # An entry of letters, digits and spaces never survives as whole words (entries with
    # "/" are tokens only with their slash, e.g. "s/p"; "s p" is not the abbreviation).
    for r, o in zip(raw, out):
        for key, _ in PAIRS:
            if "/" not in key:
                assert f" {key} " not in f" {o} ", (r, o, key)


def test_built_in_table_is_closed():
    """No expansion holds an entry: the reason normalisation is idempotent (see above).

    Entries with a "/" cannot match normalised text (it has no "/"), so only the others
    are looked for.
    """
    plain = [k for k, _ in PAIRS if "/" not in k]
    for key, expansion in PAIRS:
        assert [k for k in plain if f" {k} " in f" {expansion} "] == [], (key, expansion)


def test_raw_text_and_result_are_bounded():
    raw = ["cp " * 100_000, "x" * 50_000, "a" * (MAX_RAW_TEXT_CHARS - 2) + " sob"]
    out = normalise_text(_series(raw), TABLE).tolist()
    assert len(out[0]) <= MAX_TEXT_CHARS and out[0].startswith("chest pain chest pain")
    assert out[1] == "x" * MAX_TEXT_CHARS  # one word longer than the bound: cut hard
    assert out[2] == "a" * MAX_TEXT_CHARS  # "sob" lies past the characters read


@FUZZ
@given(st.lists(st.fixed_dictionaries({v: cells for v in VITALS}), min_size=1, max_size=5))
def test_clean_vitals_gives_plausible_value_or_missing(rows):
    df = pd.DataFrame(rows, dtype=object)
    out, counts = clean_vitals(df)
    assert list(out.columns) == list(VITALS) and len(out) == len(df)
    for vital in VITALS:
        assert out[vital].dtype == np.float64
        low, high = DEFAULT_VITAL_RANGES[vital]
        present = out[vital].dropna()
        assert present.between(low, high).all(), (vital, present.tolist())
    both = out["sbp"].notna() & out["dbp"].notna()
    assert (out.loc[both, "dbp"] < out.loc[both, "sbp"]).all()
    assert all(isinstance(n, int) and n > 0 for n in counts.values())


def _expected_temperature(value: float) -> float:
    """The documented rule: [30, 45] is °C → °F; then plausible [86, 113] °F or missing."""
    if math.isnan(value):
        return math.nan
    if 30.0 <= value <= 45.0:
        value = value * 9.0 / 5.0 + 32.0
    return value if 86.0 <= value <= 113.0 else math.nan


@FUZZ
@given(st.lists(floats | st.floats(25, 120), min_size=1, max_size=8))
def test_temperature_rule_on_any_float(values):
    df = pd.DataFrame({"temperature": values})
    out, counts = clean_vitals(df)
    expected = [_expected_temperature(v) for v in values]
    np.testing.assert_array_equal(out["temperature"].to_numpy(), np.array(expected))
    assert counts.get("temperature_celsius_converted", 0) == sum(30 <= v <= 45 for v in values)
    # Text holding the same numbers gives the same values.
    as_text, _ = clean_vitals(pd.DataFrame({"temperature": [repr(v) for v in values]}))
    np.testing.assert_array_equal(as_text["temperature"].to_numpy(), np.array(expected))


@FUZZ
@given(
    st.lists(st.fixed_dictionaries({v: floats for v in VITALS}), min_size=1, max_size=6),
    st.lists(st.fixed_dictionaries({v: cells for v in VITALS}), min_size=1, max_size=6),
)
def test_minmax_statistics_are_finite_and_scaling_is_in_unit_range(train_rows, rows):
    stats = fit_minmax(pd.DataFrame(train_rows), DEFAULT_VITAL_RANGES)
    for vital, (lo, hi) in stats.items():
        assert math.isfinite(lo) and math.isfinite(hi) and lo < hi, (vital, lo, hi)
    df = pd.DataFrame(rows, dtype=object)
    scaled = apply_minmax(df, stats)
    for vital in VITALS:
        values = scaled[vital]
        assert values.dropna().between(0.0, 1.0).all()
        numeric = pd.to_numeric(df[vital], errors="coerce").astype("float64")
        assert (values.isna() == ~np.isfinite(numeric)).all()


@FUZZ
@given(st.lists(cells, min_size=1, max_size=8))
def test_categories_are_always_a_known_group(values):
    series = _series(values)
    gender = normalise_gender(series)
    assert set(gender) <= {"F", "M", UNKNOWN}
    assert normalise_gender(gender).tolist() == gender.tolist()
    groups = ethnicity_group(series)
    assert set(groups) <= {"white", "black", "hispanic", "asian", "other", UNKNOWN}
    assert ethnicity_group(groups).tolist() == groups.tolist()


@FUZZ
@given(st.lists(cells, min_size=1, max_size=8))
def test_acuity_is_a_level_or_missing(values):
    acuity, invalid = clean_acuity(_series(values))
    assert str(acuity.dtype) == "Int64"
    assert set(acuity.dropna()) <= {1, 2, 3, 4, 5}
    given_ = sum(v is not None and not (isinstance(v, float) and math.isnan(v)) for v in values)
    assert invalid == given_ - int(acuity.notna().sum())
