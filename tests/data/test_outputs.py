"""mtl_report.data.outputs: outputs that never lose a user's data, and recovery after a kill."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mtl_report.data import outputs
from mtl_report.data.errors import DataError
from mtl_report.data.outputs import (
    PREPARED_DATASET,
    atomic_dir,
    check_output_dir,
    check_prepared_out,
    clean_stale,
    make_dirs,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _dataset(path: Path, tag: str = "v1") -> Path:
    """A directory that looks like a prepared dataset (the two marker files)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "records.parquet").write_text(tag)
    (path / "cohort_log.json").write_text("{}")
    return path


def _dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write(tmp: Path, tag: str) -> None:
    (tmp / "records.parquet").write_text(tag)
    (tmp / "cohort_log.json").write_text("{}")


# --------------------------------------------------------------------------------------
# What is refused
# --------------------------------------------------------------------------------------
def test_output_that_is_or_contains_an_input_is_refused_through_symlinks(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    csv = data / "labels.csv"
    csv.write_text("image,label\n")
    (tmp_path / "link").symlink_to(data)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="is an input"):
        check_output_dir(Path("link"), PREPARED_DATASET, [data])
    with pytest.raises(DataError, match=r"contains an input of this command \(data/\.\./data"):
        check_output_dir(Path("link"), PREPARED_DATASET, [Path("data/../data/labels.csv")])
    # The output inside an input folder is fine (nothing of the input is replaced).
    assert check_output_dir(data / "prepared", PREPARED_DATASET, [data]) == "absent"


def test_non_empty_foreign_directory_is_refused_even_with_overwrite(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    expected = r"not a prepared dataset \(no records\.parquet \+ cohort_log\.json\)"
    with pytest.raises(DataError, match=expected), atomic_dir(user, overwrite=True):
        pass
    assert (user / "notes.txt").read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]  # no hidden working folder left


def test_existing_dataset_needs_overwrite_and_user_files_inside_it_are_kept(tmp_path):
    out = _dataset(tmp_path / "ds")
    with pytest.raises(DataError, match="already holds a prepared dataset; pass --overwrite"):
        check_prepared_out(out, overwrite=False)
    (out / "my_run").mkdir()
    expected = r"holds files a preparation does not write \(my_run\)"
    with pytest.raises(DataError, match=expected), atomic_dir(out, overwrite=True):
        pass
    (out / "my_run").rmdir()
    with atomic_dir(out, overwrite=True) as tmp:
        _write(tmp, "v2")
    assert (out / "records.parquet").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_output_under_a_file_and_an_output_that_is_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DataError, match=r"afile/sub: .*afile is a file, not a directory"):
        check_output_dir(tmp_path / "afile" / "sub", PREPARED_DATASET)
    with pytest.raises(DataError, match="afile: exists and is not a directory"):
        check_output_dir(tmp_path / "afile", PREPARED_DATASET)


def test_make_dirs_names_the_path_on_permission_and_file_errors(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DataError, match=r"afile/x: cannot create the directory \(a part of it"):
        make_dirs(tmp_path / "afile" / "x")

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(DataError, match=r"ro: cannot create the directory \(permission denied\)"):
        make_dirs(tmp_path / "ro")


def test_unwritable_parent_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs.os, "access", lambda path, mode: False)
    with pytest.raises(DataError, match=r"cannot write in .* \(permission denied\)"):
        check_output_dir(tmp_path / "new", PREPARED_DATASET)


# --------------------------------------------------------------------------------------
# Atomic replacement, kills, leftovers, permissions
# --------------------------------------------------------------------------------------
KILL_BETWEEN_RENAMES = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from mtl_report.data import outputs

    calls = []
    real = outputs._rename

    def rename(src, dst):
        calls.append(src)
        if len(calls) == 2:  # after out -> .out.old-PID, before tmp -> out
            os.kill(os.getpid(), signal.SIGKILL)
        real(src, dst)

    outputs._rename = rename
    with outputs.atomic_dir(Path(sys.argv[1]), overwrite=True) as tmp:
        (tmp / "records.parquet").write_text("v2")
        (tmp / "cohort_log.json").write_text("{}")
    """
)


def test_sigkill_between_the_renames_never_loses_the_previous_dataset(tmp_path, capsys):
    out = _dataset(tmp_path / "ds", "v1")
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_BETWEEN_RENAMES, str(out)],
        cwd=REPO_ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == -9, stderr
    assert not out.exists()  # the kill point: the previous dataset is only under a hidden name
    assert (tmp_path / f".ds.old-{proc.pid}" / "records.parquet").read_text() == "v1"
    assert len(list(tmp_path.glob(f".ds.tmp-{proc.pid}-*"))) == 1

    # The next run of the same command restores it before deciding anything.
    with pytest.raises(DataError, match="already holds a prepared dataset"):
        check_prepared_out(out, overwrite=False)
    assert (out / "records.parquet").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]
    err = capsys.readouterr().err
    assert "restored the previous output" in err and "the unfinished output of a killed run" in err


def test_old_copy_is_removed_when_the_swap_had_completed(tmp_path, capsys):
    out = _dataset(tmp_path / "ds", "new")
    old = _dataset(tmp_path / f".ds.old-{_dead_pid()}", "old")
    with atomic_dir(out, overwrite=True) as tmp:
        _write(tmp, "newer")
    assert not old.exists() and (out / "records.parquet").read_text() == "newer"
    assert "removed" in capsys.readouterr().err


def test_only_stale_leftovers_of_this_package_are_cleaned(tmp_path, capsys):
    dead = _dead_pid()
    stale = tmp_path / f".ds.tmp-{dead}-abc123"
    live = tmp_path / f".ds.tmp-{os.getpid()}-xyz"  # a concurrent run (alive): kept
    foreign = tmp_path / ".ds.tmp-notours"  # no PID: not ours to judge
    other = tmp_path / f".other.tmp-{dead}-abc"  # another output's: kept
    for path in (stale, live, foreign, other):
        path.mkdir()
    with atomic_dir(tmp_path / "ds") as tmp:
        _write(tmp, "v1")
    assert not stale.exists()
    assert live.exists() and foreign.exists() and other.exists()
    assert f"removed {stale}" in capsys.readouterr().err

    versions = tmp_path / "export"
    (versions / f".3.tmp-{dead}-q").mkdir(parents=True)
    (versions / "3").mkdir()
    assert clean_stale(versions, r"\d+") == [versions / f".3.tmp-{dead}-q"]
    assert [p.name for p in versions.iterdir()] == ["3"]


def test_prepared_dataset_mode_follows_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        with atomic_dir(tmp_path / "ds") as tmp:
            _write(tmp, "v1")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "ds").stat().st_mode) == 0o750


def test_failure_inside_the_block_keeps_the_previous_dataset(tmp_path):
    out = _dataset(tmp_path / "ds", "v1")
    with pytest.raises(RuntimeError), atomic_dir(out, overwrite=True) as tmp:
        _write(tmp, "half")
        raise RuntimeError("boom")
    assert (out / "records.parquet").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]
