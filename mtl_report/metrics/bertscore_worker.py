"""BERTScore in a child process: ``python -m mtl_report.metrics.bertscore_worker``.

Reads one JSON job on stdin (model directory, layer, device, batch size, hypotheses,
references) and prints ``{"f1": [...]}``. :func:`mtl_report.metrics.nlg.bertscore` starts it
when TensorFlow is loaded in the calling process, so PyTorch never shares a process with it.
"""

from __future__ import annotations

import json
import sys

from mtl_report.metrics.nlg import _score_here


def main() -> None:
    job = json.loads(sys.stdin.read())
    print(json.dumps({"f1": _score_here(job).tolist()}))


if __name__ == "__main__":
    main()
