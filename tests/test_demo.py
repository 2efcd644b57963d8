"""``mtl-report demo`` and ``compare`` end to end on a tiny synthetic dataset.

The demo is the main job of the package: synthetic data → linkage → set-ups trained →
Tables 1–4 with baselines and paired t-tests. These tests run it at toy size (a few seconds
of training) and check the tables' structure and the reuse of finished work; what the model
learns at full demo size is in the README and the issue notes.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mtl_report.cli import main
from mtl_report.demo import DemoConfig, run_demo

TINY = DemoConfig(
    studies=100,
    epochs=1,
    image_size=64,
    setups="stl,mtl_tp",
    batch_size=16,
    export=False,
    llm="none",
    bertscore_model=None,
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    lines: list[str] = []
    summary = run_demo(out, TINY, verbose=0, echo=lines.append)
    return out, summary, lines


@pytest.mark.slow
def test_demo_writes_the_papers_tables_with_baselines(demo):
    out, summary, lines = demo
    compare = out / "compare"
    for name in (
        "table1_report_generation",
        "table2_clinical_efficacy",
        "table3_findings",
        "table4_acuity",
    ):
        assert (compare / f"{name}.md").is_file() and (compare / f"{name}.csv").is_file()
    table1 = pd.read_csv(compare / "table1_report_generation.csv", index_col=0)
    assert {
        "stl_text",
        "mtl_tp",
        "baseline: constant report",
        "baseline: nearest neighbour",
    } <= set(table1.index)
    assert list(table1.columns[:4]) == ["bleu_1", "bleu_2", "bleu_3", "bleu_4"]
    table4 = pd.read_csv(compare / "table4_acuity.csv", index_col=0)
    assert {"stl_acuity", "mtl_tp"} <= set(table4.index)
    assert "stl_text" not in table4.index  # a set-up without the head has no row
    # Every set-up × task gets a verdict against the baselines.
    verdicts = summary["verdicts"]
    assert any(v.startswith("mtl_tp text") for v in verdicts)
    assert all("beats all baselines" in v or "does NOT beat" in v for v in verdicts)
    # Paired t-tests of MTL-TP against each single-task set-up, with valid p-values.
    ttests = pd.read_csv(compare / "ttests.csv")
    assert set(ttests["vs"]) == {"stl_text", "stl_acuity", "stl_findings"}
    assert set(ttests["set-up"]) == {"mtl_tp"}
    p = ttests["p_value"].dropna()
    assert ((p >= 0) & (p <= 1)).all()
    # Table 5: trigram blocking leaves no repeated trigram; plain greedy may have some.
    decoding = pd.read_csv(compare / "table5_decoding.csv", index_col=0)
    assert decoding.loc["greedy, no repeated trigrams", "repeated_trigram_rate"] == 0
    assert decoding.loc["beam 3, no repeated trigrams", "repeated_trigram_rate"] == 0
    assert decoding.loc["greedy", "repeated_trigram_rate"] >= 0
    examples = (compare / "examples.md").read_text()
    assert "reference:" in examples and "mtl_tp:" in examples
    # Synthetic data is said to be synthetic in every output.
    assert "SYNTHETIC" in summary["markdown"]
    assert any("SYNTHETIC" in line for line in lines)
    comparison = json.loads((compare / "comparison.json").read_text())
    assert comparison["synthetic"] is True
    assert json.loads((out / "demo_config.json").read_text())["epochs"] == TINY.epochs


@pytest.mark.slow
def test_a_second_demo_run_reuses_data_and_finished_runs(demo):
    out, _, _ = demo
    history = out / "compare" / "runs" / "mtl_tp_seed0" / "history.json"
    records = out / "data" / "records.parquet"
    scores = history.with_name("metrics_test.json")
    stamps = [p.stat().st_mtime_ns for p in (history, records, scores)]
    table1 = (out / "compare" / "table1_report_generation.csv").read_text()
    table5 = (out / "compare" / "table5_decoding.csv").read_text()
    lines: list[str] = []
    run_demo(out, TINY, verbose=0, echo=lines.append)
    # Nothing retrained, regenerated or re-scored, and the tables come out the same.
    assert [p.stat().st_mtime_ns for p in (history, records, scores)] == stamps
    assert (out / "compare" / "table1_report_generation.csv").read_text() == table1
    assert (out / "compare" / "table5_decoding.csv").read_text() == table5
    assert any("reusing" in line for line in lines)


def test_demo_refuses_a_toy_dataset_with_a_one_line_error(tmp_path, capsys):
    code = main(["demo", "--out", str(tmp_path / "d"), "--studies", "10", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "at least 100 studies" in err[0]


@pytest.mark.slow
def test_llm_rows_join_the_comparison_tables(demo, tmp_path):
    import shutil

    from llm_fakes import FakeChat

    from mtl_report.compare import compare

    out, _, _ = demo
    compare_dir = tmp_path / "compare"
    shutil.copytree(out / "compare", compare_dir)  # keeps mtimes: finished runs are reused
    fake = FakeChat()
    result = compare(
        out / "data",
        compare_dir,
        setups=TINY.setups,
        llm=["icil_cot"],
        chat_model=fake,
        verbose=0,
    )
    label = "LLM (ICIL+CoT)"
    assert result["llm"] == [label]
    n_test = result["results"]["mtl_tp"][0]["n"]
    assert len(fake.calls) == 2 * n_test  # plan + report per test study
    table1 = pd.read_csv(compare_dir / "table1_report_generation.csv", index_col=0)
    table2 = pd.read_csv(compare_dir / "table2_clinical_efficacy.csv", index_col=0)
    assert label in table1.index and label in table2.index
    assert any(v.startswith(f"{label} text bleu_4") for v in result["verdicts"])
    assert f"- {label}:" in (compare_dir / "examples.md").read_text()
    # the findings came from the MTL-TP run, with cut-offs stored in that run
    llm_metrics = json.loads((compare_dir / "llm" / "icil_cot" / "metrics.json").read_text())
    assert llm_metrics["llm"]["findings_source"].endswith("mtl_tp_seed0")
    assert (compare_dir / "runs" / "mtl_tp_seed0" / "llm_thresholds.json").is_file()

    class Refuses(FakeChat):
        def chat(self, messages, config):
            raise AssertionError("finished LLM rows must be reused, not regenerated")

    again = compare(
        out / "data",
        compare_dir,
        setups=TINY.setups,
        llm=["icil_cot"],
        chat_model=Refuses(),
        verbose=0,
    )
    assert again["results"][label] == result["results"][label]
