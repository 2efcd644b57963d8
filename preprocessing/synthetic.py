"""MIMIC-shaped SYNTHETIC data in the real PhysioNet file layouts (no real patient data).

Why this exists: MIMIC-CXR-JPG and MIMIC-IV-ED are credentialed downloads, yet the package's
linkage and cleaning code (:mod:`preprocessing.mimic`) should be runnable, testable and
demonstrable anywhere. This module writes files with exactly the real names, paths and
columns, so that code runs on them *unchanged*; only the content is generated:

- ``<out>/mimic-cxr-jpg/`` (the "cxr root"): ``mimic-cxr-2.0.0-metadata.csv.gz``,
  ``mimic-cxr-2.0.0-chexpert.csv.gz``, images ``files/p1X/pSUBJECT/sSTUDY/DICOM_ID.jpg`` and
  free-text reports ``files/p1X/pSUBJECT/sSTUDY.txt``;
- ``<out>/mimic-iv-ed/ed/`` (the "ed root" is ``<out>/mimic-iv-ed``): ``edstays.csv.gz``,
  ``triage.csv.gz``, ``diagnosis.csv.gz``;
- ``<out>/SYNTHETIC_README.txt`` and ``<out>/synthetic-truth.csv.gz`` (outside both roots):
  what the data is, and the latent truth per study (findings, grades, sides, which stay the
  study was generated for and how), so that linkage results can be checked against it.

The content is generated so that a model trained on it learns something measurable: a latent
severity per study drives the five modelled findings (:data:`FINDING_COLUMNS`), the report
wording (composed from the findings, with explicit negations and laterality), the CheXpert
labels (derived from the sentences actually written, as the CheXpert labeler would), the
phantom image (visible signs of each finding) and, through the ED stay the study belongs to,
triage acuity, vitals, chief complaint and ICD diagnosis. The raw data is deliberately
imperfect where real MIMIC is (missing ``StudyTime``, lateral-only studies, reports without
FINDINGS/IMPRESSION, missing report files, implausible or missing vitals, overlapping stays,
studies just outside a stay), so the cleaning and linkage code has work to do.

Every image carries a small constant ``SYNTHETIC`` mark in its top-left corner, and the roots
carry a README, so the data can never be mistaken for real radiographs.

Determinism: all randomness comes from ``numpy.random.default_rng`` seeded by ``seed``; each
image has its own generator seeded from ``(seed, image row)``, so images are identical
whatever order (or process) renders them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from preprocessing.schema import CHEXPERT_LABELS

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


# --------------------------------------------------------------------------------------
# Latent truth: findings per study (or per ED visit)
# --------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------
# Report sentence banks: every sentence carries the CheXpert labels it implies
# --------------------------------------------------------------------------------------
_ADJ = ("", "mild", "moderate", "severe")
_ADV = ("", "mildly", "moderately", "markedly")
_SIZE = ("", "small", "moderate", "large")
_NODULE_MM = ("", "7", "9", "12")
_CODE = {0.0: 1, -1.0: 2, 1.0: 3}  # label value → priority code (0 = not mentioned)
_DECODE = np.array([np.nan, 0.0, -1.0, 1.0])
_LABEL_INDEX = {label: i for i, label in enumerate(CHEXPERT_LABELS)}

EC, CONS, PNA = "Enlarged Cardiomediastinum", "Consolidation", "Pneumonia"
ATEL, CARDIO, EFF, PTX, OPAC = FINDING_COLUMNS


def _forms(grade: int, side: int, zone: int) -> dict[str, str]:
    """Words a template may use, for one (grade, side, zone) combination."""
    bil = side == 3
    name = _SIDES[side] or "right"
    if bil:
        lobe_adj = ("bilateral lower lobe", "bilateral upper lobe", "bilateral mid lung")[zone]
        in_lobe = ("in both lower lobes", "in both upper lobes", "in both mid lungs")[zone]
    elif zone == 2:
        lobe_adj = "right middle lobe" if name == "right" else "lingular"
        in_lobe = "in the right middle lobe" if name == "right" else "in the lingula"
    else:
        lobe_adj = f"{name} {('lower', 'upper')[zone]} lobe"
        in_lobe = f"in the {lobe_adj}"
    basilar = "bibasilar" if bil else f"{name} basilar"
    forms = {
        "adj": _ADJ[grade] or "mild",
        "adv": _ADV[grade] or "mildly",
        "size": _SIZE[grade] or "small",
        "side": name if not bil else "bilateral",
        "s": "s" if bil else "",
        "is_are": "are" if bil else "is",
        "a": "" if bil else "a ",
        "ies": "ies" if bil else "y",
        "lobe_adj": lobe_adj,
        "in_lobe": in_lobe,
        "basilar": basilar,
        "base": "lung bases" if bil else f"{name} lung base",
        "mm": _NODULE_MM[grade] or "8",
    }
    forms.update({_cap(k): _cap(v) for k, v in list(forms.items()) if k[0].islower()})
    return forms


@dataclass(frozen=True)
class _Bank:
    """Sentences expanded for every (grade, side, zone), and their label effects.

    ``texts[t, grade, side, zone]`` is template ``t`` in words followed by one space;
    ``effects[t]`` the CheXpert label codes it implies. Template 0 is the empty sentence
    (slot omitted). Expanding all combinations up front makes report composition a
    fancy-indexing operation, and the trailing spaces make joining a plain concatenation.
    """

    texts: np.ndarray
    effects: np.ndarray

    def text(self, idx: np.ndarray, grade, side, zone) -> np.ndarray:
        return self.texts[idx, grade, side, zone]


def _bank(*templates: tuple[str, Mapping[str, float]]) -> _Bank:
    items = (("", {}), *templates)
    texts = np.empty((len(items), 4, 4, 3), dtype=object)
    effects = np.zeros((len(items), len(CHEXPERT_LABELS)), dtype=np.int8)
    combos = [(g, s, z) for g in range(4) for s in range(4) for z in range(3)]
    for t, (template, labels) in enumerate(items):
        for g, s, z in combos:
            texts[t, g, s, z] = template.format(**_forms(g, s, z)) + " " if template else ""
        for label, value in labels.items():
            effects[t, _LABEL_INDEX[label]] = _CODE[value]
    return _Bank(texts, effects)


# Lungs (opacity: findings sentence and its impression counterpart share the index).
_OPAC_CERTAIN = range(1, 7)
_OPAC_UNCERTAIN = 7
_OPAC_F = _bank(
    ("Patchy opacity {in_lobe}, concerning for pneumonia.", {OPAC: 1, PNA: -1}),
    ("Focal consolidation {in_lobe}, consistent with pneumonia.", {OPAC: 1, CONS: 1, PNA: 1}),
    ("Ill-defined opacit{ies} {in_lobe}.", {OPAC: 1}),
    ("There is {adj} airspace opacity {in_lobe}.", {OPAC: 1}),
    (
        "New {adj} opacity {in_lobe}, which may represent infection or aspiration.",
        {OPAC: 1, PNA: -1},
    ),
    ("Patchy airspace opacit{ies} {in_lobe}.", {OPAC: 1}),
    ("Possible subtle opacity {in_lobe}.", {OPAC: -1}),
)
_OPAC_I = _bank(
    ("{Lobe_adj} opacit{ies}, concerning for pneumonia.", {OPAC: 1, PNA: -1}),
    ("{Lobe_adj} pneumonia.", {OPAC: 1, CONS: 1, PNA: 1}),
    ("{Lobe_adj} opacit{ies}.", {OPAC: 1}),
    ("{Adj} {lobe_adj} airspace opacity.", {OPAC: 1}),
    ("{Lobe_adj} opacit{ies}, possibly infection or aspiration.", {OPAC: 1, PNA: -1}),
    ("Patchy {lobe_adj} opacit{ies}; pneumonia is not excluded.", {OPAC: 1, PNA: -1}),
    ("Possible subtle {lobe_adj} opacity.", {OPAC: -1}),
)
_ATEL_F = _bank(
    ("{Adj} {basilar} atelectasis.", {ATEL: 1}),
    ("Linear atelectasis at the {base}.", {ATEL: 1}),
    ("Plate-like atelectasis at the {base} with mild volume loss.", {ATEL: 1}),
    ("There is {adj} {basilar} atelectasis.", {ATEL: 1}),
    ("Subsegmental atelectasis at the {base}.", {ATEL: 1}),
    ("Possible minimal {basilar} atelectasis.", {ATEL: -1}),
)
_ATEL_I = _bank(
    ("{Adj} {basilar} atelectasis.", {ATEL: 1}),
    ("{Basilar} atelectasis.", {ATEL: 1}),
    ("Possible minimal {basilar} atelectasis.", {ATEL: -1}),
)
_LUNG_CLEAR = range(1, 7)  # no opacity, no atelectasis
_LUNG_OTHERWISE = range(7, 10)  # atelectasis but no opacity
_LUNG_NEG = _bank(
    ("The lungs are clear.", {}),
    ("The lungs are clear without focal consolidation.", {CONS: 0}),
    ("There is no focal consolidation.", {CONS: 0}),
    ("Lungs are well expanded and clear.", {}),
    ("No focal consolidation is seen.", {CONS: 0}),
    ("The lungs are well aerated without focal consolidation.", {CONS: 0}),
    ("No focal consolidation.", {CONS: 0}),
    ("The lungs are otherwise clear.", {}),
    ("There is no focal consolidation.", {CONS: 0}),
)
_EDEMA_POS = range(1, 5)
_EDEMA_NEG = range(5, 8)
_EDEMA = _bank(
    ("Mild pulmonary edema.", {"Edema": 1}),
    ("There is mild interstitial pulmonary edema.", {"Edema": 1}),
    ("Pulmonary vascular congestion with mild interstitial edema.", {"Edema": 1}),
    ("Moderate pulmonary edema.", {"Edema": 1}),
    ("No pulmonary edema.", {"Edema": 0}),
    ("There is no pulmonary edema.", {"Edema": 0}),
    ("No evidence of pulmonary edema.", {"Edema": 0}),
)
_EDEMA_I = _bank(
    ("Mild pulmonary edema.", {"Edema": 1}),
    ("Pulmonary vascular congestion and mild interstitial edema.", {"Edema": 1}),
)
# Pleura: effusion sentences, pneumothorax sentences and the negations.
_EFF_CERTAIN, _EFF_UNCERTAIN = range(1, 7), 7
_PTX_CERTAIN, _PTX_UNCERTAIN = range(8, 12), 12
_PLEURA_NEG, _NO_PTX, _NO_EFF = range(13, 18), range(18, 21), range(21, 23)
_PLEURA = _bank(
    ("{Size} {side} pleural effusion{s}.", {EFF: 1}),
    ("There {is_are} {a}{size} {side} pleural effusion{s}.", {EFF: 1}),
    ("{Size} {side} pleural effusion{s} {is_are} present.", {EFF: 1}),
    ("{Size} {side} pleural effusion{s} with blunting of the costophrenic angle{s}.", {EFF: 1}),
    (
        "Blunting of the {side} costophrenic angle{s} consistent with "
        "{a}{size} pleural effusion{s}.",
        {EFF: 1},
    ),
    ("{Size} layering {side} pleural effusion{s}.", {EFF: 1}),
    ("Possible trace {side} pleural effusion{s}.", {EFF: -1}),
    ("There is a {size} {side} apical pneumothorax.", {PTX: 1}),
    ("{Size} {side} pneumothorax with a visible pleural line.", {PTX: 1}),
    ("A {size} {side} pneumothorax is seen along the lateral chest wall.", {PTX: 1}),
    ("{Size} {side} apical pneumothorax.", {PTX: 1}),
    ("Possible tiny {side} apical pneumothorax.", {PTX: -1}),
    ("No pleural effusion or pneumothorax.", {EFF: 0, PTX: 0}),
    ("There is no pleural effusion or pneumothorax.", {EFF: 0, PTX: 0}),
    ("No pleural effusion or pneumothorax is seen.", {EFF: 0, PTX: 0}),
    ("No pleural effusion. No pneumothorax.", {EFF: 0, PTX: 0}),
    ("No evidence of pleural effusion or pneumothorax.", {EFF: 0, PTX: 0}),
    ("No pneumothorax.", {PTX: 0}),
    ("There is no pneumothorax.", {PTX: 0}),
    ("No pneumothorax is seen.", {PTX: 0}),
    ("No pleural effusion.", {EFF: 0}),
    ("There is no pleural effusion.", {EFF: 0}),
)
_EFF_I = _bank(
    ("{Size} {side} pleural effusion{s}.", {EFF: 1}),
    ("{Side} pleural effusion{s}.", {EFF: 1}),
    ("Possible trace {side} pleural effusion{s}.", {EFF: -1}),
)
_PTX_I = _bank(
    ("{Size} {side} pneumothorax.", {PTX: 1}),
    ("{Side} pneumothorax.", {PTX: 1}),
    ("{Size} {side} apical pneumothorax.", {PTX: 1}),
    ("Possible tiny {side} apical pneumothorax.", {PTX: -1}),
)
# Heart.
_CARDIO_CERTAIN, _CARDIO_UNCERTAIN, _HEART_NORMAL = range(1, 6), 6, range(7, 13)
_HEART = _bank(
    ("{Adj} cardiomegaly.", {CARDIO: 1}),
    ("The heart is {adv} enlarged.", {CARDIO: 1}),
    ("Heart size is {adv} enlarged.", {CARDIO: 1}),
    ("There is {adj} enlargement of the cardiac silhouette.", {CARDIO: 1}),
    ("The cardiac silhouette is {adv} enlarged.", {CARDIO: 1}),
    ("Possible mild cardiomegaly.", {CARDIO: -1}),
    ("Heart size is normal.", {CARDIO: 0}),
    ("The cardiomediastinal silhouette is within normal limits.", {EC: 0}),
    ("The cardiac and mediastinal silhouettes are unremarkable.", {EC: 0}),
    ("Normal heart size.", {CARDIO: 0}),
    ("Heart size and mediastinal contours are normal.", {CARDIO: 0, EC: 0}),
    ("The cardiomediastinal and hilar contours are normal.", {EC: 0}),
)
_CARDIO_I = _bank(
    ("{Adj} cardiomegaly.", {CARDIO: 1}),
    ("Cardiomegaly.", {CARDIO: 1}),
    ("Possible mild cardiomegaly.", {CARDIO: -1}),
)
# Devices (two phrasings per device kind: line, tube, pacemaker) and other remarks.
_DEVICE = _bank(
    (
        "A right internal jugular central venous catheter terminates in the mid SVC.",
        {"Support Devices": 1},
    ),
    ("Right IJ central line tip projects over the cavoatrial junction.", {"Support Devices": 1}),
    ("An endotracheal tube terminates 4 cm above the carina.", {"Support Devices": 1}),
    ("Endotracheal tube tip is 5 cm above the carina.", {"Support Devices": 1}),
    (
        "A left-sided pacemaker has leads terminating in the right atrium and right ventricle.",
        {"Support Devices": 1},
    ),
    ("Left chest wall dual-lead pacemaker device is noted.", {"Support Devices": 1}),
)
_MISC = _bank(
    ("No acute osseous abnormality.", {}),
    ("No displaced rib fractures are seen.", {"Fracture": 0}),
    ("Degenerative changes are noted in the thoracic spine.", {}),
    ("Old healed {side} rib fractures.", {"Fracture": 1}),
    ("A {mm} mm nodule projects over the {side} upper lung.", {"Lung Lesion": 1}),
)
_LESION_I = _bank(
    (
        "{mm} mm {side} upper lung nodule; chest CT is recommended for further evaluation.",
        {"Lung Lesion": 1},
    ),
)
_NORMAL_I = _bank(
    ("No acute cardiopulmonary process.", {}),
    ("No acute cardiopulmonary abnormality.", {}),
    ("No evidence of acute cardiopulmonary disease.", {}),
    ("No acute intrathoracic process.", {}),
    ("Normal chest radiograph.", {}),
    ("No radiographic evidence of pneumonia.", {PNA: 0}),
)

_INDICATIONS: tuple[tuple[str, ...], ...] = (  # by _category
    (
        "chest pain",
        "sudden onset shortness of breath",
        "pleuritic chest pain",
        "fall and chest wall pain",
    ),
    ("dyspnea", "shortness of breath", "dyspnea on exertion", "decreased breath sounds"),
    ("cough and fever", "fever", "productive cough", "hypoxia", "cough"),
    (
        "dyspnea on exertion",
        "leg swelling",
        "history of CHF with shortness of breath",
        "shortness of breath",
    ),
    ("abdominal pain", "shortness of breath", "recent surgery", "weakness"),
    (
        "chest pain",
        "syncope",
        "fall",
        "weakness",
        "palpitations",
        "cough",
        "shortness of breath",
        "fever",
    ),
)
_QUESTIONS = (
    "eval for pneumonia",
    "?pna",
    "r/o acute process",
    "eval for effusion",
    "evaluate for pneumothorax",
    "eval for acute cardiopulmonary process",
    "r/o infiltrate",
    "assess for interval change",
)
_COMPARISONS = (
    "None.",
    "___",
    "Chest radiograph ___.",
    "Prior chest radiographs ___ and ___.",
    "___ chest radiograph.",
)
_NOTIFICATION = (
    " NOTIFICATION:  The findings were discussed with Dr. ___ by Dr. ___ on the telephone on\n"
    " ___ at 2:15 PM, 5 minutes after discovery of the findings.\n"
)
_HEADER = "                                 FINAL REPORT\n"


def _wrap(text: np.ndarray) -> np.ndarray:
    """Wrap paragraphs at about 70–80 columns with a leading space, like MIMIC reports.

    A lazy regex (break at the first space after 66 characters) is several times faster
    than textwrap over 228k reports.
    """
    s = pd.Series(text, dtype=object).str.replace(r"(.{66,}?) ", "\\1\n ", regex=True)
    return s.to_numpy(dtype=object)


def _join(*parts: np.ndarray) -> np.ndarray:
    """Concatenate sentence columns (each sentence ends with a space; empty ones are ``""``)
    and drop the final space."""
    out = parts[0]
    for part in parts[1:]:
        out = out + part
    return pd.Series(out, dtype=object).str.rstrip().to_numpy(dtype=object)


def _pick_index(rng: np.random.Generator, n: int, choices: range | Sequence[int]) -> np.ndarray:
    choices = np.asarray(list(choices))
    return choices[rng.integers(0, len(choices), size=n)]


def _compose_reports(
    rng: np.random.Generator,
    truth: Mapping[str, np.ndarray],
    variant: np.ndarray,
    first_view: np.ndarray,
    female: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Free-text reports and their CheXpert labels, composed without a loop over studies.

    Each slot (devices, opacity, atelectasis, lungs, edema, pleura, heart, remarks) picks a
    template index per study; the text is a fancy-index into the expanded bank and the
    labels are the strongest code over the sentences the report actually contains
    (positive > uncertain > negative > not mentioned), as the CheXpert labeler reads them.

    Returns:
        texts (object array; ``""`` for the ``missing`` variant) and labels (n, 14) float.
    """
    n = len(variant)
    present, grade, side = truth["present"], truth["grade"], truth["side"]
    zone, unc = truth["zone"], truth["uncertain"]
    u = rng.random((n, 12))

    def slot_index(f: int, certain: range, uncertain: int) -> np.ndarray:
        idx = np.where(unc[:, f], uncertain, _pick_index(rng, n, certain))
        return np.where(present[:, f], idx, 0)

    g = {f: grade[:, f] for f in range(5)}
    sd = {f: side[:, f] for f in range(5)}
    zero = np.zeros(n, dtype=np.int64)

    # Findings paragraph slots.
    dev_idx = np.where(truth["device"] > 0, 2 * truth["device"] - 1 + (u[:, 0] < 0.5), 0)
    opac_idx = slot_index(_OPAC, _OPAC_CERTAIN, _OPAC_UNCERTAIN)
    atel_idx = slot_index(_ATEL, range(1, 6), 6)
    lung_idx = np.where(
        present[:, _OPAC],
        0,
        np.where(
            present[:, _ATEL],
            np.where(u[:, 1] < 0.7, _pick_index(rng, n, _LUNG_OTHERWISE), 0),
            _pick_index(rng, n, _LUNG_CLEAR),
        ),
    )
    edema_idx = np.where(
        truth["edema"],
        _pick_index(rng, n, _EDEMA_POS),
        np.where(
            (present[:, _CARDIO] & (u[:, 2] < 0.4)) | (u[:, 2] < 0.04),
            _pick_index(rng, n, _EDEMA_NEG),
            0,
        ),
    )
    eff, ptx = present[:, _EFF], present[:, _PTX]
    eff_idx = slot_index(_EFF, _EFF_CERTAIN, _EFF_UNCERTAIN)
    ptx_idx = slot_index(_PTX, _PTX_CERTAIN, _PTX_UNCERTAIN)
    pleura_a = np.select(
        [eff, ptx & (u[:, 3] < 0.6), ~eff & ~ptx & (u[:, 3] < 0.85)],
        [eff_idx, _pick_index(rng, n, _NO_EFF), _pick_index(rng, n, _PLEURA_NEG)],
        0,
    )
    pleura_b = np.where(
        ptx, ptx_idx, np.where(eff & (u[:, 4] < 0.7), _pick_index(rng, n, _NO_PTX), 0)
    )
    heart_idx = np.where(
        present[:, _CARDIO],
        slot_index(_CARDIO, _CARDIO_CERTAIN, _CARDIO_UNCERTAIN),
        np.where(u[:, 5] < 0.9, _pick_index(rng, n, _HEART_NORMAL), 0),
    )
    routine = np.select([u[:, 6] < 0.08, u[:, 6] < 0.13, u[:, 6] < 0.18], [1, 2, 3], 0)
    remark_idx = np.select([truth["fracture"] > 0, truth["lesion"] > 0], [4, 5], 0)
    remark_side = np.maximum(truth["fracture"], truth["lesion"])
    nodule_grade = rng.integers(1, 4, size=n)

    f_slots = [
        (_DEVICE, dev_idx, zero, zero),
        (_OPAC_F, opac_idx, g[_OPAC], sd[_OPAC]),
        (_ATEL_F, atel_idx, g[_ATEL], sd[_ATEL]),
        (_LUNG_NEG, lung_idx, zero, zero),
        (_EDEMA, edema_idx, zero, zero),
        (_PLEURA, pleura_a, g[_EFF], sd[_EFF]),
        (_PLEURA, pleura_b, g[_PTX], sd[_PTX]),
        (_HEART, heart_idx, g[_CARDIO], zero),
        (_MISC, routine, zero, zero),
        (_MISC, remark_idx, nodule_grade, remark_side),
    ]
    f_texts = [bank.text(idx, gr, si, zone) for bank, idx, gr, si in f_slots]
    heart_first = u[:, 7] < 0.35  # two common sentence orders
    order_a = _join(*f_texts)
    order_b = _join(f_texts[0], f_texts[7], *f_texts[1:7], *f_texts[8:])
    findings = np.where(heart_first, order_b, order_a)
    f_effects = np.max([bank.effects[idx] for bank, idx, _, _ in f_slots], axis=0)

    # Impression: positive findings by priority, else a normal impression.
    imp_opac = opac_idx
    imp_eff = np.where(eff, np.where(unc[:, _EFF], 3, 1 + (u[:, 8] < 0.4)), 0)
    imp_ptx = np.where(ptx, np.where(unc[:, _PTX], 4, _pick_index(rng, n, range(1, 4))), 0)
    imp_edema = np.where(truth["edema"], 1 + (u[:, 9] < 0.5), 0)
    imp_cardio = np.where(
        present[:, _CARDIO], np.where(unc[:, _CARDIO], 3, 1 + (u[:, 10] < 0.4)), 0
    )
    imp_atel = np.where(
        present[:, _ATEL] & (u[:, 11] < 0.7),
        np.where(unc[:, _ATEL], 3, 1 + (u[:, 11] < 0.3)),
        0,
    )
    imp_lesion = (truth["lesion"] > 0).astype(np.int64)
    i_slots = [
        (_PTX_I, imp_ptx, g[_PTX], sd[_PTX]),
        (_EFF_I, imp_eff, g[_EFF], sd[_EFF]),
        (_OPAC_I, imp_opac, g[_OPAC], sd[_OPAC]),
        (_EDEMA_I, imp_edema, zero, zero),
        (_CARDIO_I, imp_cardio, g[_CARDIO], zero),
        (_ATEL_I, imp_atel, g[_ATEL], sd[_ATEL]),
        (_LESION_I, imp_lesion, nodule_grade, truth["lesion"]),
    ]
    has_imp = np.any([idx > 0 for _, idx, _, _ in i_slots], axis=0)
    normal_idx = np.where(has_imp, 0, _pick_index(rng, n, range(1, 7)))
    i_slots.append((_NORMAL_I, normal_idx, zero, zero))
    impression = _join(*(bank.text(idx, gr, si, zone) for bank, idx, gr, si in i_slots))
    i_effects = np.max([bank.effects[idx] for bank, idx, _, _ in i_slots], axis=0)

    # Labels: union over the paragraphs the report contains.
    v = np.asarray(variant)
    has_f = v != REPORT_VARIANTS.index("impression")
    has_i = v != REPORT_VARIANTS.index("findings")
    codes = np.maximum(f_effects * has_f[:, None], i_effects * has_i[:, None])
    pathology = [
        i for i, lab in enumerate(CHEXPERT_LABELS) if lab not in ("No Finding", "Support Devices")
    ]
    no_finding = (codes[:, pathology] < 2).all(axis=1)
    codes[:, _LABEL_INDEX["No Finding"]] = np.where(no_finding, 3, 0)
    labels = _DECODE[codes]

    texts = _assemble(rng, v, _wrap(findings), _wrap(impression), truth, first_view, female)
    return texts, labels


def _assemble(
    rng: np.random.Generator,
    variant: np.ndarray,
    findings: np.ndarray,
    impression: np.ndarray,
    truth: Mapping[str, np.ndarray],
    first_view: np.ndarray,
    female: np.ndarray,
) -> np.ndarray:
    """Put header, indication, comparison and the sections together per report variant."""
    n = len(variant)
    u = rng.random((n, 3))
    cat = _category(truth["present"])
    complaint = _pick_lists(rng, cat, _INDICATIONS)
    question = _objects(_QUESTIONS)[rng.integers(0, len(_QUESTIONS), size=n)]
    sex = np.where(female, "F", "M").astype(object)
    person = np.where(female, "woman", "man").astype(object)
    form = rng.integers(0, 4, size=n)
    indication = np.select(
        [form == 0, form == 1, form == 2],
        [
            "___ year old " + person + " with " + complaint + "  // " + question,
            "___ with " + complaint + "  // " + question,
            "___" + sex + " with " + complaint + ", " + question + ".",
        ],
        "History: ___" + sex + " with " + complaint,
    )
    comparison = _objects(_COMPARISONS)[rng.integers(0, len(_COMPARISONS), size=n)]
    ap = first_view == "AP"
    exam = np.where(ap, "CHEST (PORTABLE AP)", "CHEST (PA AND LAT)").astype(object)
    technique = np.where(
        ap,
        np.where(u[:, 0] < 0.5, "Portable AP chest radiograph", "Single frontal view of the chest"),
        np.where(u[:, 0] < 0.5, "Chest PA and lateral", "PA and lateral views of the chest."),
    ).astype(object)
    modern = u[:, 1] < 0.7  # EXAMINATION/INDICATION/TECHNIQUE layout vs the older HISTORY one
    pre = np.where(
        modern,
        _HEADER
        + " EXAMINATION:  "
        + exam
        + "\n \n INDICATION:  "
        + indication
        + "\n \n TECHNIQUE:  "
        + technique
        + "\n \n COMPARISON:  "
        + comparison
        + "\n \n",
        _HEADER + " HISTORY:  " + indication + "\n \n COMPARISON:  " + comparison + "\n \n",
    )

    notify = np.where(truth["present"][:, _PTX] & (u[:, 2] < 0.5), _NOTIFICATION, "")
    notify = notify.astype(object)
    texts = np.full(n, "", dtype=object)
    for name in REPORT_VARIANTS[:-1]:  # "missing" has no text
        m = variant == REPORT_VARIANTS.index(name)
        if not m.any():
            continue
        mod, f_par, i_par, note = modern[m], findings[m], impression[m], notify[m]

        def section(header: str, body: np.ndarray, mod=mod) -> np.ndarray:
            return np.where(
                mod, f" {header}: \n \n " + body + "\n \n", f" {header}:  " + body + "\n \n"
            )

        if name == "findings+impression":
            body = section("FINDINGS", f_par) + section("IMPRESSION", i_par) + note
        elif name == "impression":
            body = section("IMPRESSION", i_par) + note
        elif name == "findings":
            body = section("FINDINGS", f_par)
        elif name == "conclusion":
            body = section("FINDINGS", f_par) + section("CONCLUSION", i_par) + note
        elif name == "combined":
            body = section("FINDINGS AND IMPRESSION", _wrap(f_par + " " + i_par))
        else:  # "none": an older free-text report without section headers
            body = " CHEST RADIOGRAPHS ___\n \n " + _wrap(f_par + " " + i_par) + "\n"
        head = pre[m]
        if name == "none":
            head = _HEADER + " CLINICAL HISTORY:  ___ with " + complaint[m] + ".\n \n"
        texts[m] = (head + body).astype(object)
    return texts


# --------------------------------------------------------------------------------------
# ED vocabularies (real MIMIC-IV-ED values)
# --------------------------------------------------------------------------------------
_RACES: tuple[tuple[str, float], ...] = (
    ("WHITE", 0.55),
    ("BLACK/AFRICAN AMERICAN", 0.17),
    ("HISPANIC/LATINO - PUERTO RICAN", 0.03),
    ("HISPANIC/LATINO - DOMINICAN", 0.02),
    ("HISPANIC OR LATINO", 0.015),
    ("ASIAN", 0.015),
    ("ASIAN - CHINESE", 0.015),
    ("ASIAN - SOUTH EAST ASIAN", 0.005),
    ("WHITE - OTHER EUROPEAN", 0.02),
    ("WHITE - RUSSIAN", 0.01),
    ("BLACK/CAPE VERDEAN", 0.01),
    ("BLACK/CARIBBEAN ISLAND", 0.008),
    ("PORTUGUESE", 0.005),
    ("SOUTH AMERICAN", 0.003),
    ("AMERICAN INDIAN/ALASKA NATIVE", 0.003),
    ("MULTIPLE RACE/ETHNICITY", 0.003),
    ("NATIVE HAWAIIAN OR OTHER PACIFIC ISLANDER", 0.002),
    ("OTHER", 0.045),
    ("UNKNOWN", 0.04),
    ("UNABLE TO OBTAIN", 0.01),
    ("PATIENT DECLINED TO ANSWER", 0.01),
)
_ARRIVAL = ("WALK IN", "AMBULANCE", "UNKNOWN", "OTHER", "HELICOPTER")
_DISPOSITION = (
    "ADMITTED",
    "HOME",
    "TRANSFER",
    "LEFT WITHOUT BEING SEEN",
    "LEFT AGAINST MEDICAL ADVICE",
    "ELOPED",
    "OTHER",
    "EXPIRED",
)
_COMPLAINTS: tuple[tuple[str, ...], ...] = (  # by _category
    (
        "SOB",
        "Chest pain",
        "L Chest pain",
        "R Chest pain",
        "Dyspnea",
        "SOB, CP",
        "s/p Fall",
        "Pneumothorax",
    ),
    ("Dyspnea", "SOB", "DOE", "SOB, Leg swelling", "Pleural effusion", "Abnormal CXR", "Cough"),
    ("COUGH, FEVER", "Cough", "Fever", "Hypoxia", "SOB, Cough", "PNA", "Fever, Cough", "Dyspnea"),
    ("SOB", "Dyspnea", "Leg swelling", "CHF", "SOB, CP", "DOE", "Weakness"),
    ("Abd pain", "s/p Fall", "Weakness", "SOB", "Chest pain", "N/V", "Post op"),
    (
        "Chest pain",
        "CP",
        "s/p Fall",
        "Abd pain",
        "N/V",
        "Weakness",
        "Dizziness",
        "Syncope",
        "Palpitations",
        "Cough",
        "Headache",
        "ETOH",
        "MVC",
        "Back pain",
        "SOB",
        "Altered mental status",
        "Fever",
    ),
)
_ICD_PRIMARY: tuple[tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]], ...] = (
    (  # pneumothorax: (ICD-10 entries, ICD-9 entries)
        (
            ("J939", "Pneumothorax, unspecified"),
            ("J9311", "Primary spontaneous pneumothorax"),
            ("J9383", "Other pneumothorax"),
            ("S270XXA", "Traumatic pneumothorax, initial encounter"),
        ),
        (
            ("5128", "OTHER SPONTANEOUS PNEUMOTHORAX"),
            ("5120", "SPONTANEOUS TENSION PNEUMOTHORAX"),
            ("8600", "TRAUMATIC PNEUMOTHORAX WITHOUT MENTION OF OPEN WOUND INTO THORAX"),
        ),
    ),
    (  # pleural effusion
        (
            ("J90", "Pleural effusion, not elsewhere classified"),
            ("J918", "Pleural effusion in other conditions classified elsewhere"),
            ("R0602", "Shortness of breath"),
        ),
        (("5119", "UNSPECIFIED PLEURAL EFFUSION"), ("78605", "SHORTNESS OF BREATH")),
    ),
    (  # opacity / pneumonia
        (
            ("J189", "Pneumonia, unspecified organism"),
            ("J181", "Lobar pneumonia, unspecified organism"),
            ("J690", "Pneumonitis due to inhalation of food and vomit"),
            ("R509", "Fever, unspecified"),
            ("R0902", "Hypoxemia"),
        ),
        (
            ("486", "PNEUMONIA, ORGANISM UNSPECIFIED"),
            ("78060", "FEVER, UNSPECIFIED"),
            ("7862", "COUGH"),
        ),
    ),
    (  # cardiomegaly / heart failure
        (
            ("I509", "Heart failure, unspecified"),
            ("I5023", "Acute on chronic systolic (congestive) heart failure"),
            ("I5033", "Acute on chronic diastolic (congestive) heart failure"),
            ("I517", "Cardiomegaly"),
            ("R0602", "Shortness of breath"),
        ),
        (
            ("4280", "CONGESTIVE HEART FAILURE, UNSPECIFIED"),
            ("78605", "SHORTNESS OF BREATH"),
            ("4293", "CARDIOMEGALY"),
        ),
    ),
    (  # atelectasis
        (
            ("J9811", "Atelectasis"),
            ("R0602", "Shortness of breath"),
            ("R1010", "Upper abdominal pain, unspecified"),
            ("W19XXXA", "Unspecified fall, initial encounter"),
        ),
        (
            ("5180", "PULMONARY COLLAPSE"),
            ("78605", "SHORTNESS OF BREATH"),
            ("78900", "ABDOMINAL PAIN, UNSPECIFIED SITE"),
        ),
    ),
    (  # normal
        (
            ("R079", "Chest pain, unspecified"),
            ("R0789", "Other chest pain"),
            ("R0602", "Shortness of breath"),
            ("R55", "Syncope and collapse"),
            ("W19XXXA", "Unspecified fall, initial encounter"),
            ("R51", "Headache"),
            ("R42", "Dizziness and giddiness"),
            ("R109", "Unspecified abdominal pain"),
            ("R05", "Cough"),
            ("R531", "Weakness"),
            ("R002", "Palpitations"),
        ),
        (
            ("78650", "CHEST PAIN NOS"),
            ("78659", "CHEST PAIN NEC"),
            ("78605", "SHORTNESS OF BREATH"),
            ("7802", "SYNCOPE AND COLLAPSE"),
            ("E8889", "FALL NOS"),
            ("7840", "HEADACHE"),
            ("7804", "DIZZINESS AND GIDDINESS"),
            ("7862", "COUGH"),
        ),
    ),
)
_ICD_SECONDARY: tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] = (
    (
        ("I10", "Essential (primary) hypertension"),
        ("E119", "Type 2 diabetes mellitus without complications"),
        ("E785", "Hyperlipidemia, unspecified"),
        ("Z87891", "Personal history of nicotine dependence"),
        ("J449", "Chronic obstructive pulmonary disease, unspecified"),
        ("N179", "Acute kidney failure, unspecified"),
        ("I4891", "Unspecified atrial fibrillation"),
        ("Z7901", "Long term (current) use of anticoagulants"),
        ("E876", "Hypokalemia"),
    ),
    (
        ("4019", "UNSPECIFIED ESSENTIAL HYPERTENSION"),
        (
            "25000",
            "DIABETES MELLITUS WITHOUT MENTION OF COMPLICATION, TYPE II OR UNSPECIFIED "
            "TYPE, NOT STATED AS UNCONTROLLED",
        ),
        ("2724", "OTHER AND UNSPECIFIED HYPERLIPIDEMIA"),
        ("3051", "TOBACCO USE DISORDER"),
        ("496", "CHRONIC AIRWAY OBSTRUCTION, NOT ELSEWHERE CLASSIFIED"),
        ("42731", "ATRIAL FIBRILLATION"),
        ("5849", "ACUTE KIDNEY FAILURE, UNSPECIFIED"),
    ),
)
#: Physiologically implausible values injected into ~1.5% of triage rows.
IMPLAUSIBLE_VITALS: tuple[tuple[str, float], ...] = (
    ("o2sat", 0.0),
    ("o2sat", 150.0),
    ("heartrate", 0.0),
    ("heartrate", 400.0),
    ("temperature", 980.0),
    ("temperature", 20.0),
    ("sbp", 0.0),
    ("dbp", 500.0),
)


# --------------------------------------------------------------------------------------
# The cohort: tables + latent truth
# --------------------------------------------------------------------------------------
@dataclass
class _Cohort:
    tables: dict[str, pd.DataFrame]
    truth: pd.DataFrame  # one row per study (study order of the metadata table)
    study_arrays: dict[str, np.ndarray]  # latent findings per study, same order as truth


_EPOCH_MIN = int(np.datetime64("2110-01-01T00:00", "m").astype(np.int64))
_SPAN_MIN = 75 * 365 * 1440  # subjects' first stays fall in 2110–2185
_DAY = 1440


def _datetime_strings(minutes: np.ndarray) -> np.ndarray:
    """``YYYY-MM-DD HH:MM:SS`` strings from minutes since 1970 (MIMIC-IV-ED style)."""
    stamps = pd.Series(np.asarray(minutes, dtype=np.int64).astype("datetime64[m]"))
    return stamps.dt.strftime("%Y-%m-%d %H:%M:%S").to_numpy(dtype=object)


def _simulate(
    n_subjects: int, n_studies: int, n_images: int, n_stays: int, seed: int, image_size: int
) -> _Cohort:
    """Build every table and the latent truth, vectorised (no Python loop over rows)."""
    if n_subjects < 1 or n_studies < n_subjects or n_images < n_studies or n_stays < 0:
        raise ValueError(
            "need 1 <= n_subjects <= n_studies <= n_images and n_stays >= 0, got "
            f"{n_subjects=}, {n_studies=}, {n_images=}, {n_stays=}"
        )
    rng = np.random.default_rng(seed)

    # ---- subjects and their ED stays -------------------------------------------------
    stays_per_subject = rng.choice(np.array([1, 2, 3]), size=n_subjects, p=[0.55, 0.3, 0.15])
    if n_subjects >= 2:  # ~5% of subjects (at least one) never came through the ED
        stays_per_subject[_quota(rng, np.arange(n_subjects), 0.05)] = 0
    stays_per_subject = np.where(np.cumsum(stays_per_subject) <= n_stays, stays_per_subject, 0)
    remaining = n_stays - int(stays_per_subject.sum())
    n_ed_only = remaining // 2 if remaining >= 2 else remaining  # ED visitors without X-rays
    ed_only_stays = 1 + _spread(rng, remaining - n_ed_only, n_ed_only)
    ids = _unique_ids(rng, n_subjects + n_ed_only, 10_000_000)
    cxr_subjects = np.sort(ids[:n_subjects])
    all_subjects = np.concatenate([cxr_subjects, ids[n_subjects:]])
    stay_counts = np.concatenate([stays_per_subject, ed_only_stays])
    stay_owner, stay_pos, stay_start = _group_positions(stay_counts)
    n_all_stays = len(stay_owner)

    female = rng.random(len(all_subjects)) < 0.52
    race_names, race_w = zip(*_RACES)
    race_p = np.array(race_w) / sum(race_w)
    race = _objects(race_names)[rng.choice(len(race_names), size=len(all_subjects), p=race_p)]
    base = _EPOCH_MIN + rng.integers(0, _SPAN_MIN, size=len(all_subjects))

    gaps = np.where(stay_pos == 0, 0, rng.integers(150, 500, size=n_all_stays) * _DAY) + np.where(
        stay_pos == 0, 0, rng.integers(-720, 720, size=n_all_stays)
    )
    cum = np.cumsum(gaps)
    offset = cum - np.repeat(cum[stay_start] - gaps[stay_start], stay_counts)
    intime = base[stay_owner] + offset
    duration = np.minimum(120 + rng.gamma(2.0, 110.0, size=n_all_stays), 720).astype(np.int64)
    # a few subjects with two overlapping stays (a study inside both)
    two_stays = np.flatnonzero(stays_per_subject >= 2)
    overlapped = _quota(rng, two_stays, 0.03) if len(two_stays) else two_stays
    first, second = stay_start[overlapped], stay_start[overlapped] + 1
    intime[second] = intime[first] + (rng.uniform(0.3, 0.7, len(first)) * duration[first])
    outtime = intime + duration

    # ---- studies -------------------------------------------------------------------
    weights = rng.lognormal(0.0, 1.0, size=n_subjects)
    study_subject = np.sort(
        np.concatenate(
            [
                np.arange(n_subjects),
                rng.choice(n_subjects, size=n_studies - n_subjects, p=weights / weights.sum()),
            ]
        )
    )
    study_ids = _unique_ids(rng, n_studies, 50_000_000)
    k = stays_per_subject[study_subject]
    relation = np.full(n_studies, RELATIONS.index("no_stay"), dtype=np.int64)
    with_stay = np.flatnonzero(k > 0)
    relation[with_stay] = _exact_categories(rng, len(with_stay), _REL_PROBS)
    stay_of = np.where(
        k > 0, stay_start[study_subject] + (rng.random(n_studies) * k).astype(np.int64), -1
    )
    first_study = np.searchsorted(study_subject, overlapped)
    relation[first_study] = RELATIONS.index("inside")
    stay_of[first_study] = first

    s = np.maximum(stay_of, 0)
    u = rng.random(n_studies)
    minutes = np.select(
        [relation == 0, relation == 1, relation == 2, relation == 3],
        [
            intime[s] + (0.05 + 0.9 * u) * duration[s],
            intime[s] - (15 + 225 * u),
            outtime[s] + (15 + 225 * u),
            intime[s] + np.where(rng.random(n_studies) < 0.5, -1, 1) * (5 + 55 * u) * _DAY,
        ],
        base[study_subject] + u * 3000 * _DAY,
    )
    # the overlapped subjects' first study: midway through the overlap of both stays
    overlap_end = np.minimum(outtime[first], outtime[second])
    minutes[first_study] = (intime[second] + overlap_end) / 2
    ms = (np.floor(minutes * 60).astype(np.int64) * 1000) + np.where(
        rng.random(n_studies) < 0.6, rng.integers(0, 1000, size=n_studies), 0
    )
    when = ms.astype("datetime64[ms]")
    day = when.astype("datetime64[D]")
    month = when.astype("datetime64[M]")
    year = when.astype("datetime64[Y]").astype(np.int64) + 1970
    study_date = (
        year * 10000
        + (month.astype(np.int64) % 12 + 1) * 100
        + (day - month.astype("datetime64[D]")).astype(np.int64)
        + 1
    )
    ms_of_day = (when - day).astype(np.int64)
    hh, mm = ms_of_day // 3_600_000, (ms_of_day // 60_000) % 60
    ss = (ms_of_day % 60_000) / 1000.0
    study_time = np.round(hh * 10000 + mm * 100 + ss, 3)
    missing_time = _quota(rng, np.arange(n_studies), 0.001, minimum=min(2, n_studies))
    study_time[missing_time] = np.nan

    # ---- latent findings: studies of a visit mostly share the visit's disease -------------
    study_truth = _draw_findings(rng, n_studies)
    stay_truth = _draw_findings(rng, n_all_stays)
    linked = (relation <= 2) & (rng.random(n_studies) < 0.8)
    for key, values in study_truth.items():
        values[linked] = stay_truth[key][stay_of[linked]]

    # ---- images: views per study ----------------------------------------------------
    per_study = 1 + _spread(rng, n_images - n_studies, n_studies)
    image_study, image_pos, _ = _group_positions(per_study)
    lateral_only = np.zeros(n_studies, dtype=bool)
    if n_studies >= 2:
        lateral_only[_quota(rng, np.arange(n_studies), 0.015)] = True
    portable = rng.random(n_studies) < 0.3 + 0.3 * (study_truth["severity"] > 2)
    frontal = np.where(portable, "AP", "PA").astype(object)
    second_view = _objects(("LATERAL", "LL", ""))[
        rng.choice(3, size=n_studies, p=[0.85, 0.08, 0.07])
    ]
    lateral_kind = np.where(rng.random(n_studies) < 0.8, "LATERAL", "LL").astype(object)
    extra_view = _objects(("PA", "AP", "LATERAL"))[rng.integers(0, 3, size=len(image_study))]
    lo = lateral_only[image_study]
    view = np.select(
        [image_pos == 0, image_pos == 1],
        [frontal[image_study], second_view[image_study]],
        extra_view,
    ).astype(object)
    view = np.where(lo, np.where(image_pos == 0, lateral_kind[image_study], "LATERAL"), view)
    view = view.astype(object)
    first_view = np.where(lateral_only, lateral_kind, frontal).astype(object)
    procedure = np.where(frontal == "AP", "CHEST (PORTABLE AP)", "CHEST (PA AND LAT)")
    procedure = procedure.astype(object)
    procedure[rng.random(n_studies) < 0.02] = np.nan
    view_meaning = (
        pd.Series(view)
        .map(
            {
                "PA": "postero-anterior",
                "AP": "antero-posterior",
                "LATERAL": "lateral",
                "LL": "left lateral",
            }
        )
        .to_numpy(dtype=object)
    )
    orientation = np.where(
        (view == "AP") & (rng.random(len(view)) < 0.45), "Recumbent", "Erect"
    ).astype(object)
    orientation[rng.random(len(view)) < 0.05] = np.nan
    metadata = pd.DataFrame(
        {
            "dicom_id": _dicom_ids(rng, len(image_study)),
            "subject_id": cxr_subjects[study_subject[image_study]],
            "study_id": study_ids[image_study],
            "PerformedProcedureStepDescription": procedure[image_study],
            "ViewPosition": view,
            "Rows": image_size,
            "Columns": image_size,
            "StudyDate": study_date[image_study],
            "StudyTime": study_time[image_study],
            "ProcedureCodeSequence_CodeMeaning": procedure[image_study],
            "ViewCodeSequence_CodeMeaning": view_meaning,
            "PatientOrientationCodeSequence_CodeMeaning": orientation,
        },
        columns=list(METADATA_COLUMNS),
    )

    # ---- reports and CheXpert labels --------------------------------------------------
    variant = _exact_categories(rng, n_studies, _VARIANT_PROBS)
    texts, labels = _compose_reports(rng, study_truth, variant, first_view, female[study_subject])
    has_report = variant != REPORT_VARIANTS.index("missing")
    reports = pd.DataFrame(
        {
            "study_id": study_ids[has_report],
            "subject_id": cxr_subjects[study_subject[has_report]],
            "text": texts[has_report],
        }
    )
    chexpert = pd.DataFrame(labels[has_report], columns=list(CHEXPERT_LABELS))
    chexpert.insert(0, "study_id", study_ids[has_report])
    chexpert.insert(0, "subject_id", cxr_subjects[study_subject[has_report]])

    # ---- ED tables ------------------------------------------------------------------
    stay_ids = _unique_ids(rng, n_all_stays, 30_000_000)
    edstays, triage, diagnosis = _ed_tables(
        rng,
        stay_truth,
        all_subjects[stay_owner],
        stay_ids,
        intime,
        outtime,
        female[stay_owner],
        race[stay_owner],
    )

    truth = pd.DataFrame(
        {
            "study_id": study_ids,
            "subject_id": cxr_subjects[study_subject],
            "relation": _objects(RELATIONS)[relation],
            "stay_id": pd.array(np.where(stay_of >= 0, stay_ids[s], 0), dtype="Int64"),
            "report_variant": _objects(REPORT_VARIANTS)[variant],
            "first_view": first_view,
            "lateral_only": lateral_only,
            "missing_study_time": np.isnan(study_time),
            "severity": np.round(study_truth["severity"], 3),
        }
    )
    truth.loc[stay_of < 0, "stay_id"] = pd.NA
    for f, name in enumerate(FINDING_COLUMNS):
        truth[name] = study_truth["present"][:, f].astype(np.int8)
        truth[f"{name} grade"] = study_truth["grade"][:, f]
        truth[f"{name} side"] = _objects(_SIDES)[study_truth["side"][:, f]]
        truth[f"{name} uncertain"] = study_truth["uncertain"][:, f]
    truth["Lung Opacity zone"] = _objects(_ZONES)[study_truth["zone"]]
    truth["Edema"] = study_truth["edema"]
    truth["device"] = _objects(_DEVICES)[study_truth["device"]]
    truth["Lung Lesion side"] = _objects(_SIDES)[study_truth["lesion"]]

    tables = {
        "metadata": metadata,
        "chexpert": chexpert,
        "edstays": edstays,
        "triage": triage,
        "diagnosis": diagnosis,
        "reports": reports,
    }
    return _Cohort(tables=tables, truth=truth, study_arrays=study_truth)


def _ed_tables(
    rng: np.random.Generator,
    truth: Mapping[str, np.ndarray],
    subject: np.ndarray,
    stay_id: np.ndarray,
    intime: np.ndarray,
    outtime: np.ndarray,
    female: np.ndarray,
    race: np.ndarray,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """edstays, triage and diagnosis of all stays, driven by each visit's latent findings."""
    n = len(subject)
    present, grade = truth["present"], truth["grade"]
    severity = truth["severity"]
    cat = _category(present)

    # Acuity (1 = most urgent): pneumothorax and large effusions → 1–2; normal → mostly 3–5.
    score = (
        severity
        + 2.5 * present[:, _PTX]
        + 1.5 * (grade[:, _EFF] == 3)
        + rng.normal(0.0, 0.6, size=n)
    )
    acuity = np.select(
        [score < -1.2, score < -0.6, score < 0.55, score < 3.0], [5, 4, 3, 2], 1
    ).astype(float)

    # Vitals follow acuity and the findings (hypoxia, tachypnoea, fever with opacity).
    z = rng.standard_normal((n, 6))
    lung = present[:, _OPAC] | present[:, _EFF] | present[:, _PTX] | truth["edema"]
    fever = present[:, _OPAC] & (rng.random(n) < 0.6)
    sev = np.clip(severity, 0, 6)
    o2 = 98.5 - lung * (1.0 + 1.6 * sev) - np.abs(z[:, 0]) * 1.3
    hr = 78 + 8 * sev + 12 * fever + 13 * z[:, 1]
    rr = 16 + 1.6 * sev + 1.8 * z[:, 2]
    temp = 98.1 + 0.5 * z[:, 3] + fever * rng.uniform(1.5, 4.0, size=n)
    sbp = 134 + 22 * z[:, 4]
    dbp = 0.55 * sbp + 9 * z[:, 5]
    vitals = {
        "temperature": np.round(temp, 1),
        "heartrate": np.clip(np.round(hr), 35, 190),
        "resprate": np.clip(np.round(rr), 8, 44),
        "o2sat": np.clip(np.round(o2), 70, 100),
        "sbp": np.clip(np.round(sbp), 70, 230),
        "dbp": np.clip(np.round(dbp), 30, 140),
    }
    miss = {
        "temperature": 0.05,
        "heartrate": 0.03,
        "resprate": 0.035,
        "o2sat": 0.04,
        "sbp": 0.03,
        "dbp": 0.03,
    }
    for name, p in miss.items():
        vitals[name][rng.random(n) < p] = np.nan

    # Chief complaint: the visit's dominant finding, with some unrelated complaints.
    cc_group = np.where(rng.random(n) < 0.2, 5, cat)
    complaint = _pick_lists(rng, cc_group, _COMPLAINTS)
    chest_pain = pd.Series(complaint).str.contains("pain|CP", regex=True).to_numpy()
    pain_value = np.where(
        chest_pain,
        rng.integers(4, 11, size=n),
        np.where(rng.random(n) < 0.5, rng.integers(0, 11, size=n), 0),
    )
    pain = pain_value.astype(str).astype(object)
    odd = rng.random(n)
    pain[odd < 0.04] = "UTA"
    pain[(odd >= 0.04) & (odd < 0.05)] = "unable"
    pain[(odd >= 0.05) & (odd < 0.08)] = np.nan
    complaint[rng.random(n) < 0.002] = np.nan
    acuity_col = acuity.copy()
    acuity_col[rng.random(n) < 0.015] = np.nan

    # Disposition and arrival follow acuity; hadm_id only for admissions.
    p_admit = np.array([0.0, 0.85, 0.6, 0.33, 0.06, 0.02])[acuity.astype(int)]
    u = rng.random(n)
    others = _objects(_DISPOSITION[1:7])[
        rng.choice(6, size=n, p=[0.86, 0.03, 0.05, 0.02, 0.01, 0.03])
    ]
    disposition = np.where(u < p_admit, "ADMITTED", others).astype(object)
    disposition[(acuity == 1) & (rng.random(n) < 0.02)] = "EXPIRED"
    urgent = acuity <= 2
    arrival_p = np.where(
        urgent[:, None], [[0.3, 0.6, 0.04, 0.03, 0.03]], [[0.65, 0.27, 0.05, 0.028, 0.002]]
    )
    arrival = _objects(_ARRIVAL)[_choice_rows(rng, arrival_p)]
    hadm = _unique_ids(rng, n, 20_000_000)
    has_hadm = (disposition == "ADMITTED") & (rng.random(n) < 0.92)
    gender = np.where(female, "F", "M").astype(object)
    gender[rng.random(n) < 0.003] = np.nan

    edstays = pd.DataFrame(
        {
            "subject_id": subject,
            "hadm_id": pd.array(np.where(has_hadm, hadm, 0), dtype="Int64"),
            "stay_id": stay_id,
            "intime": _datetime_strings(intime),
            "outtime": _datetime_strings(outtime),
            "gender": gender,
            "race": race,
            "arrival_transport": arrival,
            "disposition": disposition,
        },
        columns=list(EDSTAYS_COLUMNS),
    )
    edstays.loc[~has_hadm, "hadm_id"] = pd.NA

    # Triage: most stays have a row; ~1.5% carry an implausible value, a few °C in °F.
    has_triage = rng.random(n) >= 0.03
    triage = pd.DataFrame(
        {
            "subject_id": subject,
            "stay_id": stay_id,
            **vitals,
            "pain": pain,
            "acuity": acuity_col,
            "chiefcomplaint": complaint,
        },
        columns=list(TRIAGE_COLUMNS),
    )[has_triage].reset_index(drop=True)
    rows = _quota(rng, np.arange(len(triage)), 0.015)
    kinds = rng.integers(0, len(IMPLAUSIBLE_VITALS), size=len(rows))
    for kind, (name, value) in enumerate(IMPLAUSIBLE_VITALS):
        triage.loc[rows[kinds == kind], name] = value
    celsius = _quota(rng, np.arange(len(triage)), 0.003)
    temp_f = triage.loc[celsius, "temperature"]
    triage.loc[celsius, "temperature"] = np.round((temp_f - 32) * 5 / 9, 1)

    # Diagnoses: 1–3 per stay, the primary from the visit's dominant finding.
    icd9 = rng.random(n) < 0.25
    n_dx = rng.choice(np.array([1, 2, 3]), size=n, p=[0.45, 0.35, 0.2])
    dx_stay, seq, _ = _group_positions(n_dx)
    version = np.where(icd9[dx_stay], 9, 10)
    primary_lists = [entries[v] for entries in _ICD_PRIMARY for v in (0, 1)]
    all_lists = [*primary_lists, *_ICD_SECONDARY]
    entries = [entry for entries in all_lists for entry in entries]
    codes = _objects([code for code, _ in entries])
    titles = _objects([title for _, title in entries])
    numbered, start = [], 0
    for entries_ in all_lists:  # each list as indices into codes/titles
        numbered.append(tuple(range(start, start + len(entries_))))
        start += len(entries_)
    primary = _pick_lists(rng, 2 * cat[dx_stay] + icd9[dx_stay], numbered[: len(primary_lists)])
    secondary = _pick_lists(rng, icd9[dx_stay].astype(np.int64), numbered[len(primary_lists) :])
    entry = np.where(seq == 0, primary, secondary).astype(np.int64)
    diagnosis = pd.DataFrame(
        {
            "subject_id": subject[dx_stay],
            "stay_id": stay_id[dx_stay],
            "seq_num": seq + 1,
            "icd_code": codes[entry],
            "icd_version": version,
            "icd_title": titles[entry],
        },
        columns=list(DIAGNOSIS_COLUMNS),
    )
    # Real files are ordered by subject; stays of a subject by time.
    rank = np.empty(n, dtype=np.int64)
    rank[np.lexsort((intime, subject))] = np.arange(n)
    by_rank = pd.Series(rank, index=stay_id)
    edstays = edstays.iloc[np.argsort(rank)].reset_index(drop=True)
    triage = triage.iloc[np.argsort(by_rank[triage["stay_id"]].to_numpy(), kind="stable")]
    diagnosis = diagnosis.iloc[np.argsort(by_rank[diagnosis["stay_id"]].to_numpy(), kind="stable")]
    return edstays, triage.reset_index(drop=True), diagnosis.reset_index(drop=True)


def generate_tables(
    n_subjects: int,
    n_studies: int,
    n_images: int,
    n_stays: int,
    seed: int = 0,
    *,
    image_size: int = 256,
) -> dict[str, pd.DataFrame]:
    """All MIMIC-shaped tables in memory (no files, no images), vectorised.

    Used by :func:`generate_raw_mimic` (which then writes them) and by the linkage
    benchmark, which needs MIMIC's full size (65k subjects, 228k studies, 377k image rows,
    425k ED stays) in seconds rather than the hours an image-writing run would take.

    Args:
        n_subjects: subjects with chest X-rays (each has at least one study).
        n_studies: studies in the metadata table (``>= n_subjects``).
        n_images: image rows in the metadata table (``>= n_studies``).
        n_stays: ED stays in total. Up to three go to each X-ray subject (about 5% get
            none); the rest belong to ED-only subjects, as in reality most ED stays have
            no chest X-ray.
        seed: seed of the generator; the same seed gives identical tables.
        image_size: the ``Rows``/``Columns`` recorded in the metadata (the phantom size).

    Returns:
        ``metadata``, ``chexpert``, ``edstays``, ``triage``, ``diagnosis`` (the columns of
        the real files) and ``reports`` (``study_id, subject_id, text``: the full free-text
        report of every study that has a report file).
    """
    return _simulate(n_subjects, n_studies, n_images, n_stays, seed, image_size).tables


# --------------------------------------------------------------------------------------
# Phantom images
# --------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    x, y = np.meshgrid(c, c)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _soft(z: np.ndarray) -> np.ndarray:
    """Smooth step 0→1 (a logistic via tanh: no overflow warnings)."""
    return 0.5 + 0.5 * np.tanh(0.5 * z)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean, unit-ish smooth noise: a coarse random grid upsampled bicubically."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    img = Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float32)


def _blur(a: np.ndarray) -> np.ndarray:
    """A small separable [1, 2, 1] / 4 blur twice (σ ≈ 1 px): softens edges like a PSF."""
    for _ in range(2):
        p = np.pad(a, 1, mode="edge")
        a = (p[:-2, 1:-1] + 2 * p[1:-1, 1:-1] + p[2:, 1:-1]) * 0.25
        p = np.pad(a, 1, mode="edge")
        a = (p[1:-1, :-2] + 2 * p[1:-1, 1:-1] + p[1:-1, 2:]) * 0.25
    return a


@lru_cache(maxsize=4)
def _mark_mask(size: int) -> np.ndarray:
    """The constant ``SYNTHETIC`` stamp for the top-left corner, as a 0–1 mask."""
    img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(img)
    try:
        font = ImageFont.load_default(size=max(8, size // 28))
    except (TypeError, OSError):  # Pillow without FreeType: the bitmap default font
        font = ImageFont.load_default()
    margin = max(2, size // 85)
    draw.text((margin, margin), SYNTHETIC_MARK, fill=255, font=font)
    mask = np.asarray(img, dtype=np.float32) / 255.0
    mask.setflags(write=False)
    return mask


def _stamp(image: np.ndarray) -> np.ndarray:
    """Blend the SYNTHETIC mark into a 0–1 image (constant light gray text)."""
    mask = _mark_mask(image.shape[0])
    return image * (1 - mask) + 0.85 * mask


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def _splat_curve(size: int, xs: np.ndarray, ys: np.ndarray, weight: float) -> np.ndarray:
    """A thin bright curve (devices): points added into an empty image, then blurred."""
    canvas = np.zeros((size, size), dtype=np.float32)
    ix = np.clip((xs * size).astype(int), 0, size - 1)
    iy = np.clip((ys * size).astype(int), 0, size - 1)
    np.add.at(canvas, (iy, ix), weight)
    return np.minimum(_blur(canvas) * 2.0, 1.0)


def _side_signs(side: str) -> tuple[float, ...]:
    """Image-x direction(s) of a patient side: the patient's right is on the image left
    (radiological convention, PA and AP views)."""
    return {"right": (-1.0,), "left": (1.0,), "bilateral": (-1.0, 1.0)}[side]


def _resolve(
    rng: np.random.Generator,
    strength: Mapping[str, float],
    laterality: Mapping[str, str] | None,
    zones: Mapping[str, str] | None,
) -> tuple[dict[str, str], str]:
    """Sides of the lateralised findings and the opacity zone (random where not given)."""
    laterality = dict(laterality or {})
    defaults = {
        "Pleural Effusion": ("right", "left", "bilateral"),
        "Lung Opacity": ("right", "left", "bilateral"),
        "Atelectasis": ("right", "left", "bilateral"),
        "Pneumothorax": ("right", "left"),
        "Lung Lesion": ("right", "left"),
    }
    sides = {}
    for name, options in defaults.items():
        if strength.get(name, 0.0) > 0:
            side = laterality.get(name) or options[rng.integers(len(options))]
            if side not in options:
                raise ValueError(f"laterality of {name} must be one of {options}, got {side!r}")
            sides[name] = side
    zone = (zones or {}).get("Lung Opacity") or _ZONES[rng.integers(3)]
    if zone not in _ZONES:
        raise ValueError(f"opacity zone must be one of {_ZONES}, got {zone!r}")
    return sides, zone


def _strengths(findings: Mapping[str, float]) -> dict[str, float]:
    out = {}
    for name, value in findings.items():
        v = float(value) if value is not None else 0.0
        out[name] = 0.0 if not np.isfinite(v) else float(np.clip(v, 0.0, 1.0))
    return out


def render_phantom(
    findings: Mapping[str, float],
    rng: np.random.Generator,
    size: int = 256,
    laterality: Mapping[str, str] | None = None,
    *,
    zones: Mapping[str, str] | None = None,
    view: str = "PA",
    device: str | None = None,
) -> np.ndarray:
    """A synthetic chest radiograph (uint8, ``(size, size)``) whose signs match ``findings``.

    The phantom is an additive density model: body soft tissue, two air-filled lung fields
    with vessel markings fanning from the hila, mediastinum and heart, spine, clavicles,
    rib hints, diaphragm domes and a gastric bubble; then exposure, smooth and fine noise
    and a small blur. Position, size and contrast vary per image (all from ``rng``), so no
    two images are identical. The anatomy is drawn from ``rng`` *before* anything that
    depends on the findings, so the same seed with and without a finding gives the same
    patient with and without the sign (what the pixel tests compare).

    Signs (patient right = image left):

    - Cardiomegaly: heart shadow wider, cardiothoracic ratio 0.55–0.63 (normal ≈ 0.42);
    - Pleural Effusion: fluid density at the lung base with a meniscus rising laterally,
      blunting the costophrenic angle and hiding the diaphragm contour;
    - Lung Opacity: patchy, mottled densities in a lung zone (lower/upper/middle);
    - Atelectasis: a band-like linear density above the diaphragm, hemidiaphragm raised
      (volume loss);
    - Pneumothorax: a lucent rim without lung markings at the apex and lateral chest wall,
      bounded by a thin bright visceral pleural line;
    - optional: Edema (perihilar haze), Lung Lesion (a nodule), ``device`` ("line",
      "tube" or "pacemaker").

    Args:
        findings: finding name → strength in [0, 1] (0 or missing: absent; 0.45 / 0.7 / 1.0
            are the mild / moderate / severe grades used by the generator).
        rng: the image's generator.
        laterality: finding → ``"left"``, ``"right"`` or ``"bilateral"``; random if absent.
        zones: ``{"Lung Opacity": "lower" | "upper" | "middle"}``; random if absent.
        view: ``"PA"``, ``"AP"`` (portable: magnified heart, higher diaphragm) or
            ``"LATERAL"``/``"LL"`` (a simpler side-view phantom).
        device: support device to draw, if any.
    """
    view = (view or "PA").upper()
    if view in ("LATERAL", "LL"):
        return _render_lateral(findings, rng, size, laterality)
    x_grid, y_grid = _grid(size)
    ap = view == "AP"

    # ---- anatomy: a fixed number of draws, independent of the findings -----------------
    a = rng.standard_normal(14)
    cx = 0.5 + 0.012 * a[0]
    half_w = 0.355 + 0.013 * a[1]
    apex = 0.15 + 0.012 * a[2]
    base = 0.80 + 0.016 * a[3] - (0.035 if ap else 0.0)
    dome = 0.075 + 0.01 * a[4]
    ctr_normal = float(np.clip(0.415 + 0.022 * a[5], 0.36, 0.46))
    heart_dy = 0.01 * a[6]
    med_w = 0.052 + 0.004 * a[7]
    gain, offset, gamma = 1.0 + 0.05 * a[8], 0.025 * a[9], float(np.exp(0.08 * a[10]))
    hilum_dy = 0.012 * a[11]
    rib_shift = 0.01 * a[12]
    bubble_on = a[13] > -0.4
    low_noise = _smooth_noise(rng, size, 6)
    mid_noise = _smooth_noise(rng, size, 22)
    grain = rng.standard_normal((size, size), dtype=np.float32)
    vessel_tex = rng.random((2, 2, 200)).astype(np.float32)
    vessel_phase = rng.uniform(0, 2 * np.pi, size=(2, 2))

    # ---- findings: sides, zones, then each finding's own draws -------------------------
    st = _strengths(findings)
    sides, zone = _resolve(rng, st, laterality, zones)
    cardio, eff, ptx = st.get(CARDIO, 0.0), st.get(EFF, 0.0), st.get(PTX, 0.0)
    opac, atel = st.get(OPAC, 0.0), st.get(ATEL, 0.0)
    edema, lesion = st.get("Edema", 0.0), st.get("Lung Lesion", 0.0)

    ctr = 0.53 + 0.1 * cardio if cardio > 0 else ctr_normal
    ctr += 0.025 if ap else 0.0
    heart_w = ctr * 2 * half_w
    atel_signs = _side_signs(sides[ATEL]) if atel > 0 else ()
    raise_by = {s: (0.015 + 0.02 * atel) if s in atel_signs else 0.0 for s in (-1.0, 1.0)}
    # patient right hemidiaphragm (image left) sits higher
    base_s = {-1.0: base - 0.025 - raise_by[-1.0], 1.0: base - raise_by[1.0]}

    x, y = x_grid, y_grid
    dx = x - cx
    adx = np.abs(dx)
    px = 1.0 / size  # one pixel, in image units

    # ---- geometry -------------------------------------------------------------------
    # Body: torso with shoulders/arms at the top, thinner (darker) towards its edges.
    shoulder = np.clip((y - 0.0) / 0.16, 0, 1)
    torso_w = 0.09 + (half_w + 0.085 - 0.09) * (3 * shoulder**2 - 2 * shoulder**3)
    torso_w = torso_w + 0.07 * np.exp(-(((y - 0.17) / 0.1) ** 2))
    body = _soft((torso_w - adx) / (1.5 * px))
    thick = np.sqrt(np.clip(1 - (dx / (torso_w + 1e-3)) ** 2, 0, 1))

    # Diaphragm: one dome per hemithorax, the costophrenic angles laterally.
    dome_y = np.where(
        dx < 0,
        base_s[-1.0] - dome * np.clip(1 - ((dx + 0.5 * half_w) / (0.6 * half_w)) ** 2, 0, 1),
        base_s[1.0] - dome * np.clip(1 - ((dx - 0.5 * half_w) / (0.6 * half_w)) ** 2, 0, 1),
    )
    below_dome = _soft((y - dome_y) / px)

    # Heart and mediastinum.
    hx = cx + 0.16 * heart_w
    hy = base - 0.10 + heart_dy
    heart_r = np.sqrt(((x - hx) / (heart_w / 2)) ** 2 + ((y - hy) / 0.16) ** 2)
    heart = _soft((1 - heart_r) / (2.5 * px / (heart_w / 2)))
    heart_top = hy - 0.16
    knob = _soft((0.034 - np.hypot(x - (cx + 0.065), y - (heart_top - 0.015))) / px)
    mediastinum = _soft((med_w - adx) / px) * (y < heart_top + 0.02)

    # Lungs: asymmetric ellipses (rounded apex, widest at the base), cut by the domes,
    # the mediastinum and the heart.
    rho = {}
    lungs = {}
    for s in (-1.0, 1.0):
        ex = cx + s * 0.45 * half_w
        ey = base_s[s] - 0.02
        lat = (x - ex) * s
        ax = np.where(lat > 0, 0.62 * half_w, 0.45 * half_w)
        by = np.where(y < ey, ey - apex, 0.15)
        r = np.sqrt(((x - ex) / ax) ** 2 + ((y - ey) / by) ** 2)
        rho[s] = r
        field = _soft((1 - r) / (1.2 * px / (0.5 * half_w)))
        field = field * (1 - below_dome) * (dx * s > 0) * _soft((adx - med_w) / px)
        lungs[s] = field * (1 - heart) * (1 - knob)
    lung = lungs[-1.0] + lungs[1.0]

    # Vessel markings: streaks fanning out of each hilum, fading to the periphery.
    vessels = np.zeros_like(x)
    for i, s in enumerate((-1.0, 1.0)):
        hlx, hly = cx + s * 0.11, 0.46 + hilum_dy + (0.015 if s > 0 else 0.0)
        ddx, ddy = (x - hlx) * s, y - hly
        rr = np.hypot(ddx, ddy)
        th = np.arctan2(ddy, ddx)
        streak = np.zeros_like(x)
        for level, (bins, lo) in enumerate(((60, 0.0), (140, 0.12))):
            wig = th + 0.06 * np.sin(rr * 30 + vessel_phase[i, level])
            idx = ((wig + np.pi) / (2 * np.pi) * bins).astype(np.int64) % bins
            t = vessel_tex[i, level, :bins][idx]
            streak += np.clip((t - 0.72) / 0.28, 0, 1) * (rr > lo)
        vessels += streak * np.exp(-rr / 0.2) * np.clip(rr / 0.03, 0, 1)
        vessels += 0.8 * np.exp(-((rr / 0.035) ** 2))  # hilum

    # ---- pathology -------------------------------------------------------------------
    extra = np.zeros_like(x)  # added density
    marking_keep = np.ones_like(x)

    if eff > 0:
        for s in _side_signs(sides[EFF]):
            level = base_s[s] - (0.035 + 0.17 * eff) + 0.008 * rng.standard_normal()
            lateral = np.clip((adx - 0.15 * half_w) / (0.9 * half_w), 0, 1)
            meniscus = level + (0.05 + 0.03 * eff) * (1 - lateral) ** 1.5
            fluid = _soft((y - meniscus) / (4 * px)) * (dx * s > 0)
            hemithorax = _soft((1 - rho[s]) / 0.03) * _soft((adx - med_w) / px)
            extra += 0.31 * fluid * lungs[s] + 0.08 * fluid * hemithorax * below_dome
            marking_keep *= 1 - 0.8 * fluid * lungs[s]

    if opac > 0:
        zone_y = {"lower": None, "upper": apex + 0.11, "middle": (apex + base) / 2 + 0.03}
        for s in _side_signs(sides[OPAC]):
            yc = zone_y[zone] if zone_y[zone] is not None else base_s[s] - 0.09
            xc = cx + s * half_w * (0.58 + 0.08 * rng.standard_normal())
            n_blobs = 5 + round(4 * opac)
            centers = rng.normal(0, 0.045, size=(n_blobs, 2)) + np.array([xc, yc])
            radii = rng.uniform(0.02, 0.05, size=n_blobs) * (0.8 + 0.5 * opac)
            cloud = np.zeros_like(x)
            for (bx, by_), rad in zip(centers, radii):
                cloud += np.exp(-((x - bx) ** 2 + (y - by_) ** 2) / rad**2)
            patch = np.clip(cloud, 0, 1.2) * (0.55 + 0.9 * np.maximum(mid_noise, 0))
            extra += (0.12 + 0.16 * opac) * np.clip(patch, 0, 1) * lungs[s]

    if atel > 0:
        for s in atel_signs:
            bx = cx + s * half_w * (0.5 + 0.08 * rng.standard_normal())
            by_ = base_s[s] - 0.05 - 0.03 * rng.random()
            angle = s * rng.uniform(-0.25, 0.15)
            half_len = 0.06 + 0.04 * atel
            sigma = 0.006 + 0.004 * atel
            ca, sa = np.cos(angle), np.sin(angle)
            along = (x - bx) * ca + (y - by_) * sa
            perp = -(x - bx) * sa + (y - by_) * ca
            ends = np.exp(-((along / half_len) ** 6))
            band = np.exp(-((perp / sigma) ** 2)) * ends
            haze = np.exp(-((perp / (4 * sigma)) ** 2)) * ends
            extra += ((0.17 + 0.1 * atel) * band + 0.04 * haze) * lungs[s]

    if ptx > 0:
        for s in _side_signs(sides[PTX]):
            gap = 0.10 + 0.22 * ptx
            height = np.clip((y - apex) / (base_s[s] - apex), 0, 1)
            lateral = np.clip(
                ((x - (cx + s * 0.45 * half_w)) * s) / (0.62 * half_w) * 1.5 + 0.6, 0, 1
            )
            weight = np.clip(1.3 - 1.5 * height, 0, 1) * np.maximum(
                lateral, np.clip(1 - 3 * height, 0, 1)
            )
            edge = 1 - gap * weight
            air = lungs[s] * _soft((rho[s] - edge) / 0.01) * (weight > 0.05)
            line = np.exp(-(((rho[s] - edge) / 0.012) ** 2)) * lungs[s] * np.clip(4 * weight, 0, 1)
            marking_keep *= 1 - air
            extra += -0.06 * air + 0.03 * lungs[s] * (1 - air) * weight + 0.17 * line

    if edema > 0:
        for s in (-1.0, 1.0):
            hr_ = np.hypot(x - (cx + s * 0.12), y - 0.47)
            haze = np.exp(-((hr_ / 0.14) ** 2)) * (0.7 + 0.3 * mid_noise)
            extra += 0.12 * edema * np.clip(haze, 0, 1) * lungs[s]

    if lesion > 0:
        s = _side_signs(sides["Lung Lesion"])[0]
        nx = cx + s * half_w * rng.uniform(0.45, 0.75)
        ny = apex + rng.uniform(0.08, 0.18)
        nr = 0.012 + 0.008 * lesion
        extra += 0.22 * _soft((nr - np.hypot(x - nx, y - ny)) / (1.5 * px)) * lung

    if device:
        t = np.linspace(0, 1, 4 * size)
        if device == "line":  # right IJ catheter down to the SVC
            xs = cx - 0.16 + 0.13 * np.sin(t * np.pi / 2) + 0.01 * t
            ys = 0.02 + (heart_top - 0.05) * t
            extra += 0.25 * _splat_curve(size, xs, ys, 0.5)
        elif device == "tube":  # endotracheal tube walls in the trachea
            ys = 0.0 + (heart_top - 0.12) * t
            for off in (-0.008, 0.008):
                extra += 0.2 * _splat_curve(size, cx + off + 0 * t, ys, 0.5)
        elif device == "pacemaker":  # generator in the left upper chest, leads to the heart
            gx, gy = cx + 0.75 * half_w, apex + 0.06
            extra += 0.5 * _soft(
                (1 - np.maximum(np.abs(x - gx) / 0.035, np.abs(y - gy) / 0.022)) / 0.1
            )
            for end in ((cx - 0.02, hy - 0.08), (cx + 0.05, hy + 0.04)):
                xs = gx + (end[0] - gx) * t
                ys = gy + (end[1] - gy) * t + 0.05 * np.sin(np.pi * t)
                extra += 0.3 * _splat_curve(size, xs, ys, 0.6)
        else:
            raise ValueError(f"device must be one of {_DEVICES[1:]}, got {device!r}")

    # ---- bones -----------------------------------------------------------------------
    thorax = _soft((1.04 - np.minimum(rho[-1.0], rho[1.0])) / 0.02)
    t_lat = np.clip(adx / half_w, 0, 1.2)
    period = (base - apex) / 8.5
    phase = (y - apex - 0.015 - rib_shift - 0.09 * t_lat**1.5 + 0.03 * t_lat) / period
    post_ribs = np.exp(-((((phase % 1.0) - 0.5) / 0.13) ** 2))
    phase2 = (y - apex + 0.10 * t_lat - 0.02 - rib_shift) / period
    ant_ribs = np.exp(-((((phase2 % 1.0) - 0.5) / 0.1) ** 2))
    ribs = (0.075 * post_ribs + 0.03 * ant_ribs) * thorax * (t_lat > 0.12) * (y > apex - 0.03)
    clav_y = apex + 0.025 - 0.045 * t_lat + 0.05 * (t_lat - 0.55) ** 2
    clavicle = _soft((0.011 - np.abs(y - clav_y)) / px) * (t_lat > 0.05) * (t_lat < 1.15)
    spine_mod = 0.75 + 0.25 * np.cos(2 * np.pi * (y - apex) / 0.055)
    spine = _soft((0.036 - adx) / px) * spine_mod
    humerus = sum(
        _soft((0.065 - np.hypot(x - (cx + s * (half_w + 0.12)), y - 0.15)) / (2 * px))
        for s in (-1.0, 1.0)
    )
    trachea = _soft((0.016 - adx) / px) * (y < heart_top - 0.03)
    bubble = 0.0
    if bubble_on:
        gbx, gby = cx + 0.52 * half_w, base_s[1.0] + 0.04
        bubble = _soft((1 - np.hypot((x - gbx) / 0.035, (y - gby) / 0.022)) / 0.15)

    # ---- compose ---------------------------------------------------------------------
    height = np.clip((y - apex) / (base - apex), 0, 1)
    density = body * (0.50 + 0.12 * thick)
    density += 0.06 * heart * body + 0.05 * mediastinum + 0.04 * knob
    density += 0.08 * spine * body
    density -= 0.34 * lung * (1.0 - 0.22 * height)
    density += 0.09 * vessels * lung * marking_keep
    density += ribs + 0.16 * clavicle + 0.14 * humerus * body
    density -= 0.10 * trachea * body + 0.15 * bubble
    density += extra * body
    density += 0.025 * low_noise * body
    image = np.clip(gain * density + offset, 0, 1) ** gamma
    image = _blur(image) + 0.012 * grain
    return _to_uint8(_stamp(np.clip(image, 0, 1)))


def _render_lateral(
    findings: Mapping[str, float],
    rng: np.random.Generator,
    size: int,
    laterality: Mapping[str, str] | None,
) -> np.ndarray:
    """A simpler side-view phantom (patient facing image left): one lung field, heart
    anteriorly, spine posteriorly, diaphragm; effusion fills the posterior sulcus,
    cardiomegaly enlarges the heart, opacity adds patchy density."""
    x, y = _grid(size)
    px = 1.0 / size
    a = rng.standard_normal(8)
    cx, cy = 0.5 + 0.015 * a[0], 0.52 + 0.015 * a[1]
    base = 0.80 + 0.02 * a[2]
    gain, offset, gamma = 1.0 + 0.05 * a[3], 0.025 * a[4], float(np.exp(0.08 * a[5]))
    heart_shift = 0.01 * a[6]
    low_noise = _smooth_noise(rng, size, 6)
    mid_noise = _smooth_noise(rng, size, 22)
    grain = rng.standard_normal((size, size), dtype=np.float32)

    st = _strengths(findings)
    cardio, eff, opac = st.get(CARDIO, 0.0), st.get(EFF, 0.0), st.get(OPAC, 0.0)

    body = _soft((1 - np.hypot((x - cx) / 0.36, (y - cy - 0.1) / 0.62)) / 0.01)
    thick = np.sqrt(np.clip(1 - ((x - cx) / 0.36) ** 2, 0, 1))
    dome_y = base - 0.09 * np.clip(1 - ((x - cx + 0.02) / 0.3) ** 2, 0, 1)
    below = _soft((y - dome_y) / px)
    lung_r = np.hypot((x - cx) / 0.27, (y - base + 0.02) / np.where(y < base, 0.6, 0.1))
    lung = _soft((1 - lung_r) / 0.02) * (1 - below)
    hw = 0.13 + 0.06 * cardio
    heart = _soft(
        (
            1
            - np.hypot(
                (x - (cx - 0.1 + heart_shift + 0.5 * (hw - 0.13))) / hw, (y - (base - 0.12)) / 0.15
            )
        )
        / 0.03
    )
    lung = lung * (1 - heart)
    spine_x = cx + 0.24
    vertebra = 0.6 + 0.4 * (np.cos(2 * np.pi * (y - 0.1) / 0.06) > -0.6)
    spine = _soft((0.045 - np.abs(x - spine_x)) / px) * vertebra
    sternum = _soft((0.012 - np.abs(x - (cx - 0.27 + 0.05 * (y - 0.5)))) / px) * (y > 0.3)
    arms = np.exp(-(((y - 0.2) / 0.12) ** 2)) * np.exp(-(((x - cx) / 0.2) ** 2))

    extra = np.zeros_like(x)
    if eff > 0:  # fluid in the posterior costophrenic sulcus (image right), meniscus
        level = base - 0.04 - 0.15 * eff + 0.008 * rng.standard_normal()
        meniscus = level + (0.06 + 0.03 * eff) * np.clip((spine_x - x) / 0.4, 0, 1)
        fluid = _soft((y - meniscus) / (4 * px)) * (x > cx - 0.05)
        extra += 0.3 * fluid * lung
    if opac > 0:
        yc = base - 0.12 + 0.1 * rng.standard_normal()
        centers = rng.normal(0, 0.05, size=(6, 2)) + np.array([cx + 0.05, yc])
        cloud = sum(np.exp(-((x - bx) ** 2 + (y - by_) ** 2) / 0.04**2) for bx, by_ in centers)
        extra += (
            (0.1 + 0.12 * opac)
            * np.clip(cloud, 0, 1)
            * (0.55 + 0.9 * np.maximum(mid_noise, 0)).clip(0, 1)
            * lung
        )

    density = body * (0.5 + 0.14 * thick) + 0.12 * arms * body
    density -= 0.28 * lung
    density += 0.06 * heart * body + 0.12 * spine * body + 0.1 * sternum * body
    density += extra * body + 0.025 * low_noise * body
    image = np.clip(gain * density + offset, 0, 1) ** gamma
    image = _blur(image) + 0.012 * grain
    return _to_uint8(_stamp(np.clip(image, 0, 1)))


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------
def _study_dir(root: Path, subject_id: int, study_id: int) -> Path:
    s = str(subject_id)
    return root / "files" / f"p{s[:2]}" / f"p{s}" / f"s{study_id}"


def _write_csv_gz(df: pd.DataFrame, path: Path) -> None:
    """Gzipped CSV with a fixed gzip timestamp, so the same seed gives identical bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False, compression={"method": "gzip", "mtime": 0})


def _readme(n_studies: int, seed: int) -> str:
    return (
        "SYNTHETIC DATA - NOT REAL PATIENT DATA\n\n"
        "Generated by preprocessing.synthetic.generate_raw_mimic "
        f"(n_studies={n_studies}, seed={seed}).\n"
        "The files mimic the layouts of MIMIC-CXR-JPG 2.0.0 (mimic-cxr-jpg/) and\n"
        "MIMIC-IV-ED 2.2 (mimic-iv-ed/ed/) so that the MIMIC linkage code runs unchanged,\n"
        "but every subject, study, report, label, vital sign and image is generated.\n"
        "Images are numpy-rendered phantoms stamped 'SYNTHETIC'. The latent truth per study\n"
        f"is in {TRUTH_FILE}.\n"
    )


def _image_findings(arrays: Mapping[str, np.ndarray], i: int) -> dict:
    """render_phantom arguments for study ``i`` from the latent truth arrays."""
    findings = {
        name: float(_GRADE_STRENGTH[arrays["grade"][i, f]])
        for f, name in enumerate(FINDING_COLUMNS)
        if arrays["present"][i, f]
    }
    laterality = {
        name: _SIDES[arrays["side"][i, f]]
        for f, name in enumerate(FINDING_COLUMNS)
        if arrays["side"][i, f]
    }
    if arrays["edema"][i]:
        findings["Edema"] = 0.7
    if arrays["lesion"][i]:
        findings["Lung Lesion"] = 0.7
        laterality["Lung Lesion"] = _SIDES[arrays["lesion"][i]]
    return {
        "findings": findings,
        "laterality": laterality,
        "zones": {"Lung Opacity": _ZONES[arrays["zone"][i]]},
        "device": _DEVICES[arrays["device"][i]] or None,
    }


def generate_raw_mimic(
    out: Path,
    n_studies: int = 2000,
    seed: int = 0,
    with_images: bool = True,
    progress: Callable[[int], None] | None = None,
    *,
    image_size: int = 256,
) -> SyntheticRoots:
    """Write a SYNTHETIC MIMIC-CXR-JPG + MIMIC-IV-ED pair of trees under ``out``.

    The tables come from :func:`generate_tables` with MIMIC's ratios of subjects, images
    and ED stays to studies, so the files and the in-memory tables never disagree. Each
    image row of the metadata gets a phantom (:func:`render_phantom`) of its study's
    findings in its view; each study with a report gets ``sSTUDY.txt``.

    Args:
        out: output directory (created; existing files of the same names are replaced).
        n_studies: studies in the metadata table.
        seed: seed of everything; the same seed gives identical tables, reports and images.
        with_images: write the JPEGs (``False``: tables and reports only, much faster).
        progress: called with 1 after each image written (drives the CLI's progress bar).
        image_size: side of the square phantoms, in pixels.

    Returns:
        The cxr root (``out/mimic-cxr-jpg``) and the ed root (``out/mimic-iv-ed``).
    """
    if n_studies < 1:
        raise ValueError(f"n_studies must be >= 1, got {n_studies}")
    out = Path(out)
    ratio = {k: v / MIMIC_SIZES["n_studies"] for k, v in MIMIC_SIZES.items()}
    n_subjects = min(n_studies, max(1, round(n_studies * ratio["n_subjects"])))
    n_images = max(n_studies, round(n_studies * ratio["n_images"]))
    n_stays = max(1, round(n_studies * ratio["n_stays"]))
    cohort = _simulate(n_subjects, n_studies, n_images, n_stays, seed, image_size)
    tables = cohort.tables

    cxr_root, ed_root = out / CXR_DIR, out / ED_DIR
    out.mkdir(parents=True, exist_ok=True)
    (out / README_FILE).write_text(_readme(n_studies, seed), encoding="utf-8")
    for root in (cxr_root, ed_root):
        root.mkdir(parents=True, exist_ok=True)
        (root / README_FILE).write_text(_readme(n_studies, seed), encoding="utf-8")
    _write_csv_gz(tables["metadata"], cxr_root / "mimic-cxr-2.0.0-metadata.csv.gz")
    _write_csv_gz(tables["chexpert"], cxr_root / "mimic-cxr-2.0.0-chexpert.csv.gz")
    _write_csv_gz(tables["edstays"], ed_root / "ed" / "edstays.csv.gz")
    _write_csv_gz(tables["triage"], ed_root / "ed" / "triage.csv.gz")
    _write_csv_gz(tables["diagnosis"], ed_root / "ed" / "diagnosis.csv.gz")
    _write_csv_gz(cohort.truth, out / TRUTH_FILE)

    reports = tables["reports"]
    for subject, study, text in zip(reports["subject_id"], reports["study_id"], reports["text"]):
        directory = _study_dir(cxr_root, subject, study)
        directory.parent.mkdir(parents=True, exist_ok=True)
        directory.with_suffix(".txt").write_text(text, encoding="utf-8")

    if with_images:
        meta = tables["metadata"]
        study_index = pd.Index(cohort.truth["study_id"]).get_indexer(meta["study_id"])
        rows = zip(meta["subject_id"], meta["study_id"], meta["dicom_id"], meta["ViewPosition"])
        made: set[Path] = set()
        for row, (subject, study, dicom, view) in enumerate(rows):
            directory = _study_dir(cxr_root, subject, study)
            if directory not in made:
                directory.mkdir(parents=True, exist_ok=True)
                made.add(directory)
            rng = np.random.default_rng([seed, 0x5EED, row])
            args = _image_findings(cohort.study_arrays, study_index[row])
            pixels = render_phantom(rng=rng, size=image_size, view=view if view else "PA", **args)
            Image.fromarray(pixels, mode="L").save(
                os.fspath(directory / f"{dicom}.jpg"), format="JPEG", quality=90
            )
            if progress:
                progress(1)
    return SyntheticRoots(cxr_root=cxr_root, ed_root=ed_root)


#: Where :func:`prepare_synthetic` keeps the raw trees inside the prepared dataset.
RAW_DIR = "raw"


def prepare_synthetic(
    out: Path,
    n_studies: int = 2000,
    seed: int = 0,
    *,
    cleaning=None,
    balanced: int | None = None,
    window_hours: float = 0.0,
    image_size: int = 256,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
    overwrite: bool = True,
):
    """Generate SYNTHETIC raw MIMIC trees and prepare them with the real MIMIC linkage.

    The raw trees live in ``out/raw/`` (so the prepared dataset's image paths stay relative
    and the directory can move), and the preparation is exactly
    :func:`preprocessing.mimic.prepare_mimic`'s: the same linkage, cleaning, subset and split
    code a MIMIC user runs. ``dataset.json`` says ``"synthetic": true`` and the generator's
    settings, and the whole directory is written atomically (an interrupted run leaves
    nothing half-written).

    Args:
        out: prepared dataset directory (replaced if it exists).
        n_studies: studies generated (the linkage keeps about 80% of them: the rest are
            outside every ED stay, lateral-only, without report sections... as in MIMIC).
        seed: seed of the generator, the subset and the split.
        cleaning: :class:`preprocessing.cleaning.CleaningConfig` (default rules).
        balanced: balanced subset size (``None``: keep every linked study).
        window_hours: extend ED stays by this many hours (see ``prepare mimic``).
        image_size: side of the phantoms in pixels.
        progress: ``progress(description, total) -> update(n)`` factory (CLI progress bars).
        overwrite: replace an existing prepared dataset in ``out`` (never anything else;
            see :func:`preprocessing.outputs.check_prepared_out`).

    Returns:
        The cohort log (also in ``out/cohort_log.json``).
    """
    from preprocessing.cleaning import CleaningConfig
    from preprocessing.cohort import CohortLog
    from preprocessing.mimic import (
        MimicPrepConfig,
        prepare_from_tables,
        read_mimic_tables,
        read_reports,
    )
    from preprocessing.outputs import atomic_dir, check_prepared_out

    config = MimicPrepConfig(
        window_hours=window_hours,
        balanced=balanced,
        seed=seed,
        cleaning=cleaning or CleaningConfig(),
    )
    out = Path(out).absolute()
    inputs = list(config.cleaning.abbreviation_files)
    check_prepared_out(out, inputs, overwrite)
    with atomic_dir(out, overwrite, inputs) as tmp:
        ratio = MIMIC_SIZES["n_images"] / MIMIC_SIZES["n_studies"]
        update = (
            progress("drawing SYNTHETIC phantoms", max(n_studies, round(n_studies * ratio)))
            if progress
            else None
        )
        roots = generate_raw_mimic(
            tmp / RAW_DIR, n_studies, seed, progress=update, image_size=image_size
        )
        tables = read_mimic_tables(roots.cxr_root, roots.ed_root)
        log = CohortLog("synthetic")

        def read_linked(studies: pd.DataFrame) -> pd.Series:
            step = progress("reading reports", len(studies)) if progress else None
            return read_reports(roots.cxr_root, studies, step)

        metadata = {
            "source": "synthetic",
            "synthetic": True,
            "generator": {
                "module": __name__,
                "n_studies": n_studies,
                "seed": seed,
                "image_size": image_size,
                "raw_dir": RAW_DIR,
                "truth_file": f"{RAW_DIR}/{TRUTH_FILE}",
            },
            "cxr_root": RAW_DIR + "/" + CXR_DIR,
        }
        return prepare_from_tables(
            tmp, out, tables, config, log, read_linked, roots.cxr_root, progress, metadata
        )
