"""The Aksoy et al. cross-modal multi-task report model, keras-hub style: the backbone
(:class:`AksoyBackbone`, numbers → shared sequence), the task (:class:`AksoyModel`: heads,
weighted loss, cached decoding), the preprocessor (:class:`AksoyPreprocessor`, raw ED fields
→ numbers), the report generator that loads a run directory as a preset
(:class:`AksoyReportGenerator`), and the training set-ups (:data:`SETUPS`, :func:`get_setup`)."""

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
from mtl_report.models.aksoy.aksoy_setups import (
    DEFAULT_COMPARISON,
    SETUPS,
    expand_setups,
    get_setup,
)

__all__ = [
    "DEFAULT_COMPARISON",
    "ED_FIELDS",
    "ED_INPUTS",
    "GUIDE_INPUT",
    "OUTPUT_OF_TASK",
    "SETUPS",
    "AksoyBackbone",
    "AksoyHeads",
    "AksoyModel",
    "AksoyPreprocessor",
    "AksoyReportGenerator",
    "build_aksoy_model",
    "compile_for",
    "complete_inputs",
    "expand_setups",
    "feature_vocabularies",
    "get_setup",
    "raw_ed_columns",
    "word_vocabulary",
]
