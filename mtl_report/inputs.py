"""tf.data input pipelines: images, ED data and targets of a prepared dataset.

Model inputs **(contract)** — the model builder uses exactly these names:

==================  =========================  ===============================================
name                per-example shape, dtype   meaning
==================  =========================  ===============================================
``image``           ``(S, S, 3)`` float32      pixels in [0, 255], see :func:`decode_image`
``image_features``  ``(L, C)`` float32         cached frozen-backbone features (instead of
                                               ``image``; :mod:`mtl_report.feature_cache`)
``vitals``          ``(6,)`` float32           min-max scaled with the train statistics,
                                               order ``cleaning["vital_order"]``, missing → 0
``vitals_mask``     ``(6,)`` float32           1 = vital present, 0 = missing
``gender``          ``()`` int32               train-vocabulary index, 0 = unknown
``ethnicity``       ``()`` int32               train-vocabulary index, 0 = unknown
``chief_complaint`` ``(T,)`` int32             word ids of the normalised text (0 = padding)
``icd_title``       ``(T,)`` int32             word ids of the normalised text (0 = padding)
``report_tokens``   ``(max_length - 1,)`` int32  decoder input (teacher forcing)
==================  =========================  ===============================================

The six ED inputs come from :class:`~mtl_report.models.aksoy.AksoyPreprocessor`, applied to
each batch of raw fields (the same layer that ``generate`` and the SavedModel call).

Targets: ``report`` int32 ``(max_length - 1,)`` (0 = padding, ignored by the loss; a study
without a report is all padding), ``acuity`` float32 ``(4,)`` cumulative encoding (NaN row
when missing), ``findings`` float32 ``(n_findings,)`` 0/1/NaN (NaN = masked).

Images are decoded by :mod:`mtl_report.image_decoding` (policy, size limits, bad files,
augmentation).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import tensorflow as tf

from mtl_report.data.cleaning import cumulative_encoding
from mtl_report.data.errors import DataError
from mtl_report.data.io import PreparedDataset
from mtl_report.image_decoding import IMAGE_SIZE, augmentation, read_image

if TYPE_CHECKING:  # pragma: no cover
    from mtl_report.feature_cache import FeatureCache
    from mtl_report.models.aksoy import AksoyPreprocessor
    from mtl_report.text import ReportTokenizer

TARGETS: tuple[str, ...] = ("report", "acuity", "findings")
#: Acuity levels 1–5 → 4 cumulative targets.
N_ACUITY_TARGETS = 4


# --------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------
def report_token_ids(reports: pd.Series | Sequence, tokenizer: ReportTokenizer) -> np.ndarray:
    """``(n, max_length)`` int32 ids; a missing or blank report is all padding (masked)."""
    reports = pd.Series(list(reports), dtype=object)
    present = reports.map(lambda r: isinstance(r, str) and r.strip() != "").to_numpy(bool)
    ids = tokenizer.encode(reports.where(present, "").tolist())
    ids[~present] = tokenizer.pad_id
    return ids


def make_targets(
    records: pd.DataFrame, tokenizer: ReportTokenizer, finding_columns: Sequence[str]
) -> dict[str, np.ndarray]:
    """``report`` int32 ``(n, max_length - 1)``, ``acuity`` float32 ``(n, 4)`` (NaN row =
    missing), ``findings`` float32 ``(n, F)`` 0/1/NaN, and ``report_tokens`` (the decoder
    input that goes with ``report``)."""
    n = len(records)
    reports = records["report"] if "report" in records.columns else [None] * n
    decoder_input, target = tokenizer.decoder_io(report_token_ids(reports, tokenizer))
    if "acuity" in records.columns:
        acuity = cumulative_encoding(records["acuity"].to_numpy(dtype=object, na_value=np.nan))
    else:
        acuity = np.full((n, N_ACUITY_TARGETS), np.nan, np.float32)
    findings = np.full((n, len(finding_columns)), np.nan, np.float32)
    for j, col in enumerate(finding_columns):
        if col in records.columns:
            findings[:, j] = pd.to_numeric(records[col], errors="coerce").to_numpy(np.float64)
    bad = np.isfinite(findings) & (findings != 0) & (findings != 1)
    if bad.any():
        raise DataError(f"finding targets must be 0, 1 or missing; got {findings[bad][:5]}")
    return {
        "report_tokens": np.ascontiguousarray(decoder_input, np.int32),
        "report": np.ascontiguousarray(target, np.int32),
        "acuity": acuity.astype(np.float32),
        "findings": findings,
    }


# --------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------
def _check_image_paths(paths: pd.Series, where: str) -> list[str]:
    bad = [i for i, p in paths.items() if not isinstance(p, str) or not p]
    if bad:
        raise DataError(f"{where}: {len(bad)} stud(ies) without an image path")
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        shown = ", ".join(missing[:3])
        raise DataError(f"{where}: {len(missing)} image file(s) not found, e.g. {shown}")
    return paths.tolist()


def make_dataset(
    ds: PreparedDataset,
    split: str,
    tokenizer: ReportTokenizer,
    preprocessor: AksoyPreprocessor,
    *,
    batch_size: int = 32,
    image_size: int = IMAGE_SIZE,
    features: FeatureCache | None = None,
    shuffle: bool | None = None,
    augment: bool = False,
    seed: int = 0,
    drop_remainder: bool = False,
    repeat: bool = False,
) -> tf.data.Dataset:
    """Batches ``(inputs, targets)`` of one split of a prepared dataset.

    Args:
        ds: the prepared dataset (``load_prepared``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        tokenizer: fitted report tokenizer (its ``max_length`` fixes the token shapes).
        preprocessor: turns each batch's raw ED fields into the model's ED inputs (the
            layer ``generate`` and the SavedModel call too).
        batch_size: studies per batch.
        image_size: side S of ``image``; must equal ``features.image_size`` with features.
        features: a filled :class:`~mtl_report.feature_cache.FeatureCache`; the inputs then
            hold ``image_features`` ``(B, L, C)`` instead of ``image``.
        shuffle: shuffle studies each epoch (default: only for ``"train"``). Without
            shuffling, batches follow the order of ``ds.split(split)``.
        augment: random augmentation (:func:`augmentation`); train split and images only.
        seed: fixes the shuffling and augmentation sequence (the same seed gives the same
            batches, epoch after epoch).
        drop_remainder: drop a last, smaller batch.
        repeat: repeat forever (then pass ``steps_per_epoch`` to ``fit``).

    Returns:
        ``tf.data.Dataset`` of ``(inputs, targets)`` dicts, names as in the module docstring,
        decoded in parallel (deterministic order) and prefetched.

    Raises:
        DataError: unknown or empty split, studies without image files.
        ValueError: inconsistent options.
    """
    if ds.kind != "report":
        raise DataError(f"{ds.root}: a {ds.kind} dataset has no report-model inputs")
    records = ds.split(split)
    if records.empty:
        raise DataError(f"{ds.root}: no studies in split {split!r}")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if shuffle is None:
        shuffle = split == "train"
    if augment and split != "train":
        raise ValueError(f"augmentation is for the train split only, not {split!r}")
    if augment and features is not None:
        raise ValueError("cannot augment cached backbone features; fine-tune to augment")
    if features is not None and features.image_size != image_size:
        raise ValueError(
            f"feature cache is for {features.image_size}px images, dataset asks {image_size}px"
        )
    where = f"{ds.root} ({split})"
    if ds.metadata.get("text_only") and features is not None:
        paths = [""] * len(records)  # no images: blank features (training.BlankFeatures)
    else:
        paths = _check_image_paths(records["image_path"], where)
    from mtl_report.models.aksoy import raw_ed_columns

    tgt = make_targets(records, tokenizer, ds.finding_columns)
    n = len(records)

    columns: dict[str, Any] = {
        "raw": {k: tf.constant(v) for k, v in raw_ed_columns(records).items()},
        "report_tokens": tf.constant(tgt.pop("report_tokens")),
        "targets": {k: tf.constant(v) for k, v in tgt.items()},
        "index": tf.range(n, dtype=tf.int64),
    }
    if features is None:
        columns["path"] = tf.constant(paths)
    data = tf.data.Dataset.from_tensor_slices(columns)
    if shuffle:
        data = data.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        data = data.repeat()

    def inputs(element) -> dict:
        """The batch's raw ED fields through the preprocessor, plus the decoder input."""
        return {**preprocessor(element["raw"]), "report_tokens": element["report_tokens"]}

    if features is None:

        def load(element):
            element = dict(element)
            element["image"] = read_image(element.pop("path"), image_size)
            return element

        def finish(element):
            return {**inputs(element), "image": element["image"]}, element["targets"]

        data = data.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        data = data.batch(batch_size, drop_remainder=drop_remainder)
        data = data.map(finish, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if augment:
            layers = augmentation(seed)

            def aug(x, y):
                x = dict(x)
                x["image"] = layers(x["image"], training=True)
                return x, y

            # Sequential: the layers' seed state advances in a fixed order → reproducible.
            data = data.map(aug, num_parallel_calls=None)
    else:
        table = features.lookup(paths, dtype="float16")
        feature_shape = tuple(table.shape[1:])

        def gather(index: np.ndarray) -> np.ndarray:
            return table[index].astype(np.float32)

        def attach(element):
            x = inputs(element)
            feats = tf.numpy_function(gather, [element["index"]], tf.float32, stateful=False)
            x["image_features"] = tf.ensure_shape(feats, (None, *feature_shape))
            return x, element["targets"]

        data = data.batch(batch_size, drop_remainder=drop_remainder)
        data = data.map(attach, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    options = tf.data.Options()
    options.deterministic = True
    return data.with_options(options).prefetch(tf.data.AUTOTUNE)
