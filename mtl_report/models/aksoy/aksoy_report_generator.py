"""The report task over a run directory: ``AksoyReportGenerator.from_preset(run_dir)``.

A run directory is a preset in keras-hub's sense: it holds everything to use the model
elsewhere (architecture and weights, the frozen backbone's weights, the preprocessor's
cleaning transform and vocabularies, the tokenizer, the validation-chosen findings
cut-offs). :meth:`AksoyReportGenerator.from_preset` loads all of it once; ``mtl-report
generate``, ``explain``, ``export`` and the notebooks use the same object, so a run is
generated from, explained and served through one loader.

Preprocessing runs as graph functions shared with training and the SavedModel
(:func:`mtl_report.image_decoding.decode_image` and the run's
:class:`~mtl_report.models.aksoy.AksoyPreprocessor`), so ``generate`` and TF Serving give the
same reports, and a batch-1 call costs little more than the backbone's forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
from keras import ops

from mtl_report.data.errors import DataError
from mtl_report.data.schema import VITALS
from mtl_report.decoding import DecodingConfig, ReportGenerator
from mtl_report.image_decoding import decode_image, image_error
from mtl_report.layers.heads import level_probabilities, levels_from_cumulative
from mtl_report.models.aksoy.aksoy_preprocessor import raw_ed_columns
from mtl_report.run import Run

#: Cut-off of a finding when the run has none chosen on a validation split.
DEFAULT_FINDING_THRESHOLD = 0.5


def raw_ed_tensors(studies: Sequence[Mapping]) -> dict[str, tf.Tensor]:
    """ED-data dicts → the raw ``(n,)`` tensors of the serving signature: the six vitals
    float32 (missing → NaN) and the four strings (missing → ``""``)."""
    columns = raw_ed_columns(list(studies))
    return {k: tf.constant(v, tf.float32 if k in VITALS else tf.string) for k, v in columns.items()}


class AksoyReportGenerator:
    """Report, acuity and findings for raw studies (image file + ED data) from a run.

    Attributes (loaded once): ``run`` (:class:`~mtl_report.run.Run`), ``model``,
    ``backbone`` (None when it was fine-tuned inside the model), ``preprocessor``,
    ``tokenizer``, ``text_generator`` (:class:`~mtl_report.decoding.ReportGenerator`, None
    without a report head), ``findings`` and ``findings_thresholds``.

    Example::

        generator = AksoyReportGenerator.from_preset("runs/mtl_tp")
        generator.generate(["study.jpg"], [{"heartrate": 88, "chiefcomplaint": "dyspnea"}])
    """

    def __init__(self, run: Run, decoding: DecodingConfig | None = None):
        run.check_reads_images()  # before the model load: a missing file fails at once
        self.run = run
        self.decoding = decoding or DecodingConfig()
        self.model = run.load_model()
        self.tokenizer = run.tokenizer()
        self.preprocessor = run.preprocessor()
        cfg = run.model_config
        self.image_size = int(cfg.image_size)
        self.backbone = None if cfg.fine_tune_backbone else run.load_backbone()
        self.text_generator = (
            ReportGenerator(
                self.model, self.tokenizer.start_id, self.tokenizer.end_id, self.decoding
            )
            if "report" in self.model.output
            else None
        )
        self.findings = list(cfg.findings)
        self.findings_thresholds = run.findings_thresholds() or [DEFAULT_FINDING_THRESHOLD] * len(
            self.findings
        )
        # Graph functions, not eager calls: an eager EfficientNet pass dispatches ~250 ops
        # one by one from Python, which costs as much as the convolutions at batch 1.
        self._inputs = tf.function(self.inputs_graph, reduce_retracing=True)
        self._heads = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)
        size = self.image_size
        self._decode = tf.function(  # the size limits of decode_image apply (header check)
            lambda contents, path: decode_image(contents, size, path),
            input_signature=[tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.string)],
        )

    @classmethod
    def from_preset(
        cls, run_dir: str | Path, decoding: DecodingConfig | None = None
    ) -> AksoyReportGenerator:
        """Load a run directory (a preset): model, backbone, preprocessor, tokenizer,
        findings cut-offs.

        Raises:
            DataError: not a report run, a run of another format, or a missing file.
        """
        return cls(Run.read(Path(run_dir)), decoding)

    def load_image(self, path: str | Path) -> np.ndarray:
        """As :func:`mtl_report.image_decoding.load_image` (same ops, same errors), traced once.

        Raises:
            DataError: naming the file when it is missing or cannot be decoded.
        """
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: image file not found")
        try:
            return self._decode(tf.constant(path.read_bytes()), tf.constant(str(path))).numpy()
        except tf.errors.OpError as exc:  # undecodable, too large or too small
            raise image_error(path, exc) from None

    def inputs_graph(self, images: tf.Tensor, raw: Mapping[str, tf.Tensor]) -> dict:
        """Pixels ``(n, S, S, 3)`` in [0, 255] + raw ED tensors → the model's inputs, as
        TF ops: what :meth:`model_inputs` runs and the SavedModel traces."""
        x = dict(self.preprocessor(raw))
        if self.backbone is not None:
            x["image_features"] = self.backbone(images, training=False)
        else:
            x["image"] = images
        return x

    def model_inputs(self, images: np.ndarray, studies: Sequence[Mapping]) -> dict:
        """Model inputs from pixel arrays ``(n, S, S, 3)`` in [0, 255] and ED data dicts."""
        return self._inputs(tf.constant(images, tf.float32), raw_ed_tensors(studies))

    def generate(
        self, image_paths: Sequence[str | Path], studies: Sequence[Mapping] | None = None
    ) -> list[dict]:
        """One dict per study: ``report`` (None without a report head), ``acuity_level``
        and ``acuity_probs`` (5 levels), ``findings`` (name → probability) and
        ``findings_present`` (name → probability ≥ the run's cut-off)."""
        studies = list(studies) if studies is not None else [{} for _ in image_paths]
        if len(studies) != len(image_paths):
            raise ValueError("one ED-data dict per image is needed")
        images = np.stack([self.load_image(p) for p in image_paths])
        x = self.model_inputs(images, studies)
        if self.text_generator is not None:
            out = self.text_generator(x)
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
                probs = [float(p) for p in out["findings"][i]]
                item["findings"] = dict(zip(self.findings, probs))
                item["findings_present"] = {
                    name: p >= cut
                    for name, p, cut in zip(self.findings, probs, self.findings_thresholds)
                }
            results.append(item)
        return results
