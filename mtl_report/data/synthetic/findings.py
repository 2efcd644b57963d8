"""The latent truth per study: which findings, how severe, on which side.

Part of :mod:`mtl_report.data.synthetic` (SYNTHETIC data; see the package docstring)."""

from __future__ import annotations

import numpy as np

from mtl_report.data.synthetic.common import _ATEL, _CARDIO, _EFF, _OPAC, _PTX

_FINDING_WEIGHTS = np.array([0.24, 0.22, 0.24, 0.07, 0.30])  # which finding, given abnormal
_SEVERITY_WEIGHTS = np.array([0.4, 0.6, 1.0, 1.5, 1.0])  # contribution of a grade to severity


def _draw_findings(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Latent findings of ``n`` studies: about half normal, the rest with 1–3 findings.

    Returns arrays: ``present`` (n, 5) bool, ``grade`` (n, 5) 0–3 (mild/moderate/severe),
    ``side`` (n, 5) 0–3 (none/right/left/bilateral), ``zone`` (n,) of the opacity,
    ``uncertain`` (n, 5) (mild findings the radiologist hedges on), ``edema`` (n,) bool,
    ``device`` (n,) 0–3, ``lesion``/``fracture`` (n,) side codes, ``severity`` (n,) float.
    """
    abnormal = rng.random(n) >= 0.5
    k = np.where(abnormal, rng.choice(np.array([1, 2, 3]), size=n, p=[0.5, 0.33, 0.17]), 0)
    keys = np.log(_FINDING_WEIGHTS) + rng.gumbel(size=(n, 5))  # Gumbel top-k: weighted,
    rank = np.argsort(np.argsort(-keys, axis=1), axis=1)  # without replacement
    present = rank < k[:, None]
    grade = rng.choice(np.array([1, 2, 3], dtype=np.int8), size=(n, 5), p=[0.5, 0.35, 0.15])
    grade = (grade * present).astype(np.int8)
    side = np.zeros((n, 5), dtype=np.int8)
    side[:, _ATEL] = rng.choice([1, 2, 3], size=n, p=[0.2, 0.3, 0.5])
    side[:, _EFF] = rng.choice([1, 2, 3], size=n, p=[0.35, 0.3, 0.35])
    side[:, _PTX] = rng.choice([1, 2], size=n)
    side[:, _OPAC] = rng.choice([1, 2, 3], size=n, p=[0.45, 0.35, 0.2])
    side = (side * present).astype(np.int8)
    zone = rng.choice(np.array([0, 1, 2], dtype=np.int8), size=n, p=[0.6, 0.25, 0.15])
    uncertain = present & (grade == 1) & (rng.random((n, 5)) < 0.2)
    u = rng.random((n, 4))
    edema = (
        present[:, _CARDIO]
        & ~uncertain[:, _CARDIO]
        & (present[:, _EFF] | (grade[:, _CARDIO] >= 2))
        & (u[:, 0] < 0.45)
    )
    severity = (grade * _SEVERITY_WEIGHTS).sum(axis=1) + rng.normal(0.0, 0.3, size=n)
    device = np.where(
        u[:, 1] < 0.04 + 0.04 * np.clip(severity, 0, 4), rng.integers(1, 4, size=n), 0
    ).astype(np.int8)
    extra_side = rng.integers(1, 3, size=n).astype(np.int8)
    lesion = np.where(u[:, 2] < 0.008, extra_side, 0).astype(np.int8)
    fracture = np.where((u[:, 3] < 0.006) & (lesion == 0), extra_side, 0).astype(np.int8)
    return {
        "present": present,
        "grade": grade,
        "side": side,
        "zone": zone,
        "uncertain": uncertain,
        "edema": edema,
        "device": device,
        "lesion": lesion,
        "fracture": fracture,
        "severity": severity,
    }


def _category(present: np.ndarray) -> np.ndarray:
    """Dominant finding, by clinical priority: 0 ptx, 1 effusion, 2 opacity, 3 cardiomegaly,
    4 atelectasis, 5 normal. Drives chief complaint, indication and ICD title."""
    cat = np.full(len(present), 5, dtype=np.int64)
    for i, f in reversed(list(enumerate((_PTX, _EFF, _OPAC, _CARDIO, _ATEL)))):
        cat[present[:, f]] = i
    return cat
