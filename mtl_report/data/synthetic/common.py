"""Constants, file names and the vectorised random helpers every part of the generator uses.

Part of :mod:`mtl_report.data.synthetic` (SYNTHETIC data; see the package docstring)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: The five findings the generator models (latent truth → image signs, text, labels).
FINDING_COLUMNS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Pleural Effusion",
    "Pneumothorax",
    "Lung Opacity",
)
_ATEL, _CARDIO, _EFF, _PTX, _OPAC = range(5)

#: Text stamped on every image.
SYNTHETIC_MARK = "SYNTHETIC"
CXR_DIR = "mimic-cxr-jpg"
ED_DIR = "mimic-iv-ed"
TRUTH_FILE = "synthetic-truth.csv.gz"
README_FILE = "SYNTHETIC_README.txt"

#: Sizes of the real MIMIC-CXR-JPG 2.0.0 and MIMIC-IV-ED 2.2; ``generate_raw_mimic`` keeps
#: their ratios (about 3.5 studies per subject, 1.65 images per study, 1.87 stays per study).
MIMIC_SIZES: dict[str, int] = {
    "n_subjects": 65_379,
    "n_studies": 227_835,
    "n_images": 377_110,
    "n_stays": 425_087,
}

METADATA_COLUMNS: tuple[str, ...] = (
    "dicom_id",
    "subject_id",
    "study_id",
    "PerformedProcedureStepDescription",
    "ViewPosition",
    "Rows",
    "Columns",
    "StudyDate",
    "StudyTime",
    "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
)
EDSTAYS_COLUMNS: tuple[str, ...] = (
    "subject_id",
    "hadm_id",
    "stay_id",
    "intime",
    "outtime",
    "gender",
    "race",
    "arrival_transport",
    "disposition",
)
TRIAGE_COLUMNS: tuple[str, ...] = (
    "subject_id",
    "stay_id",
    "temperature",
    "heartrate",
    "resprate",
    "o2sat",
    "sbp",
    "dbp",
    "pain",
    "acuity",
    "chiefcomplaint",
)
DIAGNOSIS_COLUMNS: tuple[str, ...] = (
    "subject_id",
    "stay_id",
    "seq_num",
    "icd_code",
    "icd_version",
    "icd_title",
)

#: How a study's time relates to the ED stay it was generated for (truth column
#: ``relation``). ``far`` studies are 5–60 days away from every stay of the subject.
RELATIONS: tuple[str, ...] = ("inside", "before", "after", "far", "no_stay")
_REL_PROBS = (0.72, 0.08, 0.08, 0.12)  # for subjects that have ED stays
#: How the report is laid out (truth column ``report_variant``); ``none`` has neither
#: FINDINGS nor IMPRESSION (dropped by the linkage), ``missing`` has no report file.
REPORT_VARIANTS: tuple[str, ...] = (
    "findings+impression",
    "impression",
    "findings",
    "conclusion",
    "combined",
    "none",
    "missing",
)
_VARIANT_PROBS = (0.80, 0.09, 0.04, 0.02, 0.01, 0.02, 0.02)

_SIDES = ("", "right", "left", "bilateral")  # side codes 0..3
_ZONES = ("lower", "upper", "middle")  # opacity zone codes 0..2
_GRADE_STRENGTH = np.array([0.0, 0.45, 0.7, 1.0])  # grade 0..3 → render strength
_DEVICES = ("", "line", "tube", "pacemaker")


@dataclass(frozen=True)
class SyntheticRoots:
    """Where :func:`generate_raw_mimic` wrote the two PhysioNet trees."""

    cxr_root: Path  # out/mimic-cxr-jpg
    ed_root: Path  # out/mimic-iv-ed


# --------------------------------------------------------------------------------------
# Small vectorised helpers
# --------------------------------------------------------------------------------------
def _exact_categories(rng: np.random.Generator, n: int, probs: Sequence[float]) -> np.ndarray:
    """``n`` category codes with (almost) exactly ``probs`` proportions, shuffled.

    Exact counts rather than independent draws guarantee that rare categories (a
    lateral-only study, a report without sections...) are present in every generated set
    with at least one row when ``n`` allows, which the tests and the linkage rely on.
    """
    p = np.asarray(probs, dtype=float)
    p = p / p.sum()
    counts = np.floor(p * n).astype(int)
    if n >= int((p > 0).sum()):
        counts = np.where(p > 0, np.maximum(counts, 1), 0)
    counts[int(np.argmax(p))] += n - counts.sum()
    if counts.min() < 0:  # tiny n: fall back to independent draws
        return rng.choice(len(p), size=n, p=p)
    codes = np.repeat(np.arange(len(p)), counts)
    rng.shuffle(codes)
    return codes


def _quota(rng: np.random.Generator, eligible: np.ndarray, frac: float, minimum: int = 1):
    """Indices of ``max(minimum, round(frac * len))`` distinct rows of ``eligible`` indices."""
    k = min(len(eligible), max(minimum, round(frac * len(eligible))))
    return rng.choice(eligible, size=k, replace=False) if k else eligible[:0]


def _spread(rng: np.random.Generator, extras: int, n: int) -> np.ndarray:
    """Distribute ``extras`` units over ``n`` bins as evenly as possible, randomly."""
    counts = np.full(n, extras // n if n else 0, dtype=np.int64)
    if n and extras % n:
        counts[rng.choice(n, size=extras % n, replace=False)] += 1
    return counts


def _group_positions(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For groups of sizes ``counts``: owner of each item, its position, group starts."""
    counts = np.asarray(counts, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    owner = np.repeat(np.arange(len(counts)), counts)
    position = np.arange(counts.sum()) - starts[owner]
    return owner, position, starts


def _choice_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One category per row of a ``(n, k)`` probability table."""
    cum = np.cumsum(probs, axis=1)
    cum /= cum[:, -1:]
    return (rng.random(len(cum))[:, None] > cum).sum(axis=1)


def _pick_lists(rng: np.random.Generator, group: np.ndarray, lists: Sequence[Sequence]):
    """One item per row from ``lists[group[row]]`` (variable-length lists), vectorised."""
    flat = np.empty(sum(len(x) for x in lists), dtype=object)
    for i, item in enumerate(item for items in lists for item in items):
        flat[i] = item  # item by item: tuples must stay single objects
    lens = np.array([len(x) for x in lists])
    offsets = np.concatenate([[0], np.cumsum(lens)[:-1]])
    k = (rng.random(len(group)) * lens[group]).astype(np.int64)
    return flat[offsets[group] + k]


def _objects(values: Sequence[str]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _dicom_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """MIMIC-CXR-style dicom_ids: five groups of 8 hex digits joined by dashes (44 chars)."""
    chars = _HEX[rng.integers(0, 16, size=(n, 40), dtype=np.uint8)]
    out = np.full((n, 44), ord("-"), dtype=np.uint8)
    for g in range(5):
        out[:, g * 9 : g * 9 + 8] = chars[:, g * 8 : (g + 1) * 8]
    return out.view("S44").ravel().astype(str).astype(object)


def _unique_ids(rng: np.random.Generator, n: int, low: int) -> np.ndarray:
    """``n`` distinct 8-digit ids in ``[low, low + 10**7)``, in random order."""
    return rng.choice(10_000_000, size=n, replace=False).astype(np.int64) + low


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]
