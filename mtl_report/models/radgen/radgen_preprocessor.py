"""The RadGen classifier's preprocessor: raw report texts (and pixels) → the model's inputs.

One Keras layer maps a report string to what each RadGen variant reads: the word ids for the
text encoder (``text_tokens``, ``[START] w1 .. wk [END] 0 ..``) and the teacher-forced
prefix of the auxiliary decoder (``report_tokens``, the same ids less the last), and passes
the decoded pixels through as ``image``. The tf.data pipeline of training and evaluation
(:func:`mtl_report.classify.data.make_classify_dataset`),
:meth:`~mtl_report.models.radgen.RadGenClassifier.predict` and the SavedModel all call it,
so a report is tokenised the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable

import keras
import tensorflow as tf

#: The model inputs the preprocessor can make.
RADGEN_INPUTS: tuple[str, ...] = ("image", "text_tokens", "report_tokens")


class RadGenPreprocessor(keras.layers.Layer):
    """Report texts ``(n,)`` tf.string and pixels ``(n, S, S, 3)`` → model inputs.

    Args:
        tokenizer: the run's fitted :class:`~mtl_report.text.ReportTokenizer` (its
            ``TextVectorization`` layer is this layer's only state).
        input_names: the inputs of the model to feed (``model.input``); only those are
            returned, so an image-only or text-only variant gets what it reads.

    Not serialised with the model: a run directory holds the tokenizer, and
    :class:`~mtl_report.models.radgen.RadGenClassifier` rebuilds the preprocessor from it.
    """

    def __init__(self, tokenizer, input_names: Iterable[str], **kwargs):
        kwargs.setdefault("trainable", False)
        kwargs.setdefault("autocast", False)  # pixels stay float32 under mixed precision
        super().__init__(**kwargs)
        names = tuple(input_names)
        unknown = sorted(set(names) - set(RADGEN_INPUTS))
        if unknown:
            raise ValueError(f"RadGen has no input(s) {unknown}; it reads {list(RADGEN_INPUTS)}")
        self.tokenizer = tokenizer
        self.input_names = names
        self.reads_images = "image" in names
        self.vectorizer = tokenizer.layer()
        self.vectorizer(tf.constant([""]))  # built eagerly: no lookup table inside a map
        self.built = True  # no weights of its own; an export tracks it as it is

    def tokenize(self, reports: tf.Tensor) -> tf.Tensor:
        """Raw report texts → token ids int32 ``(n, max_report_length)`` (``""``: an empty
        report, ``[START] [END]``)."""
        return tf.cast(self.vectorizer(reports), tf.int32)

    def model_inputs(self, tokens: tf.Tensor, images: tf.Tensor | None = None) -> dict:
        """Token ids (:meth:`tokenize`) and pixels → the model's inputs.

        Raises:
            ValueError: the model reads images and none were given.
        """
        x = {}
        if self.reads_images:
            if images is None:
                raise ValueError("this RadGen model reads images; none were given")
            x["image"] = images
        if "text_tokens" in self.input_names:
            x["text_tokens"] = tokens
        if "report_tokens" in self.input_names:
            x["report_tokens"] = tokens[:, :-1]
        return x

    def call(self, reports, images=None):
        return self.model_inputs(self.tokenize(reports), images)
