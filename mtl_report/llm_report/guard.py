"""Guard rail: does a generated report say what the structured findings say?

The report is labelled with the package's clinical-efficacy labeler
(:func:`mtl_report.metrics.labeler.label_reports`, negation-aware), and compared with the
states of the structured description:

* **contradiction** — the report states a finding present that the description calls
  absent, or negates one the description calls present;
* **omission** — a finding the description calls present is not mentioned at all.

Uncertain findings and hedged mentions (-1) never count either way. Contradictions are
what the guard acts on (it can ask for the report once more, naming them); omissions are
counted so that a model that writes nothing is not mistaken for a faithful one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mtl_report.llm_report.description import ABSENT, PRESENT


@dataclass(frozen=True)
class GuardResult:
    """Per-report outcome of the guard."""

    contradictions: tuple[str, ...]  # "pleural effusion reported present, classifier: absent"
    omissions: tuple[str, ...]  # findings called present but not mentioned

    @property
    def ok(self) -> bool:
        return not self.contradictions

    def message(self) -> str:
        return "; ".join(self.contradictions)


def check_reports(
    reports: Sequence[str],
    states: Sequence[Sequence[str]],
    findings: Sequence[str],
    source: str = "classifier",
) -> list[GuardResult]:
    """Check N reports against their N rows of finding states."""
    from mtl_report.metrics.labeler import label_reports

    if len(reports) != len(states):
        raise ValueError(f"{len(reports)} reports but {len(states)} rows of states")
    if not len(reports):
        return []
    labels = label_reports(list(reports), tuple(findings)).to_numpy()
    out = []
    for row, said in zip(states, labels):
        contradictions, omissions = [], []
        for name, state, value in zip(findings, row, said):
            name = name.lower()
            if state == ABSENT and value == 1:
                contradictions.append(f"{name} reported present, {source}: absent")
            elif state == PRESENT and value == 0:
                contradictions.append(f"{name} reported absent, {source}: present")
            elif state == PRESENT and np.isnan(value):
                omissions.append(name)
        out.append(GuardResult(tuple(contradictions), tuple(omissions)))
    return out


def guard_summary(results: Sequence[GuardResult], n_findings: int) -> dict[str, float]:
    """Rates over a split: share of reports with at least one contradiction / omission, and
    contradictions per finding statement."""
    n = len(results)
    if n == 0:
        return {"contradiction_rate": float("nan"), "omission_rate": float("nan")}
    return {
        "contradiction_rate": sum(not r.ok for r in results) / n,
        "omission_rate": sum(bool(r.omissions) for r in results) / n,
        "contradictions_per_finding": sum(len(r.contradictions) for r in results)
        / (n * max(n_findings, 1)),
    }
