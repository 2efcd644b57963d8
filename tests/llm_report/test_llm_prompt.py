"""Prompt templates (files), chat messages, and parsing the model's answer."""

from __future__ import annotations

import pytest

from mtl_report.data.errors import DataError
from mtl_report.llm_report.prompt import (
    TEMPLATES_DIR,
    Example,
    PromptTemplates,
    after_plan,
    build_messages,
    parse_report,
    repair,
    report_text,
)

DESC = "Findings:\n- Pleural effusion: present\n- Atelectasis: absent"


def test_packaged_templates_load_and_override_per_file(tmp_path):
    packaged = PromptTemplates.load()
    assert "FINDINGS" in packaged.system and "{description}" in packaged.query
    (tmp_path / "system.txt").write_text("Write a very short report.")
    mine = PromptTemplates.load(tmp_path)
    assert mine.system == "Write a very short report."
    assert mine.query == packaged.query  # missing files fall back to the packaged ones
    assert mine.digest() != packaged.digest()
    assert (TEMPLATES_DIR / "README.md").is_file()


def test_template_with_a_wrong_field_fails_at_load(tmp_path):
    (tmp_path / "query.txt").write_text("{descripton}\nWrite the report.")
    with pytest.raises(DataError, match=r"query.txt needs \['description'\]"):
        PromptTemplates.load(tmp_path)
    with pytest.raises(DataError, match="not found"):
        PromptTemplates.load(tmp_path / "missing")


def test_messages_hold_system_examples_and_study():
    t = PromptTemplates.load()
    examples = [
        Example("s1", "Findings:\n- Atelectasis: present", "Basilar atelectasis.", "Atelectasis."),
        Example("s2", "Findings:\n- Atelectasis: absent", "Clear lungs.", "Normal."),
    ]
    msgs = build_messages(t, DESC, examples)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert msgs[2]["content"] == "FINDINGS: Basilar atelectasis.\nIMPRESSION: Atelectasis."
    assert DESC in msgs[-1]["content"] and msgs[-1]["content"].endswith("Write the report.")
    zero = build_messages(t, DESC, [])
    assert [m["role"] for m in zero] == ["system", "user"]


def test_chain_of_thought_adds_the_plan_turn():
    t = PromptTemplates.load()
    first = build_messages(t, DESC, [], cot=True)
    assert "list the findings you will mention" in first[-1]["content"]
    second = after_plan(t, first, "  1. effusion\n2. no atelectasis ")
    assert second[-2] == {"role": "assistant", "content": "1. effusion\n2. no atelectasis"}
    assert second[-1]["content"] == t.after_plan
    fixed = repair(t, second, "FINDINGS: x", "atelectasis reported present", DESC)
    assert "atelectasis reported present" in fixed[-1]["content"] and DESC in fixed[-1]["content"]
    assert fixed[-2]["role"] == "assistant"


@pytest.mark.parametrize(
    "answer, findings, impression",
    [
        ("FINDINGS: Small effusion.\nIMPRESSION: Effusion.", "Small effusion.", "Effusion."),
        (
            "Sure! Here it is.\n**Findings:** Clear lungs.\n**Impression:** Normal.",
            "Clear lungs.",
            "Normal.",
        ),
        (
            "## FINDINGS:\nHeart normal.\n\n## CONCLUSION: No acute disease.",
            "Heart normal.",
            "No acute disease.",
        ),
        ("No acute cardiopulmonary process.", "No acute cardiopulmonary process.", ""),
        ("REPORT:\nFINDINGS: Lungs clear.", "Lungs clear.", ""),
        ("", "", ""),
    ],
)
def test_parse_report(answer, findings, impression):
    assert parse_report(answer) == (findings, impression)


def test_report_text_joins_sections():
    assert report_text("Lungs  clear.", "Normal.") == "Lungs clear. Normal."
    assert report_text("", "") == ""
