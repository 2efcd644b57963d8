"""The ``mtl-report`` entry point: the parser of all commands and the error policy."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from mtl_report.cli.classifier import add_classify_parser
from mtl_report.cli.common import (
    EXIT_DATA_ERROR,
    EXIT_INTERNAL_ERROR,
    EXIT_INTERRUPTED,
    CLIError,
    _check_utf8_arguments,
    _one_line_reason,
)
from mtl_report.cli.llm import add_llm_parser
from mtl_report.cli.prepare import add_prepare_parser
from mtl_report.cli.report import add_training_parsers, add_use_parsers
from mtl_report.version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtl-report",
        description="Multimodal, multi-task chest X-ray reporting (report text, ED acuity, "
        "findings) with Keras 3.",
    )
    parser.add_argument("--version", action="version", version=f"mtl-report {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    add_prepare_parser(sub)
    add_training_parsers(sub)
    add_llm_parser(sub)
    add_use_parsers(sub)
    add_classify_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # TensorFlow's C++ start-up chatter (CUDA probing, CPU features) is noise for users.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    from mtl_report.config import ConfigError
    from mtl_report.data.errors import DataError

    try:
        _check_utf8_arguments(args)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("mtl-report: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (DataError, ConfigError, CLIError) as exc:
        if args.debug:
            raise
        print(f"mtl-report: error: {exc}", file=sys.stderr)
        return EXIT_DATA_ERROR
    except OSError as exc:
        # A file-system refusal naming a path (permission denied, disk full, a file where
        # a folder is expected) is the user's environment, not a bug: say it in one line.
        if args.debug or not exc.filename:
            if args.debug:
                raise
            print(
                f"mtl-report: error: {type(exc).__name__}: {_one_line_reason(exc)} "
                "(rerun with --debug for details)",
                file=sys.stderr,
            )
            return EXIT_INTERNAL_ERROR
        print(f"mtl-report: error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_DATA_ERROR
    except Exception as exc:
        if args.debug:
            raise
        reason = _one_line_reason(exc)
        print(
            f"mtl-report: error: {type(exc).__name__}: {reason} (rerun with --debug for details)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL_ERROR
