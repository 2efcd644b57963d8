"""Serialisable Keras layers of both models and of the Aksoy preprocessor."""

from mtl_report.layers.clinical_text import ClinicalTextNormalizer
from mtl_report.layers.cross_attention import CrossModalAttention
from mtl_report.layers.demographics import DemographicGrouper
from mtl_report.layers.findings_guide import FindingsGuide
from mtl_report.layers.gated_fusion import GatedCrossModalFusion
from mtl_report.layers.heads import CumulativeOrdinalHead, MultiLabelHead
from mtl_report.layers.report_decoder import ReportDecoder
from mtl_report.layers.text_encoder import ReportTextEncoder
from mtl_report.layers.unified_data import UnifiedDataBlock
from mtl_report.layers.visual_encoder import VisualEncoder
from mtl_report.layers.vital_signs import VitalSignsScaler

__all__ = [
    "ClinicalTextNormalizer",
    "CrossModalAttention",
    "CumulativeOrdinalHead",
    "DemographicGrouper",
    "FindingsGuide",
    "GatedCrossModalFusion",
    "MultiLabelHead",
    "ReportDecoder",
    "ReportTextEncoder",
    "UnifiedDataBlock",
    "VisualEncoder",
    "VitalSignsScaler",
]
