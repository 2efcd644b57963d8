"""Evaluate a run on a split: generate reports, score every head, write metrics.json.

Text metrics compare the generated text with the *full* reference report in the tokenizer's
standard form (lower-case, punctuation as the tokenizer keeps it), not with the truncated
training target, so a model is never credited for a reference cut to its own length limit.
``[UNK]`` in a generated report never matches a reference word.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mtl_report.data.errors import DataError
from mtl_report.data.io import PreparedDataset, load_prepared
from mtl_report.decoding import DecodingConfig, ReportGenerator
from mtl_report.run import Run

SPECIAL_WORDS = ("[START]", "[END]")


def standardized_references(texts) -> list[str]:
    """References in the tokenizer's standard form, without ``[START]``/``[END]``."""
    import tensorflow as tf

    from mtl_report.text import standardize_report

    texts = ["" if not isinstance(t, str) else t for t in texts]
    if not texts:
        return []
    out = standardize_report(tf.constant(texts)).numpy()
    words = [s.decode("utf-8").split() for s in out]
    return [" ".join(w for w in ws if w not in SPECIAL_WORDS) for ws in words]


@dataclass
class Predictions:
    """Per-study outputs of a model on one split."""

    study_ids: list[str]
    generated: list[str] | None
    acuity_cumulative: np.ndarray | None
    findings_probs: np.ndarray | None


def predict_split(
    run: Run,
    ds: PreparedDataset,
    split: str,
    decoding: DecodingConfig | None = None,
    batch_size: int = 32,
    cache_dir: Path | None = None,
    model=None,
    progress: bool = True,
    generate_text: bool = True,
) -> Predictions:
    """Run the model of ``run`` over ``split`` of ``ds`` (reports generated, not teacher-forced).

    ``generate_text=False`` skips report generation (``generated`` is None): the findings and
    acuity heads read the encoder only, so they come from one forward pass.
    """
    from mtl_report.inputs import make_dataset
    from mtl_report.models.aksoy import complete_inputs
    from mtl_report.training import prepare_features

    model = model or run.load_model()
    tokenizer = run.tokenizer()
    features = prepare_features(ds, run.model_config, cache_dir, progress=progress)
    data = make_dataset(
        ds,
        split,
        tokenizer=tokenizer,
        preprocessor=run.preprocessor(),  # the run's cleaning and vocabularies, not the data's
        batch_size=batch_size,
        image_size=run.model_config.image_size,
        features=features,
        shuffle=False,
    )
    has_text = "report" in model.output and generate_text
    generator = (
        ReportGenerator(model, tokenizer.start_id, tokenizer.end_id, decoding) if has_text else None
    )
    # teacher-forced tokens only feed the (unused) text head of a forward pass
    wanted = {k for k in model.input if k != "report_tokens" or not has_text}
    texts, acuity, findings = [], [], []
    for x, _ in data:
        x = {k: v for k, v in x.items() if k in wanted}
        if generator is not None:
            out = generator(x)
            texts.extend(tokenizer.decode(out["tokens"]))
        else:
            x = complete_inputs(model, x)  # findings unknown: a guided decoder reads the head
            out = {k: np.asarray(v) for k, v in model(x, training=False).items()}
        if "acuity" in out:
            acuity.append(out["acuity"])
        if "findings" in out:
            findings.append(out["findings"])
    rec = ds.split(split)
    return Predictions(
        study_ids=rec["study_id"].tolist(),
        generated=texts if has_text else None,
        acuity_cumulative=np.concatenate(acuity) if acuity else None,
        findings_probs=np.concatenate(findings) if findings else None,
    )


def score_predictions(
    pred: Predictions,
    records: pd.DataFrame,
    finding_columns: list[str],
    findings: list[str],
    bertscore_model: str | None = None,
    meteor: bool = True,
    findings_threshold: float | list[float] | None = None,
) -> tuple[dict, pd.DataFrame]:
    """``metrics.json`` content and a per-study table (predictions and per-study scores).

    ``findings_threshold``: one cut-off or one per finding (a run's validation-tuned
    cut-offs, :meth:`Run.findings_thresholds`); default 0.5.
    """
    from keras import ops

    from mtl_report.layers.heads import levels_from_cumulative
    from mtl_report.metrics import (
        acuity_metrics,
        clinical_efficacy,
        findings_head_metrics,
        metrics_json,
        text_metrics,
    )

    table = pd.DataFrame({"study_id": pred.study_ids})
    text = finding_metrics = acuity = None
    if pred.generated is not None:
        refs = standardized_references(records["report"].tolist())
        scores = text_metrics(pred.generated, refs, bertscore_model=bertscore_model, meteor=meteor)
        text = dict(scores.corpus)
        ce = clinical_efficacy(pred.generated, refs, findings=findings)
        text["clinical_efficacy"] = ce
        table["reference"] = refs
        table["generated"] = pred.generated
        per = scores.per_study.reset_index(drop=True)
        for col in per.columns:
            table[col] = per[col].to_numpy()
    if pred.findings_probs is not None:
        y_true = records[finding_columns].to_numpy(dtype="float64")
        cut = np.broadcast_to(
            np.asarray(0.5 if findings_threshold is None else findings_threshold, float),
            (len(finding_columns),),
        )
        finding_metrics = findings_head_metrics(
            y_true, pred.findings_probs, threshold=cut, findings=finding_columns
        )
        for j, col in enumerate(finding_columns):
            table[f"{col}_true"] = y_true[:, j]
            table[f"{col}_prob"] = pred.findings_probs[:, j]
        known = ~np.isnan(y_true)
        hits = ((pred.findings_probs >= cut) == (y_true == 1)) & known
        table["findings_accuracy"] = hits.sum(1) / np.maximum(known.sum(1), 1)
    if pred.acuity_cumulative is not None:
        levels = ops.convert_to_numpy(levels_from_cumulative(pred.acuity_cumulative))
        true = pd.to_numeric(records["acuity"], errors="coerce").to_numpy(dtype="float64")
        acuity = acuity_metrics(true, levels)
        table["acuity_true"] = true
        table["acuity_pred"] = levels
        table["acuity_abs_error"] = np.abs(levels - true)
    metrics = metrics_json(text=text, findings=finding_metrics, acuity=acuity, n=len(records))
    return metrics, table


def read_predictions(path: Path) -> pd.DataFrame:
    """A per-study table written by :func:`evaluate` / ``compare`` / ``llm-report``, with its
    text columns as strings (an empty report is ``""``, not NaN) and study ids as written."""
    text = ("study_id", "reference", "generated", "report_as_written", "plan")
    table = pd.read_csv(path, dtype=dict.fromkeys(text, str))
    for column in text[1:]:
        if column in table:
            table[column] = table[column].fillna("")
    return table


def score_run(
    run: Run, ds: PreparedDataset, split: str, pred: Predictions, bertscore_model=None
) -> tuple[dict, pd.DataFrame]:
    """:func:`score_predictions` of a run's predictions on ``split``, with the run's
    validation-tuned findings cut-offs (``thresholds.json``)."""
    return score_predictions(
        pred,
        ds.split(split),
        ds.finding_columns,
        ds.findings,
        bertscore_model=bertscore_model,
        findings_threshold=run.findings_thresholds(),
    )


def evaluate(
    run_dir: str | Path,
    data: str | Path | PreparedDataset,
    split: str = "test",
    out: str | Path | None = None,
    decoding: DecodingConfig | None = None,
    bertscore_model: str | None = None,
    batch_size: int = 32,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Score a run on a split; writes ``metrics.json`` and ``predictions.csv``.

    ``out`` is the metrics file (default ``RUN/metrics_<split>.json``); the predictions go
    next to it.
    """
    run = Run.read(Path(run_dir))
    ds = data if isinstance(data, PreparedDataset) else load_prepared(Path(data))
    records = ds.split(split)
    if records.empty:
        raise DataError(f"{ds.root}: no studies in split {split!r}")
    pred = predict_split(run, ds, split, decoding, batch_size, cache_dir, progress=progress)
    metrics, table = score_run(run, ds, split, pred, bertscore_model)
    metrics["split"] = split
    metrics["setup"] = run.info.get("setup")
    metrics["synthetic"] = bool(ds.metadata.get("synthetic", False))
    out = Path(out) if out else run.root / f"metrics_{split}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    table.to_csv(
        out.with_name(
            "predictions.csv" if out.name == "metrics.json" else f"predictions_{split}.csv"
        ),
        index=False,
    )
    save_evaluation_figures(out, table, ds.findings, ds.finding_columns)
    return metrics


def save_evaluation_figures(
    metrics_path: Path, table: pd.DataFrame, findings: list[str], finding_columns: list[str]
) -> list[Path]:
    """PNG figures next to ``metrics_path`` from the per-study table: ROC curves of the
    findings head (``<stem>_findings_roc.png``) and the acuity confusion matrix
    (``<stem>_acuity_confusion.png``). A plotting failure is logged, never fatal."""
    import logging

    from mtl_report import plots

    stem = metrics_path.with_suffix("")
    written = []
    try:
        true_cols = [f"{c}_true" for c in finding_columns]
        prob_cols = [f"{c}_prob" for c in finding_columns]
        if finding_columns and set(true_cols + prob_cols) <= set(table.columns):
            fig = plots.plot_roc(
                table[true_cols].to_numpy(dtype="float64"),
                table[prob_cols].to_numpy(dtype="float64"),
                findings,
                title="Findings head: ROC per finding",
            )
            written.append(plots.save_figure(fig, f"{stem}_findings_roc.png"))
        if {"acuity_true", "acuity_pred"} <= set(table.columns):
            known = table["acuity_true"].notna()
            true = table.loc[known, "acuity_true"].astype(int).to_numpy()
            pred = table.loc[known, "acuity_pred"].astype(int).to_numpy()
            levels = [1, 2, 3, 4, 5]
            matrix = np.zeros((5, 5), dtype=int)
            for t, p in zip(true, pred):
                if t in levels and p in levels:
                    matrix[t - 1, p - 1] += 1
            fig = plots.plot_confusion(
                matrix,
                [f"level {lv}" for lv in levels],
                title="Acuity (1 = most urgent)",
            )
            written.append(plots.save_figure(fig, f"{stem}_acuity_confusion.png"))
    except Exception as exc:  # figures are a convenience beside the metrics
        logging.getLogger(__name__).warning("evaluation figures not written: %s", exc)
    return written
