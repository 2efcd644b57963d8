"""The Aksoy model's preprocessor: raw emergency-department fields → the model's numbers.

One Keras layer holds every step between a raw ED record and the model: vitals cleaned and
scaled (:class:`~mtl_report.layers.VitalSignsScaler`), gender and ethnicity grouped
(:class:`~mtl_report.layers.DemographicGrouper`) and looked up in the train vocabulary,
chief complaint and ICD title normalised (:class:`~mtl_report.layers.ClinicalTextNormalizer`)
and turned into word ids. tf.data calls it in training and evaluation
(:func:`mtl_report.inputs.make_dataset`), :class:`~mtl_report.models.aksoy.AksoyReportGenerator`
calls it for ``mtl-report generate``, and the SavedModel calls it inside the serving graph:
there is no second copy to keep equal.

Raw fields (:data:`ED_FIELDS`), each ``(n,)``: the six vitals float (NaN = missing, °F or
°C), ``gender``, ``ethnicity``, ``chief_complaint``, ``icd_title`` tf.string (``""`` =
missing).

Outputs (the model's ED inputs):

===================  =====================  =============================================
name                 shape, dtype           meaning
===================  =====================  =============================================
``vitals``           ``(n, 6)`` float32     min-max scaled, missing → 0
``vitals_mask``      ``(n, 6)`` float32     1 = present
``gender``           ``(n,)`` int32         index in the train vocabulary, 0 = unknown
``ethnicity``        ``(n,)`` int32         index in the train vocabulary, 0 = unknown
``chief_complaint``  ``(n, T)`` int32       word ids, 0 = padding, 1 = out of vocabulary
``icd_title``        ``(n, T)`` int32       word ids, 0 = padding, 1 = out of vocabulary
===================  =====================  =============================================
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from mtl_report.data.schema import CATEGORICAL, TEXT_FEATURES, UNKNOWN, VITALS
from mtl_report.layers.clinical_text import ClinicalTextNormalizer
from mtl_report.layers.demographics import DemographicGrouper
from mtl_report.layers.vital_signs import VitalSignsScaler

#: The raw request fields, in signature order.
ED_FIELDS: tuple[str, ...] = (*VITALS, *CATEGORICAL, *TEXT_FEATURES)
#: The preprocessor's outputs: the model's ED inputs.
ED_INPUTS: tuple[str, ...] = ("vitals", "vitals_mask", *CATEGORICAL, *TEXT_FEATURES)
#: Stands in for an empty vocabulary (a dataset without that field, like IU X-ray's ICD
#: titles), so the lookup table exists and every value is unknown.
EMPTY_VOCABULARY_WORD = "[no-text-in-training]"


def word_vocabulary(texts: Iterable[str], max_size: int, min_count: int = 1) -> list[str]:
    """Most frequent words of normalised texts (ties broken alphabetically, deterministic)."""
    counts = Counter(w for t in texts if isinstance(t, str) for w in t.split())
    ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return ranked[:max_size]


def feature_vocabularies(train: pd.DataFrame, cleaning: Mapping, max_words: int) -> dict:
    """Vocabularies of the ED features, fitted on the train split only: the categories of
    the preparation (``cleaning.json``) and the ``max_words`` most frequent words of each
    text."""
    categories = cleaning.get("categories", {})
    return {
        "gender": list(categories.get("gender", [UNKNOWN])),
        "ethnicity": list(categories.get("ethnicity", [UNKNOWN])),
        "chief_complaint": word_vocabulary(train["chief_complaint"], max_words),
        "icd_title": word_vocabulary(train["icd_title"], max_words),
    }


def _text(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def raw_ed_columns(records: pd.DataFrame | Sequence[Mapping]) -> dict[str, np.ndarray]:
    """Studies → the preprocessor's raw input: each of :data:`ED_FIELDS` as an ``(n,)``
    array, vitals float64 (missing or unparseable → NaN), texts str (missing → ``""``).

    Args:
        records: a DataFrame with one row per study (a prepared split), or ED-data dicts
            (``{"heartrate": 110, "chief_complaint": "SOB"}``); absent fields are missing.
    """
    if not isinstance(records, pd.DataFrame):
        records = pd.DataFrame([dict(r) for r in records], index=range(len(records)))
    n = len(records)
    out: dict[str, np.ndarray] = {}
    for name in VITALS:
        if name in records.columns:
            values = pd.to_numeric(records[name], errors="coerce").astype("float64")
            out[name] = values.to_numpy(np.float64, na_value=np.nan)
        else:
            out[name] = np.full(n, np.nan)
    for name in (*CATEGORICAL, *TEXT_FEATURES):
        column = records[name].tolist() if name in records.columns else [None] * n
        out[name] = np.asarray([_text(v) for v in column], dtype=object).reshape(n)
    return out


def _category_vocabulary(values: Sequence[str]) -> list[str]:
    """The known categories: ``unknown`` and ``""`` map to index 0 with everything unseen."""
    known = [str(v) for v in values if v not in (UNKNOWN, "")]
    return known or [EMPTY_VOCABULARY_WORD]


@keras.saving.register_keras_serializable(package="mtl_report")
class AksoyPreprocessor(keras.layers.Layer):
    """Raw ED fields → the Aksoy model's numeric ED inputs (see the module docstring).

    Args:
        minmax, vital_order, vital_ranges, convert_celsius: the vitals transform
            (:class:`~mtl_report.layers.VitalSignsScaler`), from ``cleaning.json``.
        abbreviations: the dataset's abbreviation table, from ``cleaning.json``.
        gender_vocabulary, ethnicity_vocabulary: categories seen in training.
        complaint_vocabulary, icd_vocabulary: words of the train split's texts.
        text_length: word ids kept of each text.
    """

    def __init__(
        self,
        minmax: Mapping[str, Sequence[float]],
        gender_vocabulary: Sequence[str],
        ethnicity_vocabulary: Sequence[str],
        complaint_vocabulary: Sequence[str],
        icd_vocabulary: Sequence[str],
        vital_order: Sequence[str] = VITALS,
        vital_ranges: Mapping[str, Sequence[float]] | None = None,
        convert_celsius: bool = True,
        abbreviations: Mapping[str, str] | None = None,
        text_length: int = 16,
        **kwargs,
    ):
        kwargs.setdefault("trainable", False)
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.vitals = VitalSignsScaler(
            minmax, vital_order, vital_ranges, convert_celsius, name="vital_signs"
        )
        self.text_normalizer = ClinicalTextNormalizer(abbreviations, name="text_normalizer")
        self.gender_vocabulary = _category_vocabulary(gender_vocabulary)
        self.ethnicity_vocabulary = _category_vocabulary(ethnicity_vocabulary)
        self.complaint_vocabulary = list(complaint_vocabulary) or [EMPTY_VOCABULARY_WORD]
        self.icd_vocabulary = list(icd_vocabulary) or [EMPTY_VOCABULARY_WORD]
        self.text_length = int(text_length)
        self.groupers = {k: DemographicGrouper(k, name=f"{k}_groups") for k in CATEGORICAL}
        self.lookups = {
            k: keras.layers.StringLookup(vocabulary=v, num_oov_indices=1, name=f"{k}_lookup")
            for k, v in (
                ("gender", self.gender_vocabulary),
                ("ethnicity", self.ethnicity_vocabulary),
            )
        }
        self.vectorizers = {
            k: keras.layers.TextVectorization(
                standardize=None,  # the normaliser has lower-cased and stripped punctuation
                split="whitespace",
                output_mode="int",
                output_sequence_length=self.text_length,
                vocabulary=v,
                name=f"{k}_vectorizer",
            )
            for k, v in (
                ("chief_complaint", self.complaint_vocabulary),
                ("icd_title", self.icd_vocabulary),
            )
        }
        self.built = True

    @classmethod
    def from_cleaning(
        cls, cleaning: Mapping, vocabularies: Mapping, text_length: int, **kwargs
    ) -> AksoyPreprocessor:
        """From a dataset's fitted ``cleaning.json`` and a run's ``vocabularies.json``."""
        return cls(
            minmax=cleaning["minmax"],
            vital_order=cleaning.get("vital_order", VITALS),
            vital_ranges=cleaning.get("vital_ranges"),
            convert_celsius=bool(cleaning.get("convert_celsius", True)),
            abbreviations=cleaning.get("abbreviations", {}),
            gender_vocabulary=vocabularies["gender"],
            ethnicity_vocabulary=vocabularies["ethnicity"],
            complaint_vocabulary=vocabularies["chief_complaint"],
            icd_vocabulary=vocabularies["icd_title"],
            text_length=text_length,
            **kwargs,
        )

    def vocabulary_sizes(self) -> dict[str, int]:
        """Index range of each output, with the unknown / padding ids (the model's widths)."""
        return {
            "gender": len(self.gender_vocabulary) + 1,
            "ethnicity": len(self.ethnicity_vocabulary) + 1,
            "chief_complaint": len(self.complaint_vocabulary) + 2,
            "icd_title": len(self.icd_vocabulary) + 2,
        }

    def call(self, raw: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        missing = [k for k in ED_FIELDS if k not in raw]
        if missing:
            raise ValueError(f"ED fields missing from the preprocessor's input: {missing}")
        vitals, mask = self.vitals({v: raw[v] for v in VITALS})
        out = {"vitals": vitals, "vitals_mask": mask}
        for name in CATEGORICAL:
            groups = self.groupers[name](tf.reshape(raw[name], [-1]))
            out[name] = tf.cast(self.lookups[name](groups), tf.int32)
        for name in TEXT_FEATURES:
            text = self.text_normalizer(tf.reshape(raw[name], [-1]))
            out[name] = tf.cast(self.vectorizers[name](text), tf.int32)
        return out

    def compute_output_spec(self, raw):
        n = raw[VITALS[0]].shape[0]
        spec = {
            "vitals": keras.KerasTensor((n, len(self.vitals.vital_order)), "float32"),
            "vitals_mask": keras.KerasTensor((n, len(self.vitals.vital_order)), "float32"),
        }
        spec.update({k: keras.KerasTensor((n,), "int32") for k in CATEGORICAL})
        spec.update({k: keras.KerasTensor((n, self.text_length), "int32") for k in TEXT_FEATURES})
        return spec

    def get_config(self):
        config = super().get_config()
        config.update(
            minmax=self.vitals.minmax,
            vital_order=self.vitals.vital_order,
            vital_ranges=self.vitals.vital_ranges,
            convert_celsius=self.vitals.convert_celsius,
            abbreviations=self.text_normalizer.abbreviations,
            gender_vocabulary=self.gender_vocabulary,
            ethnicity_vocabulary=self.ethnicity_vocabulary,
            complaint_vocabulary=self.complaint_vocabulary,
            icd_vocabulary=self.icd_vocabulary,
            text_length=self.text_length,
        )
        return config
