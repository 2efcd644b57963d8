"""Plain image-classification tables
(``image, label, subject_id[, report][, source][, source_split]``).

The three-class fusion model (normal / bacterial / viral, standing in for RadGen's
normal / pneumonia / TB) trains on a table of images and labels, as in
``shared/data/pneumonia_sample/labels.csv``. This module turns such a table into the
``"classification"`` kind of prepared dataset (:func:`mtl_report.data.io.write_prepared`).

Decisions, each counted in the cohort log:

- **Rows without a subject id are dropped** ("missing subject_id"), not given a made-up one.
  The split is by patient; a guessed id (say, one per image) would let two images of one
  patient land in train and test and inflate every test metric. Fill the column (for
  example with the image name) when the images are known to be independent.
- **Rows without an image path or a label are dropped.** Labels are stripped of surrounding
  whitespace; their case is kept (it is the user's class name).
- **Duplicate rows**: rows naming the same image file (after path normalisation) are one
  study. When they agree on label and subject, the first row is kept and the others are
  dropped as "duplicate row (image listed more than once)". The pneumonia sample lists 140
  images twice, once with ``source_split`` train and once val. When they disagree on label
  or subject, the ground truth is ambiguous and *all* rows of that image are dropped
  ("image listed with conflicting labels or subject ids").
- **Image files** are checked to exist and, unless ``verify=False``, size-checked from
  the header ("image too large" over 50 MP, "image too small" under 32 pixels a side)
  and decoded once (:func:`mtl_report.data.images.verify_images`).
- **Split** by patient (:func:`mtl_report.data.splits.split_by_patient`), stratified by label,
  so no subject is in two splits. With ``use_source_split=True`` the table's
  ``source_split`` is used instead, but a subject still goes whole to one split: the split
  holding most of its images (ties: train, then val, then test); images moved that way are
  counted under ``values``.

``study_id`` is the image file name without its suffix; where two different files share a
name (in different folders), their path relative to the table is used instead, so ids are
unique and stable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from mtl_report.data.cohort import CohortLog
from mtl_report.data.errors import DataError
from mtl_report.data.images import drop_masks, verify_images
from mtl_report.data.io import read_table, write_prepared
from mtl_report.data.outputs import atomic_dir, check_prepared_out
from mtl_report.data.reports import clean_section
from mtl_report.data.schema import SPLITS
from mtl_report.data.splits import DEFAULT_FRACTIONS, split_by_patient

TABLE_COLUMNS = ("image", "label", "subject_id")

#: Spellings of split names found in public tables, mapped to ours.
SPLIT_ALIASES = {"valid": "val", "validation": "val", "dev": "val", "testing": "test"}

Progress = Callable[[str, int], Callable[[int], None]]


# --------------------------------------------------------------------------------------
# Image paths (shared with mtl_report.data.iu_xray)
# --------------------------------------------------------------------------------------
def _name_variants(name: str) -> list[str]:
    return [name, os.path.basename(name)]


def resolve_image_paths(
    names: pd.Series,
    base: Path,
    images: Path | None = None,
    variants: Callable[[str], list[str]] = _name_variants,
) -> pd.Series:
    """Absolute path of each image a table names (``""`` where the name is empty).

    Without ``images`` a name is relative to ``base`` (the table's folder). With ``images``
    the first existing of ``images/<variant>`` is taken over ``variants(name)`` (by default
    the name as given, then its file name alone), so ``--images`` may point at the folder
    the table's paths start from or at the folder holding the files. Absolute names are
    kept. When nothing exists the first candidate is returned, and the image check reports
    it missing.
    """
    base = Path(base).absolute()
    root = Path(images).absolute() if images is not None else None

    def resolve(name: object) -> str:
        if not isinstance(name, str) or not name.strip():
            return ""
        name = name.strip()
        if os.path.isabs(name):
            return os.path.normpath(name)
        if root is None:
            return os.path.normpath(base / name)
        candidates = [os.path.normpath(root / v) for v in variants(name)]
        return next((c for c in candidates if os.path.isfile(c)), candidates[0])

    return names.map(resolve).astype(object)


def relative_to_out(paths: pd.Series, roots: Sequence[Path]) -> pd.Series:
    """Paths inside one of ``roots`` (the output dir, under its temporary and final name)
    made relative to it, so the dataset can move; other paths stay absolute."""
    out = paths.copy()
    for root in roots:
        prefix = str(root) + os.sep
        inside = out.str.startswith(prefix)
        out[inside] = [os.path.relpath(p, root) for p in out[inside]]
    return out


def _progress(progress: Progress | None, what: str, total: int) -> Callable[[int], None] | None:
    return progress(what, total) if progress else None


# --------------------------------------------------------------------------------------
# Table steps
# --------------------------------------------------------------------------------------
def read_image_table(csv: Path, use_source_split: bool = False) -> pd.DataFrame:
    """The table as strings, stripped, empty cells as missing (DataError naming the file)."""
    required = (*TABLE_COLUMNS, "source_split") if use_source_split else TABLE_COLUMNS
    table = read_table(csv, required, dtype=str, keep_default_na=False)
    for col in table.columns:
        table[col] = table[col].str.strip().replace("", pd.NA)
    return table


def duplicate_images(table: pd.DataFrame, key: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Masks of rows naming an image already listed: ``(conflicting, repeated)``.

    ``conflicting``: every row of an image listed with more than one label or subject.
    ``repeated``: the second and later rows of an image whose rows agree.
    """
    frame = table[["label", "subject_id"]].assign(_key=key)
    distinct = frame.groupby("_key")[["label", "subject_id"]].transform("nunique")
    conflicting = (distinct > 1).any(axis=1)
    repeated = key.duplicated(keep="first") & ~conflicting
    return conflicting, repeated


def study_ids(paths: pd.Series, base: Path) -> pd.Series:
    """File name without suffix; the path relative to ``base`` where names collide."""
    stem = paths.map(lambda p: Path(p).stem)
    clash = stem.duplicated(keep=False)
    if clash.any():
        rel = paths[clash].map(lambda p: os.path.splitext(os.path.relpath(p, base))[0])
        stem[clash] = rel.map(lambda r: re.sub(r"[^\w.-]+", "_", r).strip("_"))
    return stem


def normalise_splits(values: pd.Series, where: Path) -> pd.Series:
    """Lower-cased split names with common aliases (``valid`` → ``val``); unknown → error."""
    key = values.astype("string").str.strip().str.lower()
    key = key.replace(SPLIT_ALIASES)
    bad = sorted(set(key.dropna()) - set(SPLITS))
    if bad:
        raise DataError(f"{where}: unknown split name(s) {bad} (expected train, val, test)")
    return key.astype(object)


def whole_subject_splits(subjects: pd.Series, splits: pd.Series) -> tuple[pd.Series, int]:
    """Each subject's split: the one holding most of its rows (ties: train < val < test).

    Returns the per-row split and how many rows it moved.
    """
    order = {s: i for i, s in enumerate(SPLITS)}
    counts = (
        pd.DataFrame({"subject": subjects, "split": splits})
        .value_counts()
        .rename("n")
        .reset_index()
        .assign(rank=lambda d: d["split"].map(order))
        .sort_values(["subject", "n", "rank"], ascending=[True, False, True], kind="stable")
        .drop_duplicates("subject")
        .set_index("subject")["split"]
    )
    whole = subjects.map(counts)
    return whole, int((whole != splits).sum())


def class_counts(records: pd.DataFrame, classes: Sequence[str]) -> dict[str, dict[str, int]]:
    """``{split: {class: n}}`` for every split and class (zeros included)."""
    table = pd.crosstab(records["split"], records["label"]).reindex(
        index=list(SPLITS), columns=list(classes), fill_value=0
    )
    return {s: {c: int(table.loc[s, c]) for c in classes} for s in SPLITS}


# --------------------------------------------------------------------------------------
# The whole preparation
# --------------------------------------------------------------------------------------
def prepare_image_table(
    csv: Path,
    images: Path | None,
    out: Path,
    *,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    use_source_split: bool = False,
    verify: bool = True,
    progress: Progress | None = None,
    overwrite: bool = True,
) -> CohortLog:
    """Prepare a classification dataset from an ``image, label, subject_id`` table.

    Args:
        csv: the table; optional columns ``report`` (free text, kept as the report) and
            ``source_split`` (used only with ``use_source_split``).
        images: folder the image paths are relative to; ``None``: the table's folder.
        out: output directory (replaced atomically).
        seed: seed of the patient-level split.
        fractions: train/val/test fractions of images.
        use_source_split: take the split from ``source_split`` (subjects kept whole).
        verify: decode every image once to drop corrupt or truncated files, and drop
            images outside the size limits (:mod:`mtl_report.data.images`).
        progress: factory ``progress(description, total) -> update(n)``, or ``None``.
        overwrite: replace an existing prepared dataset in ``out`` (never anything else;
            see :func:`mtl_report.data.outputs.check_prepared_out`).

    Returns:
        The cohort log (also written to ``out/cohort_log.json``).

    Raises:
        DataError: missing table or column, unknown split name, no rows, an output that
            is or holds an input or the user's files.
    """
    csv = Path(csv).absolute()
    out = Path(out).absolute()
    inputs = [csv, images]
    check_prepared_out(out, inputs, overwrite)
    table = read_image_table(csv, use_source_split)
    if table.empty:
        raise DataError(f"{csv}: no studies (the table has a header but no rows)")
    log = CohortLog("image_table", unit="images")
    log.start(f"rows in {csv.name}", len(table))

    table = log.filter(
        "table rows",
        table,
        {
            "missing image path": table["image"].isna(),
            "empty label": table["label"].isna(),
            "missing subject_id": table["subject_id"].isna(),
        },
    )
    table = table.assign(image_path=resolve_image_paths(table["image"], csv.parent, images))
    conflicting, repeated = duplicate_images(table, table["image_path"])
    table = log.filter(
        "one row per image",
        table,
        {
            "image listed with conflicting labels or subject ids": conflicting,
            "duplicate row (image listed more than once)": repeated,
        },
    )

    if verify:
        update = _progress(progress, "verifying images", len(table))
        status = verify_images(table["image_path"], update)
    else:
        exists = table["image_path"].map(os.path.isfile)
        status = exists.map({True: "ok", False: "missing"})
    table = log.filter(
        "image files",
        table,
        drop_masks(status),
    )

    records = pd.DataFrame(
        {
            "study_id": study_ids(table["image_path"], csv.parent),
            "subject_id": table["subject_id"].astype(str),
            "image_path": table["image_path"],
            "label": table["label"].astype(str),
            "report": clean_section(table["report"]) if "report" in table else "",
        },
        index=table.index,
    )
    if "source" in table:  # the image source (hospital, dataset): per-source results
        records["source"] = table["source"].astype("string").fillna("").astype(object)
    if "source_split" in table:
        records["source_split"] = table["source_split"]
    records = records.sort_values("study_id", kind="stable").reset_index(drop=True)

    if records.empty:
        records["split"] = pd.Series(dtype=object)
    elif use_source_split:
        source = normalise_splits(records["source_split"], csv)
        if source.isna().any():
            raise DataError(f"{csv}: source_split is empty for {int(source.isna().sum())} row(s)")
        records["split"], moved = whole_subject_splits(records["subject_id"], source)
        log.count_values("source split", {"images_moved_to_keep_subjects_whole": moved})
    else:
        records["split"] = split_by_patient(
            records, fractions, seed=seed, stratify=records["label"]
        )

    classes = sorted(records["label"].unique())
    counts = class_counts(records, classes)
    with atomic_dir(out, overwrite, inputs) as tmp:
        records["image_path"] = relative_to_out(records["image_path"], [tmp, out])
        metadata = {
            "kind": "classification",
            "source": "image_table",
            "synthetic": False,
            "classes": classes,
            "class_counts": counts,
            "seed": seed,
            "fractions": [float(f) for f in fractions],
            "use_source_split": use_source_split,
            "csv": str(csv),
            "images": str(Path(images).absolute()) if images is not None else None,
        }
        cleaning = {
            "classes": classes,
            "train_class_counts": counts["train"],
            "fitted_on": "train",
            "n_train": int((records["split"] == "train").sum()),
        }
        log.info["classes"] = classes
        write_prepared(tmp, records, log, metadata, cleaning)
    return log
