"""How decoding settings change generated reports: repetition, length and BLEU.

The Aksoy et al. paper names repetition ("no pleural effusion. no pleural effusion. ...")
as its models' main qualitative failure. This module generates the same split with several
decoding settings of one trained run and tabulates the repeated-trigram rate next to BLEU-4
and ROUGE-L, so the effect of no-repeat n-gram blocking and beam search is a measured number
in every comparison rather than a claim.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from mtl_report.data.io import PreparedDataset
from mtl_report.decoding import DecodingConfig
from mtl_report.evaluate import predict_split, standardized_references
from mtl_report.run import Run

#: The settings compared by default: the paper's plain greedy decoding, greedy with
#: trigram blocking (the package default) and beam search with blocking.
DECODING_SETTINGS: dict[str, DecodingConfig] = {
    "greedy": DecodingConfig(method="greedy", no_repeat_ngram_size=0),
    "greedy, no repeated trigrams": DecodingConfig(method="greedy", no_repeat_ngram_size=3),
    "beam 3, no repeated trigrams": DecodingConfig(
        method="beam", beam_width=3, no_repeat_ngram_size=3
    ),
}


def decoding_study(
    run_dir: str | Path,
    ds: PreparedDataset,
    split: str = "test",
    settings: Mapping[str, DecodingConfig] | None = None,
    cache_dir: str | Path | None = None,
    model=None,
) -> pd.DataFrame:
    """One row per decoding setting: repeated-trigram rate, mean words, BLEU-4, ROUGE-L.

    The repeated-trigram rate counts the generated tokens as they are (what blocking acts
    on), see :func:`mtl_report.metrics.repeated_ngram_rate`.

    Args:
        run_dir: a trained run with the text head.
        ds: the prepared dataset; ``split`` is generated.
        settings: label → :class:`DecodingConfig` (default :data:`DECODING_SETTINGS`).
        model: the loaded model (loaded from ``run_dir`` when None).

    Returns:
        DataFrame indexed by the setting's label. The references' own repeated-trigram
        rate is the last row, as the level a fluent report has.
    """
    from mtl_report.metrics import repeated_ngram_rate, text_metrics

    run = Run.read(Path(run_dir))
    model = model or run.load_model()
    refs = standardized_references(ds.split(split)["report"].tolist())
    rows = {}
    for label, config in (settings or DECODING_SETTINGS).items():
        pred = predict_split(
            run, ds, split, decoding=config, cache_dir=cache_dir, model=model, progress=False
        )
        scores = text_metrics(pred.generated, refs, meteor=False).corpus
        rows[label] = {
            "repeated_trigram_rate": repeated_ngram_rate(pred.generated, n=3, normalize=False),
            "mean_words": sum(len(t.split()) for t in pred.generated) / max(len(refs), 1),
            "bleu_4": scores["bleu_4"],
            "rouge_l": scores["rouge_l"],
        }
    rows["references"] = {
        "repeated_trigram_rate": repeated_ngram_rate(refs, n=3, normalize=False),
        "mean_words": sum(len(t.split()) for t in refs) / max(len(refs), 1),
        "bleu_4": None,
        "rouge_l": None,
    }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "decoding"
    return table
