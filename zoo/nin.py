"""Network in Network (Lin, Chen and Yan, "Network in network", ICLR 2014, arXiv 2013)."""

from __future__ import annotations

import keras

from zoo._common import (
    load_weights, model_input, pool_features, resolve_input_shape, validate_args)
from zoo.registry import register_model

# The ImageNet model of the Caffe model zoo ("NIN-Imagenet"): per mlpconv block the spatial
# convolution (filters, kernel, stride), followed by two 1x1 convolutions of the same width.
# The fourth block's second 1x1 convolution is the classifier (classes channels).
_BLOCKS = (
    ("block1", 96, 11, 4),
    ("block2", 256, 5, 1),
    ("block3", 384, 3, 1),
    ("block4", 1024, 3, 1),
)


def _mlpconv(x, filters: int, kernel: int, strides: int, name: str):
    """An mlpconv layer: a spatial convolution then a two-layer 1x1 'micro network', all ReLU."""
    padding = "valid" if strides > 1 else "same"
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding, activation="relu",
                            name=f"{name}_conv")(x)
    x = keras.layers.Conv2D(filters, 1, activation="relu", name=f"{name}_mlp1")(x)
    return keras.layers.Conv2D(filters, 1, activation="relu", name=f"{name}_mlp2")(x)


@register_model(
    family="nin",
    paper="Lin et al. 2013, Network In Network",
    year=2013,
    default_input_shape=(224, 224, 3),
    min_input_size=67,
    fixed_input_size=False,
    preprocessing="torch",
    blocks=tuple(block[0] for block in _BLOCKS),
    default_unfreeze="block4",
)
def nin(
    *,
    include_top: bool = True,
    weights: str | None = None,
    input_shape: tuple[int, int, int] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "nin",
    include_preprocessing: bool = True,
) -> keras.Model:
    """Network in Network, in the ImageNet layout of the Caffe model zoo's NIN-Imagenet.

    Four mlpconv blocks, each a spatial convolution followed by two 1x1 convolutions (the
    paper's "micro network"), ReLU throughout: 96-11x11/4, 256-5x5, 384-3x3 and 1024-3x3, the
    first three followed by 3x3/2 max pooling and dropout 0.5 (the paper applies dropout on the
    outputs of all but the last mlpconv layer). There are no fully connected layers: the fourth
    block's last 1x1 convolution has ``classes`` channels and global average pooling over it gives
    the class scores (section 3.2). 7,595,176 parameters with 1000 classes.

    Pooling is Keras's floor mode (Caffe used ceil mode), so at 224x224 the maps are
    54-26-12-5 instead of 54-27-13-6; parameters are the same. Without the top the model ends at
    block 4's first 1x1 convolution (1024 channels) and accepts inputs of at least 67x67 (the
    third pooling needs a 3x3 map).

    Initialisation: Glorot-uniform weights and zero biases (the Caffe model used small Gaussians
    with hand-set scales per layer).

    Args:
        include_top: include the class-channel 1x1 convolution and global average pooling.
        weights: ``None`` or a path to a weight file.
        input_shape: ``(height, width, 3)``, at least 67x67; defaults to 224x224.
        pooling: ``None``, ``"avg"`` or ``"max"`` applied to the features when
            ``include_top=False``.
        classes: number of classes.
        classifier_activation: activation applied to the pooled class scores.
        name: model name.
        include_preprocessing: start with the preprocessing layers (``preprocess_*``, the
            registry's mode), so the model takes raw 0-255 pixels; ``False`` gives the bare
            network.
    """
    validate_args("nin", include_top=include_top, weights=weights, classes=classes,
                  pooling=pooling)
    shape = resolve_input_shape("nin", input_shape, include_top)
    inputs, x = model_input("nin", shape, include_preprocessing)
    for block, filters, kernel, strides in _BLOCKS[:-1]:
        x = _mlpconv(x, filters, kernel, strides, block)
        x = keras.layers.MaxPooling2D(3, strides=2, name=f"{block}_pool")(x)
        x = keras.layers.Dropout(0.5, name=f"{block}_dropout")(x)
    block, filters, kernel, strides = _BLOCKS[-1]
    x = keras.layers.Conv2D(filters, kernel, padding="same", activation="relu",
                            name=f"{block}_conv")(x)
    x = keras.layers.Conv2D(filters, 1, activation="relu", name=f"{block}_mlp1")(x)
    if include_top:
        # The classifier is the last layer of the last mlpconv (ReLU included, as in the paper).
        x = keras.layers.Conv2D(classes, 1, activation="relu", name=f"{block}_mlp2")(x)
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Activation(classifier_activation, name="predictions")(x)
    else:
        x = pool_features(x, pooling)
    model = keras.Model(inputs, x, name=name)
    return load_weights(model, weights)
