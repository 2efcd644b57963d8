"""Findings-to-report with a language model (the third approach beside STL and MTL).

Findings (a run's findings head, or a dataset's labels) → a structured description
(:mod:`.description`) → a prompt with retrieved examples and an optional chain of thought
(:mod:`.retrieval`, :mod:`.prompt`, editable ``templates/``) → a chat model, offline
(llama.cpp, SmolLM2-135M by default) or any OpenAI-compatible endpoint (:mod:`.backends`)
→ a guard rail against contradictions (:mod:`.guard`) → the metrics of ``evaluate``
(:mod:`.pipeline`). The pipeline's parts: :mod:`.settings`, :mod:`.findings_source`
(a run's head or a dataset's labels) and :mod:`.generation` (prompting, time budgets,
failures).
"""

from mtl_report.llm_report.backends import (
    GenerationConfig,
    LlamaCppChat,
    LLMError,
    OpenAIChat,
    make_chat_model,
)
from mtl_report.llm_report.pipeline import llm_ablation, llm_report
from mtl_report.llm_report.settings import LABELS, VARIANTS, LLMReportConfig

__all__ = [
    "LABELS",
    "VARIANTS",
    "GenerationConfig",
    "LLMError",
    "LLMReportConfig",
    "LlamaCppChat",
    "OpenAIChat",
    "llm_ablation",
    "llm_report",
    "make_chat_model",
]
