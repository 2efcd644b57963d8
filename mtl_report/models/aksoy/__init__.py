"""The Aksoy et al. cross-modal multi-task report model, its preprocessor, and the report
task that loads a run directory as a preset (:class:`AksoyReportGenerator`)."""

from mtl_report.models.aksoy.aksoy_model import (
    GUIDE_INPUT,
    OUTPUT_OF_TASK,
    AksoyModel,
    build_aksoy_model,
    complete_inputs,
)
from mtl_report.models.aksoy.aksoy_preprocessor import (
    ED_FIELDS,
    ED_INPUTS,
    AksoyPreprocessor,
    feature_vocabularies,
    raw_ed_columns,
    word_vocabulary,
)
from mtl_report.models.aksoy.aksoy_report_generator import AksoyReportGenerator

__all__ = [
    "ED_FIELDS",
    "ED_INPUTS",
    "GUIDE_INPUT",
    "OUTPUT_OF_TASK",
    "AksoyModel",
    "AksoyPreprocessor",
    "AksoyReportGenerator",
    "build_aksoy_model",
    "complete_inputs",
    "feature_vocabularies",
    "raw_ed_columns",
    "word_vocabulary",
]
