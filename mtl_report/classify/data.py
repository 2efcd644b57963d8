"""The classification dataset: loading, classes, class weights and the ``tf.data`` pipeline
(images, report tokens, per-example weights, class-balanced sampling)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mtl_report.classify.config import DEFAULT_CLASS_WEIGHTS, ClassifierTrainConfig
from mtl_report.config import ConfigError
from mtl_report.data.errors import DataError
from mtl_report.data.io import PreparedDataset, load_prepared
from mtl_report.models.radgen import DEFAULT_CLASSES, RadGenConfig, RadGenPreprocessor


def load_classification(data: str | Path | PreparedDataset) -> PreparedDataset:
    ds = data if isinstance(data, PreparedDataset) else load_prepared(Path(data))
    if ds.kind != "classification":
        raise DataError(
            f"{ds.root}: a {ds.kind!r} dataset cannot train the classifier "
            "(prepare one with `mtl-report prepare images` or `prepare synthetic-classes`)"
        )
    if ds.records.empty:
        raise DataError(f"{ds.root}: the dataset has no studies")
    return ds


def resolve_classes(ds: PreparedDataset, classes: Sequence[str] | None) -> tuple[str, ...]:
    """The class order: ``classes`` if given (every label must be one), else the dataset's."""
    present = sorted(ds.records["label"].astype(str).unique())
    if classes:
        unknown = sorted(set(present) - set(classes))
        if unknown:
            raise DataError(
                f"{ds.root}: unknown label(s) {unknown}; the configured classes are "
                f"{list(classes)} (set --labels)"
            )
        return tuple(classes)
    meta = ds.metadata.get("classes")
    return tuple(meta) if meta else tuple(present)


def has_report_text(records: pd.DataFrame) -> bool:
    reports = records.get("report")
    if reports is None:
        return False
    return bool(reports.fillna("").astype(str).str.strip().ne("").any())


def class_weight_vector(
    cfg: ClassifierTrainConfig, classes: Sequence[str], train_labels: np.ndarray
) -> np.ndarray:
    """Per-class weights (mean over the train studies normalised to 1)."""
    k = len(classes)
    counts = np.bincount(train_labels, minlength=k).astype(float)
    spec = cfg.class_weights
    if isinstance(spec, tuple):
        if len(spec) != k:
            raise ConfigError(f"{len(spec)} class weights given for {k} classes")
        w = np.asarray(spec, float)
    elif spec == "auto" and tuple(c.lower() for c in classes) == DEFAULT_CLASSES:
        w = np.asarray(DEFAULT_CLASS_WEIGHTS, float)
    else:
        w = np.where(counts > 0, counts.sum() / (k * np.maximum(counts, 1)), 0.0)
    mean = (w * counts).sum() / max(counts.sum(), 1)
    return w / mean if mean > 0 else w


def make_classify_dataset(
    records: pd.DataFrame,
    classes: Sequence[str],
    tokenizer,
    *,
    image_size: int,
    batch_size: int,
    input_names: Sequence[str],
    shuffle: bool = False,
    seed: int = 0,
    class_weights: np.ndarray | None = None,
    sampling: np.ndarray | None = None,
    augment: bool = False,
):
    """``tf.data`` of ``(x, y)`` batches for the RadGen model.

    ``x``: ``image`` ``(B, S, S, 3)`` float32 [0, 255], ``text_tokens`` ``(B, T)`` int32,
    ``report_tokens`` ``(B, T-1)`` (those in ``input_names``; made by
    :class:`~mtl_report.models.radgen.RadGenPreprocessor`). ``y``: ``label`` ``(B,)``
    int32, ``weight`` ``(B,)`` float32 (class weight, 1 without), ``report`` ``(B, T-1)``.
    Decoded images are cached in memory (small images; one decode per file). With
    ``sampling`` (per-class probabilities) batches are drawn from per-class streams.
    """
    import tensorflow as tf

    from mtl_report.image_decoding import augmentation, read_image

    if records.empty:
        raise DataError("no studies to build a dataset from")
    index = {c: i for i, c in enumerate(classes)}
    labels = records["label"].astype(str).map(index)
    if labels.isna().any():
        bad = sorted(set(records["label"].astype(str)) - set(classes))
        raise DataError(f"unknown label(s) {bad}; classes are {list(classes)}")
    labels = labels.to_numpy(np.int32)
    weights = (
        class_weights[labels].astype(np.float32)
        if class_weights is not None
        else np.ones(len(labels), np.float32)
    )
    reports = (
        records["report"].fillna("").astype(str).tolist()
        if "report" in records
        else [""] * len(records)
    )
    use_image = "image" in input_names
    paths = records["image_path"].fillna("").astype(str).tolist()
    if use_image and any(not p for p in paths):
        raise DataError("studies without an image path cannot train an image model")

    ds = tf.data.Dataset.from_tensor_slices(
        {"path": paths, "report": reports, "label": labels, "weight": weights}
    )

    def load(e):
        out = {"report": e["report"], "label": e["label"], "weight": e["weight"]}
        if use_image:
            out["image"] = read_image(e["path"], image_size)
        return out

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).cache()
    n = len(records)
    if sampling is not None:
        streams, probs = [], []
        for c in range(len(classes)):
            if (labels == c).any() and sampling[c] > 0:
                streams.append(
                    ds.filter(lambda e, c=c: tf.equal(e["label"], c))
                    .shuffle(int((labels == c).sum()), seed=seed + c)
                    .repeat()
                )
                probs.append(float(sampling[c]))
        probs = np.asarray(probs) / np.sum(probs)
        ds = tf.data.Dataset.sample_from_datasets(streams, probs.tolist(), seed=seed).take(n)
    elif shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    aug = augmentation(seed) if (augment and use_image) else None
    preprocessor = RadGenPreprocessor(tokenizer, input_names)

    def to_xy(b):
        tokens = preprocessor.tokenize(b["report"])
        images = None
        if use_image:
            images = aug(b["image"], training=True) if aug is not None else b["image"]
        x = preprocessor.model_inputs(tokens, images)
        y = {"label": b["label"], "weight": b["weight"], "report": tokens[:, 1:]}
        return x, y

    return ds.map(to_xy, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def classes_for(ds: PreparedDataset, model_config: RadGenConfig) -> tuple[str, ...]:
    """The configured classes when every label is one of them; the dataset's classes when
    the configured ones are the (unchanged) default; otherwise a DataError."""
    present = set(ds.records["label"].astype(str))
    if present <= set(model_config.classes):
        return tuple(model_config.classes)
    if tuple(model_config.classes) == DEFAULT_CLASSES:
        return resolve_classes(ds, None)
    return resolve_classes(ds, model_config.classes)
