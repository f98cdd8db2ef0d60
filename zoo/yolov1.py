"""YOLO v1 (Redmon, Divvala, Girshick and Farhadi, "You only look once: unified, real-time object
detection", CVPR 2016): one network from the whole image to an S x S grid of box predictions."""

from __future__ import annotations

import keras

from zoo._common import load_weights, model_input, pool_features, resolve_input_shape, validate_args
from zoo.errors import InputShapeError, ZooError
from zoo.registry import register_model

#: total downsampling of the network (figure 3): the 7x7/2 convolution, four 2x2/2 max
#: poolings and the 3x3/2 convolution, so 448 pixels give the paper's 7x7 grid
STRIDE = 64

# Figure 3, block by block: (kernel, filters, stride) per convolution; each block but the last
# two ends with a 2x2/2 max pooling. 1 + 1 + 4 + 10 + 6 + 2 = 24 convolutional layers.
BLOCKS: dict[str, list[tuple[int, int, int]]] = {
    "conv1": [(7, 64, 2)],
    "conv2": [(3, 192, 1)],
    "conv3": [(1, 128, 1), (3, 256, 1), (1, 256, 1), (3, 512, 1)],
    "conv4": [(1, 256, 1), (3, 512, 1)] * 4 + [(1, 512, 1), (3, 1024, 1)],
    "conv5": [(1, 512, 1), (3, 1024, 1)] * 2 + [(3, 1024, 1), (3, 1024, 2)],
    "conv6": [(3, 1024, 1), (3, 1024, 1)],
}
POOLED = ("conv1", "conv2", "conv3", "conv4")
#: units of the first fully connected layer
HIDDEN = 4096
#: the slope of the leaky rectified linear activation, section 2.2
LEAKY_SLOPE = 0.1
#: dropout after the first connected layer, section 2.2
DROPOUT = 0.5


def scaled(channels: int, width: float) -> int:
    """``channels`` times ``width``, rounded, at least 1."""
    return max(1, int(round(channels * width)))


def _he_normal() -> keras.initializers.Initializer:
    # He et al. 2015: std sqrt(2 / fan_in) keeps the scale of a signal through rectifiers; a
    # fresh instance per layer, so unseeded values differ.
    return keras.initializers.VarianceScaling(2.0, mode="fan_in",
                                              distribution="untruncated_normal")


def _conv(x, kernel: int, filters: int, stride: int, name: str, batch_norm: bool):
    x = keras.layers.Conv2D(filters, kernel, strides=stride, padding="same",
                            use_bias=not batch_norm, kernel_initializer=_he_normal(),
                            name=f"{name}_conv")(x)
    if batch_norm:
        x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=f"{name}_leaky")(x)


@register_model(
    family="yolo",
    paper="Redmon et al. 2016, You Only Look Once: Unified, Real-Time Object Detection",
    year=2016,
    default_input_shape=(448, 448, 3),
    min_input_size=STRIDE,
    fixed_input_size=False,
    preprocessing="unit",
    blocks=tuple(BLOCKS),
    # The paper pretrains the first 20 convolutions (up to conv5_4) and adds the last four.
    default_unfreeze="conv5",
    task="detection",
    default_classes=20,
)
def yolov1(
    *,
    include_top: bool = True,
    weights: str | None = None,
    input_shape: tuple[int | None, int | None, int] | None = (448, 448, 3),
    pooling: str | None = None,
    classes: int = 20,
    classifier_activation: str | None = None,
    name: str = "yolov1",
    include_preprocessing: bool = True,
    grid: int | None = None,
    boxes_per_cell: int = 2,
    width: float = 1.0,
    batch_norm: bool = False,
) -> keras.Model:
    """YOLO v1's detection network, figure 3 of the paper.

    24 convolutional layers, each followed by a leaky ReLU of slope 0.1, in six blocks:
    ``conv1`` 7x7/2 64 and 2x2/2 max pooling; ``conv2`` 3x3 192 and pooling; ``conv3`` 1x1 128,
    3x3 256, 1x1 256, 3x3 512 and pooling; ``conv4`` four times (1x1 256, 3x3 512), then 1x1
    512, 3x3 1024 and pooling; ``conv5`` twice (1x1 512, 3x3 1024), then 3x3 1024 and 3x3/2
    1024; ``conv6`` two 3x3 1024. Then the top: flatten, the 4096-unit connected layer
    (``fc1``, leaky ReLU, dropout 0.5) and the final linear connected layer (``predictions``)
    of ``S * S * (B * 5 + C)`` units, reshaped (``predictions_grid``) to ``[S, S, B * 5 + C]``.

    Output layout per cell: ``B`` predictors of ``(x, y, sqrt(w), sqrt(h), confidence)``, then
    the ``C`` class probabilities. ``x, y`` are the box centre's offset inside the cell (0..1),
    ``sqrt(w), sqrt(h)`` the square roots of the width and height relative to the image (the
    network predicts the square roots, section 2.2). All linear: the loss regresses these raw
    values (:mod:`transfer.tasks.detection.yolov1_loss`).

    The network downsamples by 64 (:data:`STRIDE`), so the paper's 448x448 input ends on a
    7x7x1024 map and ``grid`` defaults to the input side / 64 (S = 7 at 448; a 128-pixel input
    gives S = 2). The connected layers join every position, so any ``grid`` can be asked for.
    At 448x448, S = 7, B = 2, C = 20 (Pascal VOC): 271,703,550 parameters, 205.5M of them in
    ``fc1``, and 20.29G multiply-accumulates per image.

    Differences from the paper (the first two apply at the defaults):

    - Padding: every convolution uses Keras's ``"same"`` padding; on even inputs the two
      stride-2 convolutions then pad one pixel more at the bottom/right than at the top/left
      (Darknet pads symmetrically). Sizes and parameters are the same.
    - Initialisation: the paper starts from its first 20 convolutions pretrained on ImageNet,
      which the zoo does not ship. From scratch the convolutions and ``fc1`` are He-normal
      (std sqrt(2 / fan_in)), which keeps an image's signal through the 24 leaky layers;
      ``predictions`` is Glorot-uniform; biases are zero.
    - ``batch_norm=True`` adds batch normalisation after every convolution (which then has no
      bias), as YOLO v2 did; the paper has none, so it is off by default.
    - ``width`` scales every channel count, ``fc1``'s 4096 units included (for small tests); 1.0
      is the paper.

    Inputs are raw 0-255 pixels, scaled to [0, 1] by the first layer (mode ``"unit"``, as
    Darknet feeds images).

    Args:
        include_top: include the two connected layers and the grid output; without it the
            model ends at ``conv6`` (``input / 64`` wide, 1024 channels at width 1).
        weights: ``None`` or a path to a weight file.
        input_shape: ``(height, width, 3)``; 448x448 in the paper. With the top it must be
            square and fixed; without it, at least 64x64 or ``None``.
        pooling: ``None``, ``"avg"`` or ``"max"`` over ``conv6`` when ``include_top=False``.
        classes: ``C``, the number of object classes (20 for Pascal VOC).
        classifier_activation: must be ``None``, ``"linear"`` or ``"softmax"``; the output is
            the paper's linear layer whatever it says (``"softmax"`` is the registry's classifier
            default and is accepted so that ``zoo.create_model`` builds this model).
        name: model name.
        include_preprocessing: start with the preprocessing layer (``preprocess_rescaling``),
            so the model takes raw 0-255 pixels; ``False`` gives the bare network.
        grid: ``S``, the side of the output grid; ``None`` gives the input side / 64.
        boxes_per_cell: ``B``, the boxes each cell predicts (2 in the paper).
        width: multiplier of every channel count and of ``fc1``'s units; 1.0 is the paper.
        batch_norm: add batch normalisation after every convolution (not in the paper).

    Raises:
        ZooError: an argument out of range (the message quotes it).
        InputShapeError: an input below 64x64, not 3 channels, or not square and fixed with
            the top.
    """
    validate_args("yolov1", include_top=include_top, weights=weights, classes=classes,
                  pooling=pooling)
    if classifier_activation not in (None, "linear", "softmax"):
        raise ZooError(f"yolov1: the output layer is linear (the paper's); classifier_activation "
                       f"must be None, got {classifier_activation!r}")
    if isinstance(boxes_per_cell, bool) or not isinstance(boxes_per_cell, int) \
            or boxes_per_cell < 1:
        raise ZooError(f"yolov1: boxes_per_cell must be a positive integer, got "
                       f"{boxes_per_cell!r}")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ZooError(f"yolov1: width must be a positive number, got {width!r}")
    shape = resolve_input_shape("yolov1", input_shape, include_top)
    if include_top:
        height, side = shape[0], shape[1]
        if height is None or side is None or height != side:
            raise InputShapeError(f"yolov1: with include_top=True the input must be a fixed "
                                  f"square (448x448 in the paper), got {shape[:2]}")
        grid = side // STRIDE if grid is None else grid
        if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
            raise ZooError(f"yolov1: grid must be a positive integer, got {grid!r}")
    inputs, x = model_input("yolov1", shape, include_preprocessing)
    for block, convs in BLOCKS.items():
        for index, (kernel, filters, stride) in enumerate(convs, start=1):
            layer = block if len(convs) == 1 else f"{block}_{index}"
            x = _conv(x, kernel, scaled(filters, width), stride, layer, batch_norm)
        if block in POOLED:
            x = keras.layers.MaxPooling2D(2, strides=2, name=f"{block}_pool")(x)
    if include_top:
        depth = boxes_per_cell * 5 + classes
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dense(scaled(HIDDEN, width), kernel_initializer=_he_normal(),
                               name="fc1_dense")(x)
        x = keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name="fc1_leaky")(x)
        x = keras.layers.Dropout(DROPOUT, name="fc1_dropout")(x)
        x = keras.layers.Dense(grid * grid * depth, name="predictions")(x)
        x = keras.layers.Reshape((grid, grid, depth), name="predictions_grid")(x)
    else:
        x = pool_features(x, pooling)
    model = keras.Model(inputs, x, name=name)
    return load_weights(model, weights)
