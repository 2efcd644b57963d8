"""Findings → structured description → language model → report, scored like ``evaluate``.

``llm_report`` writes into ``out``::

    metrics.json        the ``evaluate`` format (text block + clinical efficacy), plus
                        ``text.guard`` (contradiction / omission rates) and ``llm`` (settings)
    predictions.csv     per study: reference, generated, per-study scores, description,
                        chain-of-thought plan, guard outcome
    prompts.jsonl       per study: every message sent and every raw answer
    config.json         the settings, the templates' digest, the model, the cut-offs
    llm_thresholds.json the description cut-offs (also stored in the run directory)

A study whose model calls fail (a timeout, its time budget spent, an empty answer...; the
kinds of :data:`~mtl_report.llm_report.backends.STUDY_FAILURES`) is not scored as an empty
report: it is counted in ``metrics.json``'s ``text.llm_failures`` (by kind), marked in the
``llm_failure`` column of ``predictions.csv``, left out of every score (``n`` counts the
scored studies) and announced by a warning line on stderr. A run in which every study
fails, whose first :data:`STOP_AFTER_FIRST_FAILURES` studies all fail, or with more than
``max_failures`` failed studies is an :class:`~mtl_report.llm_report.backends.LLMError`.

``llm_ablation`` runs the three prompting set-ups (zero-shot, ICIL, ICIL+CoT) with one
loaded model and writes ``ablation.md``/``.csv`` beside their folders.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd

from mtl_report.data.io import PreparedDataset, load_prepared
from mtl_report.llm_report.backends import (
    ChatModel,
    make_chat_model,
)
from mtl_report.llm_report.description import (
    THRESHOLDS_FILE,
)
from mtl_report.llm_report.findings_source import _findings, _Sources, _split_records
from mtl_report.llm_report.generation import (
    _counts_text,
    _first_failure,
    failure_counts,
    generate_reports,
)
from mtl_report.llm_report.guard import guard_summary
from mtl_report.llm_report.prompt import (
    PromptTemplates,
)
from mtl_report.llm_report.settings import (
    _OPERATIONAL,
    VARIANTS,
    LLMReportConfig,
    parse_variants,
    variant_config,
)


def _score(
    rows: list[dict], records: pd.DataFrame, ds: PreparedDataset, bertscore_model: str | None
) -> tuple[dict, pd.DataFrame]:
    """Scores of the studies that did not fail (``n`` counts them); the per-study table
    keeps every study in order, a failed one with its ``llm_failure`` kind, an empty
    report and no scores."""
    from mtl_report.evaluate import Predictions, score_predictions, standardized_references
    from mtl_report.llm_report.guard import GuardResult

    ok = [i for i, r in enumerate(rows) if not r.get("failure")]
    scored = [rows[i] for i in ok]
    generated = standardized_references([r["report"] for r in scored])
    pred = Predictions(
        study_ids=[r["study_id"] for r in scored],
        generated=generated,
        acuity_cumulative=None,
        findings_probs=None,
    )
    metrics, table = score_predictions(
        pred, records.iloc[ok], ds.finding_columns, ds.findings, bertscore_model=bertscore_model
    )
    results = [GuardResult(tuple(r["contradictions"]), tuple(r["omissions"])) for r in scored]
    guard = guard_summary(results, len(ds.findings))
    if any(r["repaired"] for r in scored):
        before = [
            GuardResult(tuple(r.get("first_contradictions", r["contradictions"])), ())
            for r in scored
        ]
        guard["contradiction_rate_before_repair"] = guard_summary(before, len(ds.findings))[
            "contradiction_rate"
        ]
        guard["repaired"] = sum(r["repaired"] for r in scored)
    metrics["text"]["guard"] = guard
    metrics["text"]["llm_failures"] = failure_counts(rows)
    if len(ok) < len(rows):  # every study in the table, the failed ones unscored
        table.index = ok
        table = table.reindex(range(len(rows)))
        table["study_id"] = [r["study_id"] for r in rows]
        table["reference"] = standardized_references(records["report"].tolist())
        table["generated"] = table["generated"].fillna("")
    table["llm_failure"] = [r.get("failure", "") for r in rows]
    table["report_as_written"] = [r["report"] for r in rows]
    table["description"] = [r["description"] for r in rows]
    table["plan"] = [r["plan"] for r in rows]
    table["examples"] = [" ".join(r["examples"]) for r in rows]
    table["contradictions"] = ["; ".join(r["contradictions"]) for r in rows]
    table["omissions"] = ["; ".join(r["omissions"]) for r in rows]
    table["repaired"] = [r["repaired"] for r in rows]
    return metrics, table


def llm_report(
    data: str | Path | PreparedDataset,
    out: str | Path,
    run: str | Path | None = None,
    split: str = "test",
    config: LLMReportConfig | None = None,
    chat_model: ChatModel | None = None,
    bertscore_model: str | None = None,
    cache_dir: str | Path | None = None,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
    sources: _Sources | None = None,
) -> dict:
    """Write LLM reports for ``split`` and score them; returns ``metrics.json``'s content.

    Args:
        data: prepared dataset (directory or loaded).
        out: output folder (see the module docstring).
        run: run directory whose findings head gives the findings (``findings_from="run"``).
        chat_model: the language model (default: offline SmolLM2-135M via llama.cpp).
        sources: precomputed findings (the ablation shares one set between its variants).
    """
    config = config or LLMReportConfig()
    ds = data if isinstance(data, PreparedDataset) else load_prepared(Path(data))
    records = _split_records(ds, split, config.limit)
    if sources is None:
        sources = _findings(ds, split, records, config, run, cache_dir, progress)
    model = chat_model or make_chat_model()
    rows = generate_reports(model, ds, records, sources, config, progress)
    metrics, table = _score(rows, records, ds, bertscore_model)
    counts = metrics["text"]["llm_failures"]
    if counts:
        failed = sum(counts.values())
        print(
            f"llm-report: warning: {config.label}: {failed} of {len(rows)} studies failed and "
            f"are not scored ({_counts_text(counts)}; see the llm_failure column of "
            f"predictions.csv); first: {_first_failure(rows)}",
            file=sys.stderr,
        )
    for j, column in enumerate(ds.finding_columns):  # what the description was built from
        table[f"{column}_given"] = sources.vectors[:, j]
    metrics.update(
        split=split,
        setup=config.label,
        synthetic=bool(ds.metadata.get("synthetic", False)),
        llm={
            **model.describe(),
            **{k: v for k, v in config.to_dict().items() if k != "generation"},
            "generation": asdict(config.generation),
            "findings_source": "labels" if sources.thresholds is None else f"run {sources.run}",
            "partial_split": bool(config.limit and config.limit < len(ds.split(split))),
            "studies": len(rows),
        },
        bertscore_model=str(bertscore_model) if bertscore_model else None,
    )
    _write(Path(out), metrics, table, rows, config, model, sources, split)
    return metrics


def _write(out, metrics, table, rows, config, model, sources, split) -> None:
    from mtl_report.metrics import write_metrics_json

    out.mkdir(parents=True, exist_ok=True)
    write_metrics_json(metrics, out / "metrics.json")
    table.to_csv(out / "predictions.csv", index=False)
    with open(out / "prompts.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            keep = {
                k: r[k]
                for k in (
                    "study_id",
                    "messages",
                    "plan",
                    "answer",
                    "report",
                    "examples",
                    "contradictions",
                    "repaired",
                    "repair_messages",
                    "repair_answer",
                    "first_report",
                    "failure",
                    "failure_detail",
                )
                if k in r
            }
            f.write(json.dumps(keep, ensure_ascii=False) + "\n")
    if sources.thresholds is not None:
        sources.thresholds.save(out / THRESHOLDS_FILE)
    info = {
        "label": config.label,
        "split": split,
        "config": {**config.to_dict(), "generation": asdict(config.generation)},
        "templates_digest": PromptTemplates.load(config.templates).digest(),
        "model": model.describe(),
        "findings_source": "labels" if sources.thresholds is None else sources.run,
        "thresholds": sources.thresholds.to_dict() if sources.thresholds else None,
    }
    (out / "config.json").write_text(json.dumps(info, indent=2, default=str) + "\n")


ABLATION_KEYS = ("bleu_1", "bleu_4", "meteor", "rouge_l", "cider")


def llm_ablation(
    data: str | Path | PreparedDataset,
    out: str | Path,
    run: str | Path | None = None,
    split: str = "test",
    config: LLMReportConfig | None = None,
    variants: Sequence[str] = tuple(VARIANTS),
    chat_model: ChatModel | None = None,
    bertscore_model: str | None = None,
    cache_dir: str | Path | None = None,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
) -> pd.DataFrame:
    """Zero-shot vs ICIL vs ICIL+CoT on the same findings with one loaded model.

    Writes ``out/<variant>/`` (see :func:`llm_report`) and ``out/ablation.md``/``.csv``;
    returns the table (text scores, clinical-efficacy micro P/R/F1, guard rates).
    """
    variants = parse_variants(variants, "ablation")
    config = config or LLMReportConfig()
    ds = data if isinstance(data, PreparedDataset) else load_prepared(Path(data))
    records = _split_records(ds, split, config.limit)
    sources = _findings(ds, split, records, config, run, cache_dir, progress)
    model = chat_model or make_chat_model()
    out = Path(out)
    rows = {}
    for name in variants:
        cfg = variant_config(config, name)
        metrics = llm_report(
            ds, out / name, run, split, cfg, model, bertscore_model, cache_dir, progress, sources
        )
        rows[cfg.label] = ablation_row(metrics)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.to_csv(out / "ablation.csv")
    source = "labels" if sources.thresholds is None else "the run's findings head"
    md = (
        f"### LLM prompting ablation ({model.name}, findings from {source}, split {split}, "
        f"n={len(records)})\n\n" + table.to_markdown(floatfmt=".3f") + "\n"
    )
    (out / "ablation.md").write_text(md)
    return table


def ablation_row(metrics: dict) -> dict[str, float]:
    """One ablation-table row from a ``metrics.json``."""
    text = metrics["text"]
    ce = text["clinical_efficacy"]
    return {
        **{k: text.get(k) for k in ABLATION_KEYS},
        "ce_precision": ce["precision_micro"],
        "ce_recall": ce["recall_micro"],
        "ce_f1": ce["f1_micro"],
        "contradiction_rate": text["guard"]["contradiction_rate"],
        "omission_rate": text["guard"]["omission_rate"],
        "failed": sum(text.get("llm_failures", {}).values()),
    }


def _finished(out: Path, config: LLMReportConfig, run_dir: Path, split: str) -> bool:
    """Whether ``out`` holds an ``llm_report`` of these settings, newer than the run's model."""
    from mtl_report.run import MODEL_FILE

    try:
        info = json.loads((out / "config.json").read_text())
        metrics_time = (out / "metrics.json").stat().st_mtime
    except (OSError, ValueError):
        return False
    wanted = {**config.to_dict(), "generation": asdict(config.generation)}
    written = {k: v for k, v in (info.get("config") or {}).items() if k not in _OPERATIONAL}
    wanted = {k: v for k, v in wanted.items() if k not in _OPERATIONAL}
    return (
        written == json.loads(json.dumps(wanted))
        and info.get("split") == split
        and info.get("findings_source") == str(run_dir)
        and info.get("templates_digest") == PromptTemplates.load(config.templates).digest()
        and (out / "predictions.csv").is_file()
        and metrics_time >= (run_dir / MODEL_FILE).stat().st_mtime
    )


def comparison_rows(
    ds: PreparedDataset,
    out: Path,
    run_dir: Path,
    split: str,
    variants: Sequence[str],
    config: LLMReportConfig | None = None,
    chat_model: ChatModel | None = None,
    bertscore_model: str | None = None,
    cache_dir: str | Path | None = None,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
) -> dict[str, tuple[dict, pd.DataFrame]]:
    """LLM rows for ``compare``: ``{label: (metrics, per-study table)}`` of each variant,
    written to ``out/<variant>/`` with the findings of ``run_dir``. A variant already
    written with the same settings after the run's model was saved is read back, not
    regenerated (the language model is only loaded when something is left to write)."""
    from mtl_report.evaluate import read_predictions

    variants = parse_variants(variants)
    config = config or LLMReportConfig()
    rows: dict[str, tuple[dict, pd.DataFrame]] = {}
    sources = None
    for name in variants:
        cfg = replace(variant_config(config, name), findings_from="run")
        target = Path(out) / name
        if not _finished(target, cfg, run_dir, split):
            if sources is None:
                records = _split_records(ds, split, cfg.limit)
                sources = _findings(ds, split, records, cfg, run_dir, cache_dir, progress)
            chat_model = chat_model or make_chat_model()
            llm_report(
                ds,
                target,
                run_dir,
                split,
                cfg,
                chat_model,
                bertscore_model,
                cache_dir,
                progress,
                sources,
            )
        metrics = json.loads((target / "metrics.json").read_text())
        rows[cfg.label] = (metrics, read_predictions(target / "predictions.csv"))
    return rows
