"""An anchor-free object detector on any registry backbone.

The model is four parts of one Keras model:

- ``encoder``: the registry backbone cut at its stride 8, 16 and 32 taps (:mod:`zoo.taps`), the
  nested sub-model that segmenters use too (:func:`zoo.segmentation.tapped_encoder`), so
  freezing, fine-tuning and the feature cache find it the same way.
- the neck, layers named ``neck_*``: a feature pyramid's top-down path (Lin et al. 2017, the
  segmenters' own :func:`~zoo.segmentation.fpn_top_down`), then a bottom-up path (Liu et al.
  2018, "Path aggregation network"), at one width.
- the head, layers named ``head_p{level}_*``: per level a decoupled box branch and class branch
  (Ge et al. 2021, YOLOX), each two 3x3 convolution-BN-SiLU, then a 1x1 convolution to the box
  distribution and one to the class logits.
- ``predictions``: every level's points in one tensor ``[batch, N, 4 * reg_max + classes]``,
  stride 8 first, each level row-major. Per point: the logits of the distribution of the
  distances from its centre to the box's left, top, right and bottom edges, in strides, over
  ``0 .. reg_max - 1`` (Li et al. 2020, "Generalized focal loss"), then the class logits.

The class logits start at the prior 0.01 (Lin et al. 2017, "Focal loss"), so the first steps are
not swamped by the background points. :mod:`transfer.tasks.detection` decodes the outputs,
suppresses overlaps and trains the model.
"""

from __future__ import annotations

import math

import keras

from zoo.errors import ZooError
from zoo.segmentation import _check_shape, fpn_top_down, tapped_encoder
from zoo.taps import get_taps

#: the strides of the detector's three levels (P3, P4, P5)
STRIDES = (8, 16, 32)
#: bins of each distance's distribution: distances 0 .. REG_MAX - 1 strides
REG_MAX = 16
#: the class logits' initial probability
PRIOR = 0.01
DEFAULT_NECK_WIDTH = 96


def build_detector(*, backbone: str, classes: int, input_shape: tuple[int, int, int] | None = None,
                   encoder_weights: str | None = None, neck_width: int | None = None,
                   reg_max: int = REG_MAX, name: str | None = None) -> keras.Model:
    """An anchor-free detector on registry backbone ``backbone``.

    Args:
        backbone: registry name of a classification backbone with stride 8, 16 and 32 taps.
        classes: number of object classes.
        input_shape: ``(height, width, 3)``, multiples of 32; default the backbone's own.
        encoder_weights: the backbone's ``weights`` (``None``, ``"imagenet"`` or a file).
        neck_width: channels of the neck and the head (default 96).
        reg_max: bins of each distance's distribution.
        name: model name; default ``"detector_{backbone}"``.

    Returns:
        A model from raw 0-255 images to ``[batch, N, 4 * reg_max + classes]`` float32 raw
        outputs (the module docstring says their layout).

    Raises:
        UnknownModelError: an unregistered backbone.
        ZooError: a backbone without the taps, or bad ``classes``, ``neck_width`` or
            ``reg_max``.
        InputShapeError: a size that is not a multiple of 32.
    """
    for value, what in ((classes, "classes"), (reg_max, "reg_max"),
                        (neck_width or DEFAULT_NECK_WIDTH, "neck_width")):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ZooError(f"{what} must be a positive integer, got {value!r}")
    width = neck_width or DEFAULT_NECK_WIDTH
    taps = get_taps(backbone)
    for stride in STRIDES:
        taps.layer(stride)  # a backbone without the map says so, naming itself
    shape = _check_shape(backbone, input_shape)
    inputs, features = tapped_encoder(backbone, taps, STRIDES, shape, encoder_weights)

    top_down = fpn_top_down(features, STRIDES, width, "neck")
    levels = {stride: int(math.log2(stride)) for stride in STRIDES}
    smoothed = {s: _conv_bn_silu(top_down[s], width, 3, f"neck_p{levels[s]}_smooth")
                for s in STRIDES}
    outputs, below = {}, None
    for stride in STRIDES:  # bottom-up: each level takes the one below, downsampled
        x = smoothed[stride]
        if below is not None:
            down = _conv_bn_silu(below, width, 3, f"neck_n{levels[stride]}_down", strides=2)
            x = keras.layers.Add(name=f"neck_n{levels[stride]}_add")([x, down])
            x = _conv_bn_silu(x, width, 3, f"neck_n{levels[stride]}_fuse")
        outputs[stride] = below = x

    prior = -math.log((1 - PRIOR) / PRIOR)
    points = []
    for stride in STRIDES:
        level = levels[stride]
        box = outputs[stride]
        cls = outputs[stride]
        for i in (1, 2):
            box = _conv_bn_silu(box, width, 3, f"head_p{level}_box{i}")
            cls = _conv_bn_silu(cls, width, 3, f"head_p{level}_cls{i}")
        box = keras.layers.Conv2D(4 * reg_max, 1, name=f"head_p{level}_box",
                                  bias_initializer="ones")(box)
        cls = keras.layers.Conv2D(classes, 1, name=f"head_p{level}_cls",
                                  bias_initializer=keras.initializers.Constant(prior))(cls)
        x = keras.layers.Concatenate(name=f"head_p{level}_concat")([box, cls])
        points.append(keras.layers.Reshape((-1, 4 * reg_max + classes),
                                           name=f"head_p{level}_points")(x))
    x = keras.layers.Concatenate(axis=1, name="head_levels")(points)
    outputs = keras.layers.Activation("linear", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name or f"detector_{backbone}")


def points_per_image(image_size: int) -> int:
    """N, the points of a square input of side ``image_size``."""
    return sum((image_size // stride) ** 2 for stride in STRIDES)


def anchor_points(image_size: int):
    """``(centres [N, 2] (x, y) in pixels, strides [N])`` of a square input, in the order of
    the model's outputs; NumPy float32 arrays."""
    import numpy as np

    centres, strides = [], []
    for stride in STRIDES:
        n = image_size // stride
        ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        centres.append(np.stack([xs.ravel(), ys.ravel()], axis=-1) * stride + stride / 2)
        strides.append(np.full(n * n, stride))
    return (np.concatenate(centres).astype(np.float32),
            np.concatenate(strides).astype(np.float32))


def _conv_bn_silu(x, filters: int, kernel: int, name: str, strides: int = 1):
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                            name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(momentum=0.97, epsilon=1e-3, name=f"{name}_bn")(x)
    return keras.layers.Activation("silu", name=f"{name}_silu")(x)
