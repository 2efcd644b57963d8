"""Agreement of the findings labeler with the IU X-ray MeSH annotations, per split.

Protocol (issue 16, part 3): the phrase vocabulary is tuned on a *development* split only and
measured once on reports held aside.

* development: the R2Gen train + val studies (``r2gen_split.csv``, 2,365 reports);
* held aside: the other 896 reports of ``indiana_reports.csv`` (the R2Gen test studies, which
  ``r2gen_split.csv`` does not list). Misses on this split are never read to tune phrases.

A finding is MeSH-positive when one of its MeSH head terms is annotated (:func:`mesh_labels`);
the labeler is positive when it labels the report 1 (uncertain -1 counts as not positive).

Reproduce the table::

    python -m mtl_report.metrics.labeler_agreement [--data DIR] [--split dev|held_aside|all]
        [--mentions VOCABULARY.json] [--misses N]

It prints JSON: per split and finding, MeSH positives, labeler positives, precision, recall,
F1. ``--misses N`` also lists up to N false negatives and false positives per finding (of
the development split only, unless ``--split`` names another one on purpose).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mtl_report.metrics.labeler import label_reports

__all__ = [
    "DEV_R2GEN_SPLITS",
    "MESH_HEADS",
    "SPLITS",
    "agreement_table",
    "default_data_dir",
    "load_iu_reports",
    "mesh_frame",
    "mesh_labels",
    "split_agreement",
]

SPLITS = ("dev", "held_aside", "all")
#: R2Gen splits that form the development split; every other IU report is held aside.
DEV_R2GEN_SPLITS = ("train", "val")

# IU X-ray MeSH annotations are positive findings only ("Head/qualifier/..."): a finding is
# MeSH-positive when one of its head terms is annotated. Lung Opacity follows the labeler's
# definition (airspace opacity): Opacity terms that are round (nodules) or outside the lung
# (ribs, mediastinum, ...) are left out. "Cardiac Shadow/enlarged" counts as Cardiomegaly.
MESH_HEADS = {
    "atelectasis": {"pulmonary atelectasis", "atelectasis"},
    "cardiomegaly": {"cardiomegaly"},
    "pleural_effusion": {"pleural effusion", "hydropneumothorax", "hemothorax"},
    "pneumothorax": {"pneumothorax", "hydropneumothorax"},
    "lung_opacity": {"opacity", "airspace disease", "consolidation", "infiltrate", "pneumonia"},
}
NOT_LUNG = {
    "ribs",
    "mediastinum",
    "thoracic vertebrae",
    "adipose tissue",
    "heart",
    "supracardiac",
    "pleura",
    "pleural sinus",
}


def mesh_labels(mesh: str) -> dict[str, int]:
    """0/1 per finding column from one IU MeSH string."""
    terms = [[q.strip().lower() for q in t.split("/")] for t in str(mesh).split(";")]
    out = {}
    for col, heads in MESH_HEADS.items():
        hits = [t for t in terms if t[0] in heads]
        if col == "lung_opacity":
            hits = [
                t
                for t in hits
                if not (t[0] == "opacity" and ("round" in t or (len(t) > 1 and t[1] in NOT_LUNG)))
            ]
        out[col] = int(bool(hits))
    if any(t[0] == "cardiac shadow" and "enlarged" in t for t in terms):
        out["cardiomegaly"] = 1
    return out


def mesh_frame(mesh: pd.Series) -> pd.DataFrame:
    """:func:`mesh_labels` of every report, index 0..N-1."""
    return pd.DataFrame([mesh_labels(m) for m in mesh], columns=list(MESH_HEADS))


def agreement_table(labels: pd.DataFrame, mesh: pd.DataFrame) -> pd.DataFrame:
    """Per finding: MeSH positives, labeler positives (== 1), precision, recall, F1."""
    rows = {}
    for col in mesh.columns:
        truth = mesh[col].to_numpy().astype(bool)
        pred = labels[col].to_numpy() == 1
        tp = int((truth & pred).sum())
        p = tp / pred.sum() if pred.sum() else 0.0
        r = tp / truth.sum() if truth.sum() else 0.0
        rows[col] = {
            "mesh_pos": int(truth.sum()),
            "labeler_pos": int(pred.sum()),
            "precision": float(p),
            "recall": float(r),
            "f1": float(2 * p * r / (p + r)) if p + r else 0.0,
        }
    return pd.DataFrame(rows).T


def default_data_dir() -> Path:
    """``<MTL_REPORT_SHARED>/data/iu_xray_reports`` (default ``../shared`` beside the repo)."""
    repo = Path(__file__).resolve().parents[2]
    shared = Path(os.environ.get("MTL_REPORT_SHARED", repo.parent / "shared"))
    return shared / "data" / "iu_xray_reports"


def load_iu_reports(folder: str | Path | None = None) -> pd.DataFrame:
    """IU reports with ``text`` (findings + impression) and ``split`` (dev / held_aside)."""
    folder = Path(folder) if folder else default_data_dir()
    reports = pd.read_csv(folder / "indiana_reports.csv")
    reports["text"] = (
        reports["findings"].fillna("") + " " + reports["impression"].fillna("")
    ).str.strip()
    r2gen = pd.read_csv(folder / "r2gen_split.csv").rename(columns={"split": "r2gen_split"})
    reports = reports.merge(r2gen, on="uid", how="left")
    dev = reports["r2gen_split"].isin(DEV_R2GEN_SPLITS)
    reports["split"] = np.where(dev, "dev", "held_aside")
    return reports


def split_agreement(
    reports: pd.DataFrame, split: str = "dev", mentions_path: str | Path | None = None
) -> pd.DataFrame:
    """:func:`agreement_table` of the labeler on one split (``dev``/``held_aside``/``all``)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    part = reports if split == "all" else reports[reports["split"] == split]
    part = part.reset_index(drop=True)
    labels = label_reports(part["text"].tolist(), mentions_path=mentions_path, batch_size=512)
    return agreement_table(labels, mesh_frame(part["MeSH"]))


def _misses(
    part: pd.DataFrame, n: int, mentions_path: str | Path | None
) -> dict[str, dict[str, list[str]]]:
    part = part.reset_index(drop=True)
    labels = label_reports(part["text"].tolist(), mentions_path=mentions_path, batch_size=512)
    mesh = mesh_frame(part["MeSH"])
    out = {}
    for col in mesh.columns:
        pos = labels[col].to_numpy() == 1
        truth = mesh[col].to_numpy() == 1
        out[col] = {
            kind: [
                f"[{part.loc[i, 'uid']}] label={labels.loc[i, col]} MeSH={part.loc[i, 'MeSH']} | "
                + part.loc[i, "text"]
                for i in np.flatnonzero(mask)[:n]
            ]
            for kind, mask in (("false_negative", truth & ~pos), ("false_positive", pos & ~truth))
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="iu_xray_reports folder")
    parser.add_argument("--split", choices=[*SPLITS, "both"], default="both")
    parser.add_argument("--misses", type=int, default=0, help="list N misses per finding")
    parser.add_argument("--mentions", default=None, help="another vocabulary JSON")
    args = parser.parse_args(argv)
    reports = load_iu_reports(args.data)
    splits = ["dev", "held_aside"] if args.split == "both" else [args.split]
    result: dict[str, object] = {}
    for split in splits:
        table = split_agreement(reports, split, args.mentions)
        n = int((reports["split"] == split).sum()) if split != "all" else len(reports)
        result[split] = {"reports": n, **table.round(3).to_dict(orient="index")}
    if args.misses:
        split = "dev" if args.split == "both" else args.split
        part = reports if split == "all" else reports[reports["split"] == split]
        result["misses"] = {split: _misses(part, args.misses, args.mentions)}
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
