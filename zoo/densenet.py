"""DenseNet-BC (Huang, Liu, van der Maaten and Weinberger, "Densely connected convolutional
networks", CVPR 2017, arXiv 2016), the ImageNet models of Table 1."""

from __future__ import annotations

from typing import Callable

import keras

from zoo._common import (
    classifier_head, load_weights, model_input, resolve_input_shape, validate_args)
from zoo.registry import register_model

# Table 1 of the paper: number of dense layers in each of the four dense blocks.
BLOCK_CONFIGS: dict[str, tuple[int, int, int, int]] = {
    "densenet121": (6, 12, 24, 16),
    "densenet169": (6, 12, 32, 32),
    "densenet201": (6, 12, 48, 32),
}
GROWTH_RATE = 32  # k
BOTTLENECK_WIDTH = 4  # the 1x1 bottleneck has 4k channels ("B")
COMPRESSION = 0.5  # transitions keep half the channels ("C", theta)
_STEM_FILTERS = 2 * GROWTH_RATE
_BN_EPSILON = 1e-5  # torchvision's BatchNorm2d default
_BLOCKS = ("conv1", "conv2", "pool2", "conv3", "pool3", "conv4", "pool4", "conv5")


def _he_normal() -> keras.initializers.Initializer:
    # torchvision: kaiming_normal_ (fan_in, untruncated); a fresh instance per layer.
    return keras.initializers.VarianceScaling(2.0, mode="fan_in",
                                              distribution="untruncated_normal")


def _bn_relu(x, name: str):
    x = keras.layers.BatchNormalization(epsilon=_BN_EPSILON, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _dense_layer(x, name: str):
    """BN-ReLU-Conv1x1(4k)-BN-ReLU-Conv3x3(k), concatenated to its input."""
    y = _bn_relu(x, f"{name}_0")
    y = keras.layers.Conv2D(BOTTLENECK_WIDTH * GROWTH_RATE, 1, use_bias=False,
                            kernel_initializer=_he_normal(), name=f"{name}_1_conv")(y)
    y = _bn_relu(y, f"{name}_1")
    y = keras.layers.Conv2D(GROWTH_RATE, 3, padding="same", use_bias=False,
                            kernel_initializer=_he_normal(), name=f"{name}_2_conv")(y)
    return keras.layers.Concatenate(name=f"{name}_concat")([x, y])


def _transition(x, name: str):
    """BN-ReLU-Conv1x1 compressing the channels by theta, then 2x2/2 average pooling."""
    x = _bn_relu(x, name)
    x = keras.layers.Conv2D(int(x.shape[-1] * COMPRESSION), 1, use_bias=False,
                            kernel_initializer=_he_normal(), name=f"{name}_conv")(x)
    return keras.layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)


def _make_densenet(model_name: str) -> Callable[..., keras.Model]:
    """Build and register the builder of one depth; every DenseNet is built by this code."""
    block_config = BLOCK_CONFIGS[model_name]

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
        """DenseNet-BC (Huang et al. 2017) with the depth named by the builder (Table 1).

        Stem: 7x7/2 convolution (2k = 64 channels), BN, ReLU, 3x3/2 max pooling. Four dense
        blocks (``BLOCK_CONFIGS``) of BN-ReLU-Conv1x1(4k)-BN-ReLU-Conv3x3(k) layers with growth
        rate k = 32, each layer's output concatenated to its input; between blocks, transitions
        BN-ReLU-Conv1x1 with compression 0.5 and 2x2/2 average pooling. A final BN-ReLU, global
        average pooling and a dense classifier. Convolutions have no bias; trainable parameters
        equal torchvision's (densenet121: 7,978,856 with 1000 classes). Padding is symmetric as
        in the PyTorch model, so the smallest input is 29x29 (torchvision states the same): the
        stem brings it to 8x8 and the three transitions to 1x1.

        Initialisation: He-normal (fan-in) for convolutions, as torchvision; BN gamma 1 and
        beta 0; Glorot-uniform classifier with zero bias.

        Args:
            include_top: include global average pooling and the classifier; without it the
                model ends at the final BN-ReLU (``conv5_relu``).
            weights: ``None`` or a path to a weight file.
            input_shape: ``(height, width, 3)``, at least 29x29; defaults to 224x224.
            pooling: ``None``, ``"avg"`` or ``"max"`` applied to the features when
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
        x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(x)
        x = keras.layers.Conv2D(_STEM_FILTERS, 7, strides=2, use_bias=False,
                                kernel_initializer=_he_normal(), name="conv1_conv")(x)
        x = _bn_relu(x, "conv1")
        x = keras.layers.ZeroPadding2D(1, name="conv1_pool_pad")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, name="conv1_pool")(x)
        for stage, layers in enumerate(block_config, start=2):
            for index in range(1, layers + 1):
                x = _dense_layer(x, f"conv{stage}_block{index}")
            if stage < 5:
                x = _transition(x, f"pool{stage}")
        x = _bn_relu(x, "conv5")
        x = classifier_head(x, include_top=include_top, pooling=pooling, classes=classes,
                            classifier_activation=classifier_activation)
        model = keras.Model(inputs, x, name=name)
        return load_weights(model, weights)

    builder.__name__ = builder.__qualname__ = model_name
    return register_model(
        name=model_name,
        family="densenet",
        paper="Huang et al. 2017, Densely Connected Convolutional Networks",
        year=2017,
        default_input_shape=(224, 224, 3),
        min_input_size=29,
        fixed_input_size=False,
        preprocessing="torch",
        blocks=_BLOCKS,
        default_unfreeze="conv5",
    )(builder)


densenet121 = _make_densenet("densenet121")
densenet169 = _make_densenet("densenet169")
densenet201 = _make_densenet("densenet201")
