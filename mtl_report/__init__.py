"""mtl_report: multimodal, multi-task chest X-ray reporting with Keras 3.

Importing the package is cheap: TensorFlow is imported only by the modules that need it
(models, training, export), so ``mtl-report --help`` and the data layer stay fast.
"""

from mtl_report.version import __version__

__all__ = ["__version__"]
