"""The classifier task over a run directory: ``RadGenClassifier.from_preset(run_dir)``.

A classifier run directory (``mtl-report classify train``) is a preset: the model, its
report tokenizer, the config and the class names. :meth:`RadGenClassifier.from_preset`
loads them once; evaluation (``classify evaluate``), the SavedModel export and
:meth:`RadGenClassifier.predict` all go through it, and the export traces the same
:meth:`RadGenClassifier.outputs_graph` that ``predict`` runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from mtl_report.models.radgen.radgen_model import RadGenConfig
from mtl_report.models.radgen.radgen_preprocessor import RadGenPreprocessor
from mtl_report.run import ClassifierRun


class RadGenClassifier:
    """Class probabilities, the fusion gate and the label for images with report texts.

    Attributes (loaded once): ``run`` (:class:`~mtl_report.run.ClassifierRun`), ``model``,
    ``tokenizer``, ``preprocessor`` (:class:`RadGenPreprocessor`), ``config``
    (:class:`RadGenConfig`), ``classes``, ``image_size``.

    Example::

        classifier = RadGenClassifier.from_preset("runs/radgen")
        classifier.predict(["cxr.png"], ["right lower lobe consolidation"])
    """

    def __init__(self, run: ClassifierRun):
        self.run = run
        self.model = run.load_model()
        self.tokenizer = run.tokenizer()
        self.config = RadGenConfig.from_dict(run.info["model"])
        self.classes = run.classes
        self.image_size = int(self.config.image_size)
        self.preprocessor = RadGenPreprocessor(self.tokenizer, self.model.input)
        self.reads_images = self.preprocessor.reads_images
        self._outputs = tf.function(self.outputs_graph, reduce_retracing=True)

    @classmethod
    def from_preset(cls, run_dir: str | Path) -> RadGenClassifier:
        """Load a classifier run directory (a preset).

        Raises:
            DataError: not a classifier run, or its model file missing.
        """
        return cls(ClassifierRun.read(Path(run_dir)))

    def outputs_graph(self, images: tf.Tensor | None, reports: tf.Tensor) -> dict:
        """TF ops: pixels ``(n, S, S, 3)`` in [0, 255] (ignored by a text-only model) and
        raw report texts ``(n,)`` (``""`` when there is none: the gate then falls back to
        the image) → ``probabilities`` ``(n, k)``, ``gate`` ``(n, 1)`` (1 for an image-only
        model, 0 for a text-only one) and ``label`` ``(n,)``."""
        y = self.model(self.preprocessor(reports, images), training=False)
        probs = tf.cast(y["probabilities"], tf.float32)
        if "gate" in y:
            gate = tf.cast(y["gate"], tf.float32)
        else:
            gate = tf.fill([tf.shape(probs)[0], 1], 1.0 if self.reads_images else 0.0)
        label = tf.gather(tf.constant(list(self.classes)), tf.argmax(probs, axis=1))
        return {"probabilities": probs, "gate": gate, "label": label}

    def predict(
        self, image_paths: Sequence[str | Path], reports: Sequence[str] | None = None
    ) -> list[dict]:
        """One dict per study: ``label``, ``probabilities`` (class → probability) and
        ``gate``. ``reports`` default to ``""`` (report-free: the image decides).

        Raises:
            DataError: an image file missing, undecodable or outside the size limits.
        """
        from mtl_report.image_decoding import load_image

        reports = [""] * len(image_paths) if reports is None else list(reports)
        if len(reports) != len(image_paths):
            raise ValueError("one report text (or '') per image is needed")
        size = self.image_size
        if self.reads_images:
            images = np.stack([load_image(p, size) for p in image_paths])
        else:
            images = np.zeros((len(image_paths), size, size, 3), np.float32)
        out = self._outputs(tf.constant(images, tf.float32), tf.constant(reports, tf.string))
        probs, gate = out["probabilities"].numpy(), out["gate"].numpy()[:, 0]
        labels = [b.decode() for b in out["label"].numpy()]
        return [
            {
                "label": labels[i],
                "probabilities": dict(zip(self.classes, map(float, probs[i]))),
                "gate": float(gate[i]),
            }
            for i in range(len(image_paths))
        ]
