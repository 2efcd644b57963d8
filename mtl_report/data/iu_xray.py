"""IU X-ray (Indiana University Chest X-ray Collection, Open-i) → the prepared-dataset format.

Three input layouts, told apart by the file given (:func:`detect_layout`):

``csv``
    The table of ``shared/data/iu_xray_sample/train.csv``: ``study_id, image, indication,
    comparison, findings, impression, labels, split``; ``image`` is the frontal image,
    relative to the CSV's folder (or to ``images``); ``labels`` holds ``;``-joined MeSH head
    terms. Its ``split`` column is the sample builder's bookkeeping (every row ``train``), not
    a benchmark split, so it is kept as ``source_split`` and not used.
``kaggle``
    Kaggle's ``indiana_reports.csv`` (``uid, MeSH, Problems, image, indication, comparison,
    findings, impression``) with ``indiana_projections.csv`` (``uid, filename,
    projection``; found beside the reports when not given) and an image folder (default:
    ``images/images_normalized`` or ``images`` beside the reports). An image name is also
    looked up with ``.png`` or ``.jpg`` in place of ``.dcm.png``, so resized copies work.
    R2Gen's ``r2gen_split.csv`` (``uid, split``; found beside the reports when not given) fixes
    the split of the studies it lists.
``r2gen``
    R2Gen's ``annotation.json`` (``{"train": [{"id", "report", "image_path": [...],
    "split"}], "val": [...], "test": [...]}``) with its ``images/`` root (default: beside the
    file). The file's split is used. The first listed image is taken as the frontal one
    (R2Gen's convention; the file has no projection). The file has no labels, so the finding
    columns are left **missing** (masked by the losses) for this layout; its report is one
    text, kept whole with ``report_rule`` ``"report"``.

Per study: ``study_id`` is ``iu_<uid>`` (``iu_<n>`` for R2Gen's ``CXR<n>_...``), and
``subject_id`` the uid: IU X-ray has one study per patient, so splitting by patient is
splitting by study. ``report`` is FINDINGS then IMPRESSION (whitespace collapsed, the source's
``XXXX`` de-identification masks kept); ``report_rule`` says which were present; studies with
neither are dropped. ``chief_complaint`` is the normalised INDICATION, the closest IU has to a
complaint; vitals, acuity, gender, ethnicity and ICD title do not exist in IU and stay
missing / ``unknown``.

Findings come from the MeSH annotations (``Problems`` where MeSH is empty or only
``normal``) through the rules of ``mtl_report/data/resources/iu_findings_map.tsv`` (see that file
for the rule syntax and every mapping decision): ``normal`` gives all findings 0; otherwise a
configured finding is 1 when a rule for it matches a term, else 0; ``No Indexing`` or no
annotation at all leaves the findings missing.

Split: ``split_all`` puts every study in one split. Otherwise a study listed in the layout's
split file (R2Gen) keeps that split, and the others are split by patient, stratified by
abnormal/normal. The R2Gen split file of the shared data lists only train and val; its test
studies are not identified by it, so studies it does not list are *not* assumed to be test:
they are split by patient into whatever each split lacks of its share of the whole
(:func:`fractions_for_rest`), so the dataset ends near 70/20/10 with R2Gen's train and val
studies where R2Gen put them. The counts are in the cohort log's ``info``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mtl_report.data.assemble import clean_features, finalise_records, with_record_columns
from mtl_report.data.cleaning import CleaningConfig
from mtl_report.data.cohort import CohortLog
from mtl_report.data.errors import DataError
from mtl_report.data.image_table import (
    normalise_splits,
    relative_to_out,
    resolve_image_paths,
)
from mtl_report.data.images import drop_masks, verify_images
from mtl_report.data.io import read_table, write_prepared
from mtl_report.data.outputs import atomic_dir, check_prepared_out
from mtl_report.data.reports import clean_section
from mtl_report.data.schema import (
    CHEXPERT_LABELS,
    VITALS,
    finding_column,
    finding_columns,
)

FINDINGS_MAP_FILE = Path(__file__).parent / "resources" / "iu_findings_map.tsv"

CSV_COLUMNS = ("study_id", "image", "findings", "impression")
KAGGLE_COLUMNS = ("uid", "MeSH", "findings", "impression")
PROJECTION_COLUMNS = ("uid", "filename", "projection")
SPLIT_COLUMNS = ("uid", "split")

PROJECTIONS_FILE = "indiana_projections.csv"
R2GEN_SPLIT_FILE = "r2gen_split.csv"

NORMAL, NOT_INDEXED = "normal", "no indexing"
#: CheXpert labels that are pathologies: "No Finding" is 1 when none of them is present.
PATHOLOGIES = tuple(c for c in CHEXPERT_LABELS if c not in ("No Finding", "Support Devices"))

#: Where each layout's finding labels come from (dataset.json ``findings_from``).
FINDINGS_FROM = {
    "csv": "labels column (MeSH head terms)",
    "kaggle": "MeSH (Problems where MeSH is empty or normal)",
    "r2gen": None,
}

NO_TEXT = "no FINDINGS or IMPRESSION text"
NO_FRONTAL = "no frontal image listed"

Progress = Callable[[str, int], Callable[[int], None]]


# --------------------------------------------------------------------------------------
# MeSH → findings
# --------------------------------------------------------------------------------------
def _normalise_terms(terms: pd.Series) -> pd.Series:
    return terms.astype("string").str.lower().str.replace(r"\s+", " ", regex=True).str.strip()


def load_findings_map(path: Path = FINDINGS_MAP_FILE) -> pd.DataFrame:
    """Rules of a findings map file: columns ``head``, ``qualifiers`` (frozenset), ``finding``.

    Raises:
        DataError: missing file, a line that is not ``term<TAB>finding``, an unknown finding.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: findings map not found")
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = [p.strip() for p in line.split("\t")]
        if len(parts) != 2 or not all(parts):
            raise DataError(f"{path}:{lineno}: expected 'mesh_term<TAB>finding'")
        term, finding = parts
        if finding not in CHEXPERT_LABELS:
            raise DataError(f"{path}:{lineno}: {finding!r} is not a CheXpert label")
        head, *qualifiers = re.sub(r"\s+", " ", term.lower()).split("/")
        rows.append((head.strip(), frozenset(q.strip() for q in qualifiers), finding))
    return pd.DataFrame(rows, columns=["head", "qualifiers", "finding"])


def mesh_findings(
    terms: pd.Series, findings: Sequence[str], rules: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, int]]:
    """0/1/NaN finding columns from ``;``-joined MeSH annotations (any index).

    A study is unlabelled (NaN) when it has no annotation or only ``No Indexing``; normal
    (all 0, No Finding 1) when its only term is ``normal``; otherwise each finding is 1 when a
    rule for it matches one of its terms (see the map file for the rule syntax). Returns the
    columns (named by :func:`finding_column`) and counts for the cohort log.
    """
    missing = sorted(set(findings) - set(rules["finding"]) - {"No Finding"})
    if missing:
        raise DataError(f"findings map has no rule for configured finding(s) {missing}")
    exploded = _normalise_terms(terms).fillna("").str.split(";").explode()
    exploded = exploded[exploded.str.strip() != ""].str.strip()
    parts = exploded.str.split("/")
    heads = parts.str[0].str.strip()
    qualifiers = parts.str[1:].map(lambda q: frozenset(x.strip() for x in q))

    positive = pd.DataFrame(False, index=terms.index, columns=list(CHEXPERT_LABELS))
    for rule in rules.itertuples(index=False):
        match = heads == rule.head
        if rule.qualifiers:
            match &= qualifiers.map(rule.qualifiers.issubset)
        hits = match[match].index.unique()
        positive.loc[hits, rule.finding] = True
    positive["No Finding"] = ~positive[list(PATHOLOGIES)].any(axis=1)

    informative = ~heads.isin([NORMAL, NOT_INDEXED])
    indexed = heads != NOT_INDEXED
    has_info = pd.Series(informative.groupby(level=0).any()).reindex(terms.index, fill_value=False)
    has_terms = pd.Series(indexed.groupby(level=0).any()).reindex(terms.index, fill_value=False)
    unlabelled = ~has_terms
    normal = has_terms & ~has_info

    out = positive[list(findings)].astype("float64")  # a normal study matches no rule: all 0
    out.loc[unlabelled] = np.nan
    out.columns = [finding_column(f) for f in findings]
    counts = {
        "normal_studies": int(normal.sum()),
        "unlabelled_studies": int(unlabelled.sum()),
        **{f"{c}_positive": int((out[c] == 1).sum()) for c in out.columns},
    }
    return out, counts


def terms_of(mesh: pd.Series, problems: pd.Series | None) -> pd.Series:
    """MeSH annotations, with Problems where MeSH is empty or only ``normal``."""
    if problems is None:
        return mesh
    key = _normalise_terms(mesh).fillna("")
    fallback = ((key == "") | (key == NORMAL)) & problems.notna() & (problems.str.strip() != "")
    return mesh.where(~fallback, problems)


# --------------------------------------------------------------------------------------
# Reading the three layouts into one table of raw studies
# --------------------------------------------------------------------------------------
def detect_layout(path: Path) -> str:
    """``"r2gen"`` for a ``.json`` file, ``"kaggle"`` or ``"csv"`` from a CSV's header."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.suffix.lower() == ".json":
        return "r2gen"
    try:
        columns = set(pd.read_csv(path, nrows=0).columns)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: cannot read as CSV ({exc})") from exc
    if "uid" in columns and ({"MeSH", "Problems"} & columns):
        return "kaggle"
    if {"study_id", "image"} & columns:
        return "csv"
    raise DataError(
        f"{path}: not an IU X-ray table: expected the columns of the CSV layout "
        f"({', '.join(CSV_COLUMNS)}) or of Kaggle's indiana_reports.csv "
        f"({', '.join(KAGGLE_COLUMNS)})"
    )


def _text(table: pd.DataFrame, column: str) -> pd.Series:
    if column not in table.columns:
        return pd.Series(pd.NA, index=table.index, dtype="string")
    return table[column].astype("string")


def _uid_of(study_ids: pd.Series) -> pd.Series:
    return study_ids.astype(str).str.strip().str.replace(r"^iu_", "", regex=True)


def read_csv_layout(csv: Path, images: Path | None, text_only: bool) -> pd.DataFrame:
    """Raw studies of the ``csv`` layout."""
    table = read_table(csv, CSV_COLUMNS, dtype=str)
    uid = _uid_of(table["study_id"])
    image = _text(table, "image")
    return pd.DataFrame(
        {
            "study_id": "iu_" + uid,
            "subject_id": uid,
            "findings_raw": _text(table, "findings"),
            "impression_raw": _text(table, "impression"),
            "indication": _text(table, "indication"),
            "mesh": _text(table, "labels"),
            "image_path": ""
            if text_only
            else resolve_image_paths(image, csv.parent, images).to_numpy(),
            "no_frontal": False if text_only else (image.fillna("").str.strip() == "").to_numpy(),
            "source_split": _text(table, "split"),
        },
        index=table.index,
    )


def _iu_variants(name: str) -> list[str]:
    """Kaggle's ``1_IM-0001-4001.dcm.png`` also as ``.png`` and ``.jpg`` (resized copies)."""
    stem = re.sub(r"(\.dcm)?\.(png|jpe?g)$", "", name, flags=re.IGNORECASE)
    names = [name, f"{stem}.png", f"{stem}.jpg", f"{stem}.jpeg"]
    return list(dict.fromkeys([*names, *(os.path.basename(n) for n in names)]))


def select_frontal(projections: pd.DataFrame) -> pd.Series:
    """File name of one frontal image per uid (the first by file name), indexed by uid."""
    frontal = projections[
        projections["projection"].astype("string").str.strip().str.lower() == "frontal"
    ]
    frontal = frontal.dropna(subset=["filename"]).sort_values(["uid", "filename"], kind="stable")
    return frontal.drop_duplicates("uid").set_index("uid")["filename"]


def read_kaggle_layout(
    csv: Path, images: Path | None, projections: Path | None, text_only: bool
) -> pd.DataFrame:
    """Raw studies of the ``kaggle`` layout (reports + projections + image folder)."""
    table = read_table(csv, KAGGLE_COLUMNS, dtype=str)
    uid = table["uid"].astype(str).str.strip()
    problems = _text(table, "Problems") if "Problems" in table.columns else None
    raw = pd.DataFrame(
        {
            "study_id": "iu_" + uid,
            "subject_id": uid,
            "findings_raw": _text(table, "findings"),
            "impression_raw": _text(table, "impression"),
            "indication": _text(table, "indication"),
            "mesh": terms_of(_text(table, "MeSH"), problems),
            "image_path": "",
            "no_frontal": False,
        },
        index=table.index,
    )
    if text_only:
        return raw
    projections = Path(projections) if projections else csv.parent / PROJECTIONS_FILE
    proj = read_table(projections, PROJECTION_COLUMNS, dtype=str)
    proj["uid"] = proj["uid"].str.strip()
    frontal = select_frontal(proj)
    if images is None:
        normalized = csv.parent / "images" / "images_normalized"
        images = normalized if normalized.is_dir() else csv.parent / "images"
    names = uid.map(frontal)
    raw["no_frontal"] = names.isna()
    raw["image_path"] = resolve_image_paths(names, csv.parent, images, _iu_variants)
    return raw


def read_r2gen_layout(annotation: Path, images: Path | None, text_only: bool) -> pd.DataFrame:
    """Raw studies of R2Gen's ``annotation.json``, with its split in ``preset_split``."""
    try:
        data = json.loads(Path(annotation).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(f"{annotation}: file not found") from exc
    except (OSError, ValueError) as exc:
        raise DataError(f"{annotation}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise DataError(
            f"{annotation}: expected {{split: [studies]}} as in R2Gen's annotation.json"
        )
    rows = []
    for split, entries in data.items():
        for entry in entries:
            if not isinstance(entry, dict) or "id" not in entry or "report" not in entry:
                raise DataError(f"{annotation}: a study in {split!r} lacks 'id' or 'report'")
            paths = entry.get("image_path") or []
            if isinstance(paths, str):
                paths = [paths]
            rows.append(
                (
                    str(entry["id"]),
                    entry["report"],
                    paths[0] if paths else None,
                    entry.get("split", split),
                )
            )
    table = pd.DataFrame(rows, columns=["id", "report", "image", "split"])
    uid = table["id"].str.extract(r"^CXR(\d+)", expand=False).fillna(table["id"])
    root = Path(images) if images is not None else Path(annotation).parent / "images"
    return pd.DataFrame(
        {
            "study_id": "iu_" + uid,
            "subject_id": uid,
            "findings_raw": pd.Series(pd.NA, index=table.index, dtype="string"),
            "impression_raw": pd.Series(pd.NA, index=table.index, dtype="string"),
            "report_raw": table["report"].astype("string"),
            "indication": pd.Series(pd.NA, index=table.index, dtype="string"),
            "mesh": pd.Series(pd.NA, index=table.index, dtype="string"),
            "image_path": ""
            if text_only
            else resolve_image_paths(table["image"], root, root).to_numpy(),
            "no_frontal": False if text_only else table["image"].isna().to_numpy(),
            "preset_split": normalise_splits(table["split"], Path(annotation)),
            "r2gen_id": table["id"],
        }
    )


def read_split_file(path: Path) -> pd.Series:
    """R2Gen split by uid (``uid, split``)."""
    table = read_table(path, SPLIT_COLUMNS, dtype=str)
    uid = table["uid"].str.strip()
    if uid.duplicated().any():
        raise DataError(f"{path}: uid listed more than once")
    return pd.Series(normalise_splits(table["split"], path).to_numpy(), index=uid)


# --------------------------------------------------------------------------------------
# Shared steps
# --------------------------------------------------------------------------------------
def report_sections(raw: pd.DataFrame) -> pd.DataFrame:
    """``findings_text``, ``impression_text``, ``report``, ``report_rule`` of raw studies."""
    findings = clean_section(raw["findings_raw"].astype(object))
    impression = clean_section(raw["impression_raw"].astype(object))
    has_f, has_i = findings != "", impression != ""
    rule = np.select(
        [has_f & has_i, has_f, has_i],
        ["findings+impression", "findings", "impression"],
        default="none",
    )
    report = (findings + " " + impression).str.strip()
    if "report_raw" in raw:  # R2Gen: one report text, no sections
        whole = clean_section(raw["report_raw"].astype(object))
        rule = np.where(whole != "", "report", "none")
        report = whole
    return pd.DataFrame(
        {
            "findings_text": findings,
            "impression_text": impression,
            "report": report,
            "report_rule": pd.Series(rule, index=raw.index),
        }
    )


def _progress(progress: Progress | None, what: str, total: int) -> Callable[[int], None] | None:
    return progress(what, total) if progress else None


# --------------------------------------------------------------------------------------
# The whole preparation
# --------------------------------------------------------------------------------------
def prepare_iu_xray(
    out: Path,
    *,
    csv: Path | None = None,
    images: Path | None = None,
    projections: Path | None = None,
    annotation: Path | None = None,
    text_only: bool = False,
    split_all: str | None = None,
    seed: int = 0,
    config: CleaningConfig | None = None,
    r2gen_split: Path | None = None,
    progress: Progress | None = None,
    findings_map: Path | None = None,
    overwrite: bool = True,
) -> CohortLog:
    """Prepare IU X-ray in the report format (see the module docstring for the layouts).

    Args:
        out: output directory (replaced atomically).
        csv: the sample-layout CSV, Kaggle's ``indiana_reports.csv``, or an R2Gen
            ``annotation.json`` (recognised by its ``.json`` suffix).
        images: image folder; default per layout (the CSV's folder, ``images/`` beside).
        projections: Kaggle's ``indiana_projections.csv``; default: beside ``csv``.
        annotation: R2Gen's ``annotation.json`` (instead of ``csv``).
        text_only: no images: ``image_path`` empty, no frontal or file checks.
        split_all: put every study in this split (``"test"`` for evaluation-only use).
        seed: seed of the patient-level split.
        config: cleaning rules and the findings to model.
        r2gen_split: ``uid, split`` file whose studies keep their split (layouts ``csv`` and
            ``kaggle``); default for ``kaggle``: ``r2gen_split.csv`` beside ``csv`` if there.
        progress: factory ``progress(description, total) -> update(n)``, or ``None``.
        findings_map: MeSH → finding rules (default
            ``mtl_report/data/resources/iu_findings_map.tsv``).
        overwrite: replace an existing prepared dataset in ``out`` (never anything else;
            see :func:`mtl_report.data.outputs.check_prepared_out`).

    Returns:
        The cohort log (also written to ``out/cohort_log.json``).

    Raises:
        DataError: a missing file or column, malformed JSON, an unknown split name.
    """
    config = config or CleaningConfig()
    if split_all is not None and split_all not in ("train", "val", "test"):
        raise DataError(f"--split-all must be train, val or test, got {split_all!r}")
    if (csv is None) == (annotation is None):
        raise DataError("IU X-ray: give exactly one of --csv and --annotation")
    source = Path(annotation if annotation is not None else csv).absolute()
    layout = "r2gen" if annotation is not None else detect_layout(source)
    images = Path(images).absolute() if images is not None else None
    findings_map = Path(findings_map) if findings_map else FINDINGS_MAP_FILE
    inputs = [source, images, projections, r2gen_split, findings_map, *config.abbreviation_files]
    check_prepared_out(out, inputs, overwrite)
    rules = load_findings_map(findings_map)

    if layout == "r2gen":
        if r2gen_split is not None:
            raise DataError(f"{source}: annotation.json carries its own split; drop --r2gen-split")
        raw = read_r2gen_layout(source, images, text_only)
    elif layout == "kaggle":
        raw = read_kaggle_layout(source, images, projections, text_only)
        if r2gen_split is None and (source.parent / R2GEN_SPLIT_FILE).is_file():
            r2gen_split = source.parent / R2GEN_SPLIT_FILE
    else:
        raw = read_csv_layout(source, images, text_only)
    if r2gen_split is not None:
        listed = read_split_file(Path(r2gen_split))
        raw["preset_split"] = raw["subject_id"].map(listed)

    log = CohortLog("iu_xray")
    log.info.update({"layout": layout, "input": str(source), "text_only": text_only})
    if raw.empty:
        raise DataError(f"{source}: no studies (the table has no rows)")
    log.start(f"studies in {source.name}", len(raw))
    raw = log.filter(
        "unique study ids",
        raw,
        {
            "missing study id": raw["subject_id"].isna() | (raw["subject_id"].str.strip() == ""),
            "study id listed more than once": raw["study_id"].duplicated(keep="first"),
        },
    )
    raw = raw.join(report_sections(raw))
    raw = log.filter("report text", raw, {NO_TEXT: raw["report_rule"] == "none"})
    log.count_values("report rule", raw["report_rule"].value_counts().to_dict())

    if not text_only:
        raw = log.filter("one frontal image", raw, {NO_FRONTAL: raw["no_frontal"].astype(bool)})
        status = verify_images(raw["image_path"], _progress(progress, "verifying images", len(raw)))
        raw = log.filter(
            "image files",
            raw,
            drop_masks(status),
        )

    # R2Gen's annotation.json has no annotations: its "mesh" is empty, so every study is
    # unlabelled (findings missing, masked by the losses).
    labels, counts = mesh_findings(raw["mesh"], config.findings, rules)
    log.count_values("finding labels", counts)
    studies = raw.join(labels).rename(columns={"indication": "chief_complaint"})
    studies["chief_complaint"] = studies["chief_complaint"].astype(object)
    studies["image_path"] = studies["image_path"].astype(object)

    extra = [c for c in ("mesh", "source_split", "r2gen_id") if c in studies]
    keep = [
        "study_id",
        "subject_id",
        "image_path",
        "chief_complaint",
        "findings_text",
        "impression_text",
        "report",
        "report_rule",
        *labels.columns,
        *extra,
    ]
    preset = studies.get("preset_split")
    records = with_record_columns(studies[keep], config.findings)
    records = clean_features(records, config, log)
    if preset is not None and split_all is None:
        log.info["preset_split"] = {
            **{s: int((preset == s).sum()) for s in ("train", "val", "test")},
            "not_listed_split_by_patient": int(preset.isna().sum()),
        }
        records, cleaning = finalise_records(records, config, log, seed=seed, preset_split=preset)
    else:
        records, cleaning = finalise_records(records, config, log, seed=seed, split_all=split_all)
    cleaning["findings_map"] = str(findings_map)

    with atomic_dir(out, overwrite, inputs) as tmp:
        records["image_path"] = relative_to_out(records["image_path"], [tmp, Path(out).absolute()])
        info = {
            "source": "iu_xray",
            "synthetic": False,
            "layout": layout,
            "findings": list(config.findings),
            "finding_columns": finding_columns(config.findings),
            "findings_from": FINDINGS_FROM[layout],
            "findings_map": str(findings_map),
            "vitals": list(VITALS),
            "seed": seed,
            "text_only": text_only,
            "split_all": split_all,
            "r2gen_split": str(Path(r2gen_split).absolute()) if r2gen_split else None,
            "input": str(source),
            "images": str(images) if images else None,
        }
        write_prepared(tmp, records, log, info, cleaning)
    return log
