"""Names shared by every data source: vitals, CheXpert labels, findings, record columns.

The prepared-dataset format (DESIGN.md) is one row per study. Keeping the column names in one
place lets MIMIC, IU X-ray and the synthetic generator write the same table, and lets the
model code read it without knowing where it came from.
"""

from __future__ import annotations

import re

#: MIMIC-IV-ED triage vitals, in the order the model's vitals vector uses.
VITALS: tuple[str, ...] = ("o2sat", "heartrate", "resprate", "sbp", "dbp", "temperature")

#: The 14 CheXpert labels as they appear in ``mimic-cxr-2.0.0-chexpert.csv.gz``.
CHEXPERT_LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)

#: The five findings modelled by default (configurable: any CheXpert labels).
DEFAULT_FINDINGS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Pleural Effusion",
    "Pneumothorax",
    "Lung Opacity",
)

#: Categorical ED features and the bucket for anything not seen in training.
CATEGORICAL: tuple[str, ...] = ("gender", "ethnicity")
TEXT_FEATURES: tuple[str, ...] = ("chief_complaint", "icd_title")
UNKNOWN = "unknown"

SPLITS: tuple[str, ...] = ("train", "val", "test")

#: Columns every prepared ``records.parquet`` has, before the finding columns.
RECORD_COLUMNS: tuple[str, ...] = (
    "study_id",
    "subject_id",
    "image_path",
    *VITALS,
    *CATEGORICAL,
    *TEXT_FEATURES,
    "findings_text",
    "impression_text",
    "report",
    "report_rule",
    "acuity",
)


def finding_column(label: str) -> str:
    """Column name of a finding: ``"Pleural Effusion"`` → ``"pleural_effusion"``."""
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def finding_columns(labels: tuple[str, ...] | list[str] = DEFAULT_FINDINGS) -> list[str]:
    """Column names of several findings, in order."""
    return [finding_column(label) for label in labels]
