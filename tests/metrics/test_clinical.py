"""Clinical efficacy, findings-head and acuity metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mtl_report.metrics.clinical import (
    acuity_metrics,
    best_f1_thresholds,
    ce_from_labels,
    clinical_efficacy,
    findings_head_metrics,
)

NAN = np.nan


def test_ce_from_labels_hand_computed():
    # Positive == 1; 0, -1 and NaN are all "absent".
    gen = pd.DataFrame({"a": [1, 1, NAN], "b": [0, 1, -1]}, dtype=float)
    ref = pd.DataFrame({"a": [1, 0, 1], "b": [1, 1, NAN]}, dtype=float)
    # pred [[1,0],[1,1],[0,0]] vs true [[1,1],[0,1],[1,0]]: TP 2, FP 1, FN 2.
    ce = ce_from_labels(gen, ref)
    assert ce["precision_micro"] == pytest.approx(2 / 3)
    assert ce["recall_micro"] == pytest.approx(2 / 4)
    assert ce["f1_micro"] == pytest.approx(4 / 7)
    # a: TP 1 FP 1 FN 1 -> 0.5/0.5/0.5; b: TP 1 FP 0 FN 1 -> 1/0.5/2/3.
    assert ce["per_finding"]["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert ce["per_finding"]["b"]["f1"] == pytest.approx(2 / 3)
    assert ce["precision_macro"] == pytest.approx(0.75)
    assert ce["recall_macro"] == pytest.approx(0.5)
    assert ce["f1_macro"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert ce["n"] == 3


def test_clinical_efficacy_on_text():
    generated = ["Mild cardiomegaly. No effusion.", "Small right pleural effusion.", ""]
    references = [
        "Cardiomegaly. Small left pleural effusion.",
        "No pleural effusion.",
        "No pneumothorax.",
    ]
    ce = clinical_efficacy(generated, references, findings=("Cardiomegaly", "Pleural Effusion"))
    # pred [[1,0],[0,1],[0,0]] vs true [[1,1],[0,0],[0,0]]: TP 1, FP 1, FN 1.
    assert ce["precision_micro"] == pytest.approx(0.5)
    assert ce["recall_micro"] == pytest.approx(0.5)
    assert ce["f1_micro"] == pytest.approx(0.5)
    assert ce["per_finding"]["cardiomegaly"]["f1"] == 1.0
    assert ce["per_finding"]["pleural_effusion"]["f1"] == 0.0
    assert ce["f1_macro"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        clinical_efficacy(["a"], ["a", "b"])
    with pytest.raises(ValueError):
        clinical_efficacy([], [])


def test_clinical_efficacy_of_references_against_themselves(iu_reports):
    texts = iu_reports["text"].head(300).tolist()
    ce = clinical_efficacy(texts, texts)
    assert ce["f1_micro"] == pytest.approx(1.0)


Y_TRUE = np.array([[1, 0, NAN], [0, 1, 1], [1, NAN, 0], [0, 0, 0]], dtype=float)
Y_PROB = np.array([[0.9, 0.2, 0.8], [0.4, 0.7, 0.3], [0.6, 0.9, 0.1], [0.2, 0.3, 0.4]])


def test_findings_head_metrics_with_missing_targets():
    # pred [[1,0,1],[0,1,0],[1,1,0],[0,0,0]]; 10 known cells; the NaN cells (a predicted 1
    # among them) count for nothing.
    m = findings_head_metrics(Y_TRUE, Y_PROB)
    # c0: TP2; c1 (rows 0,1,3): TP1; c2 (rows 1,2,3): FN1 -> micro TP3 FP0 FN1.
    assert m["precision"] == pytest.approx(1.0)
    assert m["recall"] == pytest.approx(0.75)
    assert m["f1_micro"] == pytest.approx(6 / 7)
    assert m["f1_macro"] == pytest.approx((1 + 1 + 0) / 3)
    assert m["hamming_loss"] == pytest.approx(1 / 10)
    # Rows 1 and 3 have all targets: row 1 misses c2, row 3 is right.
    assert m["exact_match"] == pytest.approx(0.5)
    assert m["n_exact_match_studies"] == 2 and m["n_studies"] == 4
    names = list(m["per_finding"])
    assert names == ["finding_0", "finding_1", "finding_2"]
    assert m["per_finding"]["finding_2"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "auc": 0.5,  # the positive (0.3) beats one negative (0.1) of two (0.4)
        "threshold": 0.5,
        "support": 1,
        "n": 3,
    }
    assert m["per_finding"]["finding_0"]["auc"] == pytest.approx(1.0)
    assert m["auc_macro"] == pytest.approx((1 + 1 + 0.5) / 3)


def test_auc_is_undefined_with_one_class_and_thresholds_come_from_held_out_f1():
    y = np.array([[1, 0], [0, 0], [1, 0], [0, 0], [0, 0]], dtype=float)
    p = np.array([[0.3, 0.1], [0.1, 0.2], [0.25, 0.3], [0.2, 0.1], [0.05, 0.2]])
    m = findings_head_metrics(y, p)
    assert np.isnan(m["per_finding"]["finding_1"]["auc"])  # no positive: undefined
    assert m["auc_macro"] == pytest.approx(1.0)  # the mean skips undefined AUCs
    assert m["recall"] == 0.0  # an under-confident head says "absent" at 0.5
    cut = best_f1_thresholds(y, p)
    # Finding 0: any cut in (0.2, 0.25] separates the classes; the grid's 0.25 is the one
    # nearest 0.5. Finding 1 has no positive: the default stays.
    assert cut.tolist() == [0.25, 0.5]
    tuned = findings_head_metrics(y, p, threshold=cut)
    assert tuned["per_finding"]["finding_0"]["f1"] == pytest.approx(1.0)
    assert tuned["per_finding"]["finding_0"]["threshold"] == 0.25


def test_findings_head_metrics_explicit_mask_threshold_and_names():
    mask = np.ones_like(Y_TRUE, dtype=bool)
    mask[1, 2] = False  # the one miss is masked out
    df = pd.DataFrame(Y_TRUE, columns=["atelectasis", "cardiomegaly", "pneumothorax"])
    m = findings_head_metrics(df, Y_PROB, mask=mask)
    assert list(m["per_finding"]) == list(df.columns)
    assert m["f1_micro"] == pytest.approx(1.0)
    assert m["hamming_loss"] == 0.0
    assert m["exact_match"] == 1.0 and m["n_exact_match_studies"] == 1
    # Threshold 0.95 predicts nothing: recall 0, precision 0 (zero_division=0).
    none = findings_head_metrics(Y_TRUE, Y_PROB, threshold=0.95)
    assert none["precision"] == 0.0 and none["recall"] == 0.0 and none["f1_micro"] == 0.0
    assert none["hamming_loss"] == pytest.approx(4 / 10)  # the 4 known positives
    with pytest.raises(ValueError):
        findings_head_metrics(Y_TRUE, Y_PROB[:, :2])
    with pytest.raises(ValueError, match="0 or 1"):
        findings_head_metrics(np.full((1, 3), 2.0), Y_PROB[:1])


def test_acuity_metrics():
    m = acuity_metrics([1, 2, 3, None, 5], [1, 3, 5, 2, 4])
    # errors on the 4 known: 0, 1, 2, -1
    assert m == {"accuracy": 0.25, "mae": 1.0, "mse": 1.5, "within_one": 0.75, "n": 4}
    empty = acuity_metrics([NAN, NAN], [1, 2])
    assert empty["n"] == 0 and np.isnan(empty["accuracy"])
    with pytest.raises(ValueError):
        acuity_metrics([1, 2], [1, NAN])
    with pytest.raises(ValueError):
        acuity_metrics([1, 2], [1])
