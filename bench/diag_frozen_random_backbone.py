"""Why a frozen, randomly initialised DenseNet121 cannot classify (issue 16).

A random backbone kept frozen (the old default unfreezing schedule trained the head alone
for the first epochs) runs its batch norms in inference mode, with their initial
statistics (mean 0, variance 1). This script feeds the same real X-rays (32 per class of
the pediatric sample) through each random backbone twice, with batch norms in inference
mode (what a frozen backbone computes) and in training mode (batch statistics), and prints
the pooled features' mean magnitude and their spread between images as JSON. A head can
only separate classes by what varies between images.

Measured on 2026-12-02 (64 px, seed 0): DenseNet121's between-image spread falls from 0.33
(batch statistics) to 0.0027 in inference mode, ~120× less, so the head sees a nearly
constant input and learns the class prior; Swin (layer norm) is unchanged; Lite0 loses
~5×. Hence the default for random weights is to train everything from the first step.

    python bench/diag_frozen_random_backbone.py [--data ../shared/data] [--size 64]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    default = Path(os.environ.get("MTL_REPORT_SHARED", "../shared")) / "data"
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=default, help="shared data folder")
    parser.add_argument("--size", type=int, default=64, help="image side (64)")
    parser.add_argument("--per-class", type=int, default=32, help="images per class (32)")
    parser.add_argument(
        "--backbones", default="densenet121,swin_micro,efficientnet_lite0", help="to compare"
    )
    args = parser.parse_args()

    import keras

    from mtl_report.image_decoding import load_image
    from mtl_report.models.backbones import build_backbone

    keras.utils.set_random_seed(0)
    folder = args.data / "pneumonia_sample"
    table = pd.read_csv(folder / "labels.csv").drop_duplicates("image")
    table = table.groupby("label").head(args.per_class)
    x = np.stack([load_image(folder / p, args.size) for p in table["image"]])
    out: dict = {"images": len(x), "image_size": args.size, "seed": 0, "backbones": {}}
    for name in args.backbones.split(","):
        backbone = build_backbone(name, args.size, None)
        row = {}
        for mode in ("inference", "training"):
            pooled = np.asarray(backbone(x, training=mode == "training")).mean(axis=1)
            magnitude = float(np.abs(pooled).mean())
            spread = float(pooled.std(axis=0).mean())
            row[f"bn_{mode}"] = {
                "mean_abs_feature": magnitude,
                "between_image_std": spread,
            }
        row["spread_ratio_training_over_inference"] = (
            row["bn_training"]["between_image_std"] / row["bn_inference"]["between_image_std"]
        )
        out["backbones"][name] = row
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
