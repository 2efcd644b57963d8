"""The classifier's SavedModel: raw image bytes and report text in, probabilities, gate and
label out."""

from __future__ import annotations

from pathlib import Path

from mtl_report.models.radgen import RadGenClassifier


def export_classifier(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Write a SavedModel whose ``serving_default`` takes raw inputs.

    Signature: ``image_bytes`` ``(None,)`` tf.string (encoded PNG/JPEG/...), ``report``
    ``(None,)`` tf.string (raw report text, ``""`` when there is none: the gate then falls
    back to the image) → ``probabilities`` ``(None, k)`` float32, ``gate`` ``(None, 1)``
    float32 (1 for an image-only model, 0 for a text-only one), ``label`` ``(None,)``
    tf.string. Image decoding (:func:`mtl_report.image_decoding.decode_image`) and tokenisation
    (:class:`~mtl_report.models.radgen.RadGenPreprocessor`) are in the graph.
    """
    import keras
    import tensorflow as tf

    from mtl_report.image_decoding import decode_image

    classifier = RadGenClassifier.from_preset(run_dir)
    size = classifier.image_size
    archive = keras.export.ExportArchive()
    archive.track(classifier.model)
    archive.track(classifier.preprocessor)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="image_bytes"),
            tf.TensorSpec([None], tf.string, name="report"),
        ]
    )
    def serve(image_bytes, report):
        images = None
        if classifier.reads_images:
            images = tf.map_fn(
                lambda b: decode_image(b, size),
                image_bytes,
                fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32),
            )
        return classifier.outputs_graph(images, report)

    archive.add_endpoint("serving_default", serve)
    out_dir = Path(out_dir)
    archive.write_out(str(out_dir), verbose=False)
    return out_dir
