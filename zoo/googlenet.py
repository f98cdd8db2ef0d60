"""GoogLeNet / Inception v1 (Szegedy et al., "Going deeper with convolutions", CVPR 2015, arXiv
2014)."""

from __future__ import annotations

import keras

from zoo._common import (
    classifier_head, load_weights, model_input, resolve_input_shape, validate_args)
from zoo.errors import InputShapeError, ZooError
from zoo.layers import LocalResponseNormalization
from zoo.registry import register_model

# Section 5: each auxiliary loss is added to the total loss with this discount weight.
AUX_LOSS_WEIGHT = 0.3

# Table 1 of the paper, per inception module: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5,
# pool proj. A 3x3/2 max pooling follows 3b and 4e; auxiliary classifiers branch off 4a and 4d.
INCEPTION_CFG: dict[str, tuple[int, int, int, int, int, int]] = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
_DOWNSAMPLE_AFTER = ("3b", "4e")
_AUX_AFTER = {"4a": "aux1", "4d": "aux2"}
# With auxiliary heads, 4a's map must hold one 5x5 average-pooling window: input >= 16 * 5 - 15.
_AUX_MIN_INPUT_SIZE = 65


def _conv(x, filters: int, kernel: int, name: str, strides: int = 1, padding: str = "same"):
    return keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding,
                               activation="relu", name=name)(x)


def _lrn(name: str) -> keras.layers.Layer:
    # Caffe's bvlc_googlenet: local_size 5, alpha 1e-4, beta 0.75 and Caffe's default k = 1.
    return LocalResponseNormalization(size=5, alpha=1e-4, beta=0.75, k=1.0, name=name)


def inception_module(x, name: str, cfg: tuple[int, int, int, int, int, int]):
    """Inception module with dimension reductions (figure 2b): four branches, concatenated."""
    n1x1, n3x3_reduce, n3x3, n5x5_reduce, n5x5, pool_proj = cfg
    branch1 = _conv(x, n1x1, 1, f"{name}_1x1")
    branch3 = _conv(x, n3x3_reduce, 1, f"{name}_3x3_reduce")
    branch3 = _conv(branch3, n3x3, 3, f"{name}_3x3")
    branch5 = _conv(x, n5x5_reduce, 1, f"{name}_5x5_reduce")
    branch5 = _conv(branch5, n5x5, 5, f"{name}_5x5")
    branch_pool = keras.layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    branch_pool = _conv(branch_pool, pool_proj, 1, f"{name}_pool_proj")
    return keras.layers.Concatenate(name=f"{name}_concat")(
        [branch1, branch3, branch5, branch_pool])


def _aux_classifier(x, name: str, classes: int, classifier_activation: str | None):
    """Auxiliary classifier of section 5: avgpool 5x5/3, 1x1 conv 128, FC 1024, dropout 0.7."""
    x = keras.layers.AveragePooling2D(5, strides=3, name=f"{name}_pool")(x)
    x = _conv(x, 128, 1, f"{name}_conv")
    x = keras.layers.Flatten(name=f"{name}_flatten")(x)
    x = keras.layers.Dense(1024, activation="relu", name=f"{name}_fc")(x)
    x = keras.layers.Dropout(0.7, name=f"{name}_dropout")(x)
    return keras.layers.Dense(classes, activation=classifier_activation,
                              name=f"{name}_predictions")(x)


@register_model(
    family="googlenet",
    paper="Szegedy et al. 2014, Going Deeper with Convolutions",
    year=2014,
    default_input_shape=(224, 224, 3),
    min_input_size=1,
    fixed_input_size=False,
    preprocessing="torch",
    blocks=("conv1", "conv2", *(f"inception_{module}" for module in INCEPTION_CFG)),
    default_unfreeze="inception_5a",
)
def googlenet(
    *,
    include_top: bool = True,
    weights: str | None = None,
    input_shape: tuple[int, int, int] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "googlenet",
    include_preprocessing: bool = True,
    aux_classifiers: bool = False,
) -> keras.Model:
    """GoogLeNet (Inception v1), the ILSVRC 2014 network of Szegedy et al., as in Table 1.

    Stem: 7x7/2 convolution (64), 3x3/2 max pooling, local response normalisation, 1x1 (64) and
    3x3 (192) convolutions, LRN, 3x3/2 max pooling (figure 3). Then nine inception modules
    (3a-5b) whose 1x1 reductions before the 3x3 and 5x5 convolutions and pool projections are
    exactly Table 1's (``INCEPTION_CFG``), with 3x3/2 max pooling after 3b and 4e; global average
    pooling, dropout 0.4 and a linear classifier. Max poolings use ``"same"`` padding, which at
    224x224 matches Caffe's ceil-mode pooling (112-56-28-14-7). Every convolution is followed by
    ReLU; there is no batch normalisation (that came with Inception v2).

    With ``aux_classifiers=True`` the two auxiliary classifiers of section 5 (after 4a and 4d:
    5x5/3 average pooling, 1x1 convolution 128, FC 1024, dropout 0.7, linear classifier) are
    added and the model has three outputs ``[predictions, aux1_predictions, aux2_predictions]``.
    Train with loss weights ``[1, AUX_LOSS_WEIGHT, AUX_LOSS_WEIGHT]`` and use
    :func:`inference_model` to drop them for inference and export. Their flatten layers fix the
    input size they are built for, which must be at least 65x65. Without auxiliary heads the
    network is fully convolutional and, since every stride is padded, accepts any input size.

    Initialisation: Glorot-uniform weights (the Caffe reference model's "xavier" filler) and zero
    biases.

    Args:
        include_top: include the pooling, dropout and classifier; without it the model ends at
            inception 5b.
        weights: ``None`` or a path to a weight file.
        input_shape: ``(height, width, 3)``; defaults to 224x224.
        pooling: ``None``, ``"avg"`` or ``"max"`` applied to inception 5b when
            ``include_top=False``.
        classes: number of classes.
        classifier_activation: activation of the output layers.
        name: model name.
        include_preprocessing: start with the preprocessing layers (``preprocess_*``, the
            registry's mode), so the model takes raw 0-255 pixels; ``False`` gives the bare
            network.
        aux_classifiers: add the two auxiliary classifiers (needs ``include_top=True``).

    Raises:
        ZooError: ``aux_classifiers=True`` without the top.
        InputShapeError: an input too small (or not fixed) for the auxiliary classifiers.
    """
    validate_args("googlenet", include_top=include_top, weights=weights, classes=classes,
                  pooling=pooling)
    if aux_classifiers and not include_top:
        raise ZooError("googlenet: aux_classifiers=True needs include_top=True; the auxiliary "
                       "classifiers are training-time heads of the full model.")
    shape = resolve_input_shape("googlenet", input_shape, include_top)
    if aux_classifiers and any(size is None or size < _AUX_MIN_INPUT_SIZE
                               for size in shape[:2]):
        raise InputShapeError(
            f"googlenet: with aux_classifiers=True the input must have a fixed size of at least "
            f"{_AUX_MIN_INPUT_SIZE}x{_AUX_MIN_INPUT_SIZE} (the auxiliary 5x5 average pooling "
            f"needs a 5x5 map after inception 4a), got {shape[:2]}. Use a larger input or "
            f"aux_classifiers=False.")
    inputs, x = model_input("googlenet", shape, include_preprocessing)
    x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(x)
    x = _conv(x, 64, 7, "conv1_conv", strides=2, padding="valid")
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="conv1_pool")(x)
    x = _lrn("conv1_lrn")(x)
    x = _conv(x, 64, 1, "conv2_reduce")
    x = _conv(x, 192, 3, "conv2_conv")
    x = _lrn("conv2_lrn")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="conv2_pool")(x)
    aux_outputs = []
    for module, cfg in INCEPTION_CFG.items():
        x = inception_module(x, f"inception_{module}", cfg)
        if module in _DOWNSAMPLE_AFTER:
            x = keras.layers.MaxPooling2D(3, strides=2, padding="same",
                                          name=f"inception_{module}_downsample")(x)
        if aux_classifiers and module in _AUX_AFTER:
            aux_outputs.append(
                _aux_classifier(x, _AUX_AFTER[module], classes, classifier_activation))
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dropout(0.4, name="dropout")(x)
        x = keras.layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    else:
        x = classifier_head(x, include_top=False, pooling=pooling, classes=classes,
                            classifier_activation=None)
    outputs = [x, *aux_outputs] if aux_outputs else x
    model = keras.Model(inputs, outputs, name=name)
    return load_weights(model, weights)


def inference_model(model: keras.Model) -> keras.Model:
    """The single-output model for inference and export: auxiliary heads dropped.

    The returned model shares its layers, hence its weights, with ``model``; training either
    one updates both.

    Raises:
        ZooError: ``model`` has no ``"predictions"`` layer (built with ``include_top=False``).
    """
    try:
        predictions = model.get_layer("predictions")
    except ValueError:
        raise ZooError(
            f"inference_model: model {model.name!r} has no 'predictions' layer; build it with "
            f"include_top=True.") from None
    return keras.Model(model.input, predictions.output, name=model.name)
