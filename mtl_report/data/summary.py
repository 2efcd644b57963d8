"""Printable summary of a prepared dataset: cohort funnel, split sizes, label prevalence."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mtl_report.data.io import load_prepared
from mtl_report.data.schema import SPLITS

SYNTHETIC_BANNER = "*** SYNTHETIC DATA: generated phantoms and reports, not patients ***"


def dataset_summary(root: Path) -> str:
    """Multi-line text describing the dataset at ``root`` (what ``prepare`` prints)."""
    ds = load_prepared(root)
    rec = ds.records
    lines = []
    if ds.metadata.get("synthetic"):
        lines.append(SYNTHETIC_BANNER)
    lines.append(f"Prepared dataset: {Path(root)}  ({ds.metadata.get('source', '?')}, {ds.kind})")
    lines.append(ds.cohort.summary())
    sizes = {s: int((rec["split"] == s).sum()) for s in SPLITS}
    lines.append("Splits (by patient): " + ", ".join(f"{s} {n:,}" for s, n in sizes.items()))
    lines.append(f"Subjects: {rec['subject_id'].nunique():,}  Studies: {len(rec):,}")
    if ds.kind == "classification":
        table = pd.crosstab(rec["label"], rec["split"]).reindex(columns=list(SPLITS), fill_value=0)
        lines.append("Classes per split:\n" + table.to_string())
    else:
        cols = ds.finding_columns
        if cols:
            prev = rec.groupby("split")[cols].mean().reindex(list(SPLITS)).T
            lines.append(
                "Finding prevalence per split (labelled studies):\n" + prev.round(3).to_string()
            )
        if rec["acuity"].notna().any():
            acuity = pd.crosstab(rec["acuity"], rec["split"]).reindex(
                columns=list(SPLITS), fill_value=0
            )
            lines.append("Acuity (1 = most urgent) per split:\n" + acuity.to_string())
    if ds.metadata.get("synthetic"):
        lines.append(SYNTHETIC_BANNER)
    return "\n".join(lines)
