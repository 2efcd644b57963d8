"""Training set-ups of the Aksoy et al. comparison, plus learned task weighting.

A set-up (the paper's word) is a training recipe: which heads the model builds and how
their losses are weighted. It is not a preset in keras-hub's sense; that is a run
directory (:meth:`AksoyReportGenerator.from_preset`). The command line picks one with
``--preset`` / ``--presets``.

=============  =====================  ==================================================
set-up         heads                  loss
=============  =====================  ==================================================
stl_text       report                 text
stl_acuity     acuity                 acuity
stl_findings   findings               findings
mtl_eq         all three              1·text + 1·acuity + 1·findings
mtl_tp         all three              1·text + 0.5·acuity + 0.25·findings (α > β > γ)
mtl_uw         all three              Σ exp(-s_t)·L_t + s_t, s_t learned (Kendall 2018)
mtl_tp_guided  all three              as mtl_tp; the decoder reads the findings
=============  =====================  ==================================================

MTL-TP ("task prioritisation") puts report generation first, as the paper does; the
defaults halve the weight at each step down the priority list (α=1, β=0.5, γ=0.25). Change
them with ``--alpha/--beta/--gamma``.

``mtl_uw`` and ``mtl_tp_guided`` are not in the paper. ``mtl_tp_guided`` adds findings
guidance (:class:`~mtl_report.layers.FindingsGuide`): the report decoder is told the
findings (the labels in training, the findings head's thresholded prediction at inference),
which stops it writing the majority normal report for abnormal studies.
"""

from __future__ import annotations

from dataclasses import replace

from mtl_report.config import ConfigError, ModelConfig, TrainConfig, check_consistent

SETUPS: dict[str, dict] = {
    "stl_text": {"tasks": ("text",), "alpha": 1.0, "beta": 0.0, "gamma": 0.0},
    "stl_acuity": {"tasks": ("acuity",), "alpha": 0.0, "beta": 1.0, "gamma": 0.0},
    "stl_findings": {"tasks": ("findings",), "alpha": 0.0, "beta": 0.0, "gamma": 1.0},
    "mtl_eq": {"tasks": ("text", "acuity", "findings"), "alpha": 1.0, "beta": 1.0, "gamma": 1.0},
    "mtl_tp": {
        "tasks": ("text", "acuity", "findings"),
        "alpha": 1.0,
        "beta": 0.5,
        "gamma": 0.25,
    },
    "mtl_uw": {
        "tasks": ("text", "acuity", "findings"),
        "alpha": 1.0,
        "beta": 1.0,
        "gamma": 1.0,
        "uncertainty_weighting": True,
    },
    "mtl_tp_guided": {
        "tasks": ("text", "acuity", "findings"),
        "alpha": 1.0,
        "beta": 0.5,
        "gamma": 0.25,
        "model": {"findings_guidance": True},
    },
}

#: What ``compare`` and ``demo`` train unless told otherwise: every set-up.
DEFAULT_COMPARISON = "stl,mtl_eq,mtl_tp,mtl_uw,mtl_tp_guided"

#: ``--presets stl`` in ``compare`` expands to the three single-task set-ups.
ALIASES = {"stl": ("stl_text", "stl_acuity", "stl_findings")}


def expand_setups(names: str | list[str]) -> list[str]:
    """``"stl,mtl_tp"`` → ``["stl_text", "stl_acuity", "stl_findings", "mtl_tp"]``."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    out: list[str] = []
    for name in names:
        for n in ALIASES.get(name, (name,)):
            if n not in SETUPS:
                raise ConfigError(f"unknown set-up {n!r}; choose from {sorted(SETUPS)}")
            if n not in out:
                out.append(n)
    return out


def get_setup(
    name: str, model: ModelConfig | None = None, train: TrainConfig | None = None, **overrides
) -> tuple[ModelConfig, TrainConfig]:
    """Model and train configs of a set-up; ``overrides`` (alpha, beta, gamma, ...) win.

    Raises:
        ConfigError: unknown set-up, or overrides that contradict its heads.
    """
    if name not in SETUPS:
        raise ConfigError(f"unknown set-up {name!r}; choose from {sorted(SETUPS)}")
    spec = dict(SETUPS[name])
    tasks = spec.pop("tasks")
    model = replace(model or ModelConfig(), tasks=tasks, **spec.pop("model", {}))
    fields = {**spec, **{k: v for k, v in overrides.items() if v is not None}}
    train = replace(train or TrainConfig(), setup=name, **fields)
    check_consistent(model, train)
    return model, train
