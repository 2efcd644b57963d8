"""Linkage + cleaning at the full MIMIC size, on generated tables (no images).

Sizes of MIMIC-CXR-JPG 2.x and MIMIC-IV-ED 2.2: about 377,000 image rows, 228,000 studies,
65,000 subjects, 425,000 ED stays. Prints JSON: wall time of each stage, peak memory, and a
reference measured in the same process (a plain ``merge`` of studies and stays on
``subject_id``, the floor of any join), so the linkage time reads as a ratio to it.

Target on the 2-core machine: under 60 s and under 4 GB peak.

    python bench/bench_linkage.py [--scale 1.0] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mtl_report.data.assemble import clean_features, finalise_records, with_record_columns
from mtl_report.data.cohort import CohortLog
from mtl_report.data.mimic import MimicPrepConfig, MimicTables, link_mimic
from mtl_report.data.schema import finding_columns
from mtl_report.data.splits import balanced_subset
from mtl_report.data.synthetic import generate_tables

FULL = {"n_subjects": 65_000, "n_studies": 228_000, "n_images": 377_000, "n_stays": 425_000}


def peak_rss_gb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the MIMIC size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = {k: max(10, int(v * args.scale)) for k, v in FULL.items()}

    t0 = time.perf_counter()
    tables = generate_tables(**sizes, seed=args.seed)
    t_generate = time.perf_counter() - t0
    mem_after_generate = peak_rss_gb()

    config = MimicPrepConfig(balanced=10_000, verify_images=False, seed=args.seed)
    log = CohortLog("mimic-size benchmark")
    reports = tables["reports"].set_index("study_id")["text"]
    mimic = MimicTables(
        metadata=tables["metadata"],
        chexpert=tables["chexpert"],
        edstays=tables["edstays"],
        triage=tables["triage"],
        diagnosis=tables["diagnosis"],
    )

    t0 = time.perf_counter()
    studies = link_mimic(mimic, config, log, reports)
    t_link = time.perf_counter() - t0

    t0 = time.perf_counter()
    studies["image_path"] = "unused"
    keep = balanced_subset(studies, config.balanced, finding_columns(config.cleaning.findings))
    subset = studies.loc[keep]
    records = with_record_columns(subset, config.cleaning.findings)
    records = clean_features(records, config.cleaning, log)
    records, _ = finalise_records(records, config.cleaning, log, seed=args.seed)
    t_clean = time.perf_counter() - t0

    # Reference in the same process: the bare subject_id merge any interval join starts from.
    t0 = time.perf_counter()
    meta = tables["metadata"].drop_duplicates("study_id")[["study_id", "subject_id"]]
    pairs = meta.merge(tables["edstays"][["subject_id", "stay_id"]], on="subject_id")
    t_merge = time.perf_counter() - t0

    total = t_link + t_clean
    print(
        json.dumps(
            {
                "benchmark": "linkage_and_cleaning",
                "sizes": sizes,
                "image_rows": len(tables["metadata"]),
                "studies_linked": len(studies),
                "records_out": len(records),
                "split_sizes": records["split"].value_counts().to_dict(),
                "seconds": {
                    "generate_tables (not counted)": round(t_generate, 2),
                    "linkage": round(t_link, 2),
                    "subset_clean_split": round(t_clean, 2),
                    "total": round(total, 2),
                    "reference_subject_merge": round(t_merge, 2),
                },
                "linkage_over_reference_merge": round(t_link / max(t_merge, 1e-9), 1),
                "candidate_pairs_after_merge": len(pairs),
                "peak_rss_gb": round(peak_rss_gb(), 2),
                "rss_gb_after_generation": round(mem_after_generate, 2),
                "targets": {"total_seconds": 60, "peak_gb": 4},
                "meets_targets": bool(total < 60 and peak_rss_gb() < 4),
                "machine": {
                    "python": platform.python_version(),
                    "cpus": __import__("os").cpu_count(),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
