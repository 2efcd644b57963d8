"""RadGen three-class classification: train, evaluate, cross-validate, baselines, ablations,
export. Used by ``mtl-report classify ...`` and notebooks alike.

Data: a prepared ``"classification"`` dataset (``mtl-report prepare images`` for a CSV of
``image, label, subject_id[, report]``; ``mtl-report prepare synthetic-classes`` for the
synthetic three-class set). Labels are the dataset's classes in their metadata order, or
``RadGenConfig.classes`` when given (a label outside them is an error).

Training (:func:`train_classifier`):

- class imbalance: ``balance="weights"`` (per-example weights in the loss), ``"sampling"``
  (``tf.data`` resampling: per-class streams mixed by ``sample_from_datasets`` so that each
  class's share of the batches is proportional to *weight × frequency*, the same emphasis
  in expectation as the weights), ``"both"`` or ``"none"``. The weights are
  ``class_weights="auto"`` (8 : 1 : 3.2 for the default Normal : Pneumonia : TB classes,
  inverse frequency otherwise), ``"balanced"`` (``n / (k · n_c)`` from the train split) or
  explicit numbers;
- AdamW (weight decay 0.01), learning rate 1e-4 with linear warmup over 3 epochs (then
  constant, or with ``cosine_decay`` a cosine decay to a tenth by the last epoch), gradient
  clipping at global norm 1.0, ``mixed_float16`` as a flag;
- progressive unfreezing of the backbone: ``unfreeze_schedule`` ``((epoch, fraction), ...)``
  gives the fraction of backbone layers trainable (from the top) from each epoch on, by
  default ``((0, 0.0), (2, 0.25), (5, 1.0))`` for pretrained weights (head first, then the
  top blocks, then everything) and ``((0, 1.0),)`` for a random backbone (a frozen random
  backbone computes near-constant features; see :meth:`ClassifierTrainConfig.for_weights`);
  the optimizer is built once over all variables, so its state survives the changes;
- precise batch-norm statistics: at each epoch end the trainable batch norms get the
  average statistics of 32 training batches under the current weights, so validation and
  the saved model compute what training computed (``recalibrate_bn``);
- early stopping on validation macro-AUC (patience 10), restoring the best weights.

Run directory: ``config.json``, ``tokenizer/``, ``model.keras``, ``history.json``,
``metrics.json`` (the evaluation split), ``predictions.csv``.

Modules: :mod:`.config` (settings), :mod:`.data` (dataset and ``tf.data``), :mod:`.train`,
:mod:`.evaluate`, :mod:`.cross_validation`, :mod:`.baselines` and :mod:`.export`; the names
below are the public API (``from mtl_report import classify; classify.train_classifier``).
"""

from mtl_report.classify.baselines import (
    TABLE_METRICS,
    Variant,
    compare_variants,
    default_variants,
)
from mtl_report.classify.config import (
    BALANCE_MODES,
    CALIBRATION_BATCHES,
    DEFAULT_CLASS_WEIGHTS,
    PRETRAINED_UNFREEZE,
    RANDOM_INIT_UNFREEZE,
    ClassifierTrainConfig,
    parse_unfreeze,
)
from mtl_report.classify.cross_validation import cross_validate, cv_splits, summarize_folds
from mtl_report.classify.data import (
    class_weight_vector,
    classes_for,
    has_report_text,
    load_classification,
    make_classify_dataset,
    resolve_classes,
)
from mtl_report.classify.evaluate import (
    evaluate_model,
    evaluate_run,
    greedy_reports,
    inference_dataset,
    predict_records,
    report_text_metrics,
)
from mtl_report.classify.export import export_classifier
from mtl_report.classify.train import ClassifyResult, train_classifier
from mtl_report.metrics.classification import classification_metrics
from mtl_report.run import TOKENIZER_DIR

__all__ = [
    "BALANCE_MODES",
    "CALIBRATION_BATCHES",
    "DEFAULT_CLASS_WEIGHTS",
    "PRETRAINED_UNFREEZE",
    "RANDOM_INIT_UNFREEZE",
    "TABLE_METRICS",
    "TOKENIZER_DIR",
    "ClassifierTrainConfig",
    "ClassifyResult",
    "Variant",
    "class_weight_vector",
    "classes_for",
    "classification_metrics",
    "compare_variants",
    "cross_validate",
    "cv_splits",
    "default_variants",
    "evaluate_model",
    "evaluate_run",
    "export_classifier",
    "greedy_reports",
    "has_report_text",
    "inference_dataset",
    "load_classification",
    "make_classify_dataset",
    "parse_unfreeze",
    "predict_records",
    "report_text_metrics",
    "resolve_classes",
    "summarize_folds",
    "train_classifier",
]
