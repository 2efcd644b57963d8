"""mtl_report: multimodal, multi-task chest X-ray reporting with Keras 3.

Importing the package is cheap: TensorFlow is imported only by the modules that need it
(models, training, export), so ``mtl-report --help`` and the data layer stay fast.

oneDNN: TensorFlow turns its oneDNN CPU kernels on by default only on CPUs with AVX-512
VNNI/BF16 or AMX. On the AVX2 CPUs of most laptops and small cloud machines they are off,
and this package's transformer blocks then train at half speed (one ``mtl_tp`` epoch over
7,000 cached studies on 2 cores: 62 s without, 35 s with; ``bench/bench_train_epoch.py``).
Importing ``mtl_report`` therefore sets ``TF_ENABLE_ONEDNN_OPTS=1`` unless the variable is
already set (set it to ``0`` to opt out). It takes effect only if TensorFlow has not been
imported yet: in a notebook, import ``mtl_report`` first. oneDNN changes floating-point
round-off, not results beyond it; GPUs are unaffected.
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from mtl_report.version import __version__

__all__ = ["__version__"]
