"""Language-model back ends: the OpenAI-compatible client against a fake server on
loopback (answers, retries with backoff, timeouts, malformed replies), and the offline
model's clear errors."""

from __future__ import annotations

import email.utils
import socket
import time

import pytest
from llm_fakes import FakeOpenAIServer

from mtl_report.llm_report.backends import (
    GenerationConfig,
    LlamaCppChat,
    LLMError,
    OpenAIChat,
    _content,
    make_chat_model,
    retry_after_seconds,
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
    with pytest.raises(LLMError, match="--llm-timeout"):
        OpenAIChat("http://127.0.0.1:1", "m", timeout=0)
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


# A whole-request deadline, not a per-read one: a server that sends a byte every 0.2 s
# never trips a 0.5 s socket timeout, and would hold the client for the 12 bytes' 2.4 s.
@pytest.mark.parametrize("action", ["trickle", "stall_headers"])
def test_trickled_body_or_headers_end_at_the_request_deadline(action):
    with FakeOpenAIServer(script=[action], interval=0.2, trickle_bytes=12) as server:
        start = time.monotonic()
        with pytest.raises(LLMError, match=r"timed out after 0\.5 s") as err:
            client(server.url, [], timeout=0.5, retries=0).chat(MESSAGES, GenerationConfig())
        elapsed = time.monotonic() - start
    assert err.value.kind == "timeout"
    assert 0.4 < elapsed < 1.2


def test_endless_reply_is_cut_at_the_size_limit():
    big = pytest.raises(LLMError, match="larger than 1048576 bytes")
    with FakeOpenAIServer(script=["endless"], endless_mb=8) as server, big as err:
        client(server.url, [], max_reply_bytes=1 << 20).chat(MESSAGES, GenerationConfig())
    assert err.value.kind == "too_large" and len(server.requests) == 1


def test_huge_retry_after_is_capped_at_the_timeout():
    sleeps = []
    script = [(429, {"Retry-After": "86400"}), (503, {"Retry-After": "86400"}), "ok"]
    with FakeOpenAIServer(script=script) as server:
        text = client(server.url, sleeps, timeout=3, backoff=0.5).chat(MESSAGES, GenerationConfig())
    assert "pleural effusion" in text
    assert sleeps == [3.0, 3.0]  # not a day


@pytest.mark.parametrize(
    "header, low, high",
    [
        (lambda: email.utils.formatdate(time.time() + 3, usegmt=True), 1.5, 3.0),  # a date
        (lambda: email.utils.formatdate(time.time() - 60, usegmt=True), 0.5, 0.5),  # past
        (lambda: "soon", 0.5, 0.5),  # invalid: the backoff
        (lambda: "-5", 0.5, 0.5),
    ],
    ids=["http-date", "past-date", "invalid", "negative"],
)
def test_retry_after_as_an_http_date_or_invalid(header, low, high):
    sleeps = []
    with FakeOpenAIServer(script=[(503, {"Retry-After": header()}), "ok"]) as server:
        client(server.url, sleeps, timeout=10, backoff=0.5).chat(MESSAGES, GenerationConfig())
    assert len(sleeps) == 1 and low <= sleeps[0] <= high


def test_retry_after_parsing():
    now = 1_700_000_000.0
    assert retry_after_seconds("120", now) == 120.0
    assert retry_after_seconds(" 7 ", now) == 7.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_after_seconds(date, now) == pytest.approx(30.0, abs=1.0)
    for bad in (None, "", "1.5", "-3", "tomorrow", "Wed, 99 Foo 2015 07:28:00 GMT"):
        assert retry_after_seconds(bad, now) is None


@pytest.mark.parametrize(
    "kwargs, answer",
    [
        ({"answer": lambda body: None}, "ok"),  # "content": null
        ({"answer": lambda body: "  \n"}, "ok"),  # blank
        ({"answer": lambda body: ""}, "ok"),
        ({}, "no_content"),  # no "content" key
    ],
    ids=["null", "blank", "empty", "missing"],
)
def test_null_or_empty_content_is_an_empty_answer_failure(kwargs, answer):
    empty = pytest.raises(LLMError, match="empty answer")
    with FakeOpenAIServer(script=[answer], **kwargs) as server, empty as err:
        client(server.url, []).chat(MESSAGES, GenerationConfig())
    assert err.value.kind == "empty_answer" and len(server.requests) == 1


def test_offline_and_remote_replies_share_the_empty_answer_rule():
    # llama-cpp-python returns the same chat-completion dict as the endpoint
    reply = {"choices": [{"message": {"role": "assistant", "content": None}}]}
    with pytest.raises(LLMError) as err:
        _content(reply, "SmolLM2")
    assert err.value.kind == "empty_answer"
    with pytest.raises(LLMError) as err:
        _content({"choices": [{"message": {"content": ["parts"]}}]}, "SmolLM2")
    assert err.value.kind == "malformed"
    assert _content({"choices": [{"message": {"content": "FINDINGS: x"}}]}, "m") == "FINDINGS: x"


def test_the_study_deadline_bounds_attempts_and_waits():
    sleeps = []
    with FakeOpenAIServer(script=["slow"], slow=0.6) as server:
        start = time.monotonic()
        with pytest.raises(LLMError, match="time budget ran out") as err:
            client(server.url, sleeps, timeout=5, retries=3).chat(
                MESSAGES, GenerationConfig(), deadline=start + 0.3
            )
        elapsed = time.monotonic() - start
    assert err.value.kind == "budget" and elapsed < 0.8
    assert len(server.requests) == 1 and sleeps == []


def test_offline_model_loads_without_weight_repacking_by_default():
    """llama.cpp's AMX weight repacking segfaults on the first decode (llama-cpp-python
    0.3.36 on Sapphire Rapids): the default load turns repacking off, and the library's own
    default parameters are restored afterwards."""
    llama_module = pytest.importorskip("llama_cpp.llama")
    from mtl_report.llm_report.backends import _weight_repacking

    native = llama_module.llama_cpp.llama_model_default_params
    if not hasattr(native(), "use_extra_bufts"):
        pytest.skip("this llama-cpp-python has no weight repacking switch")
    for enabled in (False, True):
        with _weight_repacking(enabled):
            assert llama_module.llama_cpp.llama_model_default_params().use_extra_bufts is enabled
        assert llama_module.llama_cpp.llama_model_default_params is native
    with pytest.raises(RuntimeError), _weight_repacking(False):
        raise RuntimeError("a failed load")
    assert llama_module.llama_cpp.llama_model_default_params is native
    assert LlamaCppChat.__init__.__defaults__[-1] is False  # repack_weights
