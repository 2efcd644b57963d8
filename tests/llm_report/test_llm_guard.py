"""Guard rail: contradictions and omissions found by the clinical labeler."""

from __future__ import annotations

from mtl_report.llm_report.description import ABSENT, PRESENT, UNCERTAIN
from mtl_report.llm_report.guard import GuardResult, check_reports, guard_summary

FINDINGS = ["Cardiomegaly", "Pleural Effusion", "Pneumothorax"]


def test_contradictions_both_ways_omissions_and_hedges():
    reports = [
        "The heart is enlarged. Small left pleural effusion. No pneumothorax.",  # faithful
        "Heart size is normal. No pleural effusion. There is a small pneumothorax.",
        "No pneumothorax.",  # says nothing of the present findings
        "Possible small pleural effusion. Heart size is normal.",  # hedged: not a contradiction
    ]
    states = [
        [PRESENT, PRESENT, ABSENT],
        [PRESENT, ABSENT, ABSENT],
        [PRESENT, PRESENT, ABSENT],
        [ABSENT, ABSENT, UNCERTAIN],
    ]
    results = check_reports(reports, states, FINDINGS)
    assert results[0].ok and not results[0].omissions
    assert results[1].contradictions == (
        "cardiomegaly reported absent, classifier: present",
        "pneumothorax reported present, classifier: absent",
    )
    assert results[2].ok and results[2].omissions == ("cardiomegaly", "pleural effusion")
    assert results[3].ok
    summary = guard_summary(results, len(FINDINGS))
    assert summary["contradiction_rate"] == 0.25
    assert summary["omission_rate"] == 0.25
    assert summary["contradictions_per_finding"] == 2 / 12


def test_empty_and_message():
    assert check_reports([], [], FINDINGS) == []
    r = GuardResult(("a reported present, labels: absent", "b"), ())
    assert not r.ok and r.message() == "a reported present, labels: absent; b"
