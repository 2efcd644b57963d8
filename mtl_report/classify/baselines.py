"""Baselines and ablations: image-only, text-only, early/late fusion, sampling variants and
the linear baselines, trained under the same folds and scored into one table."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtl_report.classify.config import ClassifierTrainConfig, _write_json
from mtl_report.classify.cross_validation import _run_or_reuse, cv_splits, summarize_folds
from mtl_report.classify.data import classes_for, has_report_text, load_classification
from mtl_report.config import ConfigError
from mtl_report.data.errors import DataError
from mtl_report.data.io import PreparedDataset
from mtl_report.linear_baselines import (
    PIXEL_SIZE,
    has_sources,
    pixel_features,
    run_linear_baseline,
)
from mtl_report.metrics.classification import (
    classification_metrics,
)
from mtl_report.models.radgen import RadGenConfig


@dataclass(frozen=True)
class Variant:
    """One row of the comparison: model/train overrides of the base configs."""

    name: str
    model: Mapping[str, Any]
    train: Mapping[str, Any]
    description: str
    needs_text: bool = True
    #: "network" (a RadGen model), or a scikit-learn baseline of
    #: :mod:`mtl_report.linear_baselines`: "pixels" or "source".
    kind: str = "network"


def default_variants(image_backbones: Sequence[str], ablations: bool = True) -> list[Variant]:
    """The full model, the baselines and (optionally) the ablations."""
    rows = [Variant("full", {}, {}, "gated fusion + report loss + class weights")]
    for bb in image_backbones:
        rows.append(
            Variant(
                f"image_{bb}",
                {"fusion": "image", "backbone": bb, "report_loss_weight": 0.0},
                {},
                f"image only ({bb})",
                False,
            )
        )
    rows += [
        Variant("text", {"fusion": "text"}, {}, "report text only"),
        Variant("early_fusion", {"fusion": "early"}, {}, "concatenate pooled features, MLP"),
        Variant("late_fusion", {}, {}, "average of image-only and text-only probabilities"),
        Variant(
            "pixels_pca_lr",
            {},
            {},
            f"PCA + logistic regression on {PIXEL_SIZE} px pixels",
            False,
            "pixels",
        ),
        Variant(
            "source_only",
            {},
            {},
            "predicts the image source, then the class shares of that source",
            False,
            "source",
        ),
    ]
    if ablations:
        rows += [
            Variant("no_gate", {"fusion": "average"}, {}, "ablation: g = 0.5 (no gate)"),
            Variant("no_report_loss", {"report_loss_weight": 0.0}, {}, "ablation: λ = 0"),
            Variant("no_class_weights", {}, {"balance": "none"}, "ablation: no balancing"),
            Variant("sampling", {}, {"balance": "sampling"}, "ablation: resampling, no weights"),
        ]
    return rows


TABLE_METRICS = (
    "classification.macro_auc",
    "classification.macro_f1",
    "classification.accuracy",
    "gate.mean",
    "text.bleu_4",
    "text.rouge_l",
    "text.cider",
)


def _late_fusion_metrics(image_dir: Path, text_dir: Path, classes, labels_by_study) -> dict:
    a = pd.read_csv(image_dir / "predictions.csv")
    b = pd.read_csv(text_dir / "predictions.csv").set_index("study_id").loc[a["study_id"]]
    cols = [f"p_{c}" for c in classes]
    probs = 0.5 * (a[cols].to_numpy() + b[cols].to_numpy())
    labels = a["label"].astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy(int)
    return {"classification": classification_metrics(labels, probs, classes), "n": len(a)}


def compare_variants(
    data: str | Path | PreparedDataset,
    out: str | Path,
    model_config: RadGenConfig | None = None,
    train_config: ClassifierTrainConfig | None = None,
    *,
    variants: Sequence[Variant] | None = None,
    image_backbones: Sequence[str] = ("densenet121", "swin_base"),
    folds: int = 0,
    verbose: int | str = 0,
    progress: Callable[[str], None] | None = None,
    resume: bool = False,
) -> pd.DataFrame:
    """Train every variant (single split, or ``folds``-fold CV) and tabulate them.

    Late fusion trains nothing: it averages the probabilities of the image-only model with
    the first backbone of ``image_backbones`` and the text-only model on the same test
    studies (both must be among the variants). On a dataset without reports the text
    variants are skipped (noted in the table) and the full model runs report-free.

    Returns the table (also ``out/comparison.csv``, ``out/comparison.md``,
    ``out/comparison.json``): one row per variant, ``mean ± std`` cells with folds.
    """
    ds = load_classification(data)
    model_config = model_config or RadGenConfig()
    train_config = train_config or ClassifierTrainConfig()
    out = Path(out)
    if not resume and out.exists() and any(out.iterdir()):
        raise DataError(f"{out}: not empty (choose another --out, or --resume)")
    variants = list(variants or default_variants(image_backbones))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ConfigError(f"duplicate variant names {names}")
    text_ok = has_report_text(ds.records) and not train_config.report_free
    classes = classes_for(ds, model_config)
    splits = (
        cv_splits(ds.records, folds, train_config.seed, train_config.val_fraction)
        if folds
        else [ds.records["split"]]
    )
    per_variant: dict[str, list[dict]] = {}
    notes: dict[str, str] = {}
    first_image = f"image_{image_backbones[0]}" if image_backbones else None
    features = None
    for v in variants:
        if v.name == "late_fusion":
            continue
        if v.kind != "network":
            if v.kind == "source" and not has_sources(ds.records):
                notes[v.name] = "skipped: no 'source' column with two sources or more"
                continue
            if features is None:
                if progress:
                    progress(f"{v.name}: reading {PIXEL_SIZE} px pixels")
                paths = ds.records["image_path"].tolist()
                features = dict(zip(paths, pixel_features(paths)))
            per_variant[v.name] = [
                run_linear_baseline(
                    v.kind,
                    ds.records.assign(split=np.asarray(split)),
                    classes,
                    features,
                    out / v.name / (f"fold_{k}" if folds else "run"),
                    train_config.seed,
                )
                for k, split in enumerate(splits)
            ]
            continue
        if v.needs_text and not text_ok and v.model.get("fusion") in ("text", "early", "average"):
            notes[v.name] = "skipped: no report text"
            continue
        mc = replace(model_config, classes=classes, **dict(v.model))
        tc = replace(train_config, **dict(v.train))
        if not text_ok and mc.fusion != "image":
            tc = replace(tc, report_free=True)
        per_variant[v.name] = []
        for k, split in enumerate(splits):
            if progress:
                progress(f"{v.name}: fold {k + 1}/{len(splits)}" if folds else v.name)
            records = ds.records.assign(split=np.asarray(split))
            run = out / v.name / (f"fold_{k}" if folds else "run")
            per_variant[v.name].append(
                _run_or_reuse(replace(ds, records=records), run, mc, tc, verbose, resume)
            )
    if "late_fusion" in names:
        if first_image in per_variant and "text" in per_variant:
            per_variant["late_fusion"] = [
                _late_fusion_metrics(
                    out / first_image / (f"fold_{k}" if folds else "run"),
                    out / "text" / (f"fold_{k}" if folds else "run"),
                    classes,
                    None,
                )
                for k in range(len(splits))
            ]
        else:
            notes["late_fusion"] = f"skipped: needs {first_image} and text"
    rows = []
    for v in variants:
        row: dict[str, Any] = {"variant": v.name, "description": v.description}
        if v.name in per_variant:
            summary = summarize_folds(per_variant[v.name])
            for metric in TABLE_METRICS:
                if metric in summary.index:
                    r = summary.loc[metric]
                    label = "gate_mean" if metric == "gate.mean" else metric.split(".")[-1]
                    row[label] = r["mean_std"] if folds else f"{r['mean']:.3f}"
            for c in classes:
                for key, label in (
                    (f"classification.auc.{c}", f"auc_{c}"),
                    (f"classification.sensitivity_at_95_specificity.{c}", f"sens@95spec_{c}"),
                ):
                    if key in summary.index:
                        r = summary.loc[key]
                        row[label] = r["mean_std"] if folds else f"{r['mean']:.3f}"
        else:
            row["note"] = notes.get(v.name, "")
        rows.append(row)
    table = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "comparison.csv", index=False)
    (out / "comparison.md").write_text(table.fillna("").to_markdown(index=False) + "\n")
    _write_json(out / "comparison.json", {"folds": folds, "variants": per_variant, "notes": notes})
    return table
