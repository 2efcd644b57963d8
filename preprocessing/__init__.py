"""Data layer of mtl_report: raw sources → the prepared-dataset format (no TensorFlow here).

Sources: MIMIC-CXR ↔ MIMIC-IV-ED (:mod:`preprocessing.mimic`), IU X-ray
(:mod:`preprocessing.iu_xray`), plain image-classification tables
(:mod:`preprocessing.image_table`) and a MIMIC-shaped synthetic generator
(:mod:`preprocessing.synthetic`). All of them write the format read by
:func:`preprocessing.io.load_prepared`.
"""

from preprocessing.cohort import CohortLog
from preprocessing.errors import DataError
from preprocessing.io import PreparedDataset, load_prepared

__all__ = ["CohortLog", "DataError", "PreparedDataset", "load_prepared"]
