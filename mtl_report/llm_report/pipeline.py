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

import inspect
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtl_report.data.errors import DataError
from mtl_report.data.io import PreparedDataset, load_prepared
from mtl_report.llm_report.backends import (
    STUDY_FAILURES,
    ChatModel,
    GenerationConfig,
    LLMError,
    make_chat_model,
)
from mtl_report.llm_report.description import (
    THRESHOLDS_FILE,
    DescriptionThresholds,
    choose_thresholds,
    context_text,
    describe,
    finding_states,
    state_vector,
)
from mtl_report.llm_report.guard import check_reports, guard_summary
from mtl_report.llm_report.prompt import (
    Example,
    PromptTemplates,
    after_plan,
    build_messages,
    parse_report,
    repair,
    report_text,
)
from mtl_report.llm_report.retrieval import ExampleRetriever

#: The ablation's prompting set-ups: (k examples or None for the configured k, chain of thought).
VARIANTS: dict[str, tuple[int | None, bool]] = {
    "zero_shot": (0, False),
    "icil": (None, False),
    "icil_cot": (None, True),
}
LABELS = {"zero_shot": "LLM (zero-shot)", "icil": "LLM (ICIL)", "icil_cot": "LLM (ICIL+CoT)"}
#: A run whose first this many studies all fail stops there: the endpoint or the model is
#: not answering, and trying every other study would only multiply the timeouts.
STOP_AFTER_FIRST_FAILURES = 5
#: Settings that bound a run's time and failures but not what a finished run wrote.
_OPERATIONAL = ("study_budget", "max_failures")


def parse_variants(text: str | Sequence[str], what: str = "LLM") -> list[str]:
    """Variant names from ``"all"``, ``"icil,icil_cot"`` or a list; unknown names are a
    :class:`DataError` naming the choices."""
    if isinstance(text, str):
        text = list(VARIANTS) if text.strip() == "all" else text.split(",")
    variants = [v.strip() for v in text]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise DataError(f"unknown {what} variant(s) {unknown}; choose from {list(VARIANTS)}")
    return variants


def variant_config(config: LLMReportConfig, name: str) -> LLMReportConfig:
    """``config`` with the examples and chain of thought of variant ``name``."""
    k, cot = VARIANTS[name]
    return replace(config, k=config.k if k is None else k, cot=cot)


@dataclass(frozen=True)
class LLMReportConfig:
    """Settings of one ``llm-report`` run.

    Attributes:
        k: in-context examples per study (0: zero-shot).
        cot: chain of thought (the model lists its findings first; only the report is kept).
        repair: regenerate once when the guard finds a contradiction, naming it.
        findings_from: ``"run"`` (the findings head of ``--run``) or ``"labels"`` (the
            dataset's finding labels, e.g. IU X-ray MeSH terms: the text side alone).
        npv: negative predictive value an "absent" must reach on validation.
        context: add the non-imaging context (complaint, vitals) to the description.
        seed: decoding seed and the retrieval tie-break seed.
        limit: only the first N studies of the split (smoke runs; metrics say so).
        templates: a folder of prompt templates (default: the packaged ones).
        generation: decoding settings.
        study_budget: seconds for all the model calls of one study together (every attempt
            and wait of the chain of thought, the report and the repair); spent, the study
            is a counted failure ``budget``. None: no budget (each request still has its
            timeout). The CLI's default is 4 × timeout × (retries + 1).
        max_failures: stop with an error once more than this many studies failed (None:
            no limit; a run in which every study fails is an error all the same).
    """

    k: int = 3
    cot: bool = True
    repair: bool = False
    findings_from: str = "run"
    npv: float = 0.95
    context: bool = True
    seed: int = 0
    limit: int | None = None
    templates: str | None = None
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    study_budget: float | None = None
    max_failures: int | None = None

    def __post_init__(self) -> None:
        if self.k < 0:
            raise ValueError(f"k must be >= 0, got {self.k}")
        if self.study_budget is not None and not self.study_budget > 0:
            raise ValueError(f"study_budget must be > 0 seconds, got {self.study_budget}")
        if self.max_failures is not None and self.max_failures < 0:
            raise ValueError(f"max_failures must be >= 0, got {self.max_failures}")
        if self.findings_from not in ("run", "labels"):
            raise ValueError(f"findings_from must be 'run' or 'labels', got {self.findings_from!r}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")

    @property
    def label(self) -> str:
        """Table row name: ``LLM (zero-shot)``, ``LLM (ICIL)`` or ``LLM (ICIL+CoT)``."""
        shots = "ICIL" if self.k > 0 else "zero-shot"
        return f"LLM ({shots}{'+CoT' if self.cot else ''}{', repair' if self.repair else ''})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Sources:
    """The findings of the split to report, and how they were obtained."""

    vectors: np.ndarray  # (N, K) probabilities or labels
    states: list[list[str]]
    thresholds: DescriptionThresholds | None
    run: str | None


def _sections(record: pd.Series) -> tuple[str, str]:
    findings = str(record.get("findings_text") or "").strip()
    impression = str(record.get("impression_text") or "").strip()
    if not findings and not impression:
        findings = str(record.get("report") or "").strip()
    return findings, impression


def _split_records(ds: PreparedDataset, split: str, limit: int | None) -> pd.DataFrame:
    records = ds.split(split)
    if records.empty:
        raise DataError(f"{ds.root}: no studies in split {split!r}")
    return records.head(limit) if limit else records


def _labels(records: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    return records[list(columns)].to_numpy(dtype="float64")


def findings_from_run(
    run_dir: Path,
    ds: PreparedDataset,
    split: str,
    records: pd.DataFrame,
    npv: float,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> _Sources:
    """Probabilities of the run's findings head on ``split``; cut-offs from its val split."""
    from mtl_report.evaluate import predict_split
    from mtl_report.run import Run

    run = Run.read(run_dir)
    model = run.load_model()
    if "findings" not in model.output:
        raise DataError(
            f"{run_dir}: the model has no findings head (preset {run.info.get('preset')}); "
            "use a multi-task or stl_findings run, or --findings-from labels"
        )
    if list(run.model_config.findings) != list(ds.findings):
        raise DataError(
            f"{run_dir}: the run models {list(run.model_config.findings)}, the data has "
            f"{list(ds.findings)}"
        )
    val = ds.split("val")
    if val.empty:
        raise DataError(f"{ds.root}: no validation studies to choose the description cut-offs on")
    kw = dict(cache_dir=cache_dir, model=model, progress=progress, generate_text=False)
    val_pred = predict_split(run, ds, "val", **kw)
    thresholds = choose_thresholds(
        _labels(val, ds.finding_columns),
        val_pred.findings_probs,
        ds.findings,
        present_at=run.findings_thresholds(),
        npv=npv,
    )
    thresholds.save(run.root / THRESHOLDS_FILE)  # stored with the run
    pred = predict_split(run, ds, split, **kw)
    probs = pred.findings_probs[: len(records)]
    return _Sources(probs, finding_states(probs, thresholds), thresholds, str(run_dir))


def findings_from_labels(ds: PreparedDataset, records: pd.DataFrame) -> _Sources:
    """The dataset's labels as the findings (1 present, 0 absent, unknown uncertain)."""
    labels = _labels(records, ds.finding_columns)
    return _Sources(labels, finding_states(labels), None, None)


def _findings(ds, split, records, config, run, cache_dir, progress) -> _Sources:
    """The findings of ``records`` as ``config.findings_from`` says (a run's head or labels)."""
    if config.findings_from == "labels":
        return findings_from_labels(ds, records)
    if run is None:
        raise DataError("--run is required unless --findings-from labels")
    return findings_from_run(
        Path(run),
        ds,
        split,
        records,
        config.npv,
        Path(cache_dir) if cache_dir else None,
        progress=progress is not None,
    )


class _Examples:
    """Training studies as in-context examples (described from their labels)."""

    def __init__(self, ds: PreparedDataset, use_context: bool, seed: int):
        train = ds.split("train")
        if train.empty:
            raise DataError(f"{ds.root}: no training studies to take in-context examples from")
        self.train = train.reset_index(drop=True)
        labels = _labels(self.train, ds.finding_columns)
        self.retriever = ExampleRetriever(labels, self.train["report"].fillna("").tolist(), seed)
        self.states = finding_states(labels)
        self.findings = ds.findings
        self.use_context = use_context

    def get(self, query: np.ndarray, k: int) -> list[Example]:
        out = []
        for i in self.retriever.nearest(query, k):
            rec = self.train.iloc[i]
            context = context_text(rec) if self.use_context else ""
            findings, impression = _sections(rec)
            out.append(
                Example(
                    study_id=str(rec["study_id"]),
                    description=describe(self.findings, self.states[i], context=context),
                    findings=findings,
                    impression=impression,
                )
            )
        return out


def _takes_deadline(model: ChatModel) -> bool:
    """Whether ``model.chat`` accepts ``deadline=`` (then it keeps the budget itself)."""
    try:
        return "deadline" in inspect.signature(model.chat).parameters
    except (TypeError, ValueError):
        return False


def _chat(
    model: ChatModel,
    messages: list[dict],
    generation: GenerationConfig,
    deadline: float | None,
    budget: float | None,
) -> str:
    """One model call within the study's budget (``deadline``, a monotonic time). A model
    that cannot be interrupted is checked before and after its call."""
    if deadline is None:
        return model.chat(messages, generation)
    if time.monotonic() >= deadline:
        raise LLMError(f"the study's time budget of {budget:g} s is spent", "budget")
    if _takes_deadline(model):
        return model.chat(messages, generation, deadline=deadline)
    answer = model.chat(messages, generation)
    if time.monotonic() > deadline:
        raise LLMError(f"the study's time budget of {budget:g} s is spent", "budget")
    return answer


def _fail(row: dict[str, Any], exc: LLMError) -> dict[str, Any]:
    """Mark ``row`` failed by ``exc`` (a study failure) or re-raise a run failure."""
    if exc.kind not in STUDY_FAILURES:
        raise exc
    row.update(failure=exc.kind, failure_detail=str(exc), report="")
    return row


def _generate_one(
    model: ChatModel,
    templates: PromptTemplates,
    description: str,
    examples: list[Example],
    config: LLMReportConfig,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Messages, plan, answer and report of one study; ``failure`` set when a call failed
    for this study (what was said until then is kept for ``prompts.jsonl``)."""
    messages = build_messages(templates, description, examples, cot=config.cot)
    row: dict[str, Any] = {"messages": messages, "plan": "", "answer": "", "report": ""}
    budget = config.study_budget
    try:
        if config.cot:
            row["plan"] = _chat(model, messages, config.generation, deadline, budget)
            row["messages"] = messages = after_plan(templates, messages, row["plan"])
        row["answer"] = _chat(model, messages, config.generation, deadline, budget)
    except LLMError as exc:
        return _fail(row, exc)
    if not (row["answer"] or "").strip():  # as the back ends say of a null/blank content
        return _fail(row, LLMError("empty answer", "empty_answer"))
    row["report"] = report_text(*parse_report(row["answer"]))
    if not row["report"]:
        return _fail(row, LLMError("the answer holds no report text", "empty_report"))
    return row


def failure_counts(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Failed studies by kind, e.g. ``{"empty_answer": 3, "timeout": 1}``."""
    return dict(sorted(Counter(r["failure"] for r in rows if r.get("failure")).items()))


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{kind}: {n}" for kind, n in counts.items())


def _first_failure(rows: Sequence[dict[str, Any]]) -> str:
    return next((r["failure_detail"] for r in rows if r.get("failure")), "")


def generate_reports(
    model: ChatModel,
    ds: PreparedDataset,
    records: pd.DataFrame,
    sources: _Sources,
    config: LLMReportConfig,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
) -> list[dict[str, Any]]:
    """One dict per study: description, examples, messages, plan, answer, report, guard."""
    templates = PromptTemplates.load(config.templates)
    examples = _Examples(ds, config.context, config.seed) if config.k > 0 else None
    update = progress(f"LLM reports ({config.label})", len(records)) if progress else None
    budget = config.study_budget
    rows = []
    for i, (_, rec) in enumerate(records.reset_index(drop=True).iterrows()):
        context = context_text(rec) if config.context else ""
        description = describe(ds.findings, sources.states[i], context=context)
        query = state_vector(sources.states[i])
        shots = examples.get(query, config.k) if examples is not None else []
        start = time.monotonic()
        row = _generate_one(
            model, templates, description, shots, config, start + budget if budget else None
        )
        row.update(
            study_id=str(rec["study_id"]),
            description=description,
            examples=[e.study_id for e in shots],
            seconds=time.monotonic() - start,
        )
        rows.append(row)
        _check_failures(rows, config, len(records))
        if update:
            update(1)
    _check_failures(rows, config, len(records), final=True)

    source = "classifier" if sources.thresholds is not None else "labels"
    for row in rows:
        row.update(contradictions=[], omissions=[], repaired=False)
    ok = [i for i, r in enumerate(rows) if not r.get("failure")]
    reports, states = [rows[i]["report"] for i in ok], [sources.states[i] for i in ok]
    checks = dict(zip(ok, check_reports(reports, states, ds.findings, source)))
    for i, check in checks.items():
        rows[i]["contradictions"] = list(check.contradictions)
        rows[i]["omissions"] = list(check.omissions)
    if config.repair:
        todo = [i for i, c in checks.items() if not c.ok]
        for i in todo:
            row = rows[i]
            messages = repair(
                templates, row["messages"], row["answer"], checks[i].message(), row["description"]
            )
            row["first_report"] = row["report"]
            row["first_contradictions"] = row["contradictions"]
            row["repair_messages"] = messages
            row["repaired"] = True
            start = time.monotonic()  # the rest of the study's budget
            deadline = start + budget - row["seconds"] if budget else None
            try:
                answer = row["repair_answer"] = _chat(
                    model, messages, config.generation, deadline, budget
                )
                row["report"] = report_text(*parse_report(answer))
                if not row["report"]:
                    raise LLMError("the repaired answer holds no report text", "empty_report")
            except LLMError as exc:
                _fail(row, exc)
            row["seconds"] += time.monotonic() - start
        _check_failures(rows, config, len(records), final=True)
        todo = [i for i in todo if not rows[i].get("failure")]
        if todo:
            again = check_reports(
                [rows[i]["report"] for i in todo],
                [sources.states[i] for i in todo],
                ds.findings,
                source,
            )
            for i, check in zip(todo, again):
                rows[i]["contradictions"] = list(check.contradictions)
                rows[i]["omissions"] = list(check.omissions)
    return rows


def _check_failures(
    rows: list[dict[str, Any]], config: LLMReportConfig, total: int, final: bool = False
) -> None:
    """Stop the run with an :class:`LLMError` when its failures leave nothing worth
    scoring: more than ``config.max_failures``, the first
    :data:`STOP_AFTER_FIRST_FAILURES` studies all failed, or (``final``) every study."""
    failed = sum(bool(r.get("failure")) for r in rows)
    if not failed:
        return
    counts = failure_counts(rows)
    why = f"({_counts_text(counts)}); first: {_first_failure(rows)}"
    if config.max_failures is not None and failed > config.max_failures:
        raise LLMError(
            f"{failed} studies failed, more than --llm-max-failures {config.max_failures} {why}"
        )
    if failed == len(rows) == min(total, STOP_AFTER_FIRST_FAILURES) < total:
        raise LLMError(f"the first {failed} studies all failed, stopping {why}")
    if final and failed == len(rows):
        every = f"all {failed} studies" if failed > 1 else "the only study"
        raise LLMError(f"{every} failed {why}")


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
        preset=config.label,
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
