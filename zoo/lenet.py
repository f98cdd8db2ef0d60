"""LeNet-5 (LeCun, Bottou, Bengio and Haffner, "Gradient-based learning applied to document
recognition", Proc. IEEE 1998)."""

from __future__ import annotations

import keras

from zoo._common import (
    classifier_head, load_weights, model_input, resolve_input_shape, validate_args)
from zoo.registry import register_model


@register_model(
    family="lenet",
    paper="LeCun et al. 1998, Gradient-based learning applied to document recognition",
    year=1998,
    default_input_shape=(32, 32, 1),
    min_input_size=32,
    fixed_input_size=True,
    preprocessing="tf",
    blocks=("c1", "c3", "c5"),
    default_unfreeze="c5",
    default_classes=10,
)
def lenet5(
    *,
    include_top: bool = True,
    weights: str | None = None,
    input_shape: tuple[int, int, int] | None = None,
    pooling: str | None = None,
    classes: int = 10,
    classifier_activation: str | None = "softmax",
    name: str = "lenet5",
    include_preprocessing: bool = True,
) -> keras.Model:
    """LeNet-5: C1-S2-C3-S4-C5-F6-output, tanh units and average-pooling subsampling.

    The common modern variant of the paper's network: C3 is fully connected to S2 (the paper's
    sparse connection table is dropped), S2/S4 are plain average pooling without trainable
    coefficients, and the RBF output layer is a softmax dense layer. C5 is a 5x5 convolution,
    as in the paper, which on a 32x32 input gives 1x1x120 (same parameters as a dense layer).
    With 10 classes the model has 61,706 parameters. It takes raw 0-255 grayscale pixels,
    scaled to [-1, 1] by its first layer (mode ``"tf"``, no weights). Glorot-uniform
    initialisation, the era's practice for tanh units.

    Args:
        include_top: include F6 and the classifier; without it the model ends at C5.
        weights: ``None`` or a path to a weight file.
        input_shape: ``(32, 32, 1)`` with the top; larger inputs are allowed without it.
        pooling: ``None``, ``"avg"`` or ``"max"`` applied to C5 when ``include_top=False``.
        classes: number of classes.
        classifier_activation: activation of the output layer.
        name: model name.
        include_preprocessing: start with the preprocessing layers (``preprocess_*``, the
            registry's mode), so the model takes raw 0-255 pixels; ``False`` gives the bare
            network.
    """
    validate_args("lenet5", include_top=include_top, weights=weights, classes=classes,
                  pooling=pooling)
    shape = resolve_input_shape("lenet5", input_shape, include_top)
    inputs, x = model_input("lenet5", shape, include_preprocessing)
    x = keras.layers.Conv2D(6, 5, activation="tanh", name="c1_conv")(x)
    x = keras.layers.AveragePooling2D(2, name="s2_pool")(x)
    x = keras.layers.Conv2D(16, 5, activation="tanh", name="c3_conv")(x)
    x = keras.layers.AveragePooling2D(2, name="s4_pool")(x)
    x = keras.layers.Conv2D(120, 5, activation="tanh", name="c5_conv")(x)
    if include_top:
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dense(84, activation="tanh", name="f6_dense")(x)
        x = keras.layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    else:
        x = classifier_head(x, include_top=False, pooling=pooling, classes=classes,
                            classifier_activation=None)
    model = keras.Model(inputs, x, name=name)
    return load_weights(model, weights)
