"""Image backbones behind one registry: a config names its backbone by string.

Every backbone maps an image batch ``(batch, S, S, 3)`` with pixel values in [0, 255] to a
sequence of visual vectors ``(batch, L, C)`` (the spatial grid flattened), e.g. 7×7 = 49
vectors of 1280 for EfficientNetB0 at 224 px. Weights: ``None`` (random; tests),
``"imagenet"`` (downloaded the usual Keras way, for users online) or a path to a weights
file (offline). Adding a backbone is one entry in :data:`BACKBONES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone: ``build(image_size, weights) -> keras.Model`` (grid out)."""

    name: str
    build: Callable[[int, str | None], keras.Model]
    channels: int
    stride: int


def _efficientnet_b0(image_size: int, weights: str | None) -> keras.Model:
    if weights not in (None, "imagenet") and not Path(weights).is_file():
        raise FileNotFoundError(f"{weights}: backbone weights file not found")
    return keras.applications.EfficientNetB0(
        include_top=False, weights=weights, input_shape=(image_size, image_size, 3)
    )


BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet_b0": BackboneSpec("efficientnet_b0", _efficientnet_b0, 1280, 32),
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
