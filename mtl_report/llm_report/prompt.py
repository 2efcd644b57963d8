"""Prompt templates (files users edit) and the chat messages built from them.

A prompt is a list of chat messages ``{"role": ..., "content": ...}``:

    system      templates/system.txt
    user        query.txt   with an example's structured description  ┐ k retrieved
    assistant   answer.txt  with that example's reference report       ┘ examples (ICIL)
    user        query.txt   (or plan.txt with chain of thought) for the study

With chain of thought the model's list of findings comes back as an assistant turn, and
``after_plan.txt`` asks for the report; only the report is kept (the list is saved with
the prompt). See ``templates/README.md`` for the fields of each file.
"""

from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass, fields
from pathlib import Path

from mtl_report.data.errors import DataError

TEMPLATES_DIR = Path(__file__).with_name("templates")
Message = dict[str, str]

#: The fields each template must use (no more, no fewer: a typo is caught at load time).
FIELDS = {
    "system": set(),
    "query": {"description"},
    "answer": {"findings", "impression"},
    "plan": {"description"},
    "after_plan": set(),
    "repair": {"contradictions", "description"},
}


@dataclass(frozen=True)
class PromptTemplates:
    """The six prompt texts (see ``templates/README.md``)."""

    system: str
    query: str
    answer: str
    plan: str
    after_plan: str
    repair: str

    @classmethod
    def load(cls, directory: str | Path | None = None) -> PromptTemplates:
        """Templates from ``directory``, each missing file from the packaged ones.

        Raises:
            DataError: ``directory`` does not exist, or a template uses an unknown field or
                lacks a required one.
        """
        if directory is not None and not Path(directory).is_dir():
            raise DataError(f"{directory}: prompt template folder not found")
        texts = {}
        for f in fields(cls):
            path = Path(directory) / f"{f.name}.txt" if directory is not None else None
            if path is None or not path.is_file():
                path = TEMPLATES_DIR / f"{f.name}.txt"
            text = path.read_text(encoding="utf-8").strip()
            used = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
            if used != FIELDS[f.name]:
                raise DataError(
                    f"{path}: template fields {sorted(used)} but {f.name}.txt needs "
                    f"{sorted(FIELDS[f.name])}"
                )
            texts[f.name] = text
        return cls(**texts)

    def digest(self) -> str:
        """Short SHA-256 of all six texts: which wording produced a result."""
        h = hashlib.sha256()
        for f in fields(self):
            h.update(f.name.encode() + b"\0" + getattr(self, f.name).encode() + b"\0")
        return h.hexdigest()[:12]


@dataclass(frozen=True)
class Example:
    """An in-context example: a training study's description and its report sections."""

    study_id: str
    description: str
    findings: str
    impression: str


def build_messages(
    templates: PromptTemplates,
    description: str,
    examples: list[Example] = (),
    cot: bool = False,
) -> list[Message]:
    """The first request for a study: system, example pairs, then the study itself
    (``plan.txt`` instead of ``query.txt`` when ``cot``)."""
    messages = [{"role": "system", "content": templates.system}]
    for ex in examples:
        messages.append(
            {"role": "user", "content": templates.query.format(description=ex.description)}
        )
        messages.append(
            {
                "role": "assistant",
                "content": templates.answer.format(findings=ex.findings, impression=ex.impression),
            }
        )
    last = templates.plan if cot else templates.query
    messages.append({"role": "user", "content": last.format(description=description)})
    return messages


def after_plan(templates: PromptTemplates, messages: list[Message], plan: str) -> list[Message]:
    """Chain of thought, step 2: the model's plan as its turn, then the request for the report."""
    return [
        *messages,
        {"role": "assistant", "content": plan.strip()},
        {"role": "user", "content": templates.after_plan},
    ]


def repair(
    templates: PromptTemplates,
    messages: list[Message],
    report: str,
    contradictions: str,
    description: str,
) -> list[Message]:
    """Guard rail: the contradicting report as the model's turn, then a request to fix it."""
    return [
        *messages,
        {"role": "assistant", "content": report.strip()},
        {
            "role": "user",
            "content": templates.repair.format(
                contradictions=contradictions, description=description
            ),
        },
    ]


_HEADER = re.compile(
    r"(?im)^[\s>#*_-]*(findings|impression|report|conclusion)s?\s*[*_]*\s*:[*_]*\s*"
)


def parse_report(text: str) -> tuple[str, str]:
    """(findings, impression) of a model's answer.

    Section headers may be upper or lower case, in Markdown bold or after a ``#``; text
    before the first header (a preamble such as "Sure, here is the report") is dropped when
    there is a header. Without headers the whole answer is the findings section.
    """
    text = (text or "").strip()
    sections: dict[str, list[str]] = {}
    matches = list(_HEADER.finditer(text))
    if not matches:
        return " ".join(text.split()), ""
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        name = m.group(1).lower()
        name = "impression" if name in ("impression", "conclusion") else "findings"
        body = " ".join(text[m.end() : end].replace("*", " ").split())
        if body:
            sections.setdefault(name, []).append(body)
    return " ".join(sections.get("findings", [])), " ".join(sections.get("impression", []))


def report_text(findings: str, impression: str) -> str:
    """The scored report: findings then impression, like the datasets' ``report`` column."""
    return " ".join(f"{findings} {impression}".split())
