"""``mtl-report classify``: the RadGen three-class classifier."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mtl_report.cli.common import CLIError, _stage


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
    from mtl_report.metrics import jsonable

    verbose = 0 if args.quiet else 2
    progress = None if args.quiet else _stage
    if args.action == "evaluate":
        if not args.run:
            raise CLIError("classify evaluate needs --run RUN")
        metrics = classify.evaluate_run(args.run, args.data, args.split, args.out)
        print(json.dumps(jsonable(metrics), indent=2))
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
            print(json.dumps(jsonable(result.metrics["classification"]), indent=2))
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


def add_classify_parser(sub) -> None:
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
