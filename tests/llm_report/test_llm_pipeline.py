"""The LLM report pipeline end to end with a fake chat model: on the real IU X-ray reports
(findings from their MeSH labels) and on a trained run's findings head (synthetic data);
outputs in the format of ``evaluate``; the guard's repair; the ablation; the CLI against a
fake OpenAI-compatible server."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from llm_fakes import FakeChat, FakeOpenAIServer, faithful_report, last_description

from mtl_report.data.errors import DataError
from mtl_report.data.io import load_prepared
from mtl_report.llm_report import LLMError, LLMReportConfig, llm_ablation, llm_report
from mtl_report.llm_report.description import THRESHOLDS_FILE, DescriptionThresholds
from mtl_report.metrics.tasks import REQUIRED_KEYS

LABELS = dict(findings_from="labels", limit=12)


@pytest.fixture(scope="module")
def iu_text(shared_data, tmp_path_factory):
    from mtl_report.data.iu_xray import prepare_iu_xray

    out = tmp_path_factory.mktemp("iu_text") / "data"
    prepare_iu_xray(
        out, csv=shared_data / "iu_xray_reports" / "indiana_reports.csv", text_only=True, seed=0
    )
    return load_prepared(out)


def read_prompts(out):
    return [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]


def test_reports_prompts_and_metrics_in_the_evaluate_format(iu_text, tmp_path):
    fake = FakeChat()
    out = tmp_path / "icil_cot"
    metrics = llm_report(
        iu_text, out, split="test", config=LLMReportConfig(k=2, **LABELS), chat_model=fake
    )
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["setup"] == "LLM (ICIL+CoT)" == metrics["setup"]
    assert set(REQUIRED_KEYS["text"]) <= set(saved["text"])
    assert saved["n"] == 12 and saved["llm"]["partial_split"] is True
    assert saved["llm"]["findings_source"] == "labels"
    # a faithful writer never contradicts the findings it was given
    assert saved["text"]["guard"]["contradiction_rate"] == 0.0
    assert saved["text"]["clinical_efficacy"]["n"] == 12

    test = iu_text.split("test").head(12)
    table = pd.read_csv(out / "predictions.csv", dtype={"study_id": str})
    assert table["study_id"].tolist() == test["study_id"].tolist()
    assert {"reference", "generated", "bleu_4", "description", "plan", "contradictions"} <= set(
        table.columns
    )
    given = table[[f"{c}_given" for c in iu_text.finding_columns]].to_numpy()
    np.testing.assert_array_equal(given, test[iu_text.finding_columns].to_numpy(dtype=float))
    prompts = read_prompts(out)
    train_ids = set(iu_text.split("train")["study_id"])
    for p, (_, rec) in zip(prompts, test.iterrows()):
        roles = [m["role"] for m in p["messages"]]
        # system, two example pairs, the plan request, the plan, the report request
        pairs = ["user", "assistant"] * 2
        assert roles == ["system", *pairs, "user", "assistant", "user"]
        assert len(p["examples"]) == 2 and set(p["examples"]) <= train_ids
        assert p["plan"] and p["report"]
        # the description was built from this study's labels
        present = [c for c in iu_text.finding_columns if rec[c] == 1]
        for col in present:
            assert f"{col.replace('_', ' ')}: present" in p["messages"][-3]["content"].lower()
            # the nearest example says the same of this finding (exact matches exist)
            assert f"{col.replace('_', ' ')}: present" in p["messages"][1]["content"].lower()
    # every request of the fake model was one of these prompts (two per study with CoT)
    assert len(fake.calls) == 24
    info = json.loads((out / "config.json").read_text())
    assert len(info["templates_digest"]) == 12 and info["config"]["k"] == 2


def test_identical_settings_give_identical_prompts(iu_text, tmp_path):
    cfg = LLMReportConfig(k=3, cot=False, **LABELS)
    llm_report(iu_text, tmp_path / "a", config=cfg, chat_model=FakeChat())
    llm_report(iu_text, tmp_path / "b", config=cfg, chat_model=FakeChat())
    assert read_prompts(tmp_path / "a") == read_prompts(tmp_path / "b")
    other = LLMReportConfig(k=3, cot=False, seed=5, **LABELS)
    llm_report(iu_text, tmp_path / "c", config=other, chat_model=FakeChat())
    examples = [p["examples"] for p in read_prompts(tmp_path / "a")]
    assert examples != [p["examples"] for p in read_prompts(tmp_path / "c")]


def test_guard_flags_contradictions_and_repair_fixes_them(iu_text, tmp_path):
    contrary = FakeChat(contrary_first=True)
    cfg = LLMReportConfig(k=1, cot=False, **LABELS)
    flagged = llm_report(iu_text, tmp_path / "flag", config=cfg, chat_model=contrary)
    labels = iu_text.split("test").head(12)[iu_text.finding_columns].to_numpy()
    # the contrary writer negates present findings and asserts absent ones: every study
    # with a known label is contradicted
    expected = np.mean((labels == 0).any(axis=1) | (labels == 1).any(axis=1))
    assert flagged["text"]["guard"]["contradiction_rate"] == pytest.approx(expected)
    assert expected > 0.9

    fixed = llm_report(
        iu_text,
        tmp_path / "fix",
        config=LLMReportConfig(k=1, cot=False, repair=True, **LABELS),
        chat_model=FakeChat(contrary_first=True),
    )
    guard = fixed["text"]["guard"]
    assert guard["contradiction_rate_before_repair"] == pytest.approx(expected)
    assert guard["contradiction_rate"] == 0.0
    assert guard["repaired"] == round(expected * 12)
    prompts = read_prompts(tmp_path / "fix")
    repaired = [p for p in prompts if p["repaired"]]
    assert "contradicts the findings" in repaired[0]["repair_messages"][-1]["content"]
    assert repaired[0]["first_report"] != repaired[0]["report"]
    assert fixed["setup"] == "LLM (ICIL, repair)"


def test_ablation_table_has_the_three_set_ups(iu_text, tmp_path):
    table = llm_ablation(
        iu_text, tmp_path, config=LLMReportConfig(k=2, **LABELS), chat_model=FakeChat()
    )
    assert list(table.index) == ["LLM (zero-shot)", "LLM (ICIL)", "LLM (ICIL+CoT)"]
    assert {"bleu_4", "ce_f1", "contradiction_rate"} <= set(table.columns)
    assert (tmp_path / "ablation.md").read_text().count("LLM (") == 3
    zero = read_prompts(tmp_path / "zero_shot")
    assert all(len(p["messages"]) == 2 and p["examples"] == [] for p in zero)
    # same findings, same model: the in-context examples change what is written
    assert (tmp_path / "icil" / "metrics.json").is_file()
    with pytest.raises(DataError, match="unknown ablation variant"):
        llm_ablation(iu_text, tmp_path, variants=["few_shot"], chat_model=FakeChat())


def test_run_is_required_for_findings_from_run(iu_text, tmp_path):
    with pytest.raises(DataError, match="--run is required"):
        llm_report(iu_text, tmp_path, chat_model=FakeChat())
    with pytest.raises(DataError, match="no studies in split"):
        llm_report(
            iu_text, tmp_path, split="nope", config=LLMReportConfig(**LABELS), chat_model=FakeChat()
        )


@pytest.mark.slow
def test_findings_from_a_trained_run(tmp_path):
    from mtl_report.config import ModelConfig
    from mtl_report.data.synthetic import prepare_synthetic
    from mtl_report.training import train

    data = tmp_path / "data"
    prepare_synthetic(data, n_studies=60, seed=0, image_size=64)
    run = tmp_path / "run"
    small = dict(
        image_size=64, hidden_dim=24, num_heads=3, intermediate_dim=32, max_report_length=24
    )
    train(data, run, "mtl_tp", model_config=ModelConfig(**small), epochs=1, batch_size=8, verbose=0)
    out = tmp_path / "llm"
    metrics = llm_report(
        data, out, run=run, config=LLMReportConfig(k=1, cot=False), chat_model=FakeChat()
    )
    stored = DescriptionThresholds.load(run / THRESHOLDS_FILE)  # stored with the run
    assert stored == DescriptionThresholds.load(out / THRESHOLDS_FILE)
    assert stored.chosen_on == "val"
    assert metrics["llm"]["findings_source"] == f"run {run}"
    assert metrics["n"] == len(load_prepared(data).split("test"))
    assert metrics["text"]["guard"]["contradiction_rate"] == 0.0

    stl_text = tmp_path / "stl_text"
    train(
        data,
        stl_text,
        "stl_text",
        model_config=ModelConfig(**small),
        epochs=1,
        batch_size=8,
        verbose=0,
    )
    with pytest.raises(DataError, match="no findings head"):
        llm_report(data, out, run=stl_text, chat_model=FakeChat())


def test_cli_against_an_openai_compatible_server(iu_text, tmp_path, capsys):
    from mtl_report.cli import main

    with FakeOpenAIServer() as server:
        code = main(
            [
                "llm-report",
                "--data",
                str(iu_text.root),
                "--findings-from",
                "labels",
                "--out",
                str(tmp_path / "remote"),
                "--limit",
                "4",
                "--k",
                "1",
                "--no-cot",
                "--llm-url",
                server.url,
                "--llm-model",
                "served-model",
                "--quiet",
            ]
        )
    assert code == 0
    assert len(server.requests) == 4 and server.requests[0]["model"] == "served-model"
    metrics = json.loads((tmp_path / "remote" / "metrics.json").read_text())
    assert metrics["llm"]["backend"] == "openai-compatible"
    assert metrics["llm"]["model"] == "served-model"
    printed = json.loads(capsys.readouterr().out)
    assert printed["setup"] == "LLM (ICIL)"


def test_cli_fails_with_one_line_when_the_endpoint_is_down(iu_text, tmp_path, capsys):
    import socket

    from mtl_report.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = main(
        [
            "llm-report",
            "--data",
            str(iu_text.root),
            "--findings-from",
            "labels",
            "--out",
            str(tmp_path / "x"),
            "--limit",
            "1",
            "--llm-url",
            f"http://127.0.0.1:{port}",
            "--llm-model",
            "m",
            "--llm-retries",
            "0",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1
    assert "no answer after 1 attempt (unreachable" in err
    assert main(["llm-report", "--data", str(iu_text.root), "--out", str(tmp_path)]) != 0
    assert "--run is required" in capsys.readouterr().err


def _llm_cli(iu_text, out, url, *extra):
    from mtl_report.cli import main

    return main(
        [
            "llm-report",
            "--data",
            str(iu_text.root),
            "--findings-from",
            "labels",
            "--out",
            str(out),
            "--k",
            "1",
            "--no-cot",
            "--llm-url",
            url,
            "--llm-model",
            "m",
            "--quiet",
            *extra,
        ]
    )


def test_null_answers_are_counted_failures_not_empty_reports(iu_text, tmp_path, capsys):
    calls = []

    def answer(body):  # "content": null for the first two studies
        calls.append(1)
        return None if len(calls) <= 2 else faithful_report(last_description(body["messages"]))

    with FakeOpenAIServer(answer=answer) as server:
        code = _llm_cli(iu_text, tmp_path / "out", server.url, "--limit", "5")
    assert code == 0 and len(server.requests) == 5  # empty answers are not retried
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if "warning" in line]
    assert len(warning) == 1
    assert "2 of 5 studies failed" in warning[0] and "empty_answer: 2" in warning[0]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["text"]["llm_failures"] == {"empty_answer": 2}
    assert metrics["n"] == 3 and metrics["text"]["clinical_efficacy"]["n"] == 3
    assert metrics["llm"]["studies"] == 5
    table = pd.read_csv(tmp_path / "out" / "predictions.csv", keep_default_na=False)
    assert table["llm_failure"].tolist() == ["empty_answer"] * 2 + [""] * 3
    assert table["study_id"].astype(str).tolist() == (
        iu_text.split("test").head(5)["study_id"].tolist()
    )
    assert (table["bleu_4"].iloc[:2] == "").all()  # not scored, not a zero
    prompts = read_prompts(tmp_path / "out")
    assert (
        prompts[0]["failure"] == "empty_answer"
        and "content is null" in (prompts[0]["failure_detail"])
    )


def test_cli_exits_non_zero_when_every_study_fails(iu_text, tmp_path, capsys):
    with FakeOpenAIServer(answer=lambda body: None) as server:
        code = _llm_cli(iu_text, tmp_path / "out", server.url, "--limit", "3")
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1
    assert "all 3 studies failed (empty_answer: 3)" in err and "content is null" in err
    assert not (tmp_path / "out" / "metrics.json").exists()


class _Answers(FakeChat):
    """A fake model answering from a list (the last repeats); ``delay`` seconds a call."""

    def __init__(self, answers, delay=0.0):
        super().__init__()
        self.answers, self.delay = list(answers), delay

    def chat(self, messages, config):
        self.calls.append(messages)
        time.sleep(self.delay)
        answer = self.answers[min(len(self.calls), len(self.answers)) - 1]
        return answer if answer is not None else faithful_report(last_description(messages))


def test_failures_stop_the_run_early_or_past_the_limit(iu_text, tmp_path):
    cfg = dict(k=0, cot=False, findings_from="labels")
    blank = _Answers(["FINDINGS:\nIMPRESSION:"])  # headers only: no report text
    with pytest.raises(LLMError, match=r"first 5 studies all failed, stopping \(empty_report: 5\)"):
        llm_report(iu_text, tmp_path, config=LLMReportConfig(limit=8, **cfg), chat_model=blank)
    assert len(blank.calls) == 5
    some = _Answers([None, "", None, "", None, ""])  # every other study fails
    match = r"3 studies failed, more than --llm-max-failures 2 \(empty_answer: 3\)"
    with pytest.raises(LLMError, match=match):
        llm_report(
            iu_text,
            tmp_path,
            config=LLMReportConfig(limit=8, max_failures=2, **cfg),
            chat_model=some,
        )
    assert len(some.calls) == 6


def test_study_budget_spent_is_a_counted_failure(iu_text):
    from mtl_report.llm_report import OpenAIChat
    from mtl_report.llm_report.findings_source import _findings, _split_records
    from mtl_report.llm_report.generation import generate_reports

    # study 1: plan and report at once; study 2: the plan takes 0.5 s, the report would too
    cfg = LLMReportConfig(k=0, cot=True, study_budget=0.7, findings_from="labels", limit=2)
    records = _split_records(iu_text, "test", cfg.limit)
    sources = _findings(iu_text, "test", records, cfg, None, None, None)
    with FakeOpenAIServer(script=["ok", "ok", "slow"], slow=0.5) as server:
        chat = OpenAIChat(server.url, "m", timeout=5, retries=1)
        start = time.monotonic()
        rows = generate_reports(chat, iu_text, records, sources, cfg)
    assert time.monotonic() - start < 2
    assert len(server.requests) == 4  # no retry once the budget is spent
    assert [r.get("failure") for r in rows] == [None, "budget"]
    assert rows[1]["plan"] and "time budget ran out" in rows[1]["failure_detail"]
    # a model that cannot be interrupted is checked after its call
    slow = _Answers([None], delay=0.3)
    with pytest.raises(LLMError, match=r"the only study failed \(budget: 1\).*0\.2 s"):
        generate_reports(slow, iu_text, records.head(1), sources, replace(cfg, study_budget=0.2))
