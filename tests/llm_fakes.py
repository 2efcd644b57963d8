"""A faithful fake chat model (writes exactly what the description says) and a fake
OpenAI-compatible server on loopback, for tests without a language model."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE = re.compile(r"^- (?P<name>[^:]+): (?P<state>present|absent|uncertain)", re.M)


def faithful_report(description: str, contrary: bool = False) -> str:
    """A report that states every present finding and negates every absent one (or the
    opposite, ``contrary``), in the FINDINGS / IMPRESSION form."""
    present, absent = [], []
    for m in STATE.finditer(description):
        name = m["name"].lower()
        if m["state"] == "present":
            (absent if contrary else present).append(name)
        elif m["state"] == "absent":
            (present if contrary else absent).append(name)
    sentences = [f"There is {n}." for n in present] + [f"No {n}." for n in absent]
    impression = ", ".join(present) if present else "No acute cardiopulmonary process"
    return f"FINDINGS: {' '.join(sentences)}\nIMPRESSION: {impression}."


def last_description(messages) -> str:
    for m in reversed(messages):
        if m["role"] == "user" and "Findings:" in m["content"]:
            return m["content"]
    return ""


class FakeChat:
    """Answers from the last description; ``contrary_first`` contradicts it until a repair
    message asks again. Records every request."""

    name = "fake-chat"

    def __init__(self, contrary_first: bool = False):
        self.contrary_first = contrary_first
        self.calls: list[list[dict]] = []

    def chat(self, messages, config) -> str:
        self.calls.append([dict(m) for m in messages])
        last = messages[-1]["content"]
        if "list the findings you will mention" in last:
            return "1. the findings marked present\n2. the absent ones"
        repairing = "contradicts the findings" in last
        return faithful_report(
            last_description(messages), contrary=self.contrary_first and not repairing
        )

    def describe(self) -> dict:
        return {"backend": "fake", "model": self.name}


class FakeOpenAIServer:
    """``/v1/chat/completions`` on 127.0.0.1. ``script`` is a list of behaviours used in
    turn (the last one repeats): ``"ok"``, ``"malformed"``, ``"not_json"``, ``"no_content"``
    (a message without content), ``"slow"`` (answers after ``slow`` seconds), ``"trickle"``
    (the body's first ``trickle_bytes`` bytes one every ``interval`` seconds),
    ``"stall_headers"`` (a header line sent the same way), ``"endless"`` (a body of
    ``endless_mb`` MB without Content-Length), an HTTP status code (int), or a status with
    headers (``(429, {"Retry-After": "86400"})``). ``answer`` may return None (null
    content)."""

    def __init__(
        self,
        script=("ok",),
        answer: Callable[[dict], str | None] | None = None,
        slow: float = 1.0,
        interval: float = 0.2,
        trickle_bytes: int = 12,
        endless_mb: int = 32,
    ):
        self.script = list(script)
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.answer = answer or (lambda body: faithful_report(last_description(body["messages"])))
        self.stop = threading.Event()  # ends trickling handlers when the test is done
        server = self

        def trickle(wfile, data: bytes) -> None:
            for b in data[:trickle_bytes]:
                if server.stop.wait(interval):
                    return
                wfile.write(bytes([b]))
            wfile.write(data[trickle_bytes:])

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                server.requests.append(body)
                server.headers.append(dict(self.headers))
                i = len(server.requests) - 1
                action = server.script[min(i, len(server.script) - 1)]
                if action == "slow":
                    time.sleep(slow)
                    action = "ok"
                status, extra = (action, {}) if isinstance(action, int) else (None, {})
                if isinstance(action, tuple):
                    status, extra = action
                if status is not None:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    for name, value in extra.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(b'{"error": {"message": "scripted failure"}}')
                    return
                status_line_sent = action == "stall_headers"
                try:
                    if action == "stall_headers":
                        self.wfile.write(b"HTTP/1.0 200 OK\r\n")
                        trickle(self.wfile, b"X-Stalling: " + b"x" * trickle_bytes + b"\r\n")
                        action = "ok"  # the rest of the headers and the body as usual
                    elif action == "endless":
                        self.send_response(200)
                        self.end_headers()
                        chunk = b" " * 65536
                        for _ in range(endless_mb * 16):
                            self.wfile.write(chunk)
                        return
                except OSError:  # BrokenPipe, ConnectionReset...
                    return  # the client gave up
                if action == "not_json":
                    payload = b"<html>502 Bad Gateway</html>"
                elif action == "malformed":
                    payload = json.dumps({"id": "x", "choices": []}).encode()
                elif action == "no_content":
                    payload = json.dumps({"choices": [{"message": {"role": "assistant"}}]}).encode()
                else:
                    payload = json.dumps(
                        {
                            "id": "chatcmpl-1",
                            "object": "chat.completion",
                            "model": body.get("model"),
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {
                                        "role": "assistant",
                                        "content": server.answer(body),
                                    },
                                    "finish_reason": "stop",
                                }
                            ],
                        }
                    ).encode()
                try:
                    if not status_line_sent:
                        self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if action == "trickle":
                        trickle(self.wfile, payload)
                    else:
                        self.wfile.write(payload)
                except OSError:  # BrokenPipe, ConnectionReset...
                    pass  # the client gave up (timeout test)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAIServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
