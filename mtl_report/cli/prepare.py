"""``mtl-report prepare``: raw sources → a prepared dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtl_report.cli.common import CLIError, _progress_factory


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


def add_prepare_parser(sub) -> None:
    """``mtl-report prepare SOURCE``."""
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
