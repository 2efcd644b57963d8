"""Predicting and scoring a classifier: probabilities, gate, greedy auxiliary reports,
classification and report metrics; :func:`evaluate_run` over a saved run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtl_report.classify.config import _write_json
from mtl_report.classify.data import load_classification, make_classify_dataset, resolve_classes
from mtl_report.data.errors import DataError
from mtl_report.data.io import PreparedDataset
from mtl_report.metrics.classification import (
    prediction_table,
    score_predictions,
)
from mtl_report.models.radgen import RadGenClassifier, RadGenConfig


def report_text_metrics(generated: Sequence[str], references: Sequence[str]) -> dict | None:
    """BLEU-1..4, ROUGE-L, CIDEr of generated reports against the references, with the
    shared metrics module (:func:`mtl_report.metrics.coco_scores`, the same normalisation
    as ``text_metrics``; METEOR/BERTScore are left to ``mtl-report evaluate``). None when no
    study has a reference report."""
    from mtl_report.metrics import coco_scores

    pairs = [(g, r) for g, r in zip(generated, references) if isinstance(r, str) and r.strip()]
    if not pairs:
        return None
    corpus, _ = coco_scores([g for g, _ in pairs], [r for _, r in pairs])
    return corpus


def greedy_reports(model, images: np.ndarray, tokenizer, batch_size: int = 32) -> list[str]:
    """Greedy auxiliary reports from images ``(N, S, S, 3)`` (the model's report head),
    with the cached decoder and the sampler the report model uses."""
    import tensorflow as tf

    from mtl_report.samplers import GreedySampler

    decoder = model.report_decoder
    steps = decoder.max_length - 1
    sampler = GreedySampler(tokenizer.end_id, forbidden_ids=(0, tokenizer.start_id))

    def next_token(token_ids, state, index, memory):
        cross = memory["cross_cache"]
        return decoder.step(token_ids, memory["memory"], state, cross, index)

    @tf.function(reduce_retracing=True)
    def generate(batch):
        memory = model.encode_image(batch)
        state, cross = decoder.init_cache(memory, steps)
        start = tf.fill([tf.shape(memory)[0]], tokenizer.start_id)
        constants = {"memory": memory, "cross_cache": cross}
        return sampler(next_token, start, state, steps - 1, constants)

    texts: list[str] = []
    for i in range(0, len(images), batch_size):
        tokens = generate(tf.constant(images[i : i + batch_size], tf.float32)).numpy()
        texts.extend(tokenizer.decode(tokens))
    return texts


def inference_dataset(model, tokenizer, records: pd.DataFrame, classes, model_config, batch_size):
    """Unshuffled, unaugmented ``(x, y)`` batches of ``records`` for ``model``'s inputs."""
    return make_classify_dataset(
        records,
        classes,
        tokenizer,
        image_size=model_config.image_size,
        batch_size=batch_size,
        input_names=list(model.input.keys()),
    )


def predict_records(model, tokenizer, records: pd.DataFrame, classes, model_config, batch_size=32):
    """``(probabilities (N, k), gate (N,) or None, images or None)`` for ``records``."""
    data = inference_dataset(model, tokenizer, records, classes, model_config, batch_size)
    probs, gates, images = [], [], []
    for x, _ in data:
        out = model(x, training=False)
        probs.append(np.asarray(out["probabilities"]))
        if "gate" in out:
            gates.append(np.asarray(out["gate"])[:, 0])
        if "image" in x:
            images.append(np.asarray(x["image"]))
    return (
        np.concatenate(probs),
        np.concatenate(gates) if gates else None,
        np.concatenate(images) if images else None,
    )


def evaluate_model(
    model,
    tokenizer,
    records: pd.DataFrame,
    classes: Sequence[str],
    model_config: RadGenConfig,
    *,
    batch_size: int = 32,
    out_dir: Path | None = None,
    reports: bool = True,
) -> dict[str, Any]:
    """Score a model on ``records``: classification metrics, gate summary, report metrics,
    and per-source recalls when ``records`` has a ``source`` column.

    Writes ``predictions.csv`` (study, label, probabilities, gate, generated report) to
    ``out_dir`` when given.
    """
    index = {c: i for i, c in enumerate(classes)}
    labels = records["label"].astype(str).map(index).to_numpy(int)
    probs, gate, images = predict_records(
        model, tokenizer, records, classes, model_config, batch_size
    )
    metrics = score_predictions(records, probs, classes)
    if gate is not None:
        metrics["gate"] = {
            "mean": float(gate.mean()),
            "by_class": {
                c: float(gate[labels == i].mean())
                for i, c in enumerate(classes)
                if (labels == i).any()
            },
        }
    generated = None
    if reports and model_config.has_report_head and images is not None and "report" in model.output:
        generated = greedy_reports(model, images, tokenizer, batch_size)
        text = report_text_metrics(generated, records["report"].tolist())
        if text is not None:
            metrics["text"] = text
    if out_dir is not None:
        table = prediction_table(records, probs, classes)
        if gate is not None:
            table["gate"] = gate
        if generated is not None:
            table["generated_report"] = generated
        table.to_csv(Path(out_dir) / "predictions.csv", index=False)
    return metrics


def evaluate_run(
    run_dir: str | Path,
    data: str | Path | PreparedDataset,
    split: str = "test",
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate a saved run on a split of a prepared dataset (``metrics.json`` to ``out``)."""
    classifier = RadGenClassifier.from_preset(run_dir)
    ds = load_classification(data)
    classes = classifier.classes
    resolve_classes(ds, classes)
    records = ds.split(split) if split != "all" else ds.records
    if records.empty:
        raise DataError(f"{ds.root}: no studies in the {split!r} split")
    records = records.copy()
    if classifier.run.info["train"].get("report_free") or "report" not in records:
        records["report"] = ""
    metrics = evaluate_model(
        classifier.model,
        classifier.tokenizer,
        records,
        classes,
        classifier.config,
        out_dir=Path(run_dir),
    )
    metrics["split"] = split
    if out is not None:
        _write_json(Path(out), metrics)
    return metrics
