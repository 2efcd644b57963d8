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
    from mtl_report.data.errors import DataError

    with pytest.raises(DataError):
        main(["--debug", "train", "--data", "nothing", "--out", "r"])


def test_console_script_entry_point_runs():
    out = subprocess.run(
        [sys.executable, "-m", "mtl_report.cli", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and __version__ in out.stdout


# --------------------------------------------------------------------------------------
# --out never loses a user's data; failures are named (issue 13)
# --------------------------------------------------------------------------------------
def _image_table(root):
    """A CSV + 9 tiny PNGs (3 classes, one patient each) in ``root``."""
    import numpy as np
    from PIL import Image

    (root / "images").mkdir(parents=True)
    lines = ["image,label,subject_id"]
    rng = np.random.default_rng(0)
    for i in range(9):
        pixels = rng.integers(0, 255, (32, 32), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / f"{i}.png")
        lines.append(f"images/{i}.png,{'abc'[i % 3]},p{i}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root / "labels.csv"


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("mtl-report: error:"), err
    assert not any("Traceback" in line for line in err)
    return err[-1]


def test_prepare_refuses_an_out_that_holds_its_input(tmp_path, capsys):
    csv = _image_table(tmp_path / "pn")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for out in ("pn", "."):  # is the CSV's folder / contains it
        argv = ["prepare", "images", "--csv", str(csv), "--out", str(tmp_path / out)]
        code = main([*argv, "--overwrite", "--quiet"])
        assert code == 2
        assert "contains an input of this command" in _error(capsys)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_prepare_overwrite_rules(tmp_path, capsys):
    csv = _image_table(tmp_path / "pn")
    out = tmp_path / "out"
    argv = ["prepare", "images", "--csv", str(csv), "--out", str(out), "--quiet"]
    out.mkdir()
    (out / "thesis.tex").write_text("mine")
    assert main([*argv, "--overwrite"]) == 2
    assert "not empty and not a prepared dataset (no records.parquet + cohort_log.json)" in (
        _error(capsys)
    )
    (out / "thesis.tex").unlink()
    assert main(argv) == 0  # an empty folder is fine
    assert main(argv) == 2
    assert "already holds a prepared dataset; pass --overwrite" in _error(capsys)
    assert main([*argv, "--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "pn"]  # nothing hidden left


def test_prepare_header_only_csv_is_an_error(tmp_path, capsys):
    (tmp_path / "labels.csv").write_text("image,label,subject_id\n")
    csv, out = str(tmp_path / "labels.csv"), str(tmp_path / "out")
    code = main(["prepare", "images", "--csv", csv, "--out", out, "--quiet"])
    assert code == 2 and "no studies" in _error(capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("argv", "kind"),
    [
        (["train", "--data", "d", "--resume"], "not a training run (no config.json)"),
        (["compare", "--data", "d"], "not a comparison"),
        (["llm-report", "--data", "d", "--findings-from", "labels"], "not a llm-report output"),
        (["export", "--run", "r"], "not a SavedModel base path"),
        (["classify", "cv", "--data", "d", "--resume"], "not a cross-validation output"),
        (["classify", "export", "--run", "r"], "not a SavedModel (no saved_model.pb)"),
        (["demo"], "not a demo output (no demo_config.json)"),
    ],
    ids=lambda a: " ".join(a[:2]) if isinstance(a, list) else None,
)
def test_commands_refuse_a_foreign_out(argv, kind, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert main([*argv, "--out", "mine"]) == 2
    assert f"mine: not empty and {kind}" in _error(capsys)
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--data", "top/d", "--resume", "--out", "top"],
        ["compare", "--data", "top/d", "--out", "top"],
        ["llm-report", "--data", "top/d", "--findings-from", "labels", "--out", "top"],
        ["export", "--run", "top/d", "--out", "top"],
        ["classify", "baselines", "--data", "top/d", "--resume", "--out", "top"],
    ],
    ids=lambda a: a[0],
)
def test_commands_refuse_an_out_that_contains_an_input(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "top" / "d").mkdir(parents=True)
    assert main(argv) == 2
    assert "top: contains an input of this command (top/d)" in _error(capsys)


def test_out_under_a_file_and_permission_errors_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    assert main(["prepare", "synthetic-classes", "--out", "afile/ds", "--quiet"]) == 2
    assert "afile is a file, not a directory" in _error(capsys)

    import mtl_report.data.image_table as image_table

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/data/labels.csv")

    monkeypatch.setattr(image_table, "read_image_table", denied)
    (tmp_path / "labels.csv").write_text("image,label,subject_id\n")
    assert main(["prepare", "images", "--csv", "labels.csv", "--out", "o", "--quiet"]) == 2
    assert _error(capsys) == "mtl-report: error: /data/labels.csv: Permission denied"


def test_non_utf8_arguments_are_named(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    text = b"chest pain \xe9".decode("utf-8", "surrogateescape")  # how Python reads argv
    assert main(["generate", "--run", "r", "x.png", "--complaint", text]) == 2
    err = _error(capsys)
    assert err.startswith("mtl-report: error: --complaint: b'chest pain \\xe9' is not valid UTF-8")
    path = b"caf\xe9.png".decode("utf-8", "surrogateescape")
    assert main(["generate", "--run", "r", path]) == 2
    assert "IMAGE: b'caf\\xe9.png' is not valid UTF-8 (rename the file" in _error(capsys)


def test_train_on_a_dataset_without_train_studies_leaves_no_run_dir(tmp_path, capsys):
    import pandas as pd

    from mtl_report.data.cohort import CohortLog
    from mtl_report.data.io import write_prepared
    from mtl_report.data.schema import RECORD_COLUMNS

    data = tmp_path / "data"
    data.mkdir()
    records = pd.DataFrame([{c: None for c in RECORD_COLUMNS}])
    records = records.assign(study_id="s1", subject_id="p1", report="normal", split="test")
    log = CohortLog("synthetic")
    log.start("studies", 1)
    write_prepared(data, records, log, {"findings": [], "finding_columns": []}, {})
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "no studies in the train split" in _error(capsys)
    assert not (tmp_path / "run").exists()
