"""Output directories that never lose a user's data.

Every command that writes a directory (``prepare``, ``train``, ``compare``, ``classify``,
``llm-report``, ``export``, ``demo``) checks its ``--out`` here first:

- an output that *is*, or *contains*, one of the command's inputs is refused (paths are
  resolved first, so a symlink or a relative spelling cannot hide the input);
- a non-empty output must look like this command's own kind of output (its marker files,
  an :class:`OutputKind`); anything else is the user's and is never written into;
- an output under a regular file, or an existing file, is refused with a one-line reason.

Prepared datasets are written by :func:`atomic_dir`: into a hidden sibling
``.NAME.tmp-PID-xxxx`` and swapped in at the end (``NAME`` → ``.NAME.old-PID``,
``tmp`` → ``NAME``, then the old one is removed). A SIGKILL between the two renames leaves
the previous dataset as ``.NAME.old-PID``; the next run writing ``NAME`` puts it back (or
removes it when the swap had completed) and removes the unfinished ``.NAME.tmp-PID-*``
directories of dead processes, saying so on stderr. Only names with a PID that is no longer
alive are touched, so a concurrent run is never disturbed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mtl_report.data.errors import DataError

PathLike = str | os.PathLike

# What a prepared dataset may hold: the files ``write_prepared`` writes, the folders the
# synthetic generators write (``images/``, ``raw/``) and the default feature cache that
# ``train`` keeps next to the data. Anything else inside is the user's: never replaced.
PREPARED_ENTRIES = frozenset(
    {
        "records.parquet",
        "cohort_log.json",
        "dataset.json",
        "cleaning.json",
        "images",
        "raw",
        ".feature_cache",
    }
)


@dataclass(frozen=True)
class OutputKind:
    """What a command's own output directory looks like.

    ``markers`` are glob patterns relative to the directory; the directory is of this kind
    when all of them match (``require_all``) or any of them does.
    """

    name: str
    markers: tuple[str, ...]
    require_all: bool = True
    shown: str | None = None  # what the error message names (default: the markers)

    def matches(self, path: Path) -> bool:
        found = [next(Path(path).glob(m), None) is not None for m in self.markers]
        return all(found) if self.require_all else any(found)

    def describe_markers(self) -> str:
        return self.shown or (" + " if self.require_all else " or ").join(self.markers)


PREPARED_DATASET = OutputKind("prepared dataset", ("records.parquet", "cohort_log.json"))


def note(message: str) -> None:
    """One line on stderr (what was recovered or cleaned up; never silent)."""
    print(f"mtl-report: {message}", file=sys.stderr, flush=True)


def resolved(path: PathLike) -> Path:
    """``path`` made absolute with symlinks and ``..`` resolved (missing parts kept)."""
    return Path(os.path.expanduser(os.fspath(path))).resolve(strict=False)


def check_not_input(out: PathLike, inputs: Iterable[PathLike | None], flag: str = "--out"):
    """Refuse an output that is, or contains, one of ``inputs`` (``None`` entries skipped).

    Why resolve: ``--out data/pn`` and ``--csv ./data/../data/pn/labels.csv`` (or a symlink
    to it) name the same file; comparing strings would let the output swallow the input.
    """
    target = resolved(out)
    for item in inputs:
        if item is None or os.fspath(item) == "":
            continue
        source = resolved(item)
        if source == target:
            raise DataError(f"{out}: is an input of this command ({item}); choose another {flag}")
        if target in source.parents:
            raise DataError(
                f"{out}: contains an input of this command ({item}); choose another {flag}"
            )


def check_parent(out: PathLike) -> None:
    """Refuse an output that is a file or lies under one, or whose nearest existing
    directory cannot be written (one line naming the path instead of FileExistsError,
    NotADirectoryError or PermissionError later)."""
    path = Path(out).absolute()
    if path.exists() and not path.is_dir():
        raise DataError(f"{out}: exists and is not a directory")
    for ancestor in path.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise DataError(f"{out}: {ancestor} is a file, not a directory")
            break
    existing = path if path.is_dir() else next(p for p in path.parents if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DataError(f"{out}: cannot write in {existing} (permission denied)")


def check_output_dir(
    out: PathLike,
    kind: OutputKind,
    inputs: Iterable[PathLike | None] = (),
    flag: str = "--out",
) -> str:
    """Check an output directory before anything is written; returns its state.

    Returns:
        ``"absent"``, ``"empty"`` or ``"own"`` (a non-empty directory of ``kind``).

    Raises:
        DataError: the output is or contains an input, is a file or under one, cannot be
            written, or is a non-empty directory that is not of ``kind`` (naming the markers
            looked for).
    """
    check_not_input(out, inputs, flag)
    check_parent(out)
    path = Path(out)
    if not path.exists():
        return "absent"
    if next(path.iterdir(), None) is None:
        return "empty"
    if not kind.matches(path):
        raise DataError(
            f"{out}: not empty and not a {kind.name} (no {kind.describe_markers()}); "
            f"choose another {flag}"
        )
    return "own"


def make_dirs(path: PathLike) -> Path:
    """``mkdir -p`` with one-line DataErrors naming the path (parent is a file, no permission)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise DataError(f"{path}: cannot create the directory (a part of it is a file)") from exc
    except PermissionError as exc:
        raise DataError(f"{path}: cannot create the directory (permission denied)") from exc
    return path


# --------------------------------------------------------------------------------------
# Leftovers of killed runs
# --------------------------------------------------------------------------------------
def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (another user's process counts as alive)."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


def _leftovers(out: Path) -> tuple[list[Path], list[Path]]:
    """``(old, tmp)`` sibling directories of ``out`` left by dead processes of this package."""
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.(tmp|old)-(\d+)(?:-.*)?$")
    old, tmp = [], []
    if not out.parent.is_dir():
        return old, tmp
    for entry in out.parent.iterdir():
        match = pattern.match(entry.name)
        if not match or entry.is_symlink() or not entry.is_dir():
            continue
        if pid_alive(int(match[2])):
            continue
        (old if match[1] == "old" else tmp).append(entry)
    old.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return old, tmp


def recover(out: PathLike, kind: OutputKind = PREPARED_DATASET, echo=note) -> None:
    """Undo what a run killed during :func:`atomic_dir` left next to ``out``.

    - ``.NAME.old-PID`` with ``NAME`` missing: the kill fell between the two renames; the
      previous output is renamed back to ``NAME``;
    - ``.NAME.old-PID`` with ``NAME`` of ``kind``: the swap had completed; it is removed;
    - ``.NAME.tmp-PID-*``: an unfinished output; removed.
    """
    out = Path(out).absolute()
    old, tmp = _leftovers(out)
    for path in old:
        if not out.exists() and not out.is_symlink():
            path.rename(out)
            echo(f"{out}: restored the previous output from {path.name} (left by a killed run)")
        elif out.is_dir() and kind.matches(out):
            shutil.rmtree(path, ignore_errors=True)
            echo(f"removed {path} (the replaced output, left by a run killed after the swap)")
        else:
            echo(f"left {path} alone ({out} is not a {kind.name}); remove it by hand if unwanted")
    for path in tmp:
        shutil.rmtree(path, ignore_errors=True)
        echo(f"removed {path} (the unfinished output of a killed run)")


def clean_stale(parent: PathLike, name_pattern: str, echo=note) -> list[Path]:
    """Remove directories in ``parent`` named ``.<name_pattern>.tmp-PID-*`` whose PID is dead.

    ``name_pattern`` is a regular expression for the NAME part (``\\d+`` for the version
    folders of ``export``).
    """
    parent = Path(parent)
    pattern = re.compile(rf"^\.(?:{name_pattern})\.tmp-(\d+)-.*$")
    removed = []
    if not parent.is_dir():
        return removed
    for entry in parent.iterdir():
        match = pattern.match(entry.name)
        if match and entry.is_dir() and not entry.is_symlink() and not pid_alive(int(match[1])):
            shutil.rmtree(entry, ignore_errors=True)
            echo(f"removed {entry} (the unfinished output of a killed run)")
            removed.append(entry)
    return removed


def tmp_prefix(name: str) -> str:
    """Prefix of a hidden working directory next to ``name`` (carries this PID so that a
    later run can tell a dead run's leftovers from a live one's)."""
    return f".{name}.tmp-{os.getpid()}-"


def current_umask() -> int:
    """The process umask (read from /proc when possible: os.umask's set-and-restore is not
    thread-safe)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def chmod_as_umask(path: PathLike) -> None:
    """Give a ``mkdtemp`` directory (always 0700) the mode a plain ``mkdir`` would have."""
    os.chmod(path, 0o777 & ~current_umask())


# --------------------------------------------------------------------------------------
# Atomic replacement of a prepared dataset
# --------------------------------------------------------------------------------------
def _rename(src: Path, dst: Path) -> None:
    """One rename of the swap (a seam for the tests that simulate a kill between two)."""
    src.rename(dst)


def foreign_entries(out: Path, allowed: Iterable[str] = PREPARED_ENTRIES) -> list[str]:
    """Entries of ``out`` that a preparation does not write (the user's own files)."""
    allowed = set(allowed)
    return sorted(p.name for p in Path(out).iterdir() if p.name not in allowed)


@contextlib.contextmanager
def atomic_dir(
    out: PathLike,
    overwrite: bool = True,
    inputs: Iterable[PathLike | None] = (),
    kind: OutputKind = PREPARED_DATASET,
    echo: Callable[[str], None] = note,
) -> Iterator[Path]:
    """Yield a hidden working directory that replaces ``out`` only when the block succeeds.

    ``out`` may be absent, an empty directory, or (with ``overwrite``) a directory of
    ``kind`` holding nothing but what a preparation writes. Everything else is refused
    (see :func:`check_output_dir`), and so is an ``out`` that is or contains an input.
    Leftovers of killed runs are recovered first (:func:`recover`).
    """
    out = Path(out).absolute()
    inputs = list(inputs)
    check_prepared_out(out, inputs, overwrite, kind, echo)
    make_dirs(out.parent)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=tmp_prefix(out.name), dir=out.parent))
    except PermissionError as exc:
        raise DataError(f"{out.parent}: cannot write (permission denied)") from exc
    try:
        yield tmp
        chmod_as_umask(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # Checked again: the output may have changed while the dataset was being written.
    try:
        check_prepared_out(out, inputs, overwrite, kind, echo)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.is_dir() and next(out.iterdir(), None) is None:
        out.rmdir()
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        _rename(out, old)
        # A kill here leaves the previous output as ``old``: recover() puts it back.
        _rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        _rename(tmp, out)


def check_prepared_out(
    out: PathLike,
    inputs: Iterable[PathLike | None] = (),
    overwrite: bool = True,
    kind: OutputKind = PREPARED_DATASET,
    echo: Callable[[str], None] = note,
) -> None:
    """The checks of :func:`atomic_dir`, callable before any work is done.

    Recovers leftovers of killed runs, then refuses an output that is or contains an input,
    a non-empty directory that is not a ``kind``, one that holds files a preparation does
    not write, and (without ``overwrite``) an existing ``kind``.
    """
    out = Path(out).absolute()
    with contextlib.suppress(OSError):
        recover(out, kind, echo)
    state = check_output_dir(out, kind, inputs)
    if state != "own":
        return
    if not overwrite:
        raise DataError(f"{out}: already holds a {kind.name}; pass --overwrite to replace it")
    foreign = foreign_entries(out)
    if foreign:
        shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise DataError(
            f"{out}: holds files a preparation does not write ({shown}); "
            "move them or choose another --out"
        )
