"""The cohort log's counts add up, or it refuses."""

import pandas as pd
import pytest

from mtl_report.data.cohort import CohortLog


def test_filter_counts_each_row_once_under_its_first_reason(tmp_path):
    log = CohortLog("test")
    df = pd.DataFrame({"x": range(10)})
    log.start("input", len(df))
    out = log.filter("step", df, {"small": df["x"] < 3, "even": df["x"] % 2 == 0})
    assert len(out) == 4  # 3, 5, 7, 9
    assert log.steps[-1].dropped == {"small": 3, "even": 3}
    log.check()
    path = tmp_path / "log.json"
    log.write(path)
    again = CohortLog.read(path)
    assert again.to_dict() == log.to_dict()
    assert "small" in again.summary()


def test_inconsistent_steps_are_refused():
    log = CohortLog("test")
    with pytest.raises(ValueError, match="dropped"):
        log.record("bad", 10, 8, {"x": 1})
    log.record("ok", 10, 9, {"x": 1})
    with pytest.raises(ValueError, match="previous step"):
        log.record("gap", 8, 8, {})
