"""One trained classifier run, scored twice on its test split: with the batch-norm moving
statistics it was saved with, then after :func:`recalibrate_batch_norm` (average batch
statistics of 32 training batches under the final weights). Same weights, same images:
the difference is what stale moving statistics cost at inference (issue 16, "DenseNets
never predict normal"). Prints JSON.

    python bench/diag_batch_norm_recalibration.py --run RUN --data PREPARED [--batches 32]

The run should have been trained with ``recalibrate_bn=False`` (runs before this change,
or the config edited), otherwise both rows agree.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="classify run directory")
    parser.add_argument("--data", type=Path, required=True, help="its prepared dataset")
    parser.add_argument("--batches", type=int, default=32, help="calibration batches (32)")
    args = parser.parse_args()

    from mtl_report import classify
    from mtl_report.models.backbones import recalibrate_batch_norm
    from mtl_report.models.radgen import RadGenClassifier

    classifier = RadGenClassifier.from_preset(args.run)
    model, tokenizer, cfg = classifier.model, classifier.tokenizer, classifier.config
    info = classifier.run.info
    for layer in model._flatten_layers(include_self=False):  # as in training's last epoch
        layer.trainable = True
    ds = classify.load_classification(args.data)
    classes = tuple(info["classes"])
    test = ds.split("test").assign(report="")
    train = ds.split("train").assign(report="")
    batch = int(info["train"]["batch_size"])
    calib = train.sample(min(len(train), args.batches * batch), random_state=0)
    out = {"run": str(args.run), "n_test": len(test)}

    def score(label: str) -> None:
        m = classify.evaluate_model(model, tokenizer, test, classes, cfg, reports=False)
        c = m["classification"]
        out[label] = {
            "macro_auc": c["macro_auc"],
            "auc": c["auc"],
            "predicted_class_counts": dict(
                zip(classes, np.asarray(c["confusion_matrix"]).sum(axis=0).tolist())
            ),
        }

    score("saved_statistics")
    data = classify.inference_dataset(model, tokenizer, calib, classes, cfg, batch)
    out["recalibrated_layers"] = recalibrate_batch_norm(model, data)
    score("recalibrated_statistics")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
