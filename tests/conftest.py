"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before any test module imports TensorFlow: the package's oneDNN default applies to the
# tests too (see mtl_report/__init__.py).
import mtl_report  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``<MTL_REPORT_SHARED>/data`` (default ``../shared`` beside the repository).

    Tests on the real sample data are skipped where it is absent, except under CI
    (``CI=true``), where a missing folder is a failure rather than a silent skip.
    """
    root = Path(os.environ.get("MTL_REPORT_SHARED", REPO_ROOT.parent / "shared")) / "data"
    if not root.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"shared data not found at {root} (set MTL_REPORT_SHARED)")
        pytest.skip(f"shared data not found at {root} (set MTL_REPORT_SHARED)")
    return root


# Serving tests (test_export, test_image_limits, test_serving_fuzz) share ONE tiny trained
# run, its SavedModel and the model loaded as TF Serving loads it, per test process.
@pytest.fixture(scope="session")
def serving_run_dir(tmp_path_factory) -> Path:
    from serving_helpers import train_tiny_run

    return train_tiny_run(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="session")
def serving_export(serving_run_dir, tmp_path_factory):
    """``export_run`` of :func:`serving_run_dir` (pixel limit ``SERVING_TEST_MAX_PIXELS``)."""
    from serving_helpers import SERVING_TEST_MAX_PIXELS

    from mtl_report.export import export_run

    base = tmp_path_factory.mktemp("serving") / "mtl_report"
    return export_run(serving_run_dir, base, max_pixels=SERVING_TEST_MAX_PIXELS)


@pytest.fixture(scope="session")
def serving_session(serving_export):
    from serving_helpers import ServingSession

    return ServingSession(serving_export.path)
