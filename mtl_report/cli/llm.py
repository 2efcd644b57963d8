"""``mtl-report llm-report``: reports written by a language model from the findings."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mtl_report.cli.common import CLIError, _progress_factory, add_bertscore_arg


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
    from mtl_report.llm_report.settings import parse_variants

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


def add_llm_parser(sub) -> None:
    """``mtl-report llm-report``."""
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
    add_bertscore_arg(p)
    p.add_argument("--cache-dir", type=Path, help="feature cache (default DATA/.feature_cache)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_llm_report)
