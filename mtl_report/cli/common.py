"""What every command shares: exit codes, the usage error, progress bars and the checks of
raw arguments."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

EXIT_DATA_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130


class CLIError(Exception):
    """A usage problem found after parsing (exit 2 with a one-line reason)."""


def _progress_factory(enabled: bool) -> Callable[[str, int], Callable[[int], None]] | None:
    """``progress(description, total) -> update(n)`` backed by tqdm, or None when disabled."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    def factory(description: str, total: int) -> Callable[[int], None]:
        bar = tqdm(total=total, desc=description, unit="it", leave=False, file=sys.stderr)

        def update(n: int = 1) -> None:
            bar.update(n)
            if bar.n >= bar.total:
                bar.close()

        if total == 0:
            bar.close()
        return update

    return factory


def _stage(message: str) -> None:
    print(f"mtl-report classify: {message}", file=sys.stderr, flush=True)


def _one_line_reason(exc: BaseException) -> str:
    """The informative line of an exception message (TensorFlow's first line is a header
    such as "Graph execution error:" with the real reason further down)."""
    noise = ("Graph execution error", "Detected at node", "File ", "[[{{node", "Traceback")
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(noise)]
    return (useful or lines or [""])[0][:300]


POSITIONAL_ARGS = {"image": "IMAGE", "action": "ACTION"}


def _check_utf8_arguments(args: argparse.Namespace) -> None:
    """Refuse an argument that is not valid UTF-8, naming it (CLIError).

    Python decodes undecodable argv bytes to lone surrogates (surrogateescape). Text
    arguments (complaint, vitals, URLs, names) end up in TensorFlow strings and JSON, and
    path arguments end up in ``records.parquet`` / ``config.json`` and in TensorFlow file
    reads: all of them hold UTF-8 only, and failed much later with "Error converting
    unicode string" or a UnicodeEncodeError. So every argument must be valid UTF-8; a file
    whose name is not can be renamed or linked under a UTF-8 name.
    """
    for dest, value in vars(args).items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if not isinstance(item, (str, Path)):
                continue
            text = os.fspath(item)
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                name = POSITIONAL_ARGS.get(dest, "--" + dest.replace("_", "-"))
                fix = (
                    "rename the file or link it under a UTF-8 name"
                    if isinstance(item, Path)
                    else "give it as UTF-8 text"
                )
                raise CLIError(
                    f"{name}: {os.fsencode(text)!r} is not valid UTF-8 ({fix}; paths and text "
                    "are stored in Parquet/JSON and read by TensorFlow, which take UTF-8 only)"
                ) from None


def add_bertscore_arg(p: argparse.ArgumentParser) -> None:
    """``--bertscore-model`` of the commands that score reports (one help text for all)."""
    p.add_argument(
        "--bertscore-model",
        help="BERTScore model: a local directory (roberta-large, Bio-ClinicalBERT...) or "
        "'packaged' (the eval extra's small MiniLM); never downloaded",
    )
