"""The command line: --help everywhere, --version, one-line errors with non-zero exits."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mtl_report import __version__
from mtl_report.cli import build_parser, main

COMMANDS = [
    [],
    ["prepare"],
    ["prepare", "synthetic"],
    ["prepare", "mimic"],
    ["prepare", "iu-xray"],
    ["prepare", "images"],
    ["prepare", "synthetic-classes"],
    ["train"],
    ["evaluate"],
    ["compare"],
    ["generate"],
    ["export"],
    ["demo"],
    ["llm-report"],
    ["classify"],
]


def _subcommands(parser, prefix=()):
    """Every command path the parser knows, to make sure COMMANDS misses none."""
    import argparse

    paths = [list(prefix)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths.extend(_subcommands(sub, (*prefix, name)))
    return paths


def test_every_command_is_covered():
    assert sorted(map(tuple, _subcommands(build_parser()))) == sorted(map(tuple, COMMANDS))


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a) or "top")
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: mtl-report")
    assert len(out.splitlines()) > 3


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"mtl-report {__version__}"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["prepare", "mimic", "--cxr-root", "nope", "--ed-root", "nope", "--out", "o"], "nope"),
        (["prepare", "iu-xray", "--out", "o"], "--csv"),
        (["prepare", "images", "--csv", "missing.csv", "--out", "o"], "missing.csv"),
        (["train", "--data", "no_such_dataset", "--out", "r"], "not a prepared dataset"),
        (["evaluate", "--run", "no_run", "--data", "d"], "not a run directory"),
        (["train", "--data", "d", "--out", "r", "--preset", "bogus"], "bogus"),
    ],
)
def test_errors_are_one_line_with_exit_2(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    if argv[0] == "train" and "bogus" in argv:
        (tmp_path / "d").mkdir()
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("mtl-report: error:") and message in err
    assert "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from preprocessing.errors import DataError

    with pytest.raises(DataError):
        main(["--debug", "train", "--data", "nothing", "--out", "r"])


def test_console_script_entry_point_runs():
    out = subprocess.run(
        [sys.executable, "-m", "mtl_report.cli", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and __version__ in out.stdout
