"""FINDINGS and IMPRESSION sections from free-text radiology reports (MIMIC-CXR style).

MIMIC-CXR reports are semi-structured: upper-case headers followed by a colon
(``EXAMINATION:``, ``INDICATION:``, ``FINDINGS:``, ``IMPRESSION:``...). The report-generation
literature models FINDINGS + IMPRESSION, so those are extracted; which rule matched is kept
per study (``report_rule``) so users can filter, and studies with neither are dropped by the
caller with the reason ``no FINDINGS or IMPRESSION section``.

Rules, in order:

- ``findings+impression``: both sections present;
- ``findings``: FINDINGS only;
- ``impression``: IMPRESSION only;
- ``combined``: a single ``FINDINGS AND IMPRESSION:`` (or ``FINDINGS/IMPRESSION:``) section;
- ``conclusion``: no IMPRESSION but a ``CONCLUSION:`` or ``SUMMARY:`` section, used as the
  impression (with FINDINGS when present);
- ``none``: nothing usable.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

# A header is an upper-case phrase at the start of a line followed by a colon.
_NEXT_HEADER = r"(?=\n[ \t]*[A-Z][A-Z /&()\-]{2,40}:|\Z)"


def _section(pattern: str) -> re.Pattern:
    return re.compile(rf"(?:^|\n)[ \t]*(?:{pattern})[ \t]*:(.*?){_NEXT_HEADER}", re.DOTALL)


_COMBINED = _section(r"FINDINGS?\s*(?:AND|/|&)\s*IMPRESSIONS?")
_FINDINGS = _section(r"FINDINGS?")
_IMPRESSION = _section(r"IMPRESSIONS?")
_CONCLUSION = _section(r"CONCLUSIONS?|SUMMARY")


def clean_section(text: pd.Series) -> pd.Series:
    """Collapse whitespace (reports wrap lines at ~80 columns); missing → ``""``."""
    return text.fillna("").astype(str).str.replace(r"\s+", " ", regex=True).str.strip()


def extract_sections(texts: pd.Series) -> pd.DataFrame:
    """Split reports into ``findings_text``, ``impression_text``, ``report`` and ``report_rule``.

    Args:
        texts: full report texts (missing allowed), any index.

    Returns:
        DataFrame on the same index; ``report`` is findings then impression, joined by a space.
    """
    texts = texts.fillna("").astype(str).str.replace("\r\n", "\n", regex=False)
    combined = clean_section(texts.str.extract(_COMBINED, expand=False))
    findings = clean_section(texts.str.extract(_FINDINGS, expand=False))
    impression = clean_section(texts.str.extract(_IMPRESSION, expand=False))
    conclusion = clean_section(texts.str.extract(_CONCLUSION, expand=False))

    has_f, has_i = findings != "", impression != ""
    has_comb, has_c = combined != "", conclusion != ""
    rule = np.select(
        [has_f & has_i, has_comb, has_f & ~has_i & ~has_c, ~has_f & has_i, has_c],
        ["findings+impression", "combined", "findings", "impression", "conclusion"],
        default="none",
    )
    findings = findings.where(~has_comb | has_f, combined)
    impression = impression.where(has_i | ~has_c, conclusion)
    report = (findings + " " + impression).str.strip()
    return pd.DataFrame(
        {
            "findings_text": findings,
            "impression_text": impression,
            "report": report,
            "report_rule": pd.Series(rule, index=texts.index),
        }
    )
