"""Analysis plots: learning curves, comparisons, ROC, confusion, attention, cohort funnel.

Every ``plot_*`` function returns a :class:`matplotlib.figure.Figure` and, with ``path``,
also writes it as PNG (parent folders created). Figures are built with the object-oriented
API on the non-interactive Agg canvas, so the library never opens a window and works on a
headless server; in Jupyter the returned figure displays inline as usual.

Inputs are plain NumPy / pandas / dicts (or the package's own files: ``history.json``,
``comparison.json``, ``cohort_log.json``), so the functions serve the notebooks, the CLI
(``compare``, ``evaluate``, ``generate --explain``) and a user's own analyses alike.
"""

from mtl_report.plots.attention import (
    plot_attention_grid,
    plot_attention_overlay,
    plot_explanation,
    plot_region_token_attention,
)
from mtl_report.plots.classification import (
    plot_confusion,
    plot_gate_distribution,
    plot_roc,
)
from mtl_report.plots.common import (
    DEFAULT_COMPARISON_METRICS,
    LOWER_IS_BETTER,
    save_figure,
)
from mtl_report.plots.comparison import (
    plot_comparison,
    results_frame,
)
from mtl_report.plots.data import (
    plot_category_distribution,
    plot_cohort_funnel,
    plot_distributions,
    plot_prevalence,
)
from mtl_report.plots.training import (
    plot_learning_curves,
)

__all__ = [
    "DEFAULT_COMPARISON_METRICS",
    "LOWER_IS_BETTER",
    "plot_attention_grid",
    "plot_attention_overlay",
    "plot_category_distribution",
    "plot_cohort_funnel",
    "plot_comparison",
    "plot_confusion",
    "plot_distributions",
    "plot_explanation",
    "plot_gate_distribution",
    "plot_learning_curves",
    "plot_prevalence",
    "plot_region_token_attention",
    "plot_roc",
    "results_frame",
    "save_figure",
]
