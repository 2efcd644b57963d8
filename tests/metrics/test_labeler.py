"""Rule-based findings labeler: unit cases and agreement with the IU X-ray MeSH annotations."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mtl_report.data.schema import DEFAULT_FINDINGS, finding_columns
from mtl_report.metrics import labeler_agreement
from mtl_report.metrics.labeler import MENTIONS_PATH, label_reports, mention_table
from mtl_report.metrics.labeler_agreement import (
    DEV_R2GEN_SPLITS,
    agreement_table,
    mesh_frame,
    mesh_labels,
)

P, N, U = 1.0, 0.0, -1.0
NA = np.nan

# Each case: text and the expected label of the findings named (others not checked).
CASES = [
    # Cardiomegaly
    ("Mild cardiomegaly.", {"cardiomegaly": P}),
    ("The heart is mildly enlarged.", {"cardiomegaly": P}),
    ("Stable enlargement of the cardiac silhouette.", {"cardiomegaly": P}),
    ("No cardiomegaly.", {"cardiomegaly": N}),
    ("Heart size is normal.", {"cardiomegaly": N}),
    ("Normal heart size.", {"cardiomegaly": N}),
    ("The heart is not enlarged.", {"cardiomegaly": N}),
    ("Borderline cardiomegaly.", {"cardiomegaly": U}),
    ("Heart size is upper limits of normal.", {"cardiomegaly": U}),
    ("The heart and lungs have XXXX XXXX in the interval.", {"cardiomegaly": NA}),
    # Pleural Effusion
    ("Small left pleural effusion.", {"pleural_effusion": P}),
    ("There is no pleural effusion.", {"pleural_effusion": N}),
    ("Possible small left pleural effusion.", {"pleural_effusion": U}),
    ("Small effusion versus pleural thickening.", {"pleural_effusion": P}),
    ("Probable small residual effusion.", {"pleural_effusion": P}),
    ("Blunting of the right costophrenic angle.", {"pleural_effusion": U}),
    ("Small pericardial effusion.", {"pleural_effusion": NA}),
    # Pneumothorax
    ("Small right apical pneumothorax.", {"pneumothorax": P}),
    ("There is no evidence of pneumothorax.", {"pneumothorax": N}),
    ("The right pneumothorax has resolved.", {"pneumothorax": N}),
    ("Almost completely resolved right apical pneumothorax.", {"pneumothorax": P}),
    ("The right pneumothorax has partially resolved.", {"pneumothorax": P}),
    ("Probable residual left pneumothorax.", {"pneumothorax": P}),
    # the structured form language models echo back ("Pneumothorax: absent")
    ("Pneumothorax: absent. Cardiomegaly: present.", {"pneumothorax": N, "cardiomegaly": P}),
    ("Cannot exclude a small pneumothorax.", {"pneumothorax": U}),
    ("Mild cardiomegaly.", {"pneumothorax": NA}),
    # Atelectasis
    ("Bibasilar atelectasis.", {"atelectasis": P}),
    ("No atelectasis.", {"atelectasis": N}),
    ("Streaky opacity may represent atelectasis.", {"atelectasis": U, "lung_opacity": P}),
    # a two-way differential names the finding (IU MeSH indexes it): positive, not uncertain
    ("Left basilar opacity, atelectasis or scarring.", {"atelectasis": P, "lung_opacity": P}),
    ("Mild streakiness, subsegmental atelectasis versus early infiltrate.", {"atelectasis": P}),
    ("Scarring and/or atelectasis in the lung bases.", {"atelectasis": P}),
    # ... unless a NegEx uncertainty cue is in scope
    ("Opacity may represent atelectasis or scarring.", {"atelectasis": U}),
    ("Maybe due to pulmonary fibrosis, scarring and/or atelectasis.", {"atelectasis": U}),
    # "probable"/"probably" read like "likely"
    ("Mild bibasilar airspace disease, probably atelectasis.", {"atelectasis": P}),
    ("Probable underlying compressive atelectasis.", {"atelectasis": P}),
    ("Atelectasis is likely.", {"atelectasis": P}),
    ("Possible atelectasis.", {"atelectasis": U}),
    # adjectives of atelectasis are covered by the head word
    ("Discoid atelectasis in the left base.", {"atelectasis": P}),
    ("Plate-like atelectasis at the right base.", {"atelectasis": P}),
    ("Mild subsegmental atelectasis of the left base.", {"atelectasis": P}),
    # collapse
    ("Partial collapse of the left upper and lower lobes.", {"atelectasis": P}),
    ("Stable left upper lobe collapse.", {"atelectasis": P}),
    ("In the collapsed left upper lobe are pneumatoceles.", {"atelectasis": P}),
    ("Complete collapse of the left lung.", {"atelectasis": P}),
    ("No lobar collapse.", {"atelectasis": N}),
    # "without interval change" is no negation
    (
        "Redemonstration without significant interval change of mild subsegmental atelectasis.",
        {"atelectasis": P},
    ),
    ("No atelectasis, without change from prior.", {"atelectasis": N}),
    # not atelectasis phrases: measured on the development split (labeler_agreement), "volume
    # loss" is in 11 reports, none MeSH-indexed atelectasis; "bandlike/platelike/linear
    # opacities" without the word atelectasis would add 2 false and no true positives.
    ("Mild left-sided volume loss.", {"atelectasis": NA}),
    ("Bandlike opacities in the right base.", {"atelectasis": NA, "lung_opacity": P}),
    ("Heart size is normal.", {"atelectasis": NA}),
    # Lung Opacity (opacity, consolidation, airspace disease, infiltrate, pneumonia)
    ("Right lower lobe pneumonia.", {"lung_opacity": P}),
    ("No focal consolidation.", {"lung_opacity": N}),
    ("The lungs are clear.", {"lung_opacity": N}),
    ("Pneumonia cannot be excluded.", {"lung_opacity": U}),
    ("Lungs are clear except for a left basilar opacity.", {"lung_opacity": P}),
    ("Nodular opacity in the right upper lobe.", {"lung_opacity": NA}),
    ("No acute cardiopulmonary abnormality.", {"lung_opacity": NA}),
    # a frequent typo for "clear of airspace disease"
    ("Lungs are expanded and clear airspace disease.", {"lung_opacity": N}),
    ("Left lower lobe airspace disease, probably pneumonia.", {"lung_opacity": P}),
    # One negation cue over a list; scope ends at the sentence.
    ("No evidence of pneumothorax or effusion.", {"pneumothorax": N, "pleural_effusion": N}),
    ("No pneumothorax. Small left pleural effusion.", {"pneumothorax": N, "pleural_effusion": P}),
    ("Possible small left effusion, no pneumothorax.", {"pleural_effusion": U, "pneumothorax": N}),
    (
        "Stable cardiomegaly with no effusion or pneumothorax.",
        {"cardiomegaly": P, "pleural_effusion": N, "pneumothorax": N},
    ),
    # A positive mention wins over a negative one (CheXpert aggregation).
    ("No effusion on the right. Small left pleural effusion.", {"pleural_effusion": P}),
    ("Hydropneumothorax.", {"pleural_effusion": P, "pneumothorax": P}),
]


def _same(a: float, b: float) -> bool:
    return (np.isnan(a) and np.isnan(b)) or a == b


def test_unit_cases():
    labels = label_reports([text for text, _ in CASES])
    wrong = [
        (text, col, labels.loc[i, col], want)
        for i, (text, expected) in enumerate(CASES)
        for col, want in expected.items()
        if not _same(labels.loc[i, col], want)
    ]
    assert not wrong, wrong


def test_output_form():
    texts = ["Mild cardiomegaly.", None, float("nan"), ""]
    labels = label_reports(texts)
    assert list(labels.columns) == finding_columns(DEFAULT_FINDINGS)
    assert labels.shape == (4, 5) and labels.dtypes.eq(float).all()
    assert labels.iloc[1:].isna().all().all()
    two = label_reports(["Small left pleural effusion."], findings=["Pleural Effusion"])
    assert list(two.columns) == ["pleural_effusion"] and two.iloc[0, 0] == 1.0
    with pytest.raises(TypeError):
        label_reports("Mild cardiomegaly.")
    with pytest.raises(ValueError, match="no mention phrases"):
        label_reports(["x"], findings=["Fracture"])
    assert label_reports([]).shape == (0, 5)


def test_mention_table_explains_labels():
    table = mention_table(["No pneumothorax or effusion. Mild cardiomegaly."])
    assert set(table["finding"]) == {"Pneumothorax", "Pleural Effusion", "Cardiomegaly"}
    row = table.set_index("finding").loc["Pneumothorax"]
    assert row["negated"] and row["value"] == 0.0 and row["kind"] == "mention"


def test_vocabulary_file_is_valid_json_for_every_finding():
    vocab = json.loads(MENTIONS_PATH.read_text(encoding="utf-8"))
    for finding in DEFAULT_FINDINGS:
        assert vocab["findings"][finding]["mention"], finding


# --------------------------------------------------------------------------- IU MeSH
# MeSH-positive per finding (mesh_labels) and the agreement table live in
# mtl_report.metrics.labeler_agreement, which also prints these tables.
#
# Protocol: the vocabulary was tuned on the development split only (R2Gen train + val, 2,365
# reports); the other 896 IU reports (the R2Gen test studies) are held aside and were read
# once, after tuning, to measure the goal below. Their misses are not to be used for tuning:
# tune on the development split (python -m mtl_report.metrics.labeler_agreement --misses N).
# (The vocabulary before issue 16 was written from all 3,261 reports; the issue-16 changes,
# the alternative rule, "probable", collapse phrases, "without change", were chosen on the
# development split only.)


@pytest.fixture(scope="module")
def iu_labelled(iu_reports) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Labeler labels, MeSH labels and the development mask of the 3,261 reports."""
    assert len(iu_reports) == 3261
    labels = label_reports(iu_reports["text"].tolist(), batch_size=512)
    mesh = mesh_frame(iu_reports["MeSH"])
    dev = iu_reports["split"].isin(DEV_R2GEN_SPLITS).to_numpy()
    assert dev.sum() == 2365
    return labels, mesh, dev


# Development split (tuned on): P / R / F1 (MeSH positives)
#   atelectasis 0.980 / 0.995 / 0.987 (195)   cardiomegaly 1.000 / 0.883 / 0.938 (223)
#   pleural_effusion 0.976 / 0.988 / 0.982 (82)   pneumothorax 1.000 / 1.000 / 1.000 (13)
#   lung_opacity 0.969 / 0.981 / 0.975 (317)
# (before issue 16: atelectasis R 0.687 F1 0.810, effusion F1 0.942, pneumothorax 0.870.)
# Cardiomegaly recall stays below the others: "borderline cardiomegaly"/"upper limits of
# normal" are uncertain (-1) and MeSH indexes them in only 23 of 90 development reports.
DEV_F1_FLOOR = {
    "atelectasis": 0.96,
    "cardiomegaly": 0.92,
    "pleural_effusion": 0.95,
    "pneumothorax": 0.90,
    "lung_opacity": 0.95,
}
PRECISION_FLOOR = 0.95


def test_agreement_with_iu_mesh_development(iu_labelled):
    labels, mesh, dev = iu_labelled
    table = agreement_table(labels[dev].reset_index(drop=True), mesh[dev].reset_index(drop=True))
    print("\nlabeler (positive) vs IU MeSH, development split\n" + table.round(3).to_string())
    for col, floor in DEV_F1_FLOOR.items():
        assert table.loc[col, "f1"] >= floor, (col, table.loc[col].to_dict())
        assert table.loc[col, "precision"] >= PRECISION_FLOOR, (col, table.loc[col].to_dict())


# The goal of issue 16: F1 >= 0.90 for every finding with at least 15 MeSH positives, on the
# reports held aside while tuning. Measured once, after tuning: P / R / F1 (MeSH positives)
#   atelectasis 0.929 / 0.963 / 0.945 (81)   cardiomegaly 0.989 / 0.845 / 0.912 (110)
#   pleural_effusion 0.962 / 0.980 / 0.971 (51)   lung_opacity 0.949 / 0.977 / 0.963 (132)
#   pneumothorax 1.000 / 0.818 / 0.900 (11: below 15 positives, not part of the goal)
# (before issue 16: atelectasis 0.836, cardiomegaly 0.906, effusion 0.844, opacity 0.943.)
GOAL_F1, GOAL_MIN_POSITIVES = 0.90, 15


def test_agreement_with_iu_mesh_held_aside(iu_labelled):
    labels, mesh, dev = iu_labelled
    held = ~dev
    assert held.sum() == 896
    table = agreement_table(labels[held].reset_index(drop=True), mesh[held].reset_index(drop=True))
    print("\nlabeler (positive) vs IU MeSH, held-aside split\n" + table.round(3).to_string())
    measured = table[table["mesh_pos"] >= GOAL_MIN_POSITIVES]
    assert len(measured) >= 4
    short = measured[measured["f1"] < GOAL_F1]
    assert short.empty, short.round(3).to_dict(orient="index")


def test_normal_reports_state_no_finding(iu_reports, iu_labelled):
    # Reports indexed "normal" state no finding as present (measured before issue 16: 1 of
    # 1,072, the typo "lungs are ... clear airspace disease", now read as negative).
    labels, _, _ = iu_labelled
    normal = iu_reports["MeSH"].str.strip().str.lower().eq("normal").to_numpy()
    assert normal.sum() > 1000
    assert (labels[normal] == 1).any(axis=1).mean() < 0.005


def test_agreement_script_prints_both_splits(tmp_path, capsys):
    pd.DataFrame(
        {
            "uid": [1, 2, 3],
            "MeSH": ["Pulmonary Atelectasis/base/left", "normal", "Cardiomegaly/mild"],
            "findings": ["Left basilar atelectasis or scarring.", "Lungs are clear.", None],
            "impression": [None, "Normal chest.", "Mild cardiomegaly."],
        }
    ).to_csv(tmp_path / "indiana_reports.csv", index=False)
    pd.DataFrame({"uid": [1, 2], "split": ["train", "val"]}).to_csv(
        tmp_path / "r2gen_split.csv", index=False
    )
    assert labeler_agreement.main(["--data", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dev"]["reports"] == 2 and out["held_aside"]["reports"] == 1
    assert out["dev"]["atelectasis"]["f1"] == 1.0
    assert out["held_aside"]["cardiomegaly"]["recall"] == 1.0
    assert mesh_labels("Cardiac Shadow/enlarged;Opacity/ribs/right")["cardiomegaly"] == 1
    assert mesh_labels("Opacity/ribs/right")["lung_opacity"] == 0
