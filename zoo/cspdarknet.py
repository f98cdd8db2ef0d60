"""CSP-Darknet in its C2f form, the backbone of Ultralytics YOLOv8 (Jocher, Chaurasia and Qiu,
2023; software, no paper), after the cross-stage partial networks of Wang et al. (2020,
"CSPNet: a new backbone that can enhance learning capability of CNN").

Every convolution is a convolution without bias, BatchNorm (epsilon 1e-3, momentum 0.03 in
PyTorch's sense) and SiLU, padded by ``kernel // 2`` on every side as in the PyTorch model. The
network is a stem (3x3/2) and four stages, each a 3x3/2 convolution then a C2f block:

- **C2f**: a 1x1 convolution to ``2c`` channels (``c`` half the stage's width), split in two
  halves; ``n`` bottlenecks (two 3x3 convolutions and a shortcut) each take the previous
  output; the two halves and every bottleneck's output are concatenated and a 1x1 convolution
  brings them to the stage's width. Only half the channels go through the bottlenecks, the
  other half passes straight to the end (the "cross-stage partial" idea), which makes the
  block cheap; every bottleneck's output also reaches the end directly.
- The last stage ends in **SPPF**: a 1x1 convolution to half the width, three chained 5x5/1 max
  poolings, the four maps concatenated and a 1x1 convolution.

The scales multiply YOLOv8's base widths (64, 128, 256, 512, 1024) and depths (3, 6, 6, 3):
``n`` by 0.25 and 0.33 (1,272,656 trainable weights without the top, as the first ten
modules of Ultralytics' ``yolov8n.yaml``), ``s`` by 0.5 and 0.33 (5,079,712). With
``include_top`` the features are pooled and a dense layer classifies them, the registry's usual
top; YOLOv8's own classifier drops SPPF and adds a 1280-wide 1x1 convolution instead.

Regular convolutions throughout make it fast to train on a CPU: as a detector backbone at 256
px it trains in half the time of MobileNetV2 per step (docs/benchmarks.md).
"""

from __future__ import annotations

import math
from typing import Callable

import keras

from zoo._common import (
    channel_slice, classifier_head, load_weights, model_input, resolve_input_shape,
    validate_args)
from zoo.registry import register_model

#: scale -> (depth multiple, width multiple), as YOLOv8's model files
SCALES: dict[str, tuple[float, float]] = {"n": (0.33, 0.25), "s": (0.33, 0.50)}
_BASE_WIDTHS = (64, 128, 256, 512, 1024)  # stem, stage1 .. stage4
_BASE_DEPTHS = (3, 6, 6, 3)  # bottlenecks of stage1 .. stage4's C2f
_BLOCKS = ("stem", "stage1", "stage2", "stage3", "stage4")
_BN_EPSILON = 1e-3
_BN_MOMENTUM = 0.97  # PyTorch's momentum 0.03


def stage_shape(scale: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(widths of the stem and the four stages, bottlenecks per stage)`` of ``scale``."""
    depth, width = SCALES[scale]
    widths = tuple(int(math.ceil(w * width / 8) * 8) for w in _BASE_WIDTHS)
    depths = tuple(max(round(d * depth), 1) for d in _BASE_DEPTHS)
    return widths, depths


def _conv(x, filters: int, kernel: int, name: str, *, strides: int = 1):
    """Convolution without bias, BatchNorm and SiLU, padded ``kernel // 2`` on every side."""
    if strides > 1 and kernel > 1:
        x = keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same"
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False,
                            name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM,
                                        name=f"{name}_bn")(x)
    return keras.layers.Activation("silu", name=f"{name}_silu")(x)


def _c2f(x, filters: int, bottlenecks: int, name: str):
    half = filters // 2
    x = _conv(x, 2 * half, 1, f"{name}_cv1")
    parts = [channel_slice(x, i * half, (i + 1) * half, name=f"{name}_half{i}") for i in (0, 1)]
    for index in range(bottlenecks):
        y = _conv(parts[-1], half, 3, f"{name}_m{index}_cv1")
        y = _conv(y, half, 3, f"{name}_m{index}_cv2")
        parts.append(keras.layers.Add(name=f"{name}_m{index}_add")([parts[-1], y]))
    x = keras.layers.Concatenate(name=f"{name}_concat")(parts)
    return _conv(x, filters, 1, f"{name}_cv2")


def _sppf(x, filters: int, name: str):
    x = _conv(x, x.shape[-1] // 2, 1, f"{name}_cv1")
    maps = [x]
    for index in range(3):
        maps.append(keras.layers.MaxPooling2D(5, strides=1, padding="same",
                                              name=f"{name}_pool{index}")(maps[-1]))
    x = keras.layers.Concatenate(name=f"{name}_concat")(maps)
    return _conv(x, filters, 1, f"{name}_cv2")


def _make(scale: str) -> Callable[..., keras.Model]:
    model_name = f"cspdarknet_{scale}"
    widths, depths = stage_shape(scale)

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
        validate_args(model_name, include_top=include_top, weights=weights, classes=classes,
                      pooling=pooling)
        shape = resolve_input_shape(model_name, input_shape, include_top)
        inputs, x = model_input(model_name, shape, include_preprocessing)
        x = _conv(x, widths[0], 3, "stem", strides=2)
        for stage in range(1, 5):
            prefix = f"stage{stage}"
            x = _conv(x, widths[stage], 3, f"{prefix}_down", strides=2)
            x = _c2f(x, widths[stage], depths[stage - 1], f"{prefix}_c2f")
        x = _sppf(x, widths[4], "stage4_sppf")
        x = classifier_head(x, include_top=include_top, pooling=pooling, classes=classes,
                            classifier_activation=classifier_activation)
        return load_weights(keras.Model(inputs, x, name=name), weights)

    builder.__name__ = builder.__qualname__ = model_name
    builder.__doc__ = (
        f"CSP-Darknet, scale ``{scale}`` (YOLOv8{scale}'s backbone): stage widths {widths[1:]}, "
        f"{depths} bottlenecks per stage. See the module docstring.")
    return register_model(
        name=model_name,
        family="cspdarknet",
        paper="Wang et al. 2020, CSPNet; in YOLOv8's C2f form (Ultralytics 2023)",
        year=2020,
        default_input_shape=(224, 224, 3),
        min_input_size=1,  # every stride is padded: any input builds
        fixed_input_size=False,
        preprocessing="unit",
        blocks=_BLOCKS,
        default_unfreeze="stage4",
    )(builder)


cspdarknet_n = _make("n")
cspdarknet_s = _make("s")
