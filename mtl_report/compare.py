"""STL vs MTL-EQ vs MTL-TP (vs MTL-UW): train each set-up over seeds, score, tabulate.

Writes into ``out``::

    runs/<setup>_seed<k>/          one run directory per set-up and seed
    table1_report_generation.md/.csv   BLEU-1..4, METEOR, ROUGE-L, CIDEr, BERTScore
    table2_clinical_efficacy.md/.csv   P / R / F1 of findings mentioned in the reports
    table3_findings.md/.csv            findings head: P, R, F1 micro/macro, Hamming, exact match
    table4_acuity.md/.csv              acuity head: accuracy, MAE, MSE, within one level
    table5_decoding.md/.csv            repetition and BLEU under greedy / blocking / beam
    llm/<variant>/                     LLM rows (``llm=``): reports, prompts, metrics
    ttests.md/.csv                     paired t-tests of each MTL set-up against STL
    examples.md                        reference vs each set-up, like the paper's Table 5
    comparison.json                    everything above as data

Every table is mean ± std over seeds; the constant-report and nearest-neighbour baselines
sit in the same tables, and a set-up that does not beat them is flagged.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mtl_report.baselines import constant_baseline, nearest_neighbour_baseline
from mtl_report.config import ModelConfig, TrainConfig
from mtl_report.data.io import load_prepared
from mtl_report.evaluate import predict_split, read_predictions, score_predictions, score_run
from mtl_report.models.aksoy.aksoy_setups import DEFAULT_COMPARISON, expand_setups
from mtl_report.run import MODEL_FILE, Run, run_finished
from mtl_report.training import prepare_features, train

TEXT_KEYS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider", "bertscore_f1")
CE_KEYS = ("precision", "recall", "f1")
FINDINGS_KEYS = ("precision", "recall", "f1_micro", "f1_macro", "hamming_loss", "exact_match")
ACUITY_KEYS = ("accuracy", "mae", "mse", "within_one")
LOWER_IS_BETTER = {"hamming_loss", "mae", "mse"}
STL_OF_TASK = {"text": "stl_text", "findings": "stl_findings", "acuity": "stl_acuity"}
TTEST_SCORES = {
    "text": ("bleu_4", "rouge_l", "cider"),
    "findings": ("findings_accuracy",),
    "acuity": ("acuity_abs_error",),
}


def _cell(values: Sequence[float]) -> str:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))]
    if not vals:
        return "—"
    if len(vals) == 1:
        return f"{vals[0]:.3f}"
    return f"{np.mean(vals):.3f} ± {np.std(vals, ddof=1):.3f}"


def _table(rows: dict[str, list[dict]], keys: Sequence[str]) -> pd.DataFrame:
    data = {}
    for name, metrics in rows.items():
        if not metrics or all(m is None for m in metrics):
            continue
        data[name] = {k: _cell([m.get(k) for m in metrics if m]) for k in keys}
    return pd.DataFrame.from_dict(data, orient="index", columns=list(keys))


def _write_table(df: pd.DataFrame, out: Path, name: str, title: str) -> str:
    df.to_csv(out / f"{name}.csv")
    md = f"### {title}\n\n" + df.to_markdown() + "\n"
    (out / f"{name}.md").write_text(md)
    return md


def compare(
    data: str | Path,
    out: str | Path,
    setups: str | Sequence[str] = DEFAULT_COMPARISON,
    seeds: int = 1,
    *,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    split: str = "test",
    bertscore_model: str | None = None,
    cache_dir: str | Path | None = None,
    n_examples: int = 3,
    decoding_study: bool = True,
    verbose: int | str = "auto",
    llm: Sequence[str] = (),
    llm_config=None,
    chat_model=None,
    **overrides,
) -> dict:
    """Train every set-up ``seeds`` times, evaluate on ``split``, write the tables.

    ``decoding_study`` adds Table 5: repeated-trigram rate and BLEU of one text run under
    greedy, greedy with trigram blocking and beam search (:mod:`mtl_report.decoding_study`).

    ``llm`` adds language-model rows (:mod:`mtl_report.llm_report`; variants
    ``zero_shot``, ``icil``, ``icil_cot``) written from the findings head of the MTL-TP
    run (else another multi-task run; seed 0) into ``out/llm/<variant>/``; ``llm_config``
    and ``chat_model`` as in :func:`~mtl_report.llm_report.llm_report` (default: the
    offline model).

    Returns the comparison as a dict (also ``out/comparison.json``).
    """
    from mtl_report.metrics import paired_t_test

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_prepared(Path(data))
    names = expand_setups(setups)
    records = ds.split(split)
    results: dict[str, list[dict]] = {}
    per_study: dict[str, list[pd.DataFrame]] = {}
    for name in names:
        for seed in range(seeds):
            run_dir = out / "runs" / f"{name}_seed{seed}"
            finished = run_finished(run_dir)
            if finished:  # a re-run of compare reuses what is already trained
                model = None
            else:
                if run_dir.exists() and not (run_dir / "backup").exists():
                    shutil.rmtree(run_dir)  # a run that died before its first epoch ended
                model = train(
                    ds,
                    run_dir,
                    name,
                    model_config=model_config,
                    train_config=train_config,
                    cache_dir=cache_dir,
                    verbose=verbose,
                    seed=seed,
                    resume=(run_dir / "backup").exists(),
                    **overrides,
                ).model
            cached = _cached_scores(run_dir, split, bertscore_model) if finished else None
            if cached is not None:  # scored before, by this model, with the same settings
                metrics, table = cached
            else:
                run = Run.read(run_dir)
                pred = predict_split(
                    run, ds, split, cache_dir=cache_dir, model=model, progress=False
                )
                metrics, table = score_run(run, ds, split, pred, bertscore_model)
                metrics["bertscore_model"] = str(bertscore_model) if bertscore_model else None
                (run_dir / f"metrics_{split}.json").write_text(json.dumps(metrics, indent=2) + "\n")
                table.to_csv(run_dir / f"predictions_{split}.csv", index=False)
            results.setdefault(name, []).append(metrics)
            per_study.setdefault(name, []).append(table)

    # Baselines on the same split (features of the first set-up's backbone).
    base_cfg = Run.read(out / "runs" / f"{names[0]}_seed0").model_config
    features = prepare_features(ds, base_cfg, cache_dir, progress=False)
    train_rec = ds.split("train")
    baselines = {
        "baseline: constant report": constant_baseline(train_rec, records, ds.finding_columns),
    }
    if features is not None and not ds.metadata.get("text_only"):  # no images: no neighbours
        baselines["baseline: nearest neighbour"] = nearest_neighbour_baseline(
            train_rec,
            records,
            features.lookup(train_rec["image_path"].tolist()),
            features.lookup(records["image_path"].tolist()),
            ds.finding_columns,
        )
    for label, pred in baselines.items():
        metrics, table = score_predictions(
            pred, records, ds.finding_columns, ds.findings, bertscore_model=bertscore_model
        )
        results[label] = [metrics]
        per_study[label] = [table]

    llm_labels = []
    if llm:
        from mtl_report.llm_report.pipeline import comparison_rows

        run_dir = _findings_run(out, names)
        rows = comparison_rows(
            ds,
            out / "llm",
            run_dir,
            split,
            list(llm),
            llm_config,
            chat_model,
            bertscore_model,
            cache_dir,
        )
        for label, (metrics, table) in rows.items():
            results[label] = [metrics]
            per_study[label] = [table]
            llm_labels.append(label)

    decoding = _decoding_table(out, ds, names, split, cache_dir) if decoding_study else None
    return _write_outputs(
        out,
        ds,
        names,
        results,
        per_study,
        n_examples,
        paired_t_test,
        split,
        decoding,
        llm_labels,
    )


def _findings_run(out: Path, names: Sequence[str]) -> Path:
    """The run whose findings head feeds the LLM rows (seed 0): MTL-TP (the paper's
    prioritised set-up, the one the demo exports), else the first other multi-task set-up,
    else ``stl_findings``."""
    from mtl_report.data.errors import DataError

    candidates = (
        [n for n in names if n == "mtl_tp"]
        + [n for n in names if n.startswith("mtl") and n != "mtl_tp"]
        + [n for n in names if n == "stl_findings"]
    )
    if not candidates:
        raise DataError(
            "LLM rows need a set-up with a findings head (mtl_* or stl_findings) in --presets"
        )
    return out / "runs" / f"{candidates[0]}_seed0"


def _cached_scores(run_dir: Path, split: str, bertscore_model) -> tuple[dict, pd.DataFrame] | None:
    """The metrics and per-study table a previous ``compare`` wrote for this run, when they
    are newer than its model and were scored with the same BERTScore model; else None."""
    metrics_path = run_dir / f"metrics_{split}.json"
    table_path = run_dir / f"predictions_{split}.csv"
    model_path = run_dir / MODEL_FILE
    if not (metrics_path.is_file() and table_path.is_file() and model_path.is_file()):
        return None
    if min(metrics_path.stat().st_mtime, table_path.stat().st_mtime) < model_path.stat().st_mtime:
        return None
    metrics = json.loads(metrics_path.read_text())
    wanted = str(bertscore_model) if bertscore_model else None
    if "bertscore_model" not in metrics or metrics["bertscore_model"] != wanted:
        return None
    return metrics, read_predictions(table_path)


def _decoding_table(out: Path, ds, names, split, cache_dir) -> pd.DataFrame | None:
    """Table 5: decoding settings of the first multi-task (else text) run, seed 0 (reused
    from ``table5_decoding.csv`` when that is newer than the run's model)."""
    from mtl_report.decoding_study import decoding_study

    text_runs = [n for n in names if n.startswith("mtl")] + [n for n in names if n == "stl_text"]
    if not text_runs:
        return None
    run_dir = out / "runs" / f"{text_runs[0]}_seed0"
    saved = out / "table5_decoding.csv"
    table = None
    if saved.is_file() and saved.stat().st_mtime >= (run_dir / MODEL_FILE).stat().st_mtime:
        table = pd.read_csv(saved, index_col=0)
        if "run" not in table or set(table["run"]) != {text_runs[0]}:
            table = None  # written for another run
        else:
            table = table.drop(columns="run")
    if table is None:
        table = decoding_study(run_dir, ds, split, cache_dir=cache_dir)
    table.attrs["run"] = text_runs[0]
    return table


def _task_rows(results, task):
    return {
        name: [m.get(task) for m in ms]
        for name, ms in results.items()
        if any(m.get(task) for m in ms)
    }


def _write_outputs(
    out,
    ds,
    names,
    results,
    per_study,
    n_examples,
    paired_t_test,
    split,
    decoding=None,
    llm_labels=(),
    bertscore_model=None,
) -> dict:
    text_rows = _task_rows(results, "text")
    ce_rows = {
        n: [m["clinical_efficacy"] if m else None for m in ms] for n, ms in text_rows.items()
    }
    ce_rows = {
        n: [
            {"precision": c["precision_micro"], "recall": c["recall_micro"], "f1": c["f1_micro"]}
            if c
            else None
            for c in cs
        ]
        for n, cs in ce_rows.items()
    }
    synthetic = " (SYNTHETIC data)" if ds.metadata.get("synthetic") else ""
    parts = [f"# STL vs MTL on {ds.metadata.get('source')}{synthetic}, split {split}\n"]
    tables = {
        "table1_report_generation": (
            _table(text_rows, TEXT_KEYS),
            "Table 1. Report generation"
            + (f" (BERTScore: {_model_name(bertscore_model)})" if bertscore_model else ""),
        ),
        "table2_clinical_efficacy": (
            _table(ce_rows, CE_KEYS),
            "Table 2. Clinical efficacy (micro)",
        ),
        "table3_findings": (
            _table(_task_rows(results, "findings"), FINDINGS_KEYS),
            "Table 3. Findings (multi-label head)",
        ),
        "table4_acuity": (_table(_task_rows(results, "acuity"), ACUITY_KEYS), "Table 4. Acuity"),
    }
    for name, (df, title) in tables.items():
        if not df.empty:
            parts.append(_write_table(df, out, name, title))

    verdicts = _beats_baselines(results, [*names, *llm_labels])
    if verdicts:
        parts.append("### Against the baselines\n\n" + "\n".join(f"- {v}" for v in verdicts) + "\n")

    ttests = _ttests(per_study, names, paired_t_test)
    if not ttests.empty:
        ttests.to_csv(out / "ttests.csv", index=False)
        md = "### Paired t-tests against STL (per-study scores, averaged over seeds)\n\n"
        md += ttests.to_markdown(index=False, floatfmt=".4g") + "\n"
        (out / "ttests.md").write_text(md)
        parts.append(md)

    if decoding is not None:
        decoding.assign(run=decoding.attrs.get("run")).to_csv(out / "table5_decoding.csv")
        md = (
            f"### Table 5. Decoding and repetition ({decoding.attrs.get('run')}, seed 0)\n\n"
            + decoding.to_markdown(floatfmt=".3f")
            + "\n"
        )
        (out / "table5_decoding.md").write_text(md)
        parts.append(md)

    examples = _examples(per_study, n_examples)
    if examples:
        (out / "examples.md").write_text(examples)
        parts.append(examples)
    report = "\n".join(parts)
    (out / "comparison.md").write_text(report)
    summary = {
        "setups": names,
        "llm": list(llm_labels),
        "results": results,
        "ttests": ttests.to_dict("records") if not ttests.empty else [],
        "verdicts": verdicts,
        "decoding": decoding.reset_index().to_dict("records") if decoding is not None else [],
        "synthetic": bool(ds.metadata.get("synthetic")),
        "markdown": report,
    }
    (out / "comparison.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    save_comparison_figures(out, summary)
    return summary


def _model_name(bertscore_model) -> str:
    """How a BERTScore model is named in a table title."""
    if str(bertscore_model) == "packaged":
        return "all-MiniLM-L6-v2, packaged; not comparable with roberta-large scores"
    return Path(str(bertscore_model)).name


def _number(value) -> float | None:
    """A metric as float, or None when it is missing or NaN (no labels to score)."""
    if value is None:
        return None
    value = float(value)
    return None if np.isnan(value) else value


def _beats_baselines(results, names) -> list[str]:
    """One line per (set-up, task): does it beat every baseline on the task's key score?"""
    key = {"text": "bleu_4", "findings": "f1_macro", "acuity": "mae"}
    lines = []
    base_names = [n for n in results if n.startswith("baseline")]
    for name in names:
        for task, metric in key.items():
            mine = [_number(m[task].get(metric)) for m in results[name] if m.get(task)]
            mine = [v for v in mine if v is not None]
            if not mine:  # the head exists but the split has no labels (IU X-ray acuity)
                continue
            mean = float(np.mean(mine))
            worse = []
            for b in base_names:
                theirs = _number((results[b][0].get(task) or {}).get(metric))
                if theirs is None:
                    continue
                beaten = mean < theirs if metric in LOWER_IS_BETTER else mean > theirs
                if not beaten:
                    worse.append(f"{b} ({theirs:.3f})")
            verdict = "beats all baselines" if not worse else "does NOT beat " + ", ".join(worse)
            lines.append(f"{name} {task} {metric} {mean:.3f}: {verdict}")
    return lines


def _ttests(per_study, names, paired_t_test) -> pd.DataFrame:
    rows = []
    for task, score_names in TTEST_SCORES.items():
        stl = STL_OF_TASK[task]
        if stl not in per_study:
            continue
        base = _mean_over_seeds(per_study[stl])
        for name in names:
            if not name.startswith("mtl") or name not in per_study:
                continue
            other = _mean_over_seeds(per_study[name])
            for score in score_names:
                if score not in base or score not in other:
                    continue
                a = other[score].to_numpy(dtype="float64")
                b = base[score].reindex(other.index).to_numpy(dtype="float64")
                res = paired_t_test(a, b)
                rows.append({"task": task, "set-up": name, "vs": stl, "score": score, **res})
    return pd.DataFrame(rows)


def _mean_over_seeds(tables: list[pd.DataFrame]) -> pd.DataFrame:
    numeric = [t.set_index("study_id").select_dtypes("number") for t in tables]
    return sum(numeric) / len(numeric)


def _examples(per_study, n) -> str:
    texts = {name: ts[0] for name, ts in per_study.items() if "generated" in ts[0]}
    if not texts:
        return ""
    first = next(iter(texts.values()))
    lines = ["### Qualitative examples (seed 0)\n"]
    for i in range(min(n, len(first))):
        lines.append(f"**Study {first['study_id'].iloc[i]}**\n")
        lines.append(f"- reference: {first['reference'].iloc[i]}")
        for name, t in texts.items():
            lines.append(f"- {name}: {t['generated'].iloc[i]}")
        lines.append("")
    return "\n".join(lines) + "\n"


def save_comparison_figures(out: Path, summary: dict) -> list[Path]:
    """PNG figures next to the tables: ``comparison.png`` (bars, mean ± std over seeds)
    and ``runs/<run>/learning_curves.png``. A plotting failure is logged, never fatal:
    the tables are already written."""
    import logging

    from mtl_report import plots

    written = []
    try:
        fig = plots.plot_comparison(summary["results"])
        written.append(plots.save_figure(fig, out / "comparison.png"))
        for history in sorted((out / "runs").glob("*/history.json")):
            fig = plots.plot_learning_curves(history, title=history.parent.name)
            written.append(plots.save_figure(fig, history.parent / "learning_curves.png"))
    except Exception as exc:  # figures are a convenience beside the tables
        logging.getLogger(__name__).warning("comparison figures not written: %s", exc)
    return written
