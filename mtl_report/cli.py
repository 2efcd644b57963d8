"""The ``mtl-report`` command line.

Every command has ``--help``, shows progress bars on long work, and on failure exits non-zero
with a one-line reason (``--debug`` shows the traceback instead). Heavy imports (TensorFlow)
happen inside the commands that need them, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mtl_report.presets import DEFAULT_COMPARISON
from mtl_report.version import __version__

EXIT_DATA_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130


class CLIError(Exception):
    """A usage problem found after parsing (exit 2 with a one-line reason)."""


def _progress_factory(enabled: bool) -> Callable[[str, int], Callable[[int], None]] | None:
    """``progress(description, total) -> update(n)`` backed by tqdm, or None when disabled."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    def factory(description: str, total: int) -> Callable[[int], None]:
        bar = tqdm(total=total, desc=description, unit="it", leave=False, file=sys.stderr)

        def update(n: int = 1) -> None:
            bar.update(n)
            if bar.n >= bar.total:
                bar.close()

        if total == 0:
            bar.close()
        return update

    return factory


# --------------------------------------------------------------------------------------
# prepare
# --------------------------------------------------------------------------------------
def _cleaning_config(args: argparse.Namespace):
    from mtl_report.data.cleaning import CleaningConfig

    kwargs = {"uncertain": args.uncertain, "abbreviation_files": tuple(args.abbreviations or ())}
    if args.findings:
        kwargs["findings"] = tuple(f.strip() for f in args.findings.split(",") if f.strip())
    return CleaningConfig(**kwargs)


def _print_dataset(out: Path) -> None:
    from mtl_report.data.summary import dataset_summary

    print(dataset_summary(out))


def cmd_prepare_synthetic(args: argparse.Namespace) -> int:
    from mtl_report.data.synthetic import prepare_synthetic

    prepare_synthetic(
        args.out,
        n_studies=args.studies,
        seed=args.seed,
        cleaning=_cleaning_config(args),
        progress=_progress_factory(not args.quiet),
        overwrite=args.overwrite,
    )
    _print_dataset(args.out)
    return 0


def cmd_prepare_mimic(args: argparse.Namespace) -> int:
    from mtl_report.data.mimic import MimicPrepConfig, prepare_mimic

    config = MimicPrepConfig(
        window_hours=args.window_hours,
        balanced=None if args.balanced == 0 else args.balanced,
        seed=args.seed,
        verify_images=not args.no_verify_images,
        cleaning=_cleaning_config(args),
    )
    prepare_mimic(
        args.cxr_root,
        args.ed_root,
        args.out,
        config,
        reports_root=args.reports_root,
        progress=_progress_factory(not args.quiet),
        overwrite=args.overwrite,
    )
    _print_dataset(args.out)
    return 0


def cmd_prepare_iu_xray(args: argparse.Namespace) -> int:
    from mtl_report.data.iu_xray import prepare_iu_xray

    if not args.csv and not args.annotation:
        raise CLIError("prepare iu-xray needs --csv FILE or --annotation annotation.json")
    prepare_iu_xray(
        args.out,
        csv=args.csv,
        images=args.images,
        projections=args.projections,
        annotation=args.annotation,
        text_only=args.text_only,
        split_all=args.split_all,
        seed=args.seed,
        config=_cleaning_config(args),
        progress=_progress_factory(not args.quiet),
        overwrite=args.overwrite,
    )
    _print_dataset(args.out)
    return 0


def cmd_prepare_images(args: argparse.Namespace) -> int:
    from mtl_report.data.image_table import prepare_image_table

    prepare_image_table(
        args.csv,
        args.images,
        args.out,
        seed=args.seed,
        use_source_split=args.use_source_split,
        progress=_progress_factory(not args.quiet),
        overwrite=args.overwrite,
    )
    _print_dataset(args.out)
    return 0


# --------------------------------------------------------------------------------------
# train / evaluate / compare
# --------------------------------------------------------------------------------------
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
        args.preset,
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
    print(f"trained {result.preset} for {result.epochs_run} epoch(s){resumed} -> {result.run_dir}")
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
        presets=args.presets,
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


def _llm_config(args: argparse.Namespace):
    from mtl_report.llm_report import LLMReportConfig

    return LLMReportConfig(
        k=args.k,
        cot=args.cot,
        repair=args.repair,
        findings_from=args.findings_from,
        npv=args.npv,
        context=not args.no_context,
        seed=args.seed,
        limit=args.limit,
        templates=str(args.templates) if args.templates else None,
        generation=_generation(args),
        **_llm_limits(args),
    )


def _llm_limits(args: argparse.Namespace) -> dict:
    """``study_budget`` (default 4 × timeout × (retries + 1): every turn of a study, the
    chain of thought, the report and a repair, at its worst, with room for the backoff) and
    ``max_failures`` from the language-model flags."""
    if not args.llm_timeout > 0:
        raise CLIError(f"--llm-timeout must be > 0 seconds, got {args.llm_timeout:g}")
    budget = args.llm_study_budget
    if budget is None:
        budget = 4 * args.llm_timeout * (max(args.llm_retries, 0) + 1)
    if not budget > 0:
        raise CLIError(f"--llm-study-budget must be > 0 seconds, got {budget:g}")
    if args.llm_max_failures is not None and args.llm_max_failures < 0:
        raise CLIError(f"--llm-max-failures must be >= 0, got {args.llm_max_failures}")
    return {"study_budget": budget, "max_failures": args.llm_max_failures}


def _generation(args: argparse.Namespace):
    from mtl_report.llm_report import GenerationConfig

    return GenerationConfig(
        max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed
    )


def _chat_model(args: argparse.Namespace):
    from mtl_report.llm_report import make_chat_model

    return make_chat_model(
        url=args.llm_url,
        model=args.llm_model,
        model_path=args.llm_path,
        api_key_env=args.llm_key_env,
        timeout=args.llm_timeout,
        retries=args.llm_retries,
    )


def _llm_compare_args(args: argparse.Namespace) -> dict:
    """``compare``'s LLM keywords from ``--llm`` and the language-model flags."""
    from mtl_report.llm_report import LLMReportConfig
    from mtl_report.llm_report.pipeline import parse_variants

    if not args.llm:
        return {}
    variants = parse_variants(args.llm, "--llm")
    config = LLMReportConfig(
        k=args.k, seed=args.seed, generation=_generation(args), **_llm_limits(args)
    )
    return {"llm": variants, "llm_config": config, "chat_model": _chat_model(args)}


def cmd_llm_report(args: argparse.Namespace) -> int:
    from mtl_report.outputs import LLM_REPORT, check_out

    if args.findings_from == "run" and args.run is None:
        raise CLIError("--run is required unless --findings-from labels")
    check_out(
        args.out,
        LLM_REPORT,
        args.data,
        args.run,
        args.templates,
        args.llm_path,
        args.bertscore_model,
    )
    from mtl_report.llm_report import llm_ablation, llm_report

    config = _llm_config(args)
    model = _chat_model(args)
    progress = _progress_factory(not args.quiet)
    common = dict(
        run=args.run,
        split=args.split,
        config=config,
        chat_model=model,
        bertscore_model=args.bertscore_model,
        cache_dir=args.cache_dir,
        progress=progress,
    )
    if args.ablation:
        table = llm_ablation(args.data, args.out, **common)
        print(
            (args.out / "ablation.md").read_text()
            if (args.out / "ablation.md").is_file()
            else table.to_markdown()
        )
        return 0
    metrics = llm_report(args.data, args.out, **common)
    print(json.dumps(metrics, indent=2, default=float))
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


# --------------------------------------------------------------------------------------
# classify (RadGen three-class fusion classifier) and prepare synthetic-classes
# --------------------------------------------------------------------------------------
def cmd_prepare_synthetic_classes(args: argparse.Namespace) -> int:
    from mtl_report.data.synthetic.classes import prepare_synthetic_classes

    prepare_synthetic_classes(
        args.out,
        n_studies=args.studies,
        seed=args.seed,
        image_size=args.image_size,
        progress=_progress_factory(not args.quiet),
        overwrite=args.overwrite,
    )
    _print_dataset(args.out)
    return 0


def _classify_configs(args: argparse.Namespace):
    from mtl_report.classify import ClassifierTrainConfig, parse_unfreeze
    from mtl_report.models.radgen import RadGenConfig

    model = {"backbone": args.backbone, "image_size": args.image_size, "fusion": args.fusion}
    if args.labels:
        model["classes"] = tuple(c.strip() for c in args.labels.split(",") if c.strip())
    if args.backbone_weights:
        model["backbone_weights"] = args.backbone_weights
    for key in ("hidden_dim", "num_heads", "intermediate_dim", "report_loss_weight"):
        if getattr(args, key) is not None:
            model[key] = getattr(args, key)
    if args.mlp_units:
        model["mlp_units"] = tuple(int(u) for u in args.mlp_units.split(","))
    train = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.lr,
        "warmup_epochs": args.warmup_epochs,
        "balance": args.balance,
        "patience": args.patience,
        "seed": args.seed,
        "report_free": args.report_free,
        "mixed_precision": args.mixed_precision,
        "augment": args.augment,
        "cosine_decay": args.cosine,
    }
    if args.unfreeze:
        train["unfreeze_schedule"] = parse_unfreeze(args.unfreeze)
    if args.class_weights:
        cw = args.class_weights
        try:
            train["class_weights"] = (
                cw if cw in ("auto", "balanced") else tuple(float(w) for w in cw.split(","))
            )
        except ValueError:
            raise CLIError(f"--class-weights {cw!r}: auto, balanced or numbers a,b,c") from None
    try:
        return RadGenConfig(**model), ClassifierTrainConfig(**train)
    except (TypeError, ValueError) as exc:
        from mtl_report.config import ConfigError

        raise ConfigError(str(exc)) from None


def _stage(message: str) -> None:
    print(f"mtl-report classify: {message}", file=sys.stderr, flush=True)


def _check_classify_out(args: argparse.Namespace) -> None:
    """``classify --out``: a run / cv / baselines folder or a SavedModel of its own kind;
    for ``evaluate`` a metrics file (never a directory, never an input)."""
    from mtl_report import outputs
    from mtl_report.data.outputs import check_not_input

    if args.out is None:
        return
    inputs = outputs.path_inputs(args.data, args.run, args.backbone_weights)
    if args.action == "evaluate":
        check_not_input(args.out, inputs)
        if args.out.is_dir():
            raise CLIError(f"{args.out}: is a directory; classify evaluate --out takes a file")
        return
    kind = {
        "train": outputs.CLASSIFIER_RUN,
        "cv": outputs.CLASSIFIER_CV,
        "baselines": outputs.CLASSIFIER_BASELINES,
        "export": outputs.SAVED_MODEL,
    }[args.action]
    outputs.check_out(args.out, kind, inputs)


def cmd_classify(args: argparse.Namespace) -> int:
    _check_classify_out(args)
    from mtl_report import classify

    verbose = 0 if args.quiet else 2
    progress = None if args.quiet else _stage
    if args.action == "evaluate":
        if not args.run:
            raise CLIError("classify evaluate needs --run RUN")
        metrics = classify.evaluate_run(args.run, args.data, args.split, args.out)
        print(json.dumps(classify._jsonable(metrics), indent=2))
        return 0
    if args.action == "export":
        if not args.run or not args.out:
            raise CLIError("classify export needs --run RUN and --out DIR")
        print(classify.export_classifier(args.run, args.out))
        return 0
    if not args.out:
        raise CLIError(f"classify {args.action} needs --out DIR")
    model_config, train_config = _classify_configs(args)
    if args.action == "train":
        result = classify.train_classifier(
            args.data, args.out, model_config, train_config, verbose=verbose
        )
        print(f"run: {result.run_dir} ({result.epochs_run} epochs)")
        if result.metrics:
            print(json.dumps(classify._jsonable(result.metrics["classification"]), indent=2))
        return 0
    if args.action == "cv":
        result = classify.cross_validate(
            args.data,
            args.out,
            model_config,
            train_config,
            folds=args.folds,
            verbose=0,
            progress=progress,
            resume=args.resume,
        )
        for name, s in result["summary"].items():
            print(f"{name:40s} {s['mean']:.3f} ± {s['std']:.3f}")
        return 0
    backbones = [b.strip() for b in args.image_backbones.split(",") if b.strip()]
    variants = classify.default_variants(backbones, ablations=args.ablations)
    if args.variants:
        wanted = [v.strip() for v in args.variants.split(",")]
        known = {v.name for v in variants}
        unknown = sorted(set(wanted) - known)
        if unknown:
            raise CLIError(f"unknown variant(s) {unknown}; choose from {sorted(known)}")
        variants = [v for v in variants if v.name in wanted]
    table = classify.compare_variants(
        args.data,
        args.out,
        model_config,
        train_config,
        variants=variants,
        image_backbones=backbones,
        folds=args.folds,
        verbose=0,
        progress=progress,
        resume=args.resume,
    )
    print(table.fillna("").to_markdown(index=False))
    return 0


def _add_classify_parser(sub) -> None:
    # Backbone and fusion names are checked by RadGenConfig (keeps --help free of Keras).
    p = sub.add_parser(
        "classify",
        help="RadGen three-class image + report classifier (train/evaluate/cv/baselines)",
        description="Normal / Pneumonia / TB (or any labels) from an image and its report "
        "text: swappable backbone, gated cross-modal fusion, auxiliary report loss. "
        "Actions: train (one run), evaluate (a run on a split), cv (patient-grouped "
        "stratified K-fold, mean ± std), baselines (full model vs image-only, text-only, "
        "early and late fusion, pixels_pca_lr: PCA + logistic regression on 64 px pixels, "
        "source_only: predicts the table's 'source' column and that source's class shares; "
        "--ablations adds no-gate, no-report-loss, no-class-weights, sampling), "
        "export (SavedModel, serving_default(image_bytes, report)).",
    )
    p.add_argument("action", choices=("train", "evaluate", "cv", "baselines", "export"))
    p.add_argument("--data", type=Path, help="prepared classification dataset")
    p.add_argument("--out", type=Path, help="run / output directory (metrics.json for evaluate)")
    p.add_argument("--run", type=Path, help="run directory (evaluate, export)")
    p.add_argument("--split", default="test", help="split to evaluate (test; 'all')")
    p.add_argument(
        "--backbone",
        default="densenet121",
        help="densenet121 (default), swin_base, swin_tiny, efficientnet_b0, efficientnet_lite0 "
        "(ImageNet weights offline with the weights extra); small configs for tests/CPU: "
        "densenet_micro, swin_micro",
    )
    p.add_argument("--backbone-weights", help="'imagenet' or a weights file (default: random)")
    p.add_argument(
        "--fusion",
        default="gated",
        choices=("gated", "average", "early", "image", "text"),
        help="model variant (gated)",
    )
    p.add_argument("--image-size", type=int, default=224, help="image side (224)")
    p.add_argument("--labels", help="class names in output order (default: the dataset's)")
    p.add_argument("--epochs", type=int, default=50, help="max epochs (50)")
    p.add_argument("--batch-size", type=int, default=16, help="batch size (16)")
    p.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (1e-4)")
    p.add_argument("--warmup-epochs", type=float, default=3.0, help="linear warmup (3)")
    p.add_argument("--patience", type=int, default=10, help="early-stopping patience (10)")
    p.add_argument("--cosine", action="store_true", help="cosine learning-rate decay after warmup")
    p.add_argument("--balance", default="weights", choices=("weights", "sampling", "both", "none"))
    p.add_argument("--class-weights", help="auto (8:1:3.2 / inverse freq.), balanced, or a,b,c")
    p.add_argument(
        "--unfreeze",
        help="EPOCH:FRACTION,... backbone unfreezing (pretrained: 0:0,2:0.25,5:1; random: 0:1)",
    )
    p.add_argument("--report-free", action="store_true", help="ignore report text (image path)")
    p.add_argument(
        "--augment", action="store_true", help="random rotation/zoom/shift/contrast in training"
    )
    p.add_argument("--report-loss-weight", type=float, help="λ of the report loss (0.3)")
    p.add_argument("--hidden-dim", type=int, help="fusion width (256)")
    p.add_argument("--num-heads", type=int, help="attention heads (4)")
    p.add_argument("--intermediate-dim", type=int, help="feed-forward width (512)")
    p.add_argument("--mlp-units", help="classifier hidden layers (512,256,128)")
    p.add_argument("--mixed-precision", action="store_true", help="mixed_float16")
    p.add_argument("--folds", type=int, default=5, help="CV folds (5; baselines: 0 = splits)")
    p.add_argument("--image-backbones", default="densenet121,swin_base", help="image baselines")
    p.add_argument("--ablations", action="store_true", help="baselines: add the ablations")
    p.add_argument("--resume", action="store_true", help="cv/baselines: reuse finished runs")
    p.add_argument("--variants", help="baselines: only these variants (comma-separated)")
    p.add_argument("--seed", type=int, default=0, help="seed (0)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_classify)


# --------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from mtl_report.outputs import DEMO, check_out

    check_out(args.out, DEMO, args.bertscore_model)
    from mtl_report.demo import DemoConfig, run_demo

    config = DemoConfig(
        studies=args.studies,
        seed=args.seed,
        presets=args.presets,
        seeds=args.seeds,
        epochs=args.epochs,
        image_size=args.image_size,
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


# --------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------
def _add_common_prepare(p: argparse.ArgumentParser, seed: bool = True) -> None:
    p.add_argument("--out", type=Path, required=True, help="output dataset directory")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a prepared dataset already in --out (anything else there is refused)",
    )
    if seed:
        p.add_argument("--seed", type=int, default=0, help="seed of subsets and splits (0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_cleaning(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--findings",
        help="comma-separated CheXpert labels to model "
        "(default: Atelectasis,Cardiomegaly,Pleural Effusion,Pneumothorax,Lung Opacity)",
    )
    p.add_argument(
        "--uncertain",
        choices=("masked", "positive", "negative"),
        default="masked",
        help="policy for uncertain (-1) labels (default: masked, ignored by the loss)",
    )
    p.add_argument(
        "--abbreviations",
        action="append",
        type=Path,
        metavar="TSV",
        help="extra abbreviation table (abbreviation<TAB>expansion); repeatable",
    )


def _add_llm_backend_args(p: argparse.ArgumentParser) -> None:
    """Language-model settings shared by ``llm-report`` and ``compare --llm``."""
    p.add_argument("--seed", type=int, default=0, help="decoding and retrieval seed (0)")
    p.add_argument("--max-tokens", type=int, default=256, help="tokens per answer (256)")
    p.add_argument("--temperature", type=float, default=0.0, help="(0: deterministic)")
    p.add_argument("--llm-url", help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1")
    p.add_argument("--llm-model", help="model name for --llm-url")
    p.add_argument("--llm-path", type=Path, help="GGUF file for llama.cpp (default SmolLM2-135M)")
    p.add_argument("--llm-key-env", default="OPENAI_API_KEY", help="variable holding the API key")
    p.add_argument(
        "--llm-timeout",
        type=float,
        default=60.0,
        help="seconds for a whole request: connect, headers and body (60); also the longest "
        "Retry-After honoured",
    )
    p.add_argument("--llm-retries", type=int, default=3, help="retries with backoff (3)")
    p.add_argument(
        "--llm-study-budget",
        type=float,
        metavar="SECONDS",
        help="seconds for all the model calls of one study (chain of thought, report, "
        "repair, retries); spent, the study is a counted failure. Default: 4 x timeout x "
        "(retries + 1)",
    )
    p.add_argument(
        "--llm-max-failures",
        type=int,
        metavar="N",
        help="stop with an error once more than N studies failed (default: no limit; failed "
        "studies are counted in metrics.json and warned about, and a run where all fail is "
        "an error)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtl-report",
        description="Multimodal, multi-task chest X-ray reporting (report text, ED acuity, "
        "findings) with Keras 3.",
    )
    parser.add_argument("--version", action="version", version=f"mtl-report {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    prep = sub.add_parser("prepare", help="raw data → prepared dataset directory")
    prep_sub = prep.add_subparsers(dest="source", metavar="SOURCE")
    prep_sub.required = True

    p = prep_sub.add_parser(
        "synthetic",
        help="generate MIMIC-shaped SYNTHETIC data and prepare it",
        description="Write raw files in the MIMIC-CXR-JPG / MIMIC-IV-ED layouts with phantom "
        "X-rays whose signs agree with findings, acuity and report, then prepare them with "
        "the real MIMIC linkage. The output is marked synthetic everywhere.",
    )
    _add_common_prepare(p)
    p.add_argument("--studies", type=int, default=2000, help="number of studies (2000)")
    _add_cleaning(p)
    p.set_defaults(func=cmd_prepare_synthetic)

    p = prep_sub.add_parser(
        "mimic",
        help="link MIMIC-CXR-JPG with MIMIC-IV-ED",
        description="Link each MIMIC-CXR study to the MIMIC-IV-ED stay of the same subject "
        "that contains it, clean, take a balanced subset, split by patient.",
    )
    p.add_argument("--cxr-root", type=Path, required=True, help="MIMIC-CXR-JPG root")
    p.add_argument("--ed-root", type=Path, required=True, help="MIMIC-IV-ED root (with ed/)")
    p.add_argument("--reports-root", type=Path, help="MIMIC-CXR reports root (default: --cxr-root)")
    _add_common_prepare(p)
    p.add_argument("--window-hours", type=float, default=0.0, help="extend ED stays by H hours (0)")
    p.add_argument(
        "--balanced", type=int, default=10_000, help="balanced subset size; 0 = all (10000)"
    )
    p.add_argument("--no-verify-images", action="store_true", help="skip decoding every image")
    _add_cleaning(p)
    p.set_defaults(func=cmd_prepare_mimic)

    p = prep_sub.add_parser(
        "iu-xray",
        help="prepare IU X-ray (sample CSV, Kaggle or R2Gen layout)",
        description="IU X-ray in the layout of shared/data/iu_xray_sample (train.csv), "
        "Kaggle's indiana_reports.csv + indiana_projections.csv, or R2Gen's annotation.json. "
        "No vitals or acuity: those are null.",
    )
    p.add_argument("--csv", type=Path, help="train.csv or indiana_reports.csv")
    p.add_argument("--annotation", type=Path, help="R2Gen annotation.json")
    p.add_argument("--images", type=Path, help="image folder")
    p.add_argument("--projections", type=Path, help="indiana_projections.csv (auto-found)")
    p.add_argument("--text-only", action="store_true", help="no images (text-side tools)")
    p.add_argument("--split-all", choices=("train", "val", "test"), help="one split for all")
    _add_common_prepare(p)
    _add_cleaning(p)
    p.set_defaults(func=cmd_prepare_iu_xray)

    p = prep_sub.add_parser(
        "images",
        help="image / label / subject_id table (three-class classifier)",
        description="A plain CSV with image, label, subject_id (and optionally report, "
        "source_split), like shared/data/pneumonia_sample/labels.csv.",
    )
    p.add_argument("--csv", type=Path, required=True, help="the label table")
    p.add_argument("--images", type=Path, help="image folder (default: the CSV's folder)")
    p.add_argument("--use-source-split", action="store_true", help="keep the table's source_split")
    _add_common_prepare(p)
    p.set_defaults(func=cmd_prepare_images)

    p = prep_sub.add_parser(
        "synthetic-classes",
        help="three-class SYNTHETIC set (normal / pneumonia / tuberculosis) with reports",
        description="Phantom X-rays with lobar consolidation (pneumonia) or an upper-lobe "
        "cavitary/nodular pattern (TB), each with a report; classes 519 : 4202 : 1312 scaled "
        "to --studies; written as a prepared classification dataset (marked synthetic).",
    )
    _add_common_prepare(p)
    p.add_argument("--studies", type=int, default=600, help="number of studies (600)")
    p.add_argument("--image-size", type=int, default=128, help="image side in pixels (128)")
    p.set_defaults(func=cmd_prepare_synthetic_classes)

    p = sub.add_parser(
        "train",
        help="train a training set-up (preset) on a prepared dataset",
        description="Train the Aksoy multi-task model with a preset (stl_text, stl_acuity, "
        "stl_findings, mtl_eq, mtl_tp, mtl_uw, mtl_tp_guided) and write a run directory.",
    )
    p.add_argument("--data", type=Path, required=True, help="prepared dataset directory")
    p.add_argument("--preset", help="training set-up (mtl_tp; with --resume the run's)")
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
    p.add_argument(
        "--bertscore-model",
        help="BERTScore model: a local directory (roberta-large, Bio-ClinicalBERT...) or "
        "'packaged' (the eval extra's small MiniLM); never downloaded",
    )
    p.add_argument("--cache-dir", type=Path, help="feature cache (default DATA/.feature_cache)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_decoding_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "compare",
        help="STL vs MTL-EQ vs MTL-TP (vs MTL-UW) over seeds, with baselines",
        description="Train each preset K times, evaluate, and write the paper's Tables 1-4, "
        "paired t-tests and qualitative examples as Markdown and CSV.",
    )
    p.add_argument("--data", type=Path, required=True, help="prepared dataset directory")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument(
        "--presets",
        default=DEFAULT_COMPARISON,
        help=f"comma-separated set-ups ({DEFAULT_COMPARISON})",
    )
    p.add_argument("--seeds", type=int, default=1, help="training seeds per set-up (1)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="(test)")
    p.add_argument(
        "--bertscore-model",
        help="BERTScore model: a local directory (roberta-large, Bio-ClinicalBERT...) or "
        "'packaged' (the eval extra's small MiniLM); never downloaded",
    )
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

    p = sub.add_parser(
        "llm-report",
        help="findings → structured description → language model → report",
        description="Reports written by a language model from the findings of a run's "
        "findings head (or a dataset's labels), with retrieved in-context examples and an "
        "optional chain of thought, checked against the findings by the clinical labeler. "
        "Writes reports, prompts and metrics.json in the format of 'evaluate'. Offline by "
        "default (SmolLM2-135M via llama.cpp, the 'llm' extra); --llm-url for any "
        "OpenAI-compatible endpoint (key from $OPENAI_API_KEY or --llm-key-env).",
    )
    p.add_argument("--data", type=Path, required=True, help="prepared dataset directory")
    p.add_argument("--run", type=Path, help="run whose findings head gives the findings")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="(test)")
    p.add_argument(
        "--findings-from",
        choices=("run", "labels"),
        default="run",
        help="the run's findings head (run) or the dataset's labels, e.g. IU X-ray MeSH (labels)",
    )
    p.add_argument("--k", type=int, default=3, help="retrieved in-context examples (3; 0: none)")
    p.add_argument(
        "--cot",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="chain of thought: list the findings, then write the report (default: on)",
    )
    p.add_argument(
        "--repair",
        action="store_true",
        help="regenerate once when the report contradicts the findings, naming the contradiction",
    )
    p.add_argument(
        "--ablation",
        action="store_true",
        help="run zero-shot, ICIL and ICIL+CoT into OUT/<variant>/ and write OUT/ablation.md",
    )
    p.add_argument("--limit", type=int, help="only the first N studies of the split")
    p.add_argument("--templates", type=Path, help="folder of prompt templates to use instead")
    p.add_argument("--no-context", action="store_true", help="leave complaint/vitals out")
    p.add_argument("--npv", type=float, default=0.95, help="NPV an 'absent' needs on val (0.95)")
    _add_llm_backend_args(p)
    p.add_argument(
        "--bertscore-model",
        help="BERTScore model: a local directory (roberta-large, Bio-ClinicalBERT...) or "
        "'packaged' (the eval extra's small MiniLM); never downloaded",
    )
    p.add_argument("--cache-dir", type=Path, help="feature cache (default DATA/.feature_cache)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_llm_report)

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
        "--presets", default=DEFAULT_COMPARISON, help=f"set-ups to compare ({DEFAULT_COMPARISON})"
    )
    p.add_argument("--seeds", type=int, default=1, help="training seeds per set-up (1)")
    p.add_argument("--epochs", type=int, default=10, help="epochs per set-up (10)")
    p.add_argument("--image-size", type=int, default=128, help="backbone input size (128)")
    p.add_argument("--no-export", action="store_true", help="skip the SavedModel export")
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

    _add_classify_parser(sub)
    return parser


def _one_line_reason(exc: BaseException) -> str:
    """The informative line of an exception message (TensorFlow's first line is a header
    such as "Graph execution error:" with the real reason further down)."""
    noise = ("Graph execution error", "Detected at node", "File ", "[[{{node", "Traceback")
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(noise)]
    return (useful or lines or [""])[0][:300]


POSITIONAL_ARGS = {"image": "IMAGE", "action": "ACTION"}


def _check_utf8_arguments(args: argparse.Namespace) -> None:
    """Refuse an argument that is not valid UTF-8, naming it (CLIError).

    Python decodes undecodable argv bytes to lone surrogates (surrogateescape). Text
    arguments (complaint, vitals, URLs, names) end up in TensorFlow strings and JSON, and
    path arguments end up in ``records.parquet`` / ``config.json`` and in TensorFlow file
    reads: all of them hold UTF-8 only, and failed much later with "Error converting
    unicode string" or a UnicodeEncodeError. So every argument must be valid UTF-8; a file
    whose name is not can be renamed or linked under a UTF-8 name.
    """
    for dest, value in vars(args).items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if not isinstance(item, (str, Path)):
                continue
            text = os.fspath(item)
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                name = POSITIONAL_ARGS.get(dest, "--" + dest.replace("_", "-"))
                fix = (
                    "rename the file or link it under a UTF-8 name"
                    if isinstance(item, Path)
                    else "give it as UTF-8 text"
                )
                raise CLIError(
                    f"{name}: {os.fsencode(text)!r} is not valid UTF-8 ({fix}; paths and text "
                    "are stored in Parquet/JSON and read by TensorFlow, which take UTF-8 only)"
                ) from None


def main(argv: Sequence[str] | None = None) -> int:
    # TensorFlow's C++ start-up chatter (CUDA probing, CPU features) is noise for users.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    from mtl_report.config import ConfigError
    from mtl_report.data.errors import DataError

    try:
        _check_utf8_arguments(args)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("mtl-report: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (DataError, ConfigError, CLIError) as exc:
        if args.debug:
            raise
        print(f"mtl-report: error: {exc}", file=sys.stderr)
        return EXIT_DATA_ERROR
    except OSError as exc:
        # A file-system refusal naming a path (permission denied, disk full, a file where
        # a folder is expected) is the user's environment, not a bug: say it in one line.
        if args.debug or not exc.filename:
            if args.debug:
                raise
            print(
                f"mtl-report: error: {type(exc).__name__}: {_one_line_reason(exc)} "
                "(rerun with --debug for details)",
                file=sys.stderr,
            )
            return EXIT_INTERNAL_ERROR
        print(f"mtl-report: error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_DATA_ERROR
    except Exception as exc:
        if args.debug:
            raise
        reason = _one_line_reason(exc)
        print(
            f"mtl-report: error: {type(exc).__name__}: {reason} (rerun with --debug for details)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
