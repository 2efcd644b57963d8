"""Evaluation metrics: report text, clinical efficacy, findings and acuity heads, statistics.

Importing this package is light (numpy, pandas): pycocoevalcap, Java (METEOR), torch and
bert-score (BERTScore), spaCy/negspacy (labeler), sklearn and scipy are imported by the
functions that use them. Nothing here imports TensorFlow.

    from mtl_report.metrics import text_metrics, clinical_efficacy, metrics_json
    tm = text_metrics(generated, references, bertscore_model="/models/roberta-large")
    ce = clinical_efficacy(generated, references)
    out = metrics_json(text=tm, findings=findings_head_metrics(y, p), n=len(references))
"""

from mtl_report.metrics.clinical import (
    acuity_metrics,
    ce_from_labels,
    clinical_efficacy,
    findings_head_metrics,
)
from mtl_report.metrics.labeler import label_reports, mention_table
from mtl_report.metrics.nlg import (
    TEXT_METRIC_KEYS,
    TextMetrics,
    bertscore,
    coco_scores,
    find_packaged_model,
    meteor_score,
    normalize_report,
    repeated_ngram_rate,
    text_metrics,
)
from mtl_report.metrics.stats import flatten_metrics, mean_std_table, paired_t_test
from mtl_report.metrics.tasks import REQUIRED_KEYS, jsonable, metrics_json, write_metrics_json

__all__ = [
    "REQUIRED_KEYS",
    "TEXT_METRIC_KEYS",
    "TextMetrics",
    "acuity_metrics",
    "bertscore",
    "ce_from_labels",
    "clinical_efficacy",
    "coco_scores",
    "find_packaged_model",
    "findings_head_metrics",
    "flatten_metrics",
    "jsonable",
    "label_reports",
    "mean_std_table",
    "mention_table",
    "meteor_score",
    "metrics_json",
    "normalize_report",
    "paired_t_test",
    "repeated_ngram_rate",
    "text_metrics",
    "write_metrics_json",
]
