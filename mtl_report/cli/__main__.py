"""``python -m mtl_report.cli``."""

import sys

from mtl_report.cli.main import main

sys.exit(main())
