"""Structured descriptions: cut-offs from validation data, states, and the text."""

from __future__ import annotations

import numpy as np
import pytest

from mtl_report.llm_report.description import (
    ABSENT,
    PRESENT,
    UNCERTAIN,
    DescriptionThresholds,
    absent_cutoff,
    choose_thresholds,
    context_text,
    describe,
    finding_states,
    state_vector,
)

FINDINGS = ["Atelectasis", "Cardiomegaly", "Pleural Effusion"]


def test_absent_cutoff_is_the_highest_cut_with_the_wanted_npv():
    prob = np.array([0.01, 0.02, 0.05, 0.10, 0.20, 0.30, 0.60, 0.90])
    truth = np.array([0, 0, 0, 0, 1, 0, 1, 1])
    cut = absent_cutoff(truth, prob, present_at=0.5, npv=0.95)
    # below the cut every study is negative; the next study (0.20) is positive
    assert 0.10 < cut <= 0.20
    called_absent = prob < cut
    assert (truth[called_absent] == 0).mean() >= 0.95
    # a looser NPV lets the cut pass the positive at 0.20 (5 of 6 negatives < 0.45)
    assert absent_cutoff(truth, prob, present_at=0.5, npv=0.8) > 0.30
    # never above the "present" cut-off
    assert absent_cutoff(np.zeros(8), prob, present_at=0.25, npv=0.95) == pytest.approx(0.25)


def test_absent_cutoff_is_zero_when_the_lowest_scores_are_positive():
    prob = np.array([0.1, 0.2, 0.3])
    assert absent_cutoff(np.array([1, 0, 0]), prob, 0.5, 0.95) == 0.0


def test_absent_cutoff_does_not_split_ties():
    prob = np.array([0.1, 0.1, 0.1, 0.4])
    truth = np.array([0, 0, 1, 0])
    # no cut separates the three tied studies, and with them the NPV is 2/3
    assert absent_cutoff(truth, prob, 0.5, 0.95) == 0.0


def test_choose_thresholds_ignores_unknown_labels_and_keeps_order():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, (200, 3)).astype(float)
    prob = np.clip(truth * 0.6 + rng.random((200, 3)) * 0.4, 0, 1)
    truth[:20, 1] = np.nan
    t = choose_thresholds(truth, prob, FINDINGS, npv=0.95)
    assert t.findings == tuple(FINDINGS)
    for lo, hi in zip(t.absent_below, t.present_at):
        assert 0 <= lo <= hi <= 1
    # separable data: F1-optimal "present" above 0.4, "absent" everything below it
    assert all(hi > 0.4 for hi in t.present_at)
    given = choose_thresholds(truth, prob, FINDINGS, present_at=[0.3, 0.3, 0.3])
    assert given.present_at == (0.3, 0.3, 0.3)


def test_choose_thresholds_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        choose_thresholds(np.zeros((4, 2)), np.zeros((4, 2)), FINDINGS)
    with pytest.raises(ValueError, match="npv"):
        choose_thresholds(np.zeros((4, 3)), np.zeros((4, 3)), FINDINGS, npv=0)


def test_thresholds_round_trip_and_validate(tmp_path):
    t = DescriptionThresholds(tuple(FINDINGS), (0.5, 0.4, 0.3), (0.1, 0.2, 0.3))
    assert DescriptionThresholds.load(t.save(tmp_path / "t.json")) == t
    with pytest.raises(ValueError, match="absent_below"):
        DescriptionThresholds(("A",), (0.2,), (0.3,))


def test_states_from_probabilities_and_from_labels():
    t = DescriptionThresholds(tuple(FINDINGS), (0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
    states = finding_states(np.array([[0.9, 0.3, 0.1], [0.5, 0.2, np.nan]]), t)
    assert states == [[PRESENT, UNCERTAIN, ABSENT], [PRESENT, UNCERTAIN, UNCERTAIN]]
    labels = finding_states(np.array([[1, 0, np.nan]]))
    assert labels == [[PRESENT, ABSENT, UNCERTAIN]]
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        finding_states(np.zeros(3))


def test_description_lists_present_then_uncertain_then_absent_with_context():
    text = describe(FINDINGS, [ABSENT, UNCERTAIN, PRESENT], context="chief complaint: cough")
    lines = text.splitlines()
    assert lines == [
        "Findings:",
        "- Pleural effusion: present",
        "- Cardiomegaly: uncertain",
        "- Atelectasis: absent",
        "Clinical context: chief complaint: cough",
    ]
    assert "probability 0.70" in describe(FINDINGS, [PRESENT] * 3, probs=[0.7, 0.8, 0.9])
    with pytest.raises(ValueError, match="3 findings but 2 states"):
        describe(FINDINGS, [PRESENT, ABSENT])


def test_context_skips_missing_values_and_formats_units():
    record = {
        "chief_complaint": " shortness of breath ",
        "icd_title": "",
        "o2sat": 91.0,
        "heartrate": float("nan"),
        "temperature": 100.44,
        "sbp": None,
    }
    assert context_text(record) == (
        "chief complaint: shortness of breath; oxygen saturation 91%; temperature 100.4 °F"
    )
    assert context_text({"chief_complaint": float("nan")}) == ""


def test_state_vector_codes_what_the_description_says():
    assert state_vector([PRESENT, ABSENT, UNCERTAIN]).tolist() == [1.0, 0.0, 0.5]
