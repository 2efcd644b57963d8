"""The Meteor 1.5 jar of pycocoevalcap, driven with a time limit and kept running.

Why our own driver: pycocoevalcap's wrapper blocks forever when the jar stalls, and starts
a JVM per scorer. Here every read has a deadline, a stalled or broken jar is stopped and
never asked again, and a healthy one is kept between calls (about 5 s to start, milliseconds
to score a few hundred reports), stopped after :data:`METEOR_IDLE_S` idle seconds and at
exit. :func:`mtl_report.metrics.nlg.meteor_score` is the public entry point.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

_METEOR_CMD = ["java", "-jar", "-Xmx2G", "meteor-1.5.jar", "-", "-", "-stdio", "-l", "en", "-norm"]


def _meteor_dir() -> Path:
    import pycocoevalcap.meteor.meteor as meteor_module

    return Path(meteor_module.__file__).resolve().parent


def _meteor_line(text: str) -> str:
    """One protocol-safe line: no newlines, no ``|||`` field separators."""
    return re.sub(r"\s+", " ", text.replace("|", " ")).strip()


def _pump(stream: Any, out: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        out.put(line)
    out.put(None)


def _read_lines(lines: queue.Queue, count: int, deadline: float) -> list[str]:
    got = []
    while len(got) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("METEOR did not answer in time")
        try:
            line = lines.get(timeout=left)
        except queue.Empty as err:
            raise TimeoutError("METEOR did not answer in time") from err
        if line is None:
            raise RuntimeError("the METEOR process ended early")
        got.append(line.strip())
    return got


#: Seconds an idle Meteor jar is kept before it is stopped (it holds up to 2 GB of heap).
METEOR_IDLE_S = 60.0


class _MeteorProcess:
    """One running Meteor 1.5 jar, asked SCORE/EVAL rounds one call after another.

    Why kept running: the jar spends about 5 s starting (JVM, paraphrase table) and a few
    milliseconds scoring a few hundred reports, so a comparison that scores each set-up,
    seed and split would otherwise pay the start-up every time (4 of the 26 s a toy
    ``compare`` spent in METEOR were scoring). :func:`_run_meteor` reuses it across calls
    and stops it after :data:`METEOR_IDLE_S` idle seconds, on any error and at exit.
    """

    def __init__(self, cmd: list[str]):
        self.cmd = list(cmd)
        self.pid_owner = os.getpid()
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=_meteor_dir(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self.out: queue.Queue = queue.Queue()
        self.err: queue.Queue = queue.Queue()
        threading.Thread(target=_pump, args=(self.proc.stdout, self.out), daemon=True).start()
        threading.Thread(target=_pump, args=(self.proc.stderr, self.err), daemon=True).start()

    def usable(self, cmd: list[str]) -> bool:
        return self.cmd == list(cmd) and self.pid_owner == os.getpid() and self.proc.poll() is None

    def _write(self, lines: list[str]) -> None:
        try:
            self.proc.stdin.write("".join(line + "\n" for line in lines))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def score(self, hyps: list[str], refs: list[str], deadline: float):
        """SCORE lines -> stats, one EVAL line -> per-study scores and the corpus score."""
        while not self.out.empty():  # nothing left over from an earlier round
            if self.out.get_nowait() is None:
                raise RuntimeError("the METEOR process ended early")
        try:
            score_lines = [
                f"SCORE ||| {_meteor_line(r)} ||| {_meteor_line(h)}" for h, r in zip(hyps, refs)
            ]
            # Written from threads: a jar that stops reading must not block us past the
            # deadline on a full pipe.
            threading.Thread(target=self._write, args=(score_lines,), daemon=True).start()
            stats = _read_lines(self.out, len(hyps), deadline)
            threading.Thread(
                target=self._write, args=(["EVAL ||| " + " ||| ".join(stats)],), daemon=True
            ).start()
            values = _read_lines(self.out, len(hyps) + 1, deadline)
            scores = np.asarray([float(v) for v in values[:-1]], float)
            return float(values[-1]), scores
        except (RuntimeError, ValueError) as e:
            stderr = []
            while not self.err.empty():
                line = self.err.get()
                if line:
                    stderr.append(line.strip())
            raise RuntimeError(f"{e}: {' '.join(stderr)[-500:]}") from e

    def close(self) -> None:
        if self.pid_owner != os.getpid():  # a forked child leaves its parent's jar alone
            return
        with contextlib.suppress(OSError, ValueError):
            self.proc.stdin.close()
        self.proc.kill()
        self.proc.wait()


_METEOR_LOCK = threading.Lock()
_METEOR: dict[str, Any] = {"process": None, "timer": None}


def _stop_meteor(timer: threading.Timer | None = None) -> None:
    """Stop the kept Meteor jar, if any (interpreter exit; or ``timer``'s idle stop, which
    does nothing when a later call has replaced that timer meanwhile)."""
    with _METEOR_LOCK:
        if timer is None or _METEOR["timer"] is timer:
            _drop_meteor()


def _drop_meteor() -> None:
    timer, process = _METEOR["timer"], _METEOR["process"]
    _METEOR["timer"] = _METEOR["process"] = None
    if timer is not None:
        timer.cancel()
    if process is not None:
        process.close()


atexit.register(_stop_meteor)


def run_meteor(hyps: list[str], refs: list[str], timeout: float) -> tuple[float, np.ndarray]:
    """Score with the kept Meteor jar (started when there is none), one caller at a time."""
    with _METEOR_LOCK:
        timer, process = _METEOR["timer"], _METEOR["process"]
        if timer is not None:
            timer.cancel()
            _METEOR["timer"] = None
        if process is None or not process.usable(_METEOR_CMD):
            _drop_meteor()
            process = _METEOR["process"] = _MeteorProcess(_METEOR_CMD)
        try:
            result = process.score(hyps, refs, time.monotonic() + timeout)
        except BaseException:
            _drop_meteor()  # a stalled or broken jar is never asked again
            raise
        timer = threading.Timer(METEOR_IDLE_S, lambda: _stop_meteor(timer))
        timer.daemon = True
        timer.start()
        _METEOR["timer"] = timer
        return result
