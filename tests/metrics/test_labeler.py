"""Rule-based findings labeler: unit cases and agreement with the IU X-ray MeSH annotations."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mtl_report.metrics.labeler import MENTIONS_PATH, label_reports, mention_table
from preprocessing.schema import DEFAULT_FINDINGS, finding_columns

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
    ("Small effusion versus pleural thickening.", {"pleural_effusion": U}),
    ("Blunting of the right costophrenic angle.", {"pleural_effusion": U}),
    ("Small pericardial effusion.", {"pleural_effusion": NA}),
    # Pneumothorax
    ("Small right apical pneumothorax.", {"pneumothorax": P}),
    ("There is no evidence of pneumothorax.", {"pneumothorax": N}),
    ("The right pneumothorax has resolved.", {"pneumothorax": N}),
    # the structured form language models echo back ("Pneumothorax: absent")
    ("Pneumothorax: absent. Cardiomegaly: present.", {"pneumothorax": N, "cardiomegaly": P}),
    ("Cannot exclude a small pneumothorax.", {"pneumothorax": U}),
    ("Mild cardiomegaly.", {"pneumothorax": NA}),
    # Atelectasis
    ("Bibasilar atelectasis.", {"atelectasis": P}),
    ("No atelectasis.", {"atelectasis": N}),
    ("Streaky opacity may represent atelectasis.", {"atelectasis": U, "lung_opacity": P}),
    ("Left basilar opacity, atelectasis or scarring.", {"atelectasis": U, "lung_opacity": P}),
    ("Heart size is normal.", {"atelectasis": NA}),
    # Lung Opacity (opacity, consolidation, airspace disease, infiltrate, pneumonia)
    ("Right lower lobe pneumonia.", {"lung_opacity": P}),
    ("No focal consolidation.", {"lung_opacity": N}),
    ("The lungs are clear.", {"lung_opacity": N}),
    ("Pneumonia cannot be excluded.", {"lung_opacity": U}),
    ("Lungs are clear except for a left basilar opacity.", {"lung_opacity": P}),
    ("Nodular opacity in the right upper lobe.", {"lung_opacity": NA}),
    ("No acute cardiopulmonary abnormality.", {"lung_opacity": NA}),
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


def agreement_table(labels: pd.DataFrame, mesh: pd.DataFrame) -> pd.DataFrame:
    """Per finding: MeSH positives, labeler positives (== 1), precision, recall, F1."""
    from sklearn.metrics import precision_recall_fscore_support

    rows = {}
    for col in mesh.columns:
        pred = (labels[col] == 1).astype(int)
        p, r, f, _ = precision_recall_fscore_support(
            mesh[col], pred, average="binary", zero_division=0
        )
        rows[col] = {
            "mesh_pos": int(mesh[col].sum()),
            "labeler_pos": int(pred.sum()),
            "precision": p,
            "recall": r,
            "f1": f,
        }
    return pd.DataFrame(rows).T


# Measured on the 3,261 reports (labeler positive vs MeSH): P / R / F1
#   atelectasis 0.970 / 0.707 / 0.818   cardiomegaly 0.997 / 0.865 / 0.926
#   pleural_effusion 0.991 / 0.835 / 0.906   pneumothorax 1.000 / 0.792 / 0.884 (24 MeSH)
#   lung_opacity 0.958 / 0.955 / 0.957
# Recall is lower where reports hedge ("atelectasis or scarring", "borderline cardiomegaly",
# "probable small effusion"): the labeler says uncertain (-1), as CheXpert does, while MeSH
# indexes the term. Floors: measured minus a small margin (pneumothorax: one study of 24
# moves F1 by about 0.03).
F1_FLOOR = {
    "atelectasis": 0.79,
    "cardiomegaly": 0.90,
    "pleural_effusion": 0.87,
    "pneumothorax": 0.82,
    "lung_opacity": 0.93,
}
PRECISION_FLOOR = 0.94


def test_agreement_with_iu_mesh(iu_reports):
    assert len(iu_reports) == 3261
    labels = label_reports(iu_reports["text"].tolist(), batch_size=512)
    mesh = pd.DataFrame([mesh_labels(m) for m in iu_reports["MeSH"]])
    table = agreement_table(labels, mesh)
    print("\nlabeler (positive) vs IU MeSH, 3,261 reports\n" + table.round(3).to_string())
    for col, floor in F1_FLOOR.items():
        assert table.loc[col, "f1"] >= floor, (col, table.loc[col].to_dict())
        assert table.loc[col, "precision"] >= PRECISION_FLOOR, (col, table.loc[col].to_dict())
    # Reports indexed "normal" state no finding as present (measured: 1 of 1,072, a typo
    # "lungs are ... clear airspace disease").
    normal = iu_reports["MeSH"].str.strip().str.lower().eq("normal").to_numpy()
    assert normal.sum() > 1000
    assert (labels[normal] == 1).any(axis=1).mean() < 0.005
