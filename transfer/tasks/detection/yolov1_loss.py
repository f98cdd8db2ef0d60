"""YOLO v1's training loss and test-time decoding (Redmon et al. 2016, "You Only Look Once",
sections 2 and 2.2), for :func:`zoo.yolov1.yolov1`'s output.

The network's output is ``[batch, S, S, B * 5 + C]``: per cell, ``B`` predictors of
``(x, y, sqrt(w), sqrt(h), confidence)`` then ``C`` class probabilities, all linear. ``x, y``
are the box centre's offset inside its cell (0..1); ``sqrt(w), sqrt(h)`` the square roots of
the box's width and height as fractions of the image (the network predicts the square roots, so
that an error costs more in a small box than in a large one); the confidence regresses
``Pr(Object) * IoU(predicted box, truth)``; the class probabilities are ``Pr(class | Object)``.

Targets are the detection task's ``[batch, M, 5]`` rows ``(class, x0, y0, x1, y1)`` in
model-input pixels, class ``-1`` for padding. :func:`encode_yolov1` puts them on the grid: the
cell that holds a box's centre is responsible for it. YOLO v1 detects one object per cell; when
several centres fall in one cell, the first of them in the row order is kept (the others cost
nothing), the data loader's rule in Darknet. Everything is vectorised: no Python loop over boxes
or cells, so the loss runs inside a compiled training step.

TensorFlow ops only: :func:`decode_yolov1` runs unchanged in evaluation, prediction and a
SavedModel.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from transfer.errors import ConfigError, DataError
from transfer.tasks.detection.decode import nms

#: the paper's weights of the localisation error and of the confidence of cells without objects
LAMBDA_COORD = 5.0
LAMBDA_NOOBJ = 0.5
#: values per predictor: x, y, sqrt(w), sqrt(h), confidence
BOX_VALUES = 5


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}")
    return value


def grid_layout(depth: int, boxes_per_cell: int) -> int:
    """``C``, the classes of an output of ``depth`` values per cell with ``boxes_per_cell``
    predictors, checked."""
    classes = depth - BOX_VALUES * boxes_per_cell
    if classes < 1:
        raise ConfigError(f"a YOLO v1 output of {depth} values per cell cannot hold "
                          f"{boxes_per_cell} boxes of 5 values and at least one class; check "
                          f"boxes_per_cell")
    return classes


def encode_yolov1(targets, image_size: int, grid: int, classes: int) -> dict[str, tf.Tensor]:
    """The detection task's targets on YOLO v1's grid.

    Args:
        targets: ``[batch, M, 5]`` rows ``(class, x0, y0, x1, y1)`` in model-input pixels,
            class ``-1`` for padding.
        image_size: the side of the (square) model input, in pixels.
        grid: ``S``.
        classes: ``C``.

    Returns:
        ``"object"`` ``[batch, S, S]``: 1 in each cell that holds a box's centre;
        ``"boxes"`` ``[batch, S, S, 4]``: that box's ``(x, y, w, h)``, the centre's offset in the
        cell and the size as fractions of the image; ``"corners"`` ``[batch, S, S, 4]``: its
        ``(x0, y0, x1, y1)`` as fractions of the image; ``"classes"`` ``[batch, S, S, C]``: its
        class one-hot. All 0 in the other cells. A cell is row-major: ``[:, i, j]`` is row ``i``
        (y), column ``j`` (x).
    """
    targets = tf.convert_to_tensor(targets, tf.float32)
    if targets.shape.rank != 3 or targets.shape[-1] != 5:
        raise DataError(f"YOLO v1 targets must be [batch, boxes, 5] rows (class, x0, y0, x1, y1),"
                        f" got shape {targets.shape}")
    size = float(image_size)
    labels = tf.cast(tf.round(targets[..., 0]), tf.int32)
    corners = targets[..., 1:5] / size
    x0, y0, x1, y1 = tf.unstack(corners, axis=-1)
    centre_x, centre_y = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    width, height = tf.maximum(x1 - x0, 0.0), tf.maximum(y1 - y0, 0.0)
    column = tf.clip_by_value(tf.floor(centre_x * grid), 0.0, grid - 1.0)
    row = tf.clip_by_value(tf.floor(centre_y * grid), 0.0, grid - 1.0)
    cell = tf.cast(row, tf.int32) * grid + tf.cast(column, tf.int32)
    valid = tf.cast(labels >= 0, tf.float32)
    in_cell = tf.one_hot(cell, grid * grid) * valid[..., None]  # [batch, M, S*S]
    # The first box of each cell: the running count of boxes in that cell is 1 at it.
    first = in_cell * tf.cast(tf.equal(tf.cumsum(in_cell, axis=1), 1.0), tf.float32)
    features = tf.concat([
        tf.stack([centre_x * grid - column, centre_y * grid - row, width, height], axis=-1),
        corners,
        tf.one_hot(tf.maximum(labels, 0), classes) * valid[..., None],
    ], axis=-1)  # [batch, M, 8 + C]
    per_cell = tf.einsum("bmc,bmf->bcf", first, features)
    per_cell = tf.reshape(per_cell, [-1, grid, grid, 8 + classes])
    return {
        "object": tf.reshape(tf.reduce_sum(first, axis=1), [-1, grid, grid]),
        "boxes": per_cell[..., 0:4],
        "corners": per_cell[..., 4:8],
        "classes": per_cell[..., 8:],
    }


def _split(raw: tf.Tensor, boxes_per_cell: int) -> tuple[tf.Tensor, tf.Tensor]:
    """``[batch, S, S, B, 5]`` predictors and ``[batch, S, S, C]`` class probabilities."""
    grid = raw.shape[1]
    predictors = tf.reshape(raw[..., :BOX_VALUES * boxes_per_cell],
                            [-1, grid, grid, boxes_per_cell, BOX_VALUES])
    return predictors, raw[..., BOX_VALUES * boxes_per_cell:]


def predicted_corners(predictors: tf.Tensor) -> tf.Tensor:
    """``(x0, y0, x1, y1)`` as fractions of the image of ``[batch, S, S, B, 5]`` predictors:
    centre ``((j + x) / S, (i + y) / S)`` in cell ``(i, j)``, size ``sqrt(w)**2, sqrt(h)**2``."""
    grid = predictors.shape[1]
    steps = tf.range(grid, dtype=predictors.dtype)
    centre_x = (steps[None, None, :, None] + predictors[..., 0]) / grid
    centre_y = (steps[None, :, None, None] + predictors[..., 1]) / grid
    half_w, half_h = tf.square(predictors[..., 2]) / 2.0, tf.square(predictors[..., 3]) / 2.0
    return tf.stack([centre_x - half_w, centre_y - half_h, centre_x + half_w,
                     centre_y + half_h], axis=-1)


def box_iou(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Intersection over union of ``(x0, y0, x1, y1)`` boxes, broadcast over leading axes; 0
    where the union is empty."""
    lo = tf.maximum(a[..., :2], b[..., :2])
    hi = tf.minimum(a[..., 2:], b[..., 2:])
    intersection = tf.reduce_prod(tf.maximum(hi - lo, 0.0), axis=-1)
    area_a = tf.reduce_prod(tf.maximum(a[..., 2:] - a[..., :2], 0.0), axis=-1)
    area_b = tf.reduce_prod(tf.maximum(b[..., 2:] - b[..., :2], 0.0), axis=-1)
    return tf.math.divide_no_nan(intersection, area_a + area_b - intersection)


@keras.saving.register_keras_serializable(package="transfer")
class YOLOv1Loss(keras.losses.Loss):
    """The sum-squared error of section 2.2, per image:

    ``lambda_coord * sum 1obj_ij [(x - x^)^2 + (y - y^)^2]``
    ``+ lambda_coord * sum 1obj_ij [(sqrt w - sqrt w^)^2 + (sqrt h - sqrt h^)^2]``
    ``+ sum 1obj_ij (C - C^)^2 + lambda_noobj * sum 1noobj_ij (C - C^)^2``
    ``+ sum 1obj_i sum_c (p(c) - p^(c))^2``

    ``1obj_i``: a box's centre falls in cell ``i`` (:func:`encode_yolov1`); ``1obj_ij``:
    predictor ``j`` of that cell is responsible for the box, being the one whose predicted box
    has the highest IoU with it (the first on ties); ``1noobj_ij`` every other predictor, those
    of object cells included. The target confidence ``C^`` of a responsible predictor is that
    IoU (held constant: no gradient flows through the target), 0 elsewhere. Classification
    error counts only in object cells, coordinate error only for responsible predictors.

    The value is the sum over cells and predictors of one image; Keras's default reduction then
    averages over the batch.

    Args:
        image_size: the side of the square model input in pixels (448 in the paper); the
            targets are in its pixels.
        boxes_per_cell: ``B`` (2 in the paper); ``C`` and ``S`` are read from the predictions.
        lambda_coord: weight of the localisation error (5).
        lambda_noobj: weight of the confidence error of predictors without an object (0.5).
        name, reduction, dtype: Keras's.
    """

    def __init__(self, image_size: int, *, boxes_per_cell: int = 2,
                 lambda_coord: float = LAMBDA_COORD, lambda_noobj: float = LAMBDA_NOOBJ,
                 name: str = "yolov1_loss", reduction: str = "sum_over_batch_size",
                 dtype: str | None = None) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.image_size = _positive_int(image_size, "image_size")
        self.boxes_per_cell = _positive_int(boxes_per_cell, "boxes_per_cell")
        self.lambda_coord = float(lambda_coord)
        self.lambda_noobj = float(lambda_noobj)

    def components(self, y_true, y_pred) -> dict[str, tf.Tensor]:
        """The five terms of the loss, each ``[batch]``, weights applied: ``"xy"``, ``"wh"``,
        ``"object"`` (confidence of responsible predictors), ``"noobject"`` and ``"class"``."""
        y_pred = tf.cast(y_pred, tf.float32)
        if y_pred.shape.rank != 4 or y_pred.shape[1] != y_pred.shape[2] \
                or y_pred.shape[1] is None or y_pred.shape[-1] is None:
            raise ConfigError(f"YOLO v1 predictions must be [batch, S, S, B * 5 + C] with static "
                              f"S and depth, got shape {y_pred.shape}")
        grid, depth = y_pred.shape[1], y_pred.shape[-1]
        classes = grid_layout(depth, self.boxes_per_cell)
        truth = encode_yolov1(y_true, self.image_size, grid, classes)
        predictors, probabilities = _split(y_pred, self.boxes_per_cell)

        iou = tf.stop_gradient(box_iou(predicted_corners(predictors),
                                       truth["corners"][..., None, :]))  # [batch, S, S, B]
        responsible = tf.one_hot(tf.argmax(iou, axis=-1), self.boxes_per_cell) \
            * truth["object"][..., None]
        boxes = truth["boxes"][..., None, :]
        xy = tf.reduce_sum(tf.square(predictors[..., 0:2] - boxes[..., 0:2]), axis=-1)
        wh = tf.reduce_sum(tf.square(predictors[..., 2:4] - tf.sqrt(boxes[..., 2:4])), axis=-1)
        confidence = predictors[..., 4]
        per_image = lambda x: tf.reduce_sum(x, axis=[1, 2, 3])  # noqa: E731
        class_error = tf.reduce_sum(tf.square(probabilities - truth["classes"]), axis=-1)
        return {
            "xy": self.lambda_coord * per_image(responsible * xy),
            "wh": self.lambda_coord * per_image(responsible * wh),
            "object": per_image(responsible * tf.square(confidence - iou)),
            "noobject": self.lambda_noobj * per_image((1.0 - responsible)
                                                      * tf.square(confidence)),
            "class": tf.reduce_sum(truth["object"] * class_error, axis=[1, 2]),
        }

    def call(self, y_true, y_pred):
        return tf.add_n(list(self.components(y_true, y_pred).values()))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(image_size=self.image_size, boxes_per_cell=self.boxes_per_cell,
                      lambda_coord=self.lambda_coord, lambda_noobj=self.lambda_noobj)
        return config


def decode_yolov1(raw, image_size: int, *, conf: float = 0.25, iou: float = 0.45,
                  max_det: int = 300, boxes_per_cell: int = 2) -> dict[str, tf.Tensor]:
    """YOLO v1's output to at most ``max_det`` detections per image (the paper's test time).

    Each of the ``S * S * B`` predicted boxes gets a class-specific confidence per class,
    ``Pr(class | Object) * confidence`` (both clipped to [0, 1]: the network's outputs are
    linear regressions of probabilities); pairs of box and class scoring above ``conf`` go
    through non-maximum suppression within their class (IoU above ``iou`` suppresses), best
    first. A box may so be kept for more than one class.

    Args:
        raw: ``[batch, S, S, B * 5 + C]``, the network's output.
        image_size: side of the square model input, pixels.
        conf: lowest class-specific confidence kept.
        iou: IoU above which a lower-scoring box of the same class is suppressed.
        max_det: detections per image, the outputs' padded length.
        boxes_per_cell: ``B``.

    Returns:
        ``"boxes"`` float32 ``[batch, max_det, 4]`` (x0, y0, x1, y1 in model-input pixels,
        clipped to the input), ``"scores"`` float32 ``[batch, max_det]`` (0 where padded),
        ``"classes"`` int32 ``[batch, max_det]`` (-1 where padded), ``"count"`` int32
        ``[batch]``.
    """
    raw = tf.cast(tf.convert_to_tensor(raw), tf.float32)
    if raw.shape.rank != 4 or raw.shape[1] is None or raw.shape[-1] is None:
        raise ConfigError(f"YOLO v1 output must be [batch, S, S, B * 5 + C] with static S and "
                          f"depth, got shape {raw.shape}")
    boxes_per_cell = _positive_int(boxes_per_cell, "boxes_per_cell")
    max_det = _positive_int(max_det, "max_det")
    grid, depth = raw.shape[1], raw.shape[-1]
    classes = grid_layout(depth, boxes_per_cell)
    predictors, probabilities = _split(raw, boxes_per_cell)
    size = float(image_size)
    corners = tf.clip_by_value(predicted_corners(predictors) * size, 0.0, size)
    scores = (tf.clip_by_value(predictors[..., 4:5], 0.0, 1.0)
              * tf.clip_by_value(probabilities, 0.0, 1.0)[..., None, :])  # [batch, S, S, B, C]
    candidates = grid * grid * boxes_per_cell
    # Every (box, class) pair is a candidate, and NMS runs per class (the shared class-aware NMS,
    # whose LiteRT op is a builtin; combined_non_max_suppression would need Flex ops).
    corners = tf.repeat(tf.reshape(corners, [-1, candidates, 4]), classes, axis=1)
    labels = tf.tile(tf.range(classes, dtype=tf.int32), [candidates])
    return nms(corners, tf.reshape(scores, [-1, candidates * classes]),
               tf.broadcast_to(labels, tf.shape(corners)[:2]), conf=conf, iou=iou,
               max_det=max_det, offset=2.0 * size)
