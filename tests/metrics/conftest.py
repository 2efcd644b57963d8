"""Fixtures of the metrics tests: the real IU X-ray reports (text only)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest


@pytest.fixture(scope="session")
def iu_reports(shared_data: Path) -> pd.DataFrame:
    """The 3,261 IU X-ray reports with ``text`` = findings + impression and the R2Gen split.

    Skipped where the folder is missing, failed instead under CI (as ``shared_data``).
    """
    folder = shared_data / "iu_xray_reports"
    if not (folder / "indiana_reports.csv").is_file():
        message = f"IU X-ray reports not found in {folder}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    reports = pd.read_csv(folder / "indiana_reports.csv")
    reports["text"] = (
        reports["findings"].fillna("") + " " + reports["impression"].fillna("")
    ).str.strip()
    split = pd.read_csv(folder / "r2gen_split.csv")
    return reports.merge(split, on="uid", how="left")
