"""AlexNet (Krizhevsky, Sutskever and Hinton, "ImageNet classification with deep convolutional
neural networks", NeurIPS 2012) and ZFNet (Zeiler and Fergus, "Visualizing and understanding
convolutional networks", ECCV 2014)."""

from __future__ import annotations

import keras

from zoo._common import (
    classifier_head, load_weights, model_input, resolve_input_shape, validate_args)
from zoo.layers import LocalResponseNormalization
from zoo.registry import register_model


def _lrn(name: str) -> keras.layers.Layer:
    # Section 3.3 of the AlexNet paper: n=5, alpha=1e-4, beta=0.75, k=2 (ZFNet reuses them).
    return LocalResponseNormalization(size=5, alpha=1e-4, beta=0.75, k=2.0, name=name)


def _fc_head(x, *, classes: int, classifier_activation: str | None):
    """Flatten, FC-4096, dropout 0.5, FC-4096, dropout 0.5, classifier (both papers' top)."""
    x = keras.layers.Flatten(name="flatten")(x)
    for block in ("fc6", "fc7"):
        x = keras.layers.Dense(4096, activation="relu", name=f"{block}_dense")(x)
        x = keras.layers.Dropout(0.5, name=f"{block}_dropout")(x)
    return keras.layers.Dense(classes, activation=classifier_activation, name="predictions")(x)


@register_model(
    family="alexnet",
    paper="Krizhevsky et al. 2012, ImageNet Classification with Deep Convolutional Neural "
          "Networks",
    year=2012,
    default_input_shape=(227, 227, 3),
    min_input_size=67,
    fixed_input_size=True,
    preprocessing="torch",
    blocks=("conv1", "conv2", "conv3", "conv4", "conv5"),
    default_unfreeze="conv5",
)
def alexnet(
    *,
    include_top: bool = True,
    weights: str | None = None,
    input_shape: tuple[int, int, int] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "alexnet",
    include_preprocessing: bool = True,
) -> keras.Model:
    """AlexNet in the paper's original two-tower (two-GPU) layout.

    conv1 96-11x11/4, conv2 256-5x5, conv3 384-3x3, conv4 384-3x3, conv5 256-3x3, then
    FC 4096-4096-classes with dropout 0.5 before each of the last two FC layers. The paper's split
    across two GPUs is kept as grouped convolutions (``groups=2``) on conv2, conv4 and conv5, which
    see only the kernel maps of their own tower; conv3 and the FC layers connect across towers.
    Local response normalisation (n=5, alpha=1e-4, beta=0.75, k=2) follows conv1 and conv2 and is
    followed by overlapping max pooling (3x3, stride 2), as in section 3.5 of the paper (Caffe's
    reference model swaps pooling and normalisation).

    The input is 227x227 (the paper's "224" does not fit an 11x11 stride-4 valid convolution to
    55x55), giving 55-27-13-13-13-6 maps and exactly 60,965,224 parameters with 1000 classes.
    Without the top the smallest input is 67x67 (the last pooling needs a 3x3 map).

    Initialisation: Glorot-uniform weights and zero biases (Keras defaults) instead of the paper's
    N(0, 0.01) weights and unit biases, which depended on its hand-tuned learning-rate schedule.

    Args:
        include_top: include the three FC layers; without it the model ends at pool5.
        weights: ``None`` or a path to a weight file.
        input_shape: ``(227, 227, 3)`` with the top; at least 67x67 without it.
        pooling: ``None``, ``"avg"`` or ``"max"`` applied to pool5 when ``include_top=False``.
        classes: number of classes.
        classifier_activation: activation of the output layer.
        name: model name.
        include_preprocessing: start with the preprocessing layers (``preprocess_*``, the
            registry's mode), so the model takes raw 0-255 pixels; ``False`` gives the bare
            network.
    """
    validate_args("alexnet", include_top=include_top, weights=weights, classes=classes,
                  pooling=pooling)
    shape = resolve_input_shape("alexnet", input_shape, include_top)
    inputs, x = model_input("alexnet", shape, include_preprocessing)
    x = keras.layers.Conv2D(96, 11, strides=4, activation="relu", name="conv1_conv")(x)
    x = _lrn("conv1_lrn")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="conv1_pool")(x)
    x = keras.layers.Conv2D(256, 5, padding="same", groups=2, activation="relu",
                            name="conv2_conv")(x)
    x = _lrn("conv2_lrn")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="conv2_pool")(x)
    x = keras.layers.Conv2D(384, 3, padding="same", activation="relu", name="conv3_conv")(x)
    x = keras.layers.Conv2D(384, 3, padding="same", groups=2, activation="relu",
                            name="conv4_conv")(x)
    x = keras.layers.Conv2D(256, 3, padding="same", groups=2, activation="relu",
                            name="conv5_conv")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="conv5_pool")(x)
    if include_top:
        x = _fc_head(x, classes=classes, classifier_activation=classifier_activation)
    else:
        x = classifier_head(x, include_top=False, pooling=pooling, classes=classes,
                            classifier_activation=None)
    model = keras.Model(inputs, x, name=name)
    return load_weights(model, weights)


@register_model(
    family="alexnet",
    paper="Zeiler & Fergus 2014, Visualizing and Understanding Convolutional Networks",
    year=2014,
    default_input_shape=(224, 224, 3),
    min_input_size=53,
    fixed_input_size=True,
    preprocessing="torch",
    blocks=("conv1", "conv2", "conv3", "conv4", "conv5"),
    default_unfreeze="conv5",
)
def zfnet(
    *,
    include_top: bool = True,
    weights: str | None = None,
    input_shape: tuple[int, int, int] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "zfnet",
    include_preprocessing: bool = True,
) -> keras.Model:
    """ZFNet: AlexNet revised after visualising its filters (Zeiler and Fergus 2014, figure 3).

    The first layer becomes 96-7x7 with stride 2 (instead of 11x11/4) and conv2 uses stride 2,
    which removes the aliasing the paper saw in AlexNet's first two layers; there are no groups
    (a single GPU). Layer sizes at 224x224 follow figure 3: 110 -> pool 55 -> 26 -> pool 13 ->
    13 -> 13 -> 13 -> pool 6, then FC 4096-4096-classes with dropout 0.5. The first two pools use
    ``"same"`` padding to reproduce the paper's 55 and 13 (Caffe's ceil-mode pooling); contrast
    normalisation across feature maps follows the first two layers (AlexNet's LRN parameters).
    62,357,608 parameters with 1000 classes. The smallest input without the top is 53x53.

    Initialisation: Glorot-uniform weights and zero biases (the paper used N(0, 0.01) weights and
    biases; Glorot needs no tuning of the scale).

    Args:
        include_top: include the three FC layers; without it the model ends at pool5.
        weights: ``None`` or a path to a weight file.
        input_shape: ``(224, 224, 3)`` with the top; at least 53x53 without it.
        pooling: ``None``, ``"avg"`` or ``"max"`` applied to pool5 when ``include_top=False``.
        classes: number of classes.
        classifier_activation: activation of the output layer.
        name: model name.
        include_preprocessing: start with the preprocessing layers (``preprocess_*``, the
            registry's mode), so the model takes raw 0-255 pixels; ``False`` gives the bare
            network.
    """
    validate_args("zfnet", include_top=include_top, weights=weights, classes=classes,
                  pooling=pooling)
    shape = resolve_input_shape("zfnet", input_shape, include_top)
    inputs, x = model_input("zfnet", shape, include_preprocessing)
    x = keras.layers.ZeroPadding2D(1, name="conv1_pad")(x)
    x = keras.layers.Conv2D(96, 7, strides=2, activation="relu", name="conv1_conv")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="conv1_pool")(x)
    x = _lrn("conv1_lrn")(x)
    x = keras.layers.Conv2D(256, 5, strides=2, activation="relu", name="conv2_conv")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="conv2_pool")(x)
    x = _lrn("conv2_lrn")(x)
    x = keras.layers.Conv2D(384, 3, padding="same", activation="relu", name="conv3_conv")(x)
    x = keras.layers.Conv2D(384, 3, padding="same", activation="relu", name="conv4_conv")(x)
    x = keras.layers.Conv2D(256, 3, padding="same", activation="relu", name="conv5_conv")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="conv5_pool")(x)
    if include_top:
        x = _fc_head(x, classes=classes, classifier_activation=classifier_activation)
    else:
        x = classifier_head(x, include_top=False, pooling=pooling, classes=classes,
                            classifier_activation=None)
    model = keras.Model(inputs, x, name=name)
    return load_weights(model, weights)
