"""Cohort log: how many studies went in, how many each step dropped and why, how many came out.

Every preparation step that removes rows goes through :meth:`CohortLog.filter`, so the counts
add up by construction: ``rows_in - sum(dropped) == rows_out`` for every step, and each step
starts where the previous one ended. Values that were changed rather than dropped (an
implausible heart rate set to missing, an unknown category mapped to ``unknown``) are counted
separately under ``values``. The log is written as ``cohort_log.json`` next to the records.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class CohortStep:
    """One step of the cohort funnel."""

    name: str
    rows_in: int
    rows_out: int
    dropped: dict[str, int] = field(default_factory=dict)


class CohortLog:
    """Funnel of a data preparation run, in studies (one row per study).

    Args:
        source: name of the data source (``"mimic"``, ``"iu_xray"``, ...).
        unit: what a row is, for the printed summary.
    """

    def __init__(self, source: str, unit: str = "studies") -> None:
        self.source = source
        self.unit = unit
        self.steps: list[CohortStep] = []
        self.values: dict[str, dict[str, int]] = {}
        self.info: dict[str, object] = {}

    # -- recording -------------------------------------------------------------------------
    def start(self, name: str, rows: int) -> None:
        """Record the input of the funnel (a step that drops nothing)."""
        self.record(name, rows, rows, {})

    def record(self, name: str, rows_in: int, rows_out: int, dropped: Mapping[str, int]) -> None:
        """Record a step whose counts were computed elsewhere; they must add up."""
        dropped = {k: int(v) for k, v in dropped.items() if int(v) > 0}
        if rows_in - sum(dropped.values()) != rows_out:
            raise ValueError(
                f"cohort step {name!r}: {rows_in} in - {sum(dropped.values())} dropped "
                f"!= {rows_out} out"
            )
        if self.steps and self.steps[-1].rows_out != rows_in:
            raise ValueError(
                f"cohort step {name!r} starts with {rows_in} rows, "
                f"but the previous step ended with {self.steps[-1].rows_out}"
            )
        self.steps.append(CohortStep(name, int(rows_in), int(rows_out), dropped))

    def filter(self, name: str, df: pd.DataFrame, reasons: Mapping[str, pd.Series]) -> pd.DataFrame:
        """Drop the rows of ``df`` flagged by any of ``reasons`` and record why.

        ``reasons`` maps a reason to a boolean Series aligned with ``df`` (True = drop). A row
        flagged by several reasons is counted under the first one, so the counts add up.
        """
        keep = pd.Series(True, index=df.index)
        dropped: dict[str, int] = {}
        for reason, mask in reasons.items():
            mask = mask.reindex(df.index, fill_value=False).fillna(False).astype(bool)
            newly = mask & keep
            dropped[reason] = dropped.get(reason, 0) + int(newly.sum())
            keep &= ~mask
        out = df.loc[keep]
        self.record(name, len(df), len(out), dropped)
        return out

    def count_values(self, group: str, counts: Mapping[str, int]) -> None:
        """Record values changed (not rows dropped), e.g. implausible vitals set to missing."""
        bucket = self.values.setdefault(group, {})
        for key, n in counts.items():
            bucket[key] = bucket.get(key, 0) + int(n)

    # -- reading ---------------------------------------------------------------------------
    @property
    def rows_in(self) -> int:
        return self.steps[0].rows_in if self.steps else 0

    @property
    def rows_out(self) -> int:
        return self.steps[-1].rows_out if self.steps else 0

    def dropped_total(self) -> dict[str, int]:
        """Rows dropped per reason over all steps."""
        total: dict[str, int] = {}
        for step in self.steps:
            for reason, n in step.dropped.items():
                total[reason] = total.get(reason, 0) + n
        return total

    def check(self) -> None:
        """Raise if the funnel does not add up (it always should; a guard against edits)."""
        if not self.steps:
            return
        for prev, step in zip(self.steps, self.steps[1:]):
            if prev.rows_out != step.rows_in:
                raise ValueError(f"cohort log broken between {prev.name!r} and {step.name!r}")
        if self.rows_in - sum(self.dropped_total().values()) != self.rows_out:
            raise ValueError("cohort log: rows in - dropped != rows out")

    def to_dict(self) -> dict:
        self.check()
        return {
            "source": self.source,
            "unit": self.unit,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "steps": [asdict(s) for s in self.steps],
            "dropped_total": self.dropped_total(),
            "values": self.values,
            "info": self.info,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> CohortLog:
        log = cls(data["source"], data.get("unit", "studies"))
        for s in data["steps"]:
            log.record(s["name"], s["rows_in"], s["rows_out"], s.get("dropped", {}))
        log.values = {k: dict(v) for k, v in data.get("values", {}).items()}
        log.info = dict(data.get("info", {}))
        return log

    def write(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> CohortLog:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def summary(self) -> str:
        """Human-readable funnel, one line per step and per drop reason."""
        width = max([len(s.name) for s in self.steps] + [20])
        lines = [f"Cohort ({self.source}, {self.unit})"]
        for step in self.steps:
            lines.append(f"  {step.name:<{width}} {step.rows_in:>9,} -> {step.rows_out:>9,}")
            for reason, n in step.dropped.items():
                lines.append(f"  {'':<{width}}   - {n:>7,} {reason}")
        for group, counts in self.values.items():
            shown = ", ".join(f"{k}: {v:,}" for k, v in counts.items())
            lines.append(f"  {group}: {shown}")
        return "\n".join(lines)
