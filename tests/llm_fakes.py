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
    turn (the last one repeats): ``"ok"``, ``"malformed"``, ``"not_json"``, ``"slow"``
    (sleeps past the client's timeout), or an HTTP status code (int)."""

    def __init__(self, script=("ok",), answer: Callable[[dict], str] | None = None):
        self.script = list(script)
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.answer = answer or (lambda body: faithful_report(last_description(body["messages"])))
        server = self

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
                    time.sleep(1.0)
                    action = "ok"
                if isinstance(action, int):
                    self.send_response(action)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"error": {"message": "scripted failure"}}')
                    return
                if action == "not_json":
                    payload = b"<html>502 Bad Gateway</html>"
                elif action == "malformed":
                    payload = json.dumps({"id": "x", "choices": []}).encode()
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
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAIServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
