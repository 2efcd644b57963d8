"""MIMIC-shaped SYNTHETIC data in the real PhysioNet file layouts (no real patient data).

Why this exists: MIMIC-CXR-JPG and MIMIC-IV-ED are credentialed downloads, yet the package's
linkage and cleaning code (:mod:`mtl_report.data.mimic`) should be runnable, testable and
demonstrable anywhere. This package writes files with exactly the real names, paths and
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

Modules, one concern each: :mod:`.common` (file names, constants, random helpers),
:mod:`.findings` (latent truth), :mod:`.reports` (report text and CheXpert labels),
:mod:`.ed` (the ED simulator), :mod:`.phantom` (images), :mod:`.files` (the file trees and
:func:`prepare_synthetic`) and :mod:`.classes` (the three-class RadGen set).
"""

from mtl_report.data.synthetic.common import (
    CXR_DIR,
    DIAGNOSIS_COLUMNS,
    ED_DIR,
    EDSTAYS_COLUMNS,
    FINDING_COLUMNS,
    METADATA_COLUMNS,
    MIMIC_SIZES,
    README_FILE,
    RELATIONS,
    REPORT_VARIANTS,
    SYNTHETIC_MARK,
    TRIAGE_COLUMNS,
    TRUTH_FILE,
    SyntheticRoots,
)
from mtl_report.data.synthetic.ed import generate_tables
from mtl_report.data.synthetic.files import RAW_DIR, generate_raw_mimic, prepare_synthetic
from mtl_report.data.synthetic.phantom import render_phantom

__all__ = [
    "CXR_DIR",
    "DIAGNOSIS_COLUMNS",
    "EDSTAYS_COLUMNS",
    "ED_DIR",
    "FINDING_COLUMNS",
    "METADATA_COLUMNS",
    "MIMIC_SIZES",
    "RAW_DIR",
    "README_FILE",
    "RELATIONS",
    "REPORT_VARIANTS",
    "SYNTHETIC_MARK",
    "TRIAGE_COLUMNS",
    "TRUTH_FILE",
    "SyntheticRoots",
    "generate_raw_mimic",
    "generate_tables",
    "prepare_synthetic",
    "render_phantom",
]
