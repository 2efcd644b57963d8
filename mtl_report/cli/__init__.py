"""The ``mtl-report`` command line.

Every command has ``--help``, shows progress bars on long work, and on failure exits non-zero
with a one-line reason (``--debug`` shows the traceback instead). Heavy imports (TensorFlow)
happen inside the commands that need them, so ``--help`` is instant.
"""

from mtl_report.cli.common import EXIT_DATA_ERROR, EXIT_INTERNAL_ERROR, EXIT_INTERRUPTED, CLIError
from mtl_report.cli.main import build_parser, main

__all__ = [
    "EXIT_DATA_ERROR",
    "EXIT_INTERNAL_ERROR",
    "EXIT_INTERRUPTED",
    "CLIError",
    "build_parser",
    "main",
]
