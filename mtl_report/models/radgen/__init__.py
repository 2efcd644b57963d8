"""RadGen: the three-class image + report-text classifier (:mod:`.radgen_model`), its
preprocessor (:class:`RadGenPreprocessor`, report text and pixels → model inputs) and its
task over a run directory (:class:`RadGenClassifier`, loaded with ``from_preset``)."""

from mtl_report.models.radgen.radgen_classifier import RadGenClassifier
from mtl_report.models.radgen.radgen_model import (
    DEFAULT_CLASSES,
    RadGenConfig,
    RadGenModel,
    build_radgen_model,
    text_present,
)
from mtl_report.models.radgen.radgen_preprocessor import RADGEN_INPUTS, RadGenPreprocessor

__all__ = [
    "DEFAULT_CLASSES",
    "RADGEN_INPUTS",
    "RadGenClassifier",
    "RadGenConfig",
    "RadGenModel",
    "RadGenPreprocessor",
    "build_radgen_model",
    "text_present",
]
