"""Language-model back ends: the OpenAI-compatible client against a fake server on
loopback (answers, retries with backoff, timeouts, malformed replies), and the offline
model's clear errors."""

from __future__ import annotations

import socket

import pytest
from llm_fakes import FakeOpenAIServer

from mtl_report.llm_report.backends import (
    GenerationConfig,
    LlamaCppChat,
    LLMError,
    OpenAIChat,
    make_chat_model,
)

MESSAGES = [
    {"role": "system", "content": "You write reports."},
    {"role": "user", "content": "Findings:\n- Pleural effusion: present\n\nWrite the report."},
]


def client(url, sleeps=None, **kw):
    kw.setdefault("retries", 2)
    kw.setdefault("timeout", 5)
    return OpenAIChat(
        url, "test-model", sleep=(sleeps.append if sleeps is not None else None), **kw
    )


def test_answer_request_body_and_key_from_environment(monkeypatch):
    monkeypatch.setenv("MY_LLM_KEY", "sk-test")
    with FakeOpenAIServer() as server:
        text = client(server.url, api_key_env="MY_LLM_KEY").chat(
            MESSAGES, GenerationConfig(max_tokens=50, seed=7)
        )
    assert text.startswith("FINDINGS: There is pleural effusion.")
    body = server.requests[0]
    assert body["model"] == "test-model" and body["messages"] == MESSAGES
    assert body["temperature"] == 0.0 and body["seed"] == 7 and body["max_tokens"] == 50
    assert server.headers[0]["Authorization"] == "Bearer sk-test"


def test_no_key_no_authorization_header(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeOpenAIServer() as server:
        client(server.url + "/chat/completions").chat(MESSAGES, GenerationConfig())
    assert "Authorization" not in server.headers[0]


def test_server_errors_are_retried_with_exponential_backoff():
    sleeps = []
    with FakeOpenAIServer(script=[503, 429, "ok"]) as server:
        text = client(server.url, sleeps, backoff=0.5).chat(MESSAGES, GenerationConfig())
    assert "pleural effusion" in text
    assert len(server.requests) == 3
    assert sleeps == [0.5, 1.0]


def test_gives_up_after_the_retries_with_the_last_reason():
    sleeps = []
    with FakeOpenAIServer(script=[500]) as server, pytest.raises(LLMError) as err:
        client(server.url, sleeps).chat(MESSAGES, GenerationConfig())
    assert len(server.requests) == 3
    assert "no answer after 3 attempts (HTTP 500)" in str(err.value)
    assert len(sleeps) == 2


def test_client_errors_fail_at_once():
    sleeps = []
    with FakeOpenAIServer(script=[401]) as server, pytest.raises(LLMError, match="HTTP 401"):
        client(server.url, sleeps).chat(MESSAGES, GenerationConfig())
    assert len(server.requests) == 1 and sleeps == []


def test_timeout_is_retried_then_reported():
    sleeps = []
    with FakeOpenAIServer(script=["slow"]) as server, pytest.raises(LLMError) as err:
        client(server.url, sleeps, timeout=0.2, retries=1).chat(MESSAGES, GenerationConfig())
    assert "timed out after 0.2 s" in str(err.value)
    assert len(server.requests) == 2
    with FakeOpenAIServer(script=["slow", "ok"]) as server:
        text = client(server.url, [], timeout=0.2, retries=1).chat(MESSAGES, GenerationConfig())
    assert "pleural effusion" in text


@pytest.mark.parametrize("action, reason", [("malformed", "no choices"), ("not_json", "not JSON")])
def test_malformed_replies_fail_clearly_without_retry(action, reason):
    with FakeOpenAIServer(script=[action]) as server, pytest.raises(LLMError, match=reason):
        client(server.url, []).chat(MESSAGES, GenerationConfig())
    assert len(server.requests) == 1


def test_unreachable_endpoint_is_a_clear_error():
    with socket.socket() as s:  # a free port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps = []
    with pytest.raises(LLMError, match=r"no answer after 3 attempts \(unreachable"):
        client(f"http://127.0.0.1:{port}/v1", sleeps).chat(MESSAGES, GenerationConfig())
    assert sleeps == [1.0, 2.0]


def test_bad_settings_are_rejected():
    with pytest.raises(LLMError, match="http"):
        OpenAIChat("localhost:8000", "m")
    with pytest.raises(LLMError, match="--llm-model"):
        make_chat_model(url="http://127.0.0.1:1/v1")
    with pytest.raises(ValueError, match="max_tokens"):
        GenerationConfig(max_tokens=0)
    with pytest.raises(ValueError, match="malformed chat message"):
        OpenAIChat("http://127.0.0.1:1", "m").chat(
            [{"role": "bot", "content": "x"}], GenerationConfig()
        )


def test_offline_model_with_a_missing_file_is_a_clear_error(tmp_path):
    pytest.importorskip("llama_cpp")
    with pytest.raises(LLMError, match="GGUF model file not found"):
        LlamaCppChat(tmp_path / "nope.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file")
    with pytest.raises(LLMError, match="cannot load the model"):
        LlamaCppChat(bad).chat(MESSAGES, GenerationConfig(max_tokens=4))
