"""Box arithmetic in TensorFlow ops, shared by the loss and the decoding: the detector's raw
outputs to boxes and scores, IoU and CIoU. Boxes are ``x0, y0, x1, y1`` in model-input pixels."""

from __future__ import annotations

import math

import tensorflow as tf

from zoo.detection import REG_MAX, STRIDES, anchor_points

EPS = 1e-7


def points(image_size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """``(centres [N, 2], strides [N])`` of the detector's points at ``image_size``."""
    centres, strides = anchor_points(image_size)
    return tf.constant(centres), tf.constant(strides)


def image_size_of(raw: tf.Tensor) -> int:
    """The square input side whose points the raw outputs hold (N = sum (S / stride)^2)."""
    n = int(raw.shape[1])
    side = round(math.sqrt(n / sum(1 / s ** 2 for s in STRIDES)))
    return side


def split_raw(raw: tf.Tensor, reg_max: int = REG_MAX) -> tuple[tf.Tensor, tf.Tensor]:
    """``(distance logits [B, N, 4, reg_max], class logits [B, N, K])``."""
    raw = tf.cast(raw, tf.float32)
    distances = tf.reshape(raw[..., :4 * reg_max], [tf.shape(raw)[0], -1, 4, reg_max])
    return distances, raw[..., 4 * reg_max:]


def expected_distances(logits: tf.Tensor) -> tf.Tensor:
    """The mean of each side's distribution over ``0 .. reg_max - 1``: ``[..., 4]`` strides."""
    bins = tf.range(tf.shape(logits)[-1], dtype=tf.float32)
    return tf.reduce_sum(tf.nn.softmax(logits, axis=-1) * bins, axis=-1)


def distances_to_boxes(distances: tf.Tensor, centres: tf.Tensor, strides: tf.Tensor) -> tf.Tensor:
    """Left, top, right, bottom distances in strides, ``[B, N, 4]``, to boxes in pixels."""
    d = distances * strides[None, :, None]
    return tf.concat([centres[None] - d[..., :2], centres[None] + d[..., 2:]], axis=-1)


def boxes_to_distances(boxes: tf.Tensor, centres: tf.Tensor, strides: tf.Tensor) -> tf.Tensor:
    """The inverse of :func:`distances_to_boxes`: ``[B, N, 4]`` distances in strides."""
    left_top = (centres[None] - boxes[..., :2]) / strides[None, :, None]
    right_bottom = (boxes[..., 2:] - centres[None]) / strides[None, :, None]
    return tf.concat([left_top, right_bottom], axis=-1)


def iou(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """IoU of boxes ``a`` and ``b`` of broadcastable shapes ``[..., 4]``."""
    inter_wh = tf.maximum(tf.minimum(a[..., 2:], b[..., 2:]) - tf.maximum(a[..., :2], b[..., :2]),
                          0.0)
    inter = inter_wh[..., 0] * inter_wh[..., 1]
    area_a = tf.maximum(a[..., 2] - a[..., 0], 0.0) * tf.maximum(a[..., 3] - a[..., 1], 0.0)
    area_b = tf.maximum(b[..., 2] - b[..., 0], 0.0) * tf.maximum(b[..., 3] - b[..., 1], 0.0)
    return inter / (area_a + area_b - inter + EPS)


def ciou(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Complete IoU (Zheng et al. 2020): IoU less the centres' squared distance over the
    enclosing box's squared diagonal, less the aspect-ratio term."""
    overlap = iou(a, b)
    enclose = tf.maximum(a[..., 2:], b[..., 2:]) - tf.minimum(a[..., :2], b[..., :2])
    diagonal = tf.reduce_sum(tf.square(enclose), axis=-1) + EPS
    centre = (tf.reduce_sum(tf.square((a[..., :2] + a[..., 2:]) - (b[..., :2] + b[..., 2:])),
                            axis=-1) / 4.0)
    wa, ha = a[..., 2] - a[..., 0], a[..., 3] - a[..., 1] + EPS
    wb, hb = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1] + EPS
    v = (4 / math.pi ** 2) * tf.square(tf.atan(wb / hb) - tf.atan(wa / ha))
    alpha = tf.stop_gradient(v / (v - overlap + 1.0 + EPS))
    return overlap - centre / diagonal - alpha * v


def giou(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Generalised IoU (Rezatofighi et al. 2019)."""
    overlap = iou(a, b)
    enclose_wh = tf.maximum(a[..., 2:], b[..., 2:]) - tf.minimum(a[..., :2], b[..., :2])
    enclose = enclose_wh[..., 0] * enclose_wh[..., 1] + EPS
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    inter = overlap * (area_a + area_b) / (1.0 + overlap)
    union = area_a + area_b - inter
    return overlap - (enclose - union) / enclose
