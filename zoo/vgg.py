"""VGG (Simonyan and Zisserman, "Very deep convolutional networks for large-scale image
recognition", arXiv 2014 / ICLR 2015): configurations A, B, D and E, with and without batch
normalisation."""

from __future__ import annotations

from typing import Callable

import keras

from zoo._common import (
    classifier_head, load_weights, model_input, resolve_input_shape, validate_args)
from zoo.registry import register_model

# Table 1 of the paper: output channels of each 3x3 convolution, "M" for a 2x2/2 max pooling.
# Configurations A (11 weight layers), B (13), D (16) and E (19).
CFGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}

_BLOCKS = ("block1", "block2", "block3", "block4", "block5")


def _features(x, cfg: list[int | str], batch_norm: bool):
    """The convolutional part: blocks of 3x3 'same' convolutions, each ended by a max pooling."""
    block, index = 1, 1
    for item in cfg:
        prefix = f"block{block}"
        if item == "M":
            x = keras.layers.MaxPooling2D(2, strides=2, name=f"{prefix}_pool")(x)
            block, index = block + 1, 1
            continue
        if batch_norm:
            x = keras.layers.Conv2D(item, 3, padding="same", name=f"{prefix}_conv{index}")(x)
            x = keras.layers.BatchNormalization(epsilon=1e-5, name=f"{prefix}_bn{index}")(x)
            x = keras.layers.ReLU(name=f"{prefix}_relu{index}")(x)
        else:
            x = keras.layers.Conv2D(item, 3, padding="same", activation="relu",
                                    name=f"{prefix}_conv{index}")(x)
        index += 1
    return x


def _make_vgg(config: str, batch_norm: bool) -> Callable[..., keras.Model]:
    """Build and register the builder of one configuration; every VGG is built by this code."""
    model_name = f"{config}_bn" if batch_norm else config
    paper = ("Simonyan & Zisserman 2014, Very Deep Convolutional Networks for Large-Scale Image "
             "Recognition")
    if batch_norm:
        paper += " (+ Ioffe & Szegedy 2015, Batch Normalization)"

    def builder(
        *,
        include_top: bool = True,
        weights: str | None = None,
        input_shape: tuple[int, int, int] | None = None,
        pooling: str | None = None,
        classes: int = 1000,
        classifier_activation: str | None = "softmax",
        name: str = model_name,
        include_preprocessing: bool = True,
    ) -> keras.Model:
        """VGG: stacks of 3x3 convolutions (stride 1, 'same'), five 2x2/2 max poolings, then
        FC 4096-4096-classes with dropout 0.5 after each FC-4096 (Simonyan and Zisserman 2014).

        The configuration is the one named by the builder (``CFGS``: vgg11 = A, vgg13 = B,
        vgg16 = D, vgg19 = E). The ``_bn`` builders add batch normalisation between each
        convolution and its ReLU, as torchvision's ``vgg*_bn`` (convolution biases kept). The
        flatten top fixes the input to 224x224; without the top any input of at least 32x32
        works (five poolings bring 32 to 1). vgg16 has 138,357,544 parameters with 1000 classes.

        Initialisation: Glorot-uniform weights and zero biases, which the paper notes (section
        3.1) trains the deep configurations without pre-training net A.

        Args:
            include_top: include the three FC layers; without it the model ends at block5_pool.
            weights: ``None`` or a path to a weight file.
            input_shape: ``(224, 224, 3)`` with the top; at least 32x32 without it.
            pooling: ``None``, ``"avg"`` or ``"max"`` applied to block5_pool when
                ``include_top=False``.
            classes: number of classes.
            classifier_activation: activation of the output layer.
            name: model name.
            include_preprocessing: start with the preprocessing layers (``preprocess_*``, the
                registry's mode), so the model takes raw 0-255 pixels; ``False`` gives the bare
                network.
        """
        validate_args(model_name, include_top=include_top, weights=weights, classes=classes,
                      pooling=pooling)
        shape = resolve_input_shape(model_name, input_shape, include_top)
        inputs, x = model_input(model_name, shape, include_preprocessing)
        x = _features(x, CFGS[config], batch_norm)
        if include_top:
            x = keras.layers.Flatten(name="flatten")(x)
            for block in ("fc1", "fc2"):
                x = keras.layers.Dense(4096, activation="relu", name=block)(x)
                x = keras.layers.Dropout(0.5, name=f"{block}_dropout")(x)
            x = keras.layers.Dense(classes, activation=classifier_activation,
                                   name="predictions")(x)
        else:
            x = classifier_head(x, include_top=False, pooling=pooling, classes=classes,
                                classifier_activation=None)
        model = keras.Model(inputs, x, name=name)
        return load_weights(model, weights)

    builder.__name__ = builder.__qualname__ = model_name
    return register_model(
        name=model_name,
        family="vgg",
        paper=paper,
        year=2014,
        default_input_shape=(224, 224, 3),
        min_input_size=32,
        fixed_input_size=True,
        preprocessing="torch",
        blocks=_BLOCKS,
        default_unfreeze="block5",
    )(builder)


vgg11 = _make_vgg("vgg11", batch_norm=False)
vgg13 = _make_vgg("vgg13", batch_norm=False)
vgg16 = _make_vgg("vgg16", batch_norm=False)
vgg19 = _make_vgg("vgg19", batch_norm=False)
vgg11_bn = _make_vgg("vgg11", batch_norm=True)
vgg13_bn = _make_vgg("vgg13", batch_norm=True)
vgg16_bn = _make_vgg("vgg16", batch_norm=True)
vgg19_bn = _make_vgg("vgg19", batch_norm=True)
