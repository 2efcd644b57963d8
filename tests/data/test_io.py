"""mtl_report.data.io: the prepared-dataset format refuses empty and corrupt datasets."""

from __future__ import annotations

import pandas as pd
import pytest

from mtl_report.data.cohort import CohortLog
from mtl_report.data.errors import DataError
from mtl_report.data.io import CLASSIFICATION_COLUMNS, load_prepared, write_prepared


def _records(n: int) -> pd.DataFrame:
    rows = [
        {
            "study_id": f"s{i}",
            "subject_id": f"p{i}",
            "image_path": f"{i}.png",
            "label": "a",
            "report": "",
            "split": "test",
        }
        for i in range(n)
    ]
    return pd.DataFrame(rows, columns=[*CLASSIFICATION_COLUMNS, "split"])


def _write(out, n: int, dropped: int = 0) -> None:
    log = CohortLog("image_table")
    log.start("rows", n + dropped)
    log.record("checks", n + dropped, n, {"image file missing": dropped} if dropped else {})
    out.mkdir()
    write_prepared(out, _records(n), log, {"kind": "classification"}, {})


def test_no_studies_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no studies: the image_table input has no rows"):
        _write(tmp_path / "a", 0)
    with pytest.raises(DataError, match=r"all 3 studies .* dropped \(image file missing 3\)"):
        _write(tmp_path / "b", 0, dropped=3)
    assert not (tmp_path / "a" / "records.parquet").exists()


def test_corrupt_records_parquet_is_named(tmp_path):
    _write(tmp_path / "ds", 2)
    assert len(load_prepared(tmp_path / "ds").records) == 2
    (tmp_path / "ds" / "records.parquet").write_bytes(b"PAR1 not really parquet PAR1")
    with pytest.raises(DataError, match=r"ds: corrupt prepared dataset \(records\.parquet unr"):
        load_prepared(tmp_path / "ds")
    (tmp_path / "ds" / "dataset.json").write_text("{")
    with pytest.raises(DataError, match=r"corrupt prepared dataset .*re-run prepare"):
        load_prepared(tmp_path / "ds")
