"""RadGen: the three-class image + report-text classifier (:mod:`.radgen_model`) and its
task over a run directory (:class:`RadGenClassifier`, loaded with ``from_preset``)."""

from mtl_report.models.radgen.radgen_classifier import RadGenClassifier
from mtl_report.models.radgen.radgen_model import (
    DEFAULT_CLASSES,
    RadGenConfig,
    RadGenModel,
    build_radgen_model,
    text_present,
)

__all__ = [
    "DEFAULT_CLASSES",
    "RadGenClassifier",
    "RadGenConfig",
    "RadGenModel",
    "build_radgen_model",
    "text_present",
]
