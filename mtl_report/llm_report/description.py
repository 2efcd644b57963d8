"""Structured description: per-finding probabilities (and ED context) → deterministic text.

The language model never sees an image. What it sees is this description, so it has to be
unambiguous, identical for identical inputs, and say how sure the classifier is. Each
finding gets one of three states from two cut-offs per finding:

* ``present``   when ``p >= present_at``  (the F1-optimal cut-off on the validation split,
  the same one the run's findings metrics use);
* ``absent``    when ``p <  absent_below`` (the highest cut-off at which the validation
  studies below it are negative at least ``npv`` of the time, 0.95 by default);
* ``uncertain`` in between, and when a label is unknown (NaN).

Cut-offs are chosen on the validation split and stored with the run
(``RUN/llm_thresholds.json``); they are never chosen on the split being reported. When the
findings come from labels (IU X-ray MeSH terms) instead of a classifier, 1 is present, 0 is
absent and NaN is uncertain, with no cut-offs at all.

The text, for a study with effusion and an uncertain opacity::

    Findings:
    - Pleural effusion: present
    - Lung opacity: uncertain
    - Atelectasis: absent
    ...
    Clinical context: chief complaint: shortness of breath; heart rate 112 bpm; ...

Present findings come first, then uncertain, then absent, each group in the dataset's
finding order, so the description reads like the order a radiologist would report in.
Probabilities are left out by default (``probs=None``): the in-context examples are
described from labels, which have none, and the query should read like them. The
classifier gives no laterality or severity, so the description states none.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtl_report.data.schema import VITALS

PRESENT, ABSENT, UNCERTAIN = "present", "absent", "uncertain"
STATES = (PRESENT, UNCERTAIN, ABSENT)
THRESHOLDS_FILE = "llm_thresholds.json"

#: How each vital is written, with its unit (MIMIC-IV-ED triage units).
VITAL_TEXT = {
    "o2sat": ("oxygen saturation", "%"),
    "heartrate": ("heart rate", " bpm"),
    "resprate": ("respiratory rate", "/min"),
    "sbp": ("systolic blood pressure", " mmHg"),
    "dbp": ("diastolic blood pressure", " mmHg"),
    "temperature": ("temperature", " °F"),
}


@dataclass(frozen=True)
class DescriptionThresholds:
    """Per-finding cut-offs: ``present_at[k]`` ≥ ``absent_below[k]``."""

    findings: tuple[str, ...]
    present_at: tuple[float, ...]
    absent_below: tuple[float, ...]
    npv: float = 0.95
    chosen_on: str = "val"

    def __post_init__(self) -> None:
        if not (len(self.findings) == len(self.present_at) == len(self.absent_below)):
            raise ValueError("findings, present_at and absent_below differ in length")
        for f, hi, lo in zip(self.findings, self.present_at, self.absent_below):
            if not 0.0 <= lo <= hi <= 1.0:
                raise ValueError(f"{f}: need 0 <= absent_below ({lo}) <= present_at ({hi}) <= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DescriptionThresholds:
        return cls(
            findings=tuple(data["findings"]),
            present_at=tuple(float(v) for v in data["present_at"]),
            absent_below=tuple(float(v) for v in data["absent_below"]),
            npv=float(data.get("npv", 0.95)),
            chosen_on=str(data.get("chosen_on", "val")),
        )

    def save(self, path: Path) -> Path:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> DescriptionThresholds:
        return cls.from_dict(json.loads(Path(path).read_text()))


def absent_cutoff(truth: np.ndarray, prob: np.ndarray, present_at: float, npv: float) -> float:
    """Highest cut-off ``t <= present_at`` at which the studies with ``p < t`` are negative
    at least ``npv`` of the time (0.0 when even the lowest-scored studies miss it).

    Candidates are the observed probabilities themselves, so the answer does not depend on
    a grid. ``truth``/``prob``: one finding, unknown labels already removed.
    """
    if truth.size == 0:
        return float(present_at)
    order = np.argsort(prob, kind="stable")
    p, t = prob[order], truth[order]
    best, negatives = 0.0, 0
    for i in range(len(p)):
        negatives += int(t[i] == 0)
        following = float(p[i + 1]) if i + 1 < len(p) else math.inf
        if following == p[i]:
            continue  # no cut-off separates tied probabilities
        # halfway to the next study: the first i + 1 studies are called absent
        cut = min((float(p[i]) + following) / 2, float(present_at))
        if cut <= p[i]:
            break  # the "present" cut-off is reached
        if negatives / (i + 1) >= npv:
            best = cut
    return float(min(best, present_at))


def choose_thresholds(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    findings: Sequence[str],
    present_at: Sequence[float] | None = None,
    npv: float = 0.95,
) -> DescriptionThresholds:
    """Cut-offs from validation labels and probabilities.

    Args:
        y_true: (N, K) 0/1, NaN where unknown.
        y_prob: (N, K) classifier probabilities.
        findings: the K finding names.
        present_at: cut-offs for "present" (e.g. the run's ``thresholds.json``); default:
            F1-optimal on these data.
        npv: the negative predictive value an "absent" must reach.
    """
    from mtl_report.metrics.clinical import best_f1_thresholds

    y_true = np.asarray(y_true, dtype="float64")
    y_prob = np.asarray(y_prob, dtype="float64")
    if y_true.shape != y_prob.shape or y_true.ndim != 2 or y_true.shape[1] != len(findings):
        raise ValueError(
            f"labels {y_true.shape} and probabilities {y_prob.shape} must both be "
            f"(N, {len(findings)})"
        )
    if not 0.0 < npv <= 1.0:
        raise ValueError(f"npv must be in (0, 1], got {npv}")
    hi = (
        np.asarray(present_at, dtype="float64")
        if present_at is not None
        else best_f1_thresholds(y_true, y_prob)
    )
    lo = []
    for k in range(len(findings)):
        known = ~np.isnan(y_true[:, k])
        lo.append(absent_cutoff(y_true[known, k], y_prob[known, k], float(hi[k]), npv))
    return DescriptionThresholds(
        findings=tuple(findings),
        present_at=tuple(float(v) for v in hi),
        absent_below=tuple(lo),
        npv=float(npv),
    )


def finding_states(
    probs: np.ndarray, thresholds: DescriptionThresholds | None = None
) -> list[list[str]]:
    """States per study and finding. ``thresholds=None``: ``probs`` are labels
    (1 present, 0 absent, NaN or anything else uncertain)."""
    probs = np.asarray(probs, dtype="float64")
    if probs.ndim != 2:
        raise ValueError(f"expected (N, K) probabilities, got shape {probs.shape}")
    out = []
    for row in probs:
        states = []
        for k, p in enumerate(row):
            if np.isnan(p):
                states.append(UNCERTAIN)
            elif thresholds is None:
                states.append(PRESENT if p == 1 else ABSENT if p == 0 else UNCERTAIN)
            elif p >= thresholds.present_at[k]:
                states.append(PRESENT)
            elif p < thresholds.absent_below[k]:
                states.append(ABSENT)
            else:
                states.append(UNCERTAIN)
        out.append(states)
    return out


#: A state as a number, for retrieval: uncertain sits halfway, like an unknown label.
STATE_VALUE = {PRESENT: 1.0, ABSENT: 0.0, UNCERTAIN: 0.5}


def state_vector(states: Sequence[str]) -> np.ndarray:
    """The states of one study as a findings vector (present 1, absent 0, uncertain 0.5).

    In-context examples are retrieved with this vector, not with the raw probabilities: the
    examples should match what the description *says* (a finding called present at p = 0.45
    must find examples with the finding, not examples where it is unknown).
    """
    return np.array([STATE_VALUE[s] for s in states], dtype="float64")


def _finding_name(name: str) -> str:
    return name[:1].upper() + name[1:].lower()


def _present(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    return not (isinstance(value, str) and not value.strip())


def context_text(record: Mapping[str, Any]) -> str:
    """The non-imaging context of a study (complaint, ICD title, vitals) in one line, or
    ``""`` when it has none (IU X-ray has an indication but no vitals)."""
    parts = []
    complaint = record.get("chief_complaint")
    if _present(complaint):
        parts.append(f"chief complaint: {str(complaint).strip()}")
    icd = record.get("icd_title")
    if _present(icd):
        parts.append(f"diagnosis: {str(icd).strip()}")
    for vital in VITALS:
        value = record.get(vital)
        if _present(value):
            label, unit = VITAL_TEXT[vital]
            value = float(value)
            number = f"{value:.1f}" if vital == "temperature" else f"{value:.0f}"
            parts.append(f"{label} {number}{unit}")
    return "; ".join(parts)


def describe(
    findings: Sequence[str],
    states: Sequence[str],
    probs: Sequence[float] | None = None,
    context: str = "",
) -> str:
    """The structured description of one study (see the module docstring for the form)."""
    if len(findings) != len(states):
        raise ValueError(f"{len(findings)} findings but {len(states)} states")
    rows = []
    for state in STATES:
        for k, (name, s) in enumerate(zip(findings, states)):
            if s != state:
                continue
            line = f"- {_finding_name(name)}: {s}"
            if probs is not None and not np.isnan(probs[k]):
                line += f" (probability {float(probs[k]):.2f})"
            rows.append(line)
    text = "Findings:\n" + "\n".join(rows)
    if context:
        text += f"\nClinical context: {context}"
    return text
