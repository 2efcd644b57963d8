"""Data layer of mtl_report: raw sources → the prepared-dataset format (no TensorFlow here).

Sources: MIMIC-CXR ↔ MIMIC-IV-ED (:mod:`mtl_report.data.mimic`), IU X-ray
(:mod:`mtl_report.data.iu_xray`), plain image-classification tables
(:mod:`mtl_report.data.image_table`) and a MIMIC-shaped synthetic generator
(:mod:`mtl_report.data.synthetic`). All of them write the format read by
:func:`mtl_report.data.io.load_prepared`.
"""

from mtl_report.data.cohort import CohortLog
from mtl_report.data.errors import DataError
from mtl_report.data.io import PreparedDataset, load_prepared

__all__ = ["CohortLog", "DataError", "PreparedDataset", "load_prepared"]
