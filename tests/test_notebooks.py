"""Every notebook in ``notebooks/`` runs top to bottom with ``FAST = True``.

Notebooks are found by globbing, so one added later is tested without touching this file.
Each is executed by ``nbclient`` in a kernel of *this* interpreter (a temporary kernelspec on
``JUPYTER_PATH``), so no global Jupyter set-up is needed; any cell error fails the test.

The parameters cell (tagged ``parameters``, papermill-style) is followed by an injected cell
that sets ``FAST = True``, sends outputs to a temporary folder (``WORK_DIR``) and, where a
notebook declares them, makes it compute its own comparison (``COMPARE_DIR``) and train its
own run (``RUN_DIR``) instead of reading a ``make demo`` output that may or may not exist.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
KERNEL_NAME = "mtl-report-tests"
CELL_TIMEOUT_S = 600


def _parameters_cell(nb) -> tuple[int, str]:
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            return i, cell.source
    raise AssertionError("no code cell tagged 'parameters'")


def _declares(source: str, name: str) -> bool:
    return any(line.split("=")[0].strip() == name for line in source.splitlines() if "=" in line)


@pytest.fixture(scope="session")
def kernel_name(tmp_path_factory) -> str:
    """A kernelspec that starts ``sys.executable``'s ipykernel, found via ``JUPYTER_PATH``."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "mtl_report tests",
                "language": "python",
            }
        )
    )
    before = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(root), before) if p)
    yield KERNEL_NAME
    if before is None:
        os.environ.pop("JUPYTER_PATH", None)
    else:
        os.environ["JUPYTER_PATH"] = before


def test_notebooks_exist():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_clean_with_fast_parameter(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    _, params = _parameters_cell(nb)
    assert "FAST = True" in params, "the parameters cell must default to FAST = True"
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
    assert not dirty, f"cells {dirty} hold outputs: clear them before committing"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, kernel_name, tmp_path, monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    index, params = _parameters_cell(nb)
    values = {"FAST": True, "WORK_DIR": str(tmp_path / "work")}
    if _declares(params, "COMPARE_DIR"):
        values["COMPARE_DIR"] = str(tmp_path / "compare")  # empty: the notebook runs compare
    if _declares(params, "RUN_DIR"):
        values["RUN_DIR"] = ""  # the notebook trains its own run
    injected = "\n".join(
        f"{name} = {value!r}"
        for name, value in values.items()
        if name == "FAST" or _declares(params, name)
    )
    cell = nbformat.v4.new_code_cell("# Injected by tests/test_notebooks.py\n" + injected)
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, cell)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    errors = [
        out
        for c in nb.cells
        if c.cell_type == "code"
        for out in c.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors
