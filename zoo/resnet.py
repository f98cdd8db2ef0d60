"""ResNet (He, Zhang, Ren and Sun, "Deep residual learning for image recognition", CVPR 2016,
arXiv 2015), in torchvision's layout ("ResNet v1.5")."""

from __future__ import annotations

from typing import Callable

import keras

from zoo._common import (
    classifier_head, load_weights, model_input, resolve_input_shape, validate_args)
from zoo.registry import register_model

# Table 1 of the paper: block type and number of blocks in conv2_x .. conv5_x.
STAGES: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
_WIDTHS = (64, 128, 256, 512)  # 3x3 width of each stage; bottleneck outputs are 4x wider
_EXPANSION = {"basic": 1, "bottleneck": 4}
_BN_EPSILON = 1e-5  # torchvision's BatchNorm2d default
_BLOCKS = ("conv1", "conv2", "conv3", "conv4", "conv5")


def _he_fan_out() -> keras.initializers.Initializer:
    # torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu"); a fresh instance per
    # layer, so that unseeded initialisers do not repeat the same values.
    return keras.initializers.VarianceScaling(2.0, mode="fan_out",
                                              distribution="untruncated_normal")


def _conv_bn(x, filters: int, kernel: int, name: str, *, strides: int = 1, relu: bool = True):
    """Convolution without bias (BatchNorm's beta is the bias), BatchNorm, optional ReLU.

    Padding is explicit and symmetric (``kernel // 2``), as in the PyTorch model, rather than
    Keras's ``"same"``, which pads only bottom/right for even inputs at stride 2.
    """
    if kernel > 1:
        x = keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
    x = keras.layers.Conv2D(filters, kernel, strides=strides, use_bias=False,
                            kernel_initializer=_he_fan_out(), name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=_BN_EPSILON, name=f"{name}_bn")(x)
    if relu:
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return x


def _shortcut(x, filters: int, strides: int, name: str):
    """Identity, or projection (option B: 1x1 conv + BN) when the shape changes."""
    if strides == 1 and x.shape[-1] == filters:
        return x
    return _conv_bn(x, filters, 1, f"{name}_0", strides=strides, relu=False)


def _basic_block(x, width: int, strides: int, name: str):
    """Two 3x3 convolutions (figure 5 left)."""
    shortcut = _shortcut(x, width, strides, name)
    x = _conv_bn(x, width, 3, f"{name}_1", strides=strides)
    x = _conv_bn(x, width, 3, f"{name}_2", relu=False)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.ReLU(name=f"{name}_out")(x)


def _bottleneck_block(x, width: int, strides: int, name: str):
    """1x1 reduce, 3x3, 1x1 expand (figure 5 right); the stride is on the 3x3 (v1.5)."""
    shortcut = _shortcut(x, width * 4, strides, name)
    x = _conv_bn(x, width, 1, f"{name}_1")
    x = _conv_bn(x, width, 3, f"{name}_2", strides=strides)
    x = _conv_bn(x, width * 4, 1, f"{name}_3", relu=False)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.ReLU(name=f"{name}_out")(x)


def _make_resnet(model_name: str) -> Callable[..., keras.Model]:
    """Build and register the builder of one depth; every ResNet is built by this code."""
    block_type, depths = STAGES[model_name]
    block_fn = _basic_block if block_type == "basic" else _bottleneck_block

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
        """ResNet (He et al. 2015) with the depth named by the builder, torchvision's layout.

        Stem: 7x7/2 convolution (64), BN, ReLU, 3x3/2 max pooling; four stages conv2-conv5 of
        basic blocks (resnet18/34: two 3x3 convolutions) or bottleneck blocks (resnet50/101/152:
        1x1, 3x3, 1x1 with 4x expansion), counts per ``STAGES`` (Table 1 of the paper); global
        average pooling and a dense classifier. The first block of conv3-conv5 downsamples with
        stride 2 and a projection shortcut (1x1 convolution + BN, the paper's option B).

        This is "ResNet v1.5": in bottleneck blocks the stride is on the 3x3 convolution, not
        the first 1x1 as in the paper, like torchvision and NVIDIA's reference models (about
        +0.5% top-1, 4.1 instead of 3.8 GMACs for resnet50). Convolutions have no bias, since
        each is followed by BatchNorm; trainable parameters equal torchvision's exactly
        (resnet50: 25,557,032 with 1000 classes). Every stride is padded, so any input of at
        least 1x1 builds (as torchvision states); 32x32 CIFAR images keep the ImageNet stem and
        reach conv5 as a 1x1 map.

        Initialisation: He-normal with fan-out for convolutions (torchvision's
        ``kaiming_normal_(mode="fan_out")``), BN gamma 1 and beta 0, Glorot-uniform classifier.

        Args:
            include_top: include global average pooling and the classifier; without it the
                model ends at conv5.
            weights: ``None`` or a path to a weight file.
            input_shape: ``(height, width, 3)``; defaults to 224x224.
            pooling: ``None``, ``"avg"`` or ``"max"`` applied to conv5 when
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
        x = _conv_bn(x, 64, 7, "conv1", strides=2)
        x = keras.layers.ZeroPadding2D(1, name="conv1_pool_pad")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, name="conv1_pool")(x)
        for stage, (width, depth) in enumerate(zip(_WIDTHS, depths), start=2):
            for block in range(1, depth + 1):
                strides = 2 if block == 1 and stage > 2 else 1
                x = block_fn(x, width, strides, f"conv{stage}_block{block}")
        x = classifier_head(x, include_top=include_top, pooling=pooling, classes=classes,
                            classifier_activation=classifier_activation)
        model = keras.Model(inputs, x, name=name)
        return load_weights(model, weights)

    builder.__name__ = builder.__qualname__ = model_name
    return register_model(
        name=model_name,
        family="resnet",
        paper="He et al. 2015, Deep Residual Learning for Image Recognition",
        year=2015,
        default_input_shape=(224, 224, 3),
        min_input_size=1,
        fixed_input_size=False,
        preprocessing="torch",
        blocks=_BLOCKS,
        default_unfreeze="conv5",
    )(builder)


resnet18 = _make_resnet("resnet18")
resnet34 = _make_resnet("resnet34")
resnet50 = _make_resnet("resnet50")
resnet101 = _make_resnet("resnet101")
resnet152 = _make_resnet("resnet152")
