"""The Aksoy et al. cross-modal multi-task report model, keras-hub style: the backbone
(:class:`AksoyBackbone`, numbers → shared sequence), the task (:class:`AksoyModel`: heads,
weighted loss, cached decoding), the preprocessor (:class:`AksoyPreprocessor`, raw ED fields
→ numbers), and the report generator that loads a run directory as a preset
(:class:`AksoyReportGenerator`)."""

from mtl_report.models.aksoy.aksoy_backbone import AksoyBackbone
from mtl_report.models.aksoy.aksoy_model import (
    GUIDE_INPUT,
    OUTPUT_OF_TASK,
    AksoyHeads,
    AksoyModel,
    build_aksoy_model,
    compile_for,
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
    "AksoyBackbone",
    "AksoyHeads",
    "AksoyModel",
    "AksoyPreprocessor",
    "AksoyReportGenerator",
    "build_aksoy_model",
    "compile_for",
    "complete_inputs",
    "feature_vocabularies",
    "raw_ed_columns",
    "word_vocabulary",
]
