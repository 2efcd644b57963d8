"""One study in, one report out: the Python inference path behind ``mtl-report generate``.

Loads everything from the run directory (model, tokenizer, backbone weights, cleaning
transform), so it needs neither the training data nor the feature cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import tensorflow as tf

from mtl_report.decoding import DecodingConfig, ReportGenerator
from mtl_report.run import Run

FINDING_DEFAULT_THRESHOLD = 0.5


class ReportPredictor:
    """Generate a report, acuity and findings for raw studies (image file + ED data)."""

    def __init__(self, run: Run, decoding: DecodingConfig | None = None):
        self.run = run
        self.model = run.load_model()
        self.tokenizer = run.tokenizer()
        self.cleaning = run.cleaning
        cfg = run.model_config
        self.image_size = cfg.image_size
        self.backbone = None if cfg.fine_tune_backbone else run.load_backbone()
        self.generator = (
            ReportGenerator(self.model, self.tokenizer.start_id, self.tokenizer.end_id, decoding)
            if "report" in self.model.output
            else None
        )
        self.findings = list(cfg.findings)

    @classmethod
    def from_run(cls, run_dir: str | Path, decoding: DecodingConfig | None = None):
        return cls(Run.read(Path(run_dir)), decoding)

    def model_inputs(self, images: np.ndarray, studies: list[Mapping]) -> dict:
        """Model inputs from pixel arrays ``(n, S, S, 3)`` in [0, 255] and ED data dicts."""
        import pandas as pd

        from mtl_report.inputs import tabular_inputs

        tab = tabular_inputs(pd.DataFrame([dict(s) for s in studies]), self.cleaning)
        x = {k: tf.constant(v) for k, v in tab.items()}
        if self.backbone is not None:
            x["image_features"] = self.backbone(tf.constant(images, tf.float32), training=False)
        else:
            x["image"] = tf.constant(images, tf.float32)
        return x

    def predict(self, image_paths: list[str], studies: list[Mapping] | None = None) -> list[dict]:
        """One dict per study: ``report``, ``acuity_level``, ``acuity_probs`` (5 levels),
        ``findings`` (name → probability)."""
        from mtl_report.inputs import load_image
        from preprocessing.cleaning import level_from_cumulative, level_probabilities

        studies = studies or [{} for _ in image_paths]
        if len(studies) != len(image_paths):
            raise ValueError("one ED-data dict per image is needed")
        images = np.stack([load_image(p, self.image_size) for p in image_paths])
        x = self.model_inputs(images, studies)
        if self.generator is not None:
            out = self.generator(x)
            texts = self.tokenizer.decode(out["tokens"])
        else:
            wanted = {k: v for k, v in x.items() if k in self.model.input}
            out = {k: np.asarray(v) for k, v in self.model(wanted, training=False).items()}
            texts = [None] * len(image_paths)
        results = []
        for i in range(len(image_paths)):
            item: dict = {"report": texts[i]}
            if "acuity" in out:
                cum = np.asarray(out["acuity"][i : i + 1])
                item["acuity_level"] = int(level_from_cumulative(cum)[0])
                item["acuity_probs"] = level_probabilities(cum)[0].round(6).tolist()
            if "findings" in out:
                item["findings"] = {
                    name: float(p) for name, p in zip(self.findings, out["findings"][i])
                }
            results.append(item)
        return results
