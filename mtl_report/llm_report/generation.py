"""Writing the reports: retrieved examples, one chat call (or two with a chain of thought)
per study under its time budget, failures counted by kind instead of scored as empty."""

from __future__ import annotations

import inspect
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mtl_report.data.errors import DataError
from mtl_report.data.io import PreparedDataset
from mtl_report.llm_report.backends import (
    STUDY_FAILURES,
    ChatModel,
    GenerationConfig,
    LLMError,
)
from mtl_report.llm_report.description import (
    context_text,
    describe,
    finding_states,
    state_vector,
)
from mtl_report.llm_report.findings_source import _labels, _sections, _Sources
from mtl_report.llm_report.guard import check_reports
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
from mtl_report.llm_report.settings import STOP_AFTER_FIRST_FAILURES, LLMReportConfig


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
