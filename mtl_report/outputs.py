"""What each command's own output directory looks like, and the check every ``--out`` gets.

The rules (:mod:`mtl_report.data.outputs`): an output that is, or contains, one of the
command's inputs is refused; a non-empty output must be this command's own kind of output
(the markers below, named in the error); an output under a file or in an unwritable place
gets a one-line reason. Each command keeps reusing its own output as before: ``compare``
and ``demo`` reuse finished runs, ``train --resume`` continues a run, ``export`` adds a
version folder, ``classify cv/baselines --resume`` reuse finished folds, ``llm-report``
rewrites its files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from mtl_report.data.outputs import OutputKind, PathLike, check_output_dir

# A run directory: config.json is written before the first epoch; vocabularies.json and
# tokenizer/ before it (a run killed while caching features has only those).
TRAINING_RUN = OutputKind(
    "training run",
    ("config.json", "vocabularies.json", "tokenizer"),
    require_all=False,
    shown="config.json",
)
COMPARISON = OutputKind(
    "comparison",
    ("comparison.json", "runs/*/config.json", "runs/*/vocabularies.json", "runs/*/tokenizer"),
    require_all=False,
    shown="comparison.json or runs/*/config.json",
)
LLM_REPORT = OutputKind(
    "llm-report output",
    ("prompts.jsonl", "*/prompts.jsonl", "ablation.md"),
    require_all=False,
    shown="prompts.jsonl",
)
MODEL_BASE_PATH = OutputKind(
    "SavedModel base path", ("[0-9]*/saved_model.pb",), shown="a version folder N/saved_model.pb"
)
SAVED_MODEL = OutputKind("SavedModel", ("saved_model.pb",))
CLASSIFIER_RUN = OutputKind("classifier run", ("config.json",))
CLASSIFIER_CV = OutputKind(
    "cross-validation output",
    ("cv_metrics.json", "fold_[0-9]*"),
    require_all=False,
    shown="cv_metrics.json or fold_*/",
)
CLASSIFIER_BASELINES = OutputKind(
    "baselines output",
    ("comparison.csv", "*/fold_[0-9]*", "*/run"),
    require_all=False,
    shown="comparison.csv or VARIANT/fold_*/",
)
DEMO = OutputKind(
    "demo output",
    ("demo_config.json", "data/records.parquet"),
    require_all=False,
    shown="demo_config.json",
)


def path_inputs(*values: PathLike | Iterable[PathLike] | None) -> list[PathLike]:
    """The values that name paths: ``Path`` objects, and strings naming an existing path
    (``--bertscore-model`` and ``--backbone-weights`` take a path or a keyword)."""
    out: list[PathLike] = []
    for value in values:
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            out.extend(path_inputs(*value))
        elif isinstance(value, Path) or (isinstance(value, str) and os.path.exists(value or "")):
            out.append(value)
    return out


def check_out(out: PathLike, kind: OutputKind, *inputs, flag: str = "--out") -> str:
    """:func:`mtl_report.data.outputs.check_output_dir` with the inputs filtered to paths."""
    return check_output_dir(out, kind, path_inputs(*inputs), flag)
