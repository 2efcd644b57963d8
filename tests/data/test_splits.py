"""Balanced subset and patient-level splits (property-tested)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from mtl_report.data.splits import balanced_subset, duplicate_reports, split_by_patient

FINDINGS = ["a", "b", "c"]


def _frame(subjects, seed=0):
    rng = np.random.default_rng(seed)
    n = len(subjects)
    df = pd.DataFrame({"study_id": [f"s{i:05d}" for i in range(n)], "subject_id": subjects})
    for f in FINDINGS:
        df[f] = (rng.random(n) < 0.2).astype(float)
    return df


@settings(max_examples=60, deadline=None)
@given(
    subjects=st.lists(st.integers(0, 40), min_size=1, max_size=200),
    seed=st.integers(0, 2**16),
    fractions=st.tuples(st.floats(0.05, 1), st.floats(0.05, 1), st.floats(0.05, 1)),
)
def test_splits_never_share_a_patient(subjects, seed, fractions):
    df = _frame(subjects, seed)
    split = split_by_patient(df, fractions, seed=seed, stratify=df["a"])
    assert split.notna().all()
    per_subject = split.groupby(df["subject_id"]).nunique()
    assert (per_subject == 1).all()


def test_split_sizes_follow_the_fractions_and_are_deterministic():
    df = _frame(list(range(2000)))
    split = split_by_patient(df, seed=3)
    shares = split.value_counts(normalize=True)
    assert abs(shares["train"] - 0.7) < 0.02
    assert abs(shares["val"] - 0.2) < 0.02
    assert abs(shares["test"] - 0.1) < 0.02
    assert split.equals(split_by_patient(df, seed=3))
    shuffled = df.sample(frac=1, random_state=1)
    assert split_by_patient(shuffled, seed=3).sort_index().equals(split.sort_index())
    assert not split.equals(split_by_patient(df, seed=4))


def test_balanced_subset_halves_normal_and_abnormal_and_balances_findings():
    rng = np.random.default_rng(0)
    n = 5000
    df = pd.DataFrame({"study_id": [f"s{i}" for i in range(n)], "subject_id": range(n)})
    df["a"] = (rng.random(n) < 0.30).astype(float)
    df["b"] = (rng.random(n) < 0.10).astype(float)
    df["c"] = (rng.random(n) < 0.03).astype(float)  # rare
    idx = balanced_subset(df, 1000, FINDINGS, seed=0)
    sub = df.loc[idx]
    assert len(sub) == 1000
    abnormal = (sub[FINDINGS] == 1).any(axis=1)
    assert abnormal.sum() == 500
    counts = (sub[FINDINGS] == 1).sum()
    # The rare finding gets far more than its 3% share of the pool would give it.
    assert counts["c"] >= 0.9 * min(int((df["c"] == 1).sum()), 500 // 3)
    assert counts["a"] < 0.30 / 0.43 * 500  # the common finding is held back
    assert idx.equals(balanced_subset(df, 1000, FINDINGS, seed=0))


def test_balanced_subset_fills_from_the_other_class_when_short():
    df = pd.DataFrame({"study_id": list("abcdefghij"), "subject_id": range(10)})
    df["a"] = [1.0, 1.0] + [0.0] * 8
    df["b"] = 0.0
    df["c"] = 0.0
    sub = df.loc[balanced_subset(df, 6, FINDINGS, seed=0)]
    assert len(sub) == 6 and sub["a"].sum() == 2


def test_duplicate_reports_within_a_subject_only():
    df = pd.DataFrame(
        {
            "study_id": ["1", "2", "3", "4"],
            "subject_id": ["p1", "p1", "p2", "p1"],
            "report": ["No acute process.", "no  acute process.", "No acute process.", ""],
        }
    )
    assert duplicate_reports(df).tolist() == [False, True, False, False]
