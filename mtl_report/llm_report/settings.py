"""Settings of ``llm-report``: :class:`LLMReportConfig`, the prompting variants of the
ablation and their names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from mtl_report.data.errors import DataError
from mtl_report.llm_report.backends import (
    GenerationConfig,
)

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
