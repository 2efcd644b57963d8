"""One study in, one report out: the Python inference path behind ``mtl-report generate``.

Loads everything from the run directory (model, tokenizer, backbone weights, cleaning
transform), so it needs neither the training data nor the feature cache.

Preprocessing runs as graph functions shared with training and the SavedModel export
(:func:`mtl_report.inputs.decode_image` and the run's
:class:`~mtl_report.models.aksoy.AksoyPreprocessor`), so ``generate`` and TF Serving give the
same reports, and a batch-1 call costs little more than the backbone's forward pass.

TensorFlow is imported by the functions that need it, not by this module: ``generate``
checks its arguments (:func:`ignored_vitals`) in a fraction of a second, before the model
load that takes tens of seconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mtl_report.run import Run

if TYPE_CHECKING:
    import tensorflow as tf

    from mtl_report.decoding import DecodingConfig

FINDING_DEFAULT_THRESHOLD = 0.5


def ignored_vitals(vitals: Mapping[str, float], cleaning: Mapping) -> list[str]:
    """The vitals that a run's cleaning transform will treat as missing, one phrase each
    (``"heartrate=900 (plausible 20-300)"``); empty when all are used.

    Decided by :func:`mtl_report.data.cleaning.clean_vitals` itself (the rules the serving
    graph repeats) with the run's ranges from ``cleaning.json``: non-finite values, values
    outside the plausible range (after a 30-45 temperature is read as °C and converted),
    and a diastolic pressure not below the systolic one. Why: the model masks a missing
    vital, so an implausible one is not an error, but a user who typed it must be told it
    was not used.
    """
    import pandas as pd

    from mtl_report.data.cleaning import DEFAULT_VITAL_RANGES, clean_vitals

    ranges = {k: tuple(r) for k, r in cleaning.get("vital_ranges", DEFAULT_VITAL_RANGES).items()}
    celsius = bool(cleaning.get("convert_celsius", True))
    values = {name: float(raw) for name, raw in vitals.items()}
    _, counts = clean_vitals(pd.DataFrame([values]), ranges, celsius)
    out: list[str] = []
    for name, value in values.items():
        if not math.isfinite(value):
            out.append(f"{name}={value} (not a finite number)")
        elif counts.get(f"{name}_implausible"):
            low, high = ranges.get(name, DEFAULT_VITAL_RANGES[name])
            also = " °F, or 30-45 °C" if name == "temperature" and celsius else ""
            out.append(f"{name}={value:g} (plausible {low:g}-{high:g}{also})")
    if counts.get("bp_dbp_not_below_sbp"):
        sbp, dbp = values["sbp"], values["dbp"]
        out.append(f"sbp={sbp:g} and dbp={dbp:g} (diastolic not below systolic)")
    return out


def raw_ed_tensors(studies: list[Mapping]) -> dict[str, tf.Tensor]:
    """ED-data dicts → the raw ``(n,)`` tensors of the serving signature: the six vitals
    float32 (missing → NaN) and the four strings (missing → ``""``)."""
    import tensorflow as tf

    from mtl_report.data.schema import VITALS
    from mtl_report.models.aksoy import raw_ed_columns

    columns = raw_ed_columns(studies)
    return {k: tf.constant(v, tf.float32 if k in VITALS else tf.string) for k, v in columns.items()}


class ReportPredictor:
    """Generate a report, acuity and findings for raw studies (image file + ED data)."""

    def __init__(self, run: Run, decoding: DecodingConfig | None = None):
        import tensorflow as tf

        from mtl_report.decoding import ReportGenerator

        run.check_reads_images()  # before the model load: a missing file fails at once
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
        # Graph functions, not eager calls: an eager EfficientNet pass dispatches ~250 ops
        # one by one from Python, which costs as much as the convolutions at batch 1.
        self._features = (
            tf.function(lambda x: self.backbone(x, training=False), reduce_retracing=True)
            if self.backbone is not None
            else None
        )
        self._heads = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)
        from mtl_report.inputs import decode_image

        size = self.image_size
        self.preprocessor = run.preprocessor()
        self._tabular = tf.function(self.preprocessor, reduce_retracing=True)
        self._decode = tf.function(  # the size limits of decode_image apply (header check)
            lambda contents, path: decode_image(contents, size, path),
            input_signature=[tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.string)],
        )

    @classmethod
    def from_run(cls, run_dir: str | Path, decoding: DecodingConfig | None = None):
        return cls(Run.read(Path(run_dir)), decoding)

    def load_image(self, path: str | Path) -> np.ndarray:
        """As :func:`mtl_report.inputs.load_image` (same ops, same errors), traced once.

        Raises:
            DataError: naming the file when it is missing or cannot be decoded.
        """
        import tensorflow as tf

        from mtl_report.data.errors import DataError

        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: image file not found")
        try:
            return self._decode(tf.constant(path.read_bytes()), tf.constant(str(path))).numpy()
        except tf.errors.OpError as exc:  # undecodable, too large or too small
            from mtl_report.inputs import image_error

            raise image_error(path, exc) from None

    def model_inputs(self, images: np.ndarray, studies: list[Mapping]) -> dict:
        """Model inputs from pixel arrays ``(n, S, S, 3)`` in [0, 255] and ED data dicts."""
        import tensorflow as tf

        x = dict(self._tabular(raw_ed_tensors(list(studies))))
        if self.backbone is not None:
            x["image_features"] = self._features(tf.constant(images, tf.float32))
        else:
            x["image"] = tf.constant(images, tf.float32)
        return x

    def predict(self, image_paths: list[str], studies: list[Mapping] | None = None) -> list[dict]:
        """One dict per study: ``report``, ``acuity_level``, ``acuity_probs`` (5 levels),
        ``findings`` (name → probability)."""
        from keras import ops

        from mtl_report.layers.heads import level_probabilities, levels_from_cumulative

        studies = studies or [{} for _ in image_paths]
        if len(studies) != len(image_paths):
            raise ValueError("one ED-data dict per image is needed")
        images = np.stack([self.load_image(p) for p in image_paths])
        x = self.model_inputs(images, studies)
        if self.generator is not None:
            out = self.generator(x)
            texts = self.tokenizer.decode(out["tokens"])
        else:
            wanted = {k: v for k, v in x.items() if k in self.model.input}
            out = {k: np.asarray(v) for k, v in self._heads(wanted).items()}
            texts = [None] * len(image_paths)
        results = []
        for i in range(len(image_paths)):
            item: dict = {"report": texts[i]}
            if "acuity" in out:
                cum = np.asarray(out["acuity"][i : i + 1])
                item["acuity_level"] = int(ops.convert_to_numpy(levels_from_cumulative(cum))[0])
                probs = ops.convert_to_numpy(level_probabilities(cum))[0]
                item["acuity_probs"] = probs.astype("float64").round(6).tolist()
            if "findings" in out:
                item["findings"] = {
                    name: float(p) for name, p in zip(self.findings, out["findings"][i])
                }
            results.append(item)
        return results
