"""The detector's loss: task-aligned assignment, a box loss, distribution focal loss and a class
loss against IoU-aware targets.

- **Assignment** (Feng et al. 2021, TOOD): for each true box, the points whose centres lie in
  it are ranked by ``score^alpha * IoU^beta`` (the predicted probability of the box's class and
  the predicted box's overlap with it); the ``top_k`` best become its positives. A point claimed
  by several boxes keeps the one it overlaps most. ``assigner="centre"`` takes instead the
  points within ``radius`` strides of the box's centre (FCOS's centre sampling), so the two can
  be compared by measurement.
- **Class loss**: binary cross-entropy of the class logits against soft targets: a positive's
  target for its box's class is its alignment, normalised so that each box's best point gets
  that point's IoU (so scores rank boxes by quality, as COCO's AP rewards).
- **Box loss**: 1 - CIoU (Zheng et al. 2020) or 1 - GIoU of each positive's box, weighted by
  its target score.
- **DFL** (Li et al. 2020): each side's distribution is pulled onto the two bins around the
  true distance.

The sum ``box_weight * box + cls_weight * cls + dfl_weight * dfl`` is normalised by the sum of
the target scores of the batch (at least 1).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from transfer.tasks.detection import boxes as box_ops
from zoo.detection import REG_MAX

ASSIGNERS = ("tal", "centre")
BOX_LOSSES = ("ciou", "giou")


@keras.saving.register_keras_serializable(package="cnn_zoo")
class DetectionLoss(keras.losses.Loss):
    """y_true ``[B, M, 5]`` rows ``(class, x0, y0, x1, y1)`` in model pixels (class -1:
    padding); y_pred the detector's raw ``[B, N, 4 * reg_max + K]``."""

    def __init__(self, *, assigner: str = "tal", box_loss: str = "ciou", top_k: int = 10,
                 alpha: float = 0.5, beta: float = 6.0, radius: float = 2.5,
                 box_weight: float = 7.5, cls_weight: float = 0.5, dfl_weight: float = 1.5,
                 reg_max: int = REG_MAX, name: str = "detection_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if assigner not in ASSIGNERS:
            raise ValueError(f"assigner must be one of {ASSIGNERS}, got {assigner!r}")
        if box_loss not in BOX_LOSSES:
            raise ValueError(f"box_loss must be one of {BOX_LOSSES}, got {box_loss!r}")
        self.assigner, self.box_loss, self.top_k = assigner, box_loss, int(top_k)
        self.alpha, self.beta, self.radius = float(alpha), float(beta), float(radius)
        self.box_weight, self.cls_weight = float(box_weight), float(cls_weight)
        self.dfl_weight, self.reg_max = float(dfl_weight), int(reg_max)

    def get_config(self):
        return {**super().get_config(), "assigner": self.assigner, "box_loss": self.box_loss,
                "top_k": self.top_k, "alpha": self.alpha, "beta": self.beta,
                "radius": self.radius, "box_weight": self.box_weight,
                "cls_weight": self.cls_weight, "dfl_weight": self.dfl_weight,
                "reg_max": self.reg_max}

    def call(self, y_true, y_pred):
        parts = self.parts(y_true, y_pred)
        total = (self.box_weight * parts["box"] + self.cls_weight * parts["cls"]
                 + self.dfl_weight * parts["dfl"])
        return tf.fill([tf.shape(y_pred)[0]], total)  # one value per image: its mean is it

    def parts(self, y_true, y_pred) -> dict[str, tf.Tensor]:
        """The three terms (before their weights), each normalised."""
        y_true = tf.cast(y_true, tf.float32)
        distance_logits, class_logits = box_ops.split_raw(y_pred, self.reg_max)
        size = box_ops.image_size_of(y_pred)
        centres, strides = box_ops.points(size)
        num_classes = tf.shape(class_logits)[-1]
        pred_boxes = box_ops.distances_to_boxes(box_ops.expected_distances(distance_logits),
                                                centres, strides)  # [B, N, 4]
        scores = tf.sigmoid(class_logits)

        classes = tf.cast(y_true[..., 0], tf.int32)  # [B, M]
        valid = classes >= 0
        true_boxes = y_true[..., 1:]  # [B, M, 4]
        target_boxes, target_scores, positive = self.assign(
            tf.stop_gradient(scores), tf.stop_gradient(pred_boxes), classes, valid, true_boxes,
            centres, strides, num_classes)
        weight = tf.reduce_sum(target_scores, axis=-1)  # [B, N]
        normaliser = tf.maximum(tf.reduce_sum(target_scores), 1.0)

        cls = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(
            labels=target_scores, logits=tf.cast(class_logits, tf.float32))) / normaliser
        overlap = (box_ops.ciou if self.box_loss == "ciou" else box_ops.giou)(pred_boxes,
                                                                              target_boxes)
        box = tf.reduce_sum(tf.where(positive, (1.0 - overlap) * weight, 0.0)) / normaliser
        true_distances = tf.clip_by_value(
            box_ops.boxes_to_distances(target_boxes, centres, strides), 0.0,
            self.reg_max - 1 - 0.01)
        dfl = tf.reduce_sum(tf.where(positive, _dfl(distance_logits, true_distances) * weight,
                                     0.0)) / normaliser
        return {"box": box, "cls": cls, "dfl": dfl}

    def assign(self, scores, pred_boxes, classes, valid, true_boxes, centres, strides,
               num_classes):
        """``(target boxes [B, N, 4], target scores [B, N, K], positive [B, N])``."""
        # [B, M, N]: the point's centre inside the true box (or near its centre)
        cx, cy = centres[None, None, :, 0], centres[None, None, :, 1]
        x0, y0 = true_boxes[..., 0:1], true_boxes[..., 1:2]
        x1, y1 = true_boxes[..., 2:3], true_boxes[..., 3:4]
        inside = (cx > x0) & (cx < x1) & (cy > y0) & (cy < y1)
        if self.assigner == "centre":
            r = self.radius * strides[None, None, :]
            mx, my = (x0 + x1) / 2, (y0 + y1) / 2
            inside &= (tf.abs(cx - mx) < r) & (tf.abs(cy - my) < r)
        inside &= valid[..., None]
        overlaps = tf.where(inside, box_ops.iou(true_boxes[:, :, None, :],
                                                pred_boxes[:, None, :, :]), 0.0)  # [B, M, N]
        class_scores = tf.gather(tf.transpose(scores, [0, 2, 1]), tf.maximum(classes, 0),
                                 batch_dims=1)  # [B, M, N]
        align = tf.where(inside, tf.pow(class_scores, self.alpha)
                         * tf.pow(overlaps, self.beta), 0.0)
        if self.assigner == "tal":
            k = tf.minimum(self.top_k, tf.shape(align)[-1])
            kth = tf.math.top_k(align, k=k).values[..., -1:]
            chosen = inside & (align >= kth) & (align > 0)
        else:
            chosen = inside
        # a point claimed by several boxes keeps the one it overlaps most
        claims = tf.reduce_sum(tf.cast(chosen, tf.int32), axis=1)  # [B, N]
        best = tf.argmax(tf.where(chosen, overlaps, -1.0), axis=1, output_type=tf.int32)
        one = tf.one_hot(best, tf.shape(chosen)[1], axis=1) > 0.5  # [B, M, N]
        chosen = tf.where((claims > 1)[:, None, :], one & chosen, chosen)
        positive = tf.reduce_any(chosen, axis=1)  # [B, N]
        owner = tf.argmax(tf.cast(chosen, tf.int32), axis=1, output_type=tf.int32)  # [B, N]
        target_boxes = tf.gather(true_boxes, owner, batch_dims=1)  # [B, N, 4]
        target_classes = tf.gather(classes, owner, batch_dims=1)  # [B, N]
        # soft targets: alignment normalised per box so its best point scores its best IoU
        align = tf.where(chosen, align, 0.0)
        top_align = tf.reduce_max(align, axis=-1, keepdims=True)
        top_overlap = tf.reduce_max(tf.where(chosen, overlaps, 0.0), axis=-1, keepdims=True)
        quality = tf.reduce_max(align * top_overlap / (top_align + 1e-12), axis=1)
        if self.assigner == "centre":  # no alignment to rank by: the IoU itself
            quality = tf.reduce_max(tf.where(chosen, overlaps, 0.0), axis=1)
        target_scores = (tf.one_hot(target_classes, num_classes)
                         * tf.where(positive, quality, 0.0)[..., None])
        return target_boxes, tf.stop_gradient(target_scores), positive


def _dfl(logits: tf.Tensor, distances: tf.Tensor) -> tf.Tensor:
    """Distribution focal loss per point, ``[B, N]``: the cross-entropy of each side's
    distribution against the two bins around its true distance, weighted by nearness."""
    left = tf.floor(distances)
    right_weight = distances - left
    left_index = tf.cast(left, tf.int32)
    log_p = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)  # [B, N, 4, R]
    left_log = tf.gather(log_p, left_index[..., None], batch_dims=3)[..., 0]
    right_log = tf.gather(log_p, left_index[..., None] + 1, batch_dims=3)[..., 0]
    per_side = -((1.0 - right_weight) * left_log + right_weight * right_log)
    return tf.reduce_mean(per_side, axis=-1)
