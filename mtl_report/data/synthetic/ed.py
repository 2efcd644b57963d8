"""The ED simulator: subjects, stays, triage vitals, complaints and diagnoses tied to each
study's latent severity, in the real MIMIC-IV-ED columns (:func:`generate_tables`).

Part of :mod:`mtl_report.data.synthetic` (SYNTHETIC data; see the package docstring)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mtl_report.data.schema import CHEXPERT_LABELS
from mtl_report.data.synthetic.common import (
    _DEVICES,
    _EFF,
    _OPAC,
    _PTX,
    _REL_PROBS,
    _SIDES,
    _VARIANT_PROBS,
    _ZONES,
    DIAGNOSIS_COLUMNS,
    EDSTAYS_COLUMNS,
    FINDING_COLUMNS,
    METADATA_COLUMNS,
    RELATIONS,
    REPORT_VARIANTS,
    TRIAGE_COLUMNS,
    _choice_rows,
    _dicom_ids,
    _exact_categories,
    _group_positions,
    _objects,
    _pick_lists,
    _quota,
    _spread,
    _unique_ids,
)
from mtl_report.data.synthetic.ed_vocabulary import (
    _ARRIVAL,
    _COMPLAINTS,
    _DISPOSITION,
    _ICD_PRIMARY,
    _ICD_SECONDARY,
    _RACES,
    IMPLAUSIBLE_VITALS,
)
from mtl_report.data.synthetic.findings import _category, _draw_findings
from mtl_report.data.synthetic.reports import _compose_reports


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
