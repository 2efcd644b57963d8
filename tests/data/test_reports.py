"""Section extraction rules of mtl_report.data.reports."""

import pandas as pd

from mtl_report.data.reports import extract_sections

BOTH = (
    "FINAL REPORT\n INDICATION: ___ cough\n\n FINDINGS:\n Lungs are\n clear.\n\n"
    " IMPRESSION:\n No acute process.\n"
)


def test_rules():
    texts = pd.Series(
        [
            BOTH,
            "FINDINGS: Small left effusion.\n",
            "IMPRESSION: Normal chest.\n",
            "FINDINGS AND IMPRESSION: Normal heart size.\n",
            "FINDINGS: Clear.\nCONCLUSION: Normal.\n",
            "CONCLUSION: Mild edema.\n",
            "FINAL REPORT\n Nothing structured here\n",
            None,
        ]
    )
    out = extract_sections(texts)
    assert out["report_rule"].tolist() == [
        "findings+impression",
        "findings",
        "impression",
        "combined",
        "conclusion",
        "conclusion",
        "none",
        "none",
    ]
    assert out["findings_text"].iloc[0] == "Lungs are clear."
    assert out["impression_text"].iloc[0] == "No acute process."
    assert out["report"].iloc[0] == "Lungs are clear. No acute process."
    assert out["findings_text"].iloc[3] == "Normal heart size."
    assert out["impression_text"].iloc[4] == "Normal."
    assert out["report"].iloc[5] == "Mild edema."
    assert out["report"].iloc[7] == ""


def test_indication_is_not_taken_as_findings():
    out = extract_sections(pd.Series(["INDICATION: rule out findings: none\nIMPRESSION: Clear.\n"]))
    assert out["findings_text"].iloc[0] == ""
    assert out["report_rule"].iloc[0] == "impression"
