"""The report model's commands: ``train``, ``evaluate``, ``compare``, ``generate``, ``export``
and ``demo``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from mtl_report.cli.common import CLIError, _progress_factory, add_bertscore_arg
from mtl_report.cli.llm import _add_llm_backend_args, _llm_compare_args
from mtl_report.models.aksoy.aksoy_setups import DEFAULT_COMPARISON


def _model_overrides(args: argparse.Namespace) -> dict:
    """The model-config fields the user gave (flags left out are absent, not defaults)."""
    kwargs = {}
    for name in ("backbone", "backbone_weights", "image_size", "hidden_dim", "max_report_length"):
        value = getattr(args, name, None)
        if value is not None:
            kwargs[name] = value
    if getattr(args, "fine_tune", False):
        kwargs["fine_tune_backbone"] = True
    return kwargs


def _model_config(args: argparse.Namespace):
    from mtl_report.config import ModelConfig

    return ModelConfig(**_model_overrides(args))


def _train_overrides(args: argparse.Namespace) -> dict:
    names = ("epochs", "batch_size", "alpha", "beta", "gamma", "learning_rate", "patience")
    out = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    if getattr(args, "mixed_precision", False):
        out["mixed_precision"] = True
    if getattr(args, "augment", False):
        out["augment"] = True
    if getattr(args, "deterministic", False):
        out["deterministic"] = True
    return out


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--backbone",
        help="image backbone (efficientnet_b0; also efficientnet_lite0, densenet121, swin_tiny)",
    )
    g.add_argument(
        "--backbone-weights",
        help="'imagenet' (downloaded; offline for efficientnet_lite0 with the weights extra), "
        "a weights file path (offline), or omit for random init",
    )
    g.add_argument("--image-size", type=int, help="backbone input size (224)")
    g.add_argument("--hidden-dim", type=int, help="model width (192)")
    g.add_argument("--max-report-length", type=int, help="report tokens (60)")
    g.add_argument("--fine-tune", action="store_true", help="train the backbone end to end")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, help="maximum epochs (100)")
    t.add_argument("--batch-size", type=int, help="batch size (32)")
    t.add_argument("--learning-rate", type=float, help="peak learning rate (3e-5)")
    t.add_argument("--patience", type=int, help="early-stopping patience (10)")
    t.add_argument("--alpha", type=float, help="text loss weight")
    t.add_argument("--beta", type=float, help="acuity loss weight")
    t.add_argument("--gamma", type=float, help="findings loss weight")
    t.add_argument("--mixed-precision", action="store_true", help="mixed_float16")
    t.add_argument("--augment", action="store_true", help="image augmentation (fine-tuning)")
    t.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic TensorFlow ops: the same seed, data and machine give the same "
        "weights and metrics twice (recorded in config.json)",
    )
    t.add_argument("--cache-dir", type=Path, help="feature cache (default DATA/.feature_cache)")


def _decoding_config(args: argparse.Namespace):
    from mtl_report.decoding import DecodingConfig

    return DecodingConfig(
        method="beam" if args.beam and args.beam > 1 else "greedy",
        beam_width=args.beam or 1,
        no_repeat_ngram_size=args.no_repeat_ngram,
        length_penalty=args.length_penalty,
    )


def _add_decoding_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("decoding")
    g.add_argument("--beam", type=int, default=1, help="beam width (1 = greedy)")
    g.add_argument("--no-repeat-ngram", type=int, default=3, help="ban repeated n-grams (3)")
    g.add_argument("--length-penalty", type=float, default=1.0, help="beam length penalty")


def cmd_train(args: argparse.Namespace) -> int:
    from mtl_report.outputs import TRAINING_RUN, check_out

    check_out(args.out, TRAINING_RUN, args.data, args.backbone_weights)
    from mtl_report.training import train

    # Only the flags the user typed are passed (the parser's defaults are None): with
    # --resume each must equal the run's saved setting, and a default must not count.
    result = train(
        args.data,
        args.out,
        args.setup,
        resume=args.resume,
        cache_dir=args.cache_dir,
        verbose=0 if args.quiet else "auto",
        seed=args.seed,
        **_model_overrides(args),
        **_train_overrides(args),
    )
    last = {k: v[-1] for k, v in result.history.items() if isinstance(v, list) and v}
    shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(last.items()))
    resumed = f" (resumed at epoch {result.initial_epoch})" if result.initial_epoch else ""
    print(f"trained {result.setup} for {result.epochs_run} epoch(s){resumed} -> {result.run_dir}")
    print(f"last epoch: {shown}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mtl_report.evaluate import evaluate

    metrics = evaluate(
        args.run,
        args.data,
        split=args.split,
        out=args.out,
        decoding=_decoding_config(args),
        bertscore_model=args.bertscore_model,
        cache_dir=args.cache_dir,
        progress=not args.quiet,
    )
    print(json.dumps(metrics, indent=2, default=float))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from mtl_report.outputs import COMPARISON, check_out

    check_out(
        args.out, COMPARISON, args.data, args.backbone_weights, args.bertscore_model, args.llm_path
    )
    from mtl_report.compare import compare

    result = compare(
        args.data,
        args.out,
        setups=args.setups,
        seeds=args.seeds,
        split=args.split,
        model_config=_model_config(args),
        bertscore_model=args.bertscore_model,
        cache_dir=args.cache_dir,
        verbose=0 if args.quiet else "auto",
        **_llm_compare_args(args),
        **_train_overrides(args),
    )
    print(result["markdown"])
    return 0


VITAL_ALIASES = {
    "hr": "heartrate",
    "heart_rate": "heartrate",
    "rr": "resprate",
    "resp_rate": "resprate",
    "spo2": "o2sat",
    "temp": "temperature",
}


def _parse_vitals(pairs: Sequence[str]) -> dict:
    """``["hr=120", "o2sat=88"]`` → ``{"heartrate": 120.0, "o2sat": 88.0}``.

    Raises:
        CLIError: not ``name=value``, an unknown name (listing the valid ones), a name given
            twice, or a value that is not a finite number.
    """
    import math

    from mtl_report.data.schema import VITALS

    out: dict[str, float] = {}
    for pair in pairs or ():
        if "=" not in pair:
            raise CLIError(f"--vitals expects name=value, got {pair!r}")
        key, value = pair.split("=", 1)
        key = VITAL_ALIASES.get(key.strip().lower(), key.strip().lower())
        if key not in VITALS:
            raise CLIError(
                f"unknown vital {key!r}; use one of {', '.join(VITALS)} "
                f"(or {', '.join(VITAL_ALIASES)})"
            )
        if key in out:
            raise CLIError(f"--vitals {key} given twice")
        try:
            number = float(value)
        except ValueError:
            raise CLIError(f"--vitals {key}: {value!r} is not a number") from None
        if not math.isfinite(number):
            raise CLIError(f"--vitals {key}: {value!r} is not a finite number")
        out[key] = number
    return out


def _check_generate_args(args: argparse.Namespace) -> dict:
    """Every argument of ``generate`` checked before the model load (tens of seconds), so
    a typo fails at once. Returns the study's ED data.

    Raises:
        CLIError: a bad vital, text, image path, decoding setting or --explain path.
    """
    # The longest free text accepted: the bound normalisation cuts to anyway.
    from mtl_report.data.cleaning import MAX_TEXT_CHARS

    study: dict = _parse_vitals(args.vitals)
    for flag, text, key in (
        ("--complaint", args.complaint, "chief_complaint"),
        ("--icd-title", args.icd_title, "icd_title"),
        ("--gender", args.gender, "gender"),
        ("--ethnicity", args.ethnicity, "ethnicity"),
    ):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise CLIError(f"{flag}: not valid UTF-8 text") from None
        if len(text) > MAX_TEXT_CHARS:
            raise CLIError(f"{flag}: {len(text)} characters, at most {MAX_TEXT_CHARS}")
        study[key] = text
    image = Path(args.image)
    if not image.exists():
        raise CLIError(f"{image}: image file not found")
    if not image.is_file():
        raise CLIError(f"{image}: not a file")
    try:
        with open(image, "rb") as f:
            if not f.read(1):
                raise CLIError(f"{image}: empty file, not an image")
    except OSError as exc:
        raise CLIError(f"{image}: cannot read ({exc.strerror or type(exc).__name__})") from None
    if args.beam is not None and args.beam < 1:
        raise CLIError(f"--beam must be at least 1, got {args.beam}")
    if args.no_repeat_ngram is not None and args.no_repeat_ngram < 0:
        raise CLIError(f"--no-repeat-ngram must be 0 (off) or more, got {args.no_repeat_ngram}")
    if args.explain is not None:
        target = Path(args.explain)
        if target.is_dir():
            raise CLIError(f"--explain {target}: is a folder, give a PNG file name")
        ancestor = target.parent  # created when missing; but not through a file
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if ancestor.exists() and not ancestor.is_dir():
            raise CLIError(f"--explain {target}: {ancestor} is a file, not a folder")
    return study


def cmd_generate(args: argparse.Namespace) -> int:
    from mtl_report.data.cleaning import ignored_vitals
    from mtl_report.data.schema import VITALS
    from mtl_report.run import Run

    study = _check_generate_args(args)
    run = Run.read(args.run)
    run.check_reads_images()
    ignored = ignored_vitals({k: v for k, v in study.items() if k in VITALS}, run.cleaning)
    if ignored:
        # Not an error (the model masks a missing vital), but never silent.
        print(f"mtl-report: ignored implausible vitals: {', '.join(ignored)}", file=sys.stderr)
    from mtl_report.models.aksoy import AksoyReportGenerator

    generator = AksoyReportGenerator(run, _decoding_config(args))
    result = generator.generate([str(args.image)], [study])[0]
    if args.explain:
        from mtl_report.explain import explain_image
        from mtl_report.plots import plot_explanation

        explanation = explain_image(generator, args.image, study)
        plot_explanation(explanation, path=args.explain)
        print(f"Attention maps: {args.explain}", file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    if result.get("report") is not None:
        print(f"Report: {result['report']}")
    if "acuity_level" in result:
        probs = ", ".join(f"{p:.2f}" for p in result["acuity_probs"])
        print(f"Acuity: {result['acuity_level']} (P(level 1..5) = {probs})")
    if "findings" in result:
        shown = ", ".join(f"{k} {v:.2f}" for k, v in result["findings"].items())
        print(f"Findings: {shown}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from mtl_report.outputs import MODEL_BASE_PATH, check_out

    check_out(args.out, MODEL_BASE_PATH, args.run, args.warmup_image)
    from mtl_report.export import export_run

    print(f"mtl-report export: tracing {args.run} for TF Serving ...", flush=True)
    result = export_run(
        args.run,
        args.out,
        version=args.version,
        decoding=_decoding_config(args),
        warmup_images=args.warmup_image or (),
        model_name=args.model_name,
        overwrite=args.overwrite,
        **({"max_pixels": args.max_pixels} if args.max_pixels is not None else {}),
    )
    print(
        f"wrote {result.path} (version {result.version}, {result.warmup_requests} warm-up requests)"
    )
    for name, sig in result.signatures.items():
        print(f"  {name}: {', '.join(sig['inputs'])} -> {', '.join(sig['outputs'])}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from mtl_report.outputs import DEMO, check_out

    check_out(args.out, DEMO, args.bertscore_model)
    from mtl_report.demo import DemoConfig, run_demo

    config = DemoConfig(
        studies=args.studies,
        seed=args.seed,
        setups=args.setups,
        seeds=args.seeds,
        epochs=args.epochs,
        image_size=args.image_size,
        deterministic=args.deterministic,
        export=not args.no_export,
        llm=args.llm,
        bertscore_model=None if args.bertscore_model == "none" else args.bertscore_model,
    )
    summary = run_demo(
        args.out,
        config,
        progress=_progress_factory(not args.quiet),
        verbose=0 if args.quiet else "auto",
    )
    print(summary["markdown"])
    print(f"Tables, t-tests and examples: {summary['compare']}")
    if summary.get("export"):
        print(f"SavedModel for TF Serving: {summary['export']}")
    return 0


def add_training_parsers(sub) -> None:
    """``train``, ``evaluate``, ``compare``."""
    p = sub.add_parser(
        "train",
        help="train a training set-up on a prepared dataset",
        description="Train the Aksoy multi-task model with a set-up (stl_text, stl_acuity, "
        "stl_findings, mtl_eq, mtl_tp, mtl_uw, mtl_tp_guided) and write a run directory.",
    )
    p.add_argument("--data", type=Path, required=True, help="prepared dataset directory")
    p.add_argument(
        "--preset", dest="setup", help="training set-up (mtl_tp; with --resume the run's)"
    )
    p.add_argument("--out", type=Path, required=True, help="run directory")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run with its saved settings (flags given must match)",
    )
    p.add_argument("--seed", type=int, help="training seed (0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_model_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate",
        help="score a run on a split (metrics.json, predictions.csv)",
        description="Generate reports and score every head of a trained run.",
    )
    p.add_argument("--run", type=Path, required=True, help="run directory")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset directory")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--out", type=Path, help="metrics file (default RUN/metrics_<split>.json)")
    add_bertscore_arg(p)
    p.add_argument("--cache-dir", type=Path, help="feature cache (default DATA/.feature_cache)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_decoding_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "compare",
        help="STL vs MTL-EQ vs MTL-TP (vs MTL-UW) over seeds, with baselines",
        description="Train each set-up K times, evaluate, and write the paper's Tables 1-4, "
        "paired t-tests and qualitative examples as Markdown and CSV.",
    )
    p.add_argument("--data", type=Path, required=True, help="prepared dataset directory")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument(
        "--presets",
        dest="setups",
        default=DEFAULT_COMPARISON,
        help=f"comma-separated set-ups ({DEFAULT_COMPARISON})",
    )
    p.add_argument("--seeds", type=int, default=1, help="training seeds per set-up (1)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="(test)")
    add_bertscore_arg(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--llm",
        metavar="VARIANTS",
        help="add language-model rows written from the MTL-TP run's findings: "
        "comma-separated zero_shot, icil, icil_cot, or 'all' (see llm-report)",
    )
    p.add_argument("--k", type=int, default=3, help="in-context examples of the LLM rows (3)")
    _add_llm_backend_args(p)
    _add_model_args(p)
    p.set_defaults(func=cmd_compare)


def add_use_parsers(sub) -> None:
    """``generate``, ``export``, ``demo``."""
    p = sub.add_parser(
        "generate",
        help="report, acuity and findings for one image (+ ED data)",
        description="Run a trained model on one X-ray image file with optional ED data.",
    )
    p.add_argument("--run", type=Path, required=True, help="run directory")
    p.add_argument("image", type=Path, help="PNG or JPEG chest X-ray")
    p.add_argument("--complaint", default="", help="chief complaint text")
    p.add_argument("--icd-title", default="", help="ICD title text")
    p.add_argument("--gender", default="", help="F / M")
    p.add_argument("--ethnicity", default="", help="e.g. WHITE, BLACK/AFRICAN AMERICAN")
    p.add_argument(
        "--vitals",
        nargs="*",
        metavar="NAME=VALUE",
        help="o2sat, heartrate, resprate, sbp, dbp, temperature (°F)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--explain",
        type=Path,
        metavar="PNG",
        help="also save the attention maps (visual, image→ED data, per word) over the image",
    )
    _add_decoding_args(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser(
        "export",
        help="SavedModel for TF Serving (DIR/<version>/)",
        description=(
            "Export a trained run as a TF Serving SavedModel: image decoding, ED-data "
            "cleaning, the backbone, decoding and de-tokenisation all inside the graph."
        ),
    )
    p.add_argument("--run", type=Path, required=True, help="run directory")
    p.add_argument("--out", type=Path, required=True, help="model base path (TF Serving)")
    p.add_argument("--version", type=int, help="version folder (default: next free number)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing version")
    p.add_argument(
        "--warmup-image",
        type=Path,
        action="append",
        help="image file for the warm-up requests (repeatable; default: generated images)",
    )
    p.add_argument("--model-name", default="mtl_report", help="TF Serving model name")
    p.add_argument(
        "--max-pixels",
        type=int,
        metavar="N",
        help=(
            "largest request image (width x height) decoded; larger ones are refused from "
            "the header, before decoding (default: mtl_report.data.images.MAX_IMAGE_PIXELS, "
            "50 megapixels)"
        ),
    )
    _add_decoding_args(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "demo",
        help="end-to-end run on SYNTHETIC data",
        description="Generate synthetic MIMIC-shaped data, prepare it with the real linkage, "
        "train and compare STL / MTL-EQ / MTL-TP / MTL-UW against the baselines, print the "
        "tables and export the MTL-TP model. A second run reuses what is there.",
    )
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder")
    p.add_argument("--studies", type=int, default=1200, help="synthetic studies (1200)")
    p.add_argument("--seed", type=int, default=0, help="data seed (0)")
    p.add_argument(
        "--presets",
        dest="setups",
        default=DEFAULT_COMPARISON,
        help=f"set-ups to compare ({DEFAULT_COMPARISON})",
    )
    p.add_argument("--seeds", type=int, default=1, help="training seeds per set-up (1)")
    p.add_argument("--epochs", type=int, default=10, help="epochs per set-up (10)")
    p.add_argument("--image-size", type=int, default=128, help="backbone input size (128)")
    p.add_argument("--no-export", action="store_true", help="skip the SavedModel export")
    p.add_argument(
        "--deterministic",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="deterministic TensorFlow ops, so a second demo writes the same tables (on)",
    )
    p.add_argument(
        "--llm",
        default="auto",
        help="LLM rows: auto (ICIL+CoT when the llm extra is installed), none, all, or "
        "variants such as zero_shot,icil_cot",
    )
    p.add_argument(
        "--bertscore-model",
        default="packaged",
        help="BERTScore model: 'packaged' (default: the eval extra's small MiniLM, when "
        "installed), a local model directory, or 'none'",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)
