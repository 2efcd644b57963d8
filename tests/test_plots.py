"""Plots: each returns a non-empty figure with the promised axes, labels and titles, writes a
PNG on request, and the attention overlay puts grid cell (i, j) on the right image region."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from mtl_report import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _rendered(fig: Figure) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3]


def _assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 2000


def _visible_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]


HISTORY = {
    "loss": [3.0, 2.0, 1.5],
    "val_loss": [3.2, 2.4, 2.0],
    "text_loss": [2.0, 1.4, 1.0],
    "val_text_loss": [2.1, 1.7, 1.5],
    "acuity_loss": [0.7, 0.5, 0.4],
    "val_acuity_loss": [0.8, 0.6, 0.5],
    "findings_loss": [0.6, 0.5, 0.4],
    "val_findings_loss": [0.7, 0.6, 0.6],
    "learned_task_weights": {"text": 1.0},
}


def test_learning_curves_one_panel_per_task(tmp_path):
    fig = plots.plot_learning_curves(HISTORY, title="mtl_tp", path=tmp_path / "lc.png")
    axes = _visible_axes(fig)
    assert [ax.get_title() for ax in axes] == [
        "total loss",
        "text loss",
        "acuity loss",
        "findings loss",
    ]
    for ax in axes:
        assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "loss"
        labels = [line.get_label() for line in ax.get_lines()]
        assert labels == ["train", "validation"]
    np.testing.assert_allclose(axes[1].get_lines()[0].get_ydata(), HISTORY["text_loss"])
    _assert_png(tmp_path / "lc.png")


def test_learning_curves_from_run_directory(tmp_path):
    (tmp_path / "history.json").write_text(json.dumps(HISTORY))
    fig = plots.plot_learning_curves(tmp_path, tasks=["text"])
    assert [ax.get_title() for ax in _visible_axes(fig)] == ["total loss", "text loss"]


def _metrics(bleu, f1, mae):
    return {
        "text": {"bleu_4": bleu, "rouge_l": bleu * 2, "clinical_efficacy": {"f1_micro": 0.2}},
        "findings": {"f1_macro": f1, "f1_micro": f1},
        "acuity": {"accuracy": 0.5, "mae": mae},
        "n": 10,
    }


RESULTS = {
    "stl_text": [
        {"text": {"bleu_4": 0.10, "rouge_l": 0.3}},
        {"text": {"bleu_4": 0.14, "rouge_l": 0.3}},
    ],
    "mtl_tp": [_metrics(0.2, 0.5, 0.8), _metrics(0.24, 0.55, 0.7), _metrics(0.22, 0.6, 0.75)],
    "baseline: constant report": [_metrics(0.05, 0.1, 1.2)],
}


def test_results_frame_is_tidy():
    df = plots.results_frame({"results": RESULTS})
    assert list(df.columns) == ["setup", "seed", "task", "metric", "value"]
    assert set(df["setup"]) == set(RESULTS)
    assert "clinical_efficacy.f1_micro" in set(df["metric"])
    assert df[(df.setup == "mtl_tp") & (df.metric == "bleu_4")]["seed"].tolist() == [0, 1, 2]


def test_comparison_bars_have_error_bars_over_seeds(tmp_path):
    (tmp_path / "comparison.json").write_text(json.dumps({"results": RESULTS}))
    fig = plots.plot_comparison(tmp_path, path=tmp_path / "cmp.png")
    axes = _visible_axes(fig)
    titles = [ax.get_title() for ax in axes]
    assert "text: bleu_4" in titles and "acuity: mae (lower is better)" in titles
    bleu = axes[titles.index("text: bleu_4")]
    assert [t.get_text() for t in bleu.get_xticklabels()] == [
        "stl_text",
        "mtl_tp",
        "base: constant report",
    ]
    heights = [p.get_height() for p in bleu.patches]
    np.testing.assert_allclose(heights, [0.12, 0.22, 0.05])
    # error bars: one per multi-seed set-up (stl_text, mtl_tp), none for the baseline
    from matplotlib.container import BarContainer

    bars = [c for c in bleu.containers if isinstance(c, BarContainer)]
    assert [c.errorbar is not None for c in bars] == [True, True, False]
    assert bleu.get_ylabel() == "bleu_4"
    assert "3 seed(s)" in fig._suptitle.get_text()
    _assert_png(tmp_path / "cmp.png")


def test_comparison_rejects_unknown_metrics():
    with pytest.raises(ValueError, match="none of the metrics"):
        plots.plot_comparison({"results": RESULTS}, metrics=[("text", "nonsense")])


def test_roc_multiclass_one_curve_per_class_with_auc(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    prob = rng.dirichlet([1, 1, 1], 120)
    prob[np.arange(120), y] += 1.0
    prob /= prob.sum(1, keepdims=True)
    fig = plots.plot_roc(y, prob, ["normal", "bacterial", "viral"], path=tmp_path / "roc.png")
    (ax,) = fig.axes
    assert ax.get_xlabel() == "False positive rate"
    assert ax.get_ylabel() == "True positive rate"
    assert ax.get_title() == "ROC curves"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "chance"
    assert [lb.split(" (")[0] for lb in labels[1:]] == [
        "normal",
        "bacterial",
        "viral",
        "micro-average",
    ]
    assert all("AUC 0.9" in lb or "AUC 1.0" in lb for lb in labels[1:])
    _assert_png(tmp_path / "roc.png")


def test_roc_multilabel_masks_unknown_and_binary_scores():
    y = np.array([[1, 0], [0, np.nan], [1, 1], [0, 1]], dtype=float)
    p = np.array([[0.9, 0.2], [0.1, 0.5], [0.8, 0.7], [0.3, 0.9]])
    fig = plots.plot_roc(y, p, ["Atelectasis", "Cardiomegaly"], micro_average=False)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[1:] == ["Atelectasis (AUC 1.00)", "Cardiomegaly (AUC 1.00)"]
    fig = plots.plot_roc([0, 1, 1, 0], [0.2, 0.9, 0.6, 0.4], ["negative", "positive"])
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[1:] == ["positive (AUC 1.00)"]


def test_roc_class_with_one_label_is_marked():
    fig = plots.plot_roc(np.array([[1, 0], [1, 1]]), np.array([[0.5, 0.1], [0.6, 0.9]]), ["a", "b"])
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[1] == "a (n/a: one class only)"


def test_confusion_matrix_annotated(tmp_path):
    m = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 4]])
    names = ["normal", "bacterial", "viral"]
    fig = plots.plot_confusion(m, names, path=tmp_path / "cm.png")
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == (
        "Predicted",
        "True",
        "Confusion matrix",
    )
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert [t.get_text() for t in ax.get_yticklabels()] == names
    texts = [t.get_text() for t in ax.texts]
    assert texts[:3] == ["5", "1", "0"] and texts[4] == "7"
    fig = plots.plot_confusion(m, names, normalize=True)
    assert fig.axes[0].texts[0].get_text() == "0.83\n(5)"
    _assert_png(tmp_path / "cm.png")
    with pytest.raises(ValueError):
        plots.plot_confusion(m, names[:2])


def test_gate_distribution_one_box_per_class(tmp_path):
    gate = np.array([0.9, 0.8, 0.2, 0.3, 0.25, 0.6])
    labels = np.array([0, 0, 1, 1, 1, 0])
    names = ["normal", "pneumonia", "tuberculosis"]
    fig = plots.plot_gate_distribution(gate[:, None], labels, names, path=tmp_path / "g.png")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "normal (n=3)",
        "pneumonia (n=3)",
        "tuberculosis (n=0)",
    ]
    assert ax.get_ylabel() == "gate g (1 = image only)"
    assert ax.get_ylim() == pytest.approx((-0.02, 1.02))
    dots = [line for line in ax.lines if line.get_marker() == "o"]
    assert sorted(len(d.get_ydata()) for d in dots) == [3, 3]
    assert _rendered(fig).std() > 0
    _assert_png(tmp_path / "g.png")
    with pytest.raises(ValueError, match="labels"):
        plots.plot_gate_distribution(gate, labels[:3], names)
    with pytest.raises(ValueError, match="class indices"):
        plots.plot_gate_distribution(gate, labels + 2, names)


@pytest.mark.parametrize(("cell", "where"), [((0, 3), "top-right"), ((3, 0), "bottom-left")])
def test_attention_overlay_puts_grid_cell_on_its_image_region(cell, where):
    """A one-hot map at cell (i, j) of a 4 x 4 grid lights up that quarter-by-quarter
    region of the image, for the (h, w) map and for the row-major flattened (L,) vector."""
    image = np.full((64, 64), 128.0)
    att = np.zeros((4, 4))
    att[cell] = 1.0
    for attention in (att, att.ravel()):
        fig = plots.plot_attention_overlay(
            image, attention, smooth=False, colorbar=False, cmap="Reds", alpha=0.8
        )
        ax = fig.axes[0]
        pixels = _rendered(fig).astype(float)
        bbox = ax.get_window_extent()
        height = pixels.shape[0]
        x0, x1 = int(bbox.x0) + 2, int(bbox.x1) - 2
        y0, y1 = height - int(bbox.y1) + 2, height - int(bbox.y0) - 2
        inside = pixels[y0:y1, x0:x1]
        red = (inside[..., 0] - inside[..., 1]) > 60
        rows, cols = np.nonzero(red)
        assert len(rows) > 0
        frac_r = rows.mean() / inside.shape[0]
        frac_c = cols.mean() / inside.shape[1]
        expect_r, expect_c = (cell[0] + 0.5) / 4, (cell[1] + 0.5) / 4
        assert abs(frac_r - expect_r) < 0.05, where
        assert abs(frac_c - expect_c) < 0.05, where
        # the red block covers one cell: a quarter of each side
        assert 0.2 < (rows.max() - rows.min()) / inside.shape[0] < 0.3


def test_attention_overlay_validates_shapes(tmp_path):
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    fig = plots.plot_attention_overlay(image, np.ones(4), title="t", path=tmp_path / "a.png")
    assert fig.axes[0].get_title() == "t"
    assert fig.axes[1].get_ylabel() == "attention"  # the colour bar
    _assert_png(tmp_path / "a.png")
    with pytest.raises(ValueError, match="square"):
        plots.plot_attention_overlay(image, np.ones(6))
    plots.plot_attention_overlay(image, np.ones(6), grid=(2, 3))
    with pytest.raises(ValueError, match="does not match"):
        plots.plot_attention_overlay(image, np.ones((2, 2)), grid=(2, 3))


def test_attention_grid_and_region_token_table():
    image = np.zeros((32, 32))
    maps = [np.eye(2), np.ones((2, 2))]
    fig = plots.plot_attention_grid(image, maps, ["a", "b"], ncols=5, suptitle="words")
    assert [ax.get_title() for ax in _visible_axes(fig)] == ["a", "b"]
    with pytest.raises(ValueError):
        plots.plot_attention_grid(image, maps, ["a"])
    att = np.full((4, 5), 0.2)
    fig = plots.plot_region_token_attention(
        att, ["none", "vitals", "demo", "cc", "icd"], (2, 2), token_mask=[1, 1, 0, 1, 1]
    )
    ax = fig.axes[0]
    assert ax.get_xlabel() == "ED data token"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["r0 c0", "r0 c1", "r1 c0", "r1 c1"]
    assert "demo\n(absent)" in [t.get_text() for t in ax.get_xticklabels()]


COHORT = {
    "source": "synthetic",
    "unit": "studies",
    "steps": [
        {"name": "studies in metadata", "rows_in": 100, "rows_out": 100, "dropped": {}},
        {"name": "ED linkage", "rows_in": 100, "rows_out": 70, "dropped": {"no stay": 30}},
        {"name": "reports", "rows_in": 70, "rows_out": 65, "dropped": {"no sections": 5}},
    ],
}


def test_cohort_funnel_from_log_dict_and_file(tmp_path):
    from mtl_report.data.cohort import CohortLog

    log = CohortLog.from_dict(COHORT)
    for source in (log, COHORT, tmp_path):
        (tmp_path / "cohort_log.json").write_text(json.dumps(COHORT))
        fig = plots.plot_cohort_funnel(source, path=tmp_path / "funnel.png")
        ax = fig.axes[0]
        assert ax.get_title() == "Cohort (synthetic)"
        assert ax.get_xlabel() == "studies remaining"
        assert [t.get_text() for t in ax.get_yticklabels()] == [s["name"] for s in COHORT["steps"]]
        texts = [t.get_text() for t in ax.texts]
        assert " 65" in texts and "−30 no stay" in texts
    _assert_png(tmp_path / "funnel.png")


def test_data_distribution_plots():
    rng = np.random.default_rng(0)
    before = pd.DataFrame({"heartrate": rng.normal(90, 20, 50), "o2sat": rng.normal(95, 5, 50)})
    after = before.copy()
    after.loc[:4, "heartrate"] = np.nan
    fig = plots.plot_distributions(before, after, ["heartrate", "o2sat"], title="vitals")
    axes = _visible_axes(fig)
    assert [ax.get_title() for ax in axes] == ["heartrate", "o2sat"]
    legend = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert legend == ["before cleaning (n=50, missing 0)", "after cleaning (n=45, missing 5)"]

    records = pd.DataFrame(
        {
            "split": ["train"] * 4 + ["test"] * 2,
            "a": [1, 0, 1, np.nan, 1, 1],
            "b": [0, 0, 0, 1, 0, 1],
            "acuity": [1, 2, 2, 3, 1, np.nan],
        }
    )
    fig = plots.plot_prevalence(records, ["a", "b"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train (n=4)", "test (n=2)"]
    np.testing.assert_allclose([p.get_height() for p in ax.patches], [2 / 3, 0.25, 1.0, 0.5])
    fig = plots.plot_category_distribution(records, "acuity")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3"]
    assert ax.get_ylabel() == "share of studies"


def test_evaluation_and_comparison_figures_are_written_next_to_tables(tmp_path):
    from mtl_report.compare import save_comparison_figures
    from mtl_report.evaluate import save_evaluation_figures

    table = pd.DataFrame(
        {
            "study_id": [1, 2, 3, 4],
            "atelectasis_true": [1, 0, 1, np.nan],
            "atelectasis_prob": [0.8, 0.3, 0.6, 0.5],
            "cardiomegaly_true": [0, 1, 1, 0],
            "cardiomegaly_prob": [0.2, 0.7, 0.4, 0.1],
            "acuity_true": [1, 2, 3, np.nan],
            "acuity_pred": [1, 3, 3, 2],
        }
    )
    written = save_evaluation_figures(
        tmp_path / "metrics_test.json",
        table,
        ["Atelectasis", "Cardiomegaly"],
        ["atelectasis", "cardiomegaly"],
    )
    assert [p.name for p in written] == [
        "metrics_test_findings_roc.png",
        "metrics_test_acuity_confusion.png",
    ]
    for p in written:
        _assert_png(p)

    run = tmp_path / "runs" / "mtl_tp_seed0"
    run.mkdir(parents=True)
    (run / "history.json").write_text(json.dumps(HISTORY))
    written = save_comparison_figures(tmp_path, {"results": RESULTS})
    assert [p.relative_to(tmp_path).as_posix() for p in written] == [
        "comparison.png",
        "runs/mtl_tp_seed0/learning_curves.png",
    ]


def test_figure_failures_do_not_break_the_tables(tmp_path, caplog):
    from mtl_report.compare import save_comparison_figures

    assert save_comparison_figures(tmp_path, {"results": {}}) == []
    assert "comparison figures not written" in caplog.text
