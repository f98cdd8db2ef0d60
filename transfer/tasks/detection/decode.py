"""The detector's raw outputs to at most ``max_det`` boxes per image: each point's best class,
a score threshold, and class-aware non-maximum suppression. TensorFlow ops only, so evaluation,
``zoo predict``, the SavedModel and the TFLite file (whose converter maps the NMS onto LiteRT's
own ``NON_MAX_SUPPRESSION_V5``) run the same step."""

from __future__ import annotations

import tensorflow as tf

from transfer.tasks.detection import boxes as box_ops


def decode(raw: tf.Tensor, image_size: int, *, conf: float = 0.25, iou: float = 0.45,
           max_det: int = 300) -> dict[str, tf.Tensor]:
    """``boxes`` float32 ``[B, max_det, 4]`` (x0, y0, x1, y1 in model-input pixels, clipped to
    the input), ``scores`` ``[B, max_det]`` (0 where padded), ``classes`` int32
    ``[B, max_det]`` (-1 where padded) and ``count`` int32 ``[B]``, best score first."""
    distances, logits = box_ops.split_raw(raw)
    centres, strides = box_ops.points(image_size)
    boxes = box_ops.distances_to_boxes(box_ops.expected_distances(distances), centres, strides)
    boxes = tf.clip_by_value(boxes, 0.0, float(image_size))
    probabilities = tf.sigmoid(logits)
    scores = tf.reduce_max(probabilities, axis=-1)
    classes = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
    return nms(boxes, scores, classes, conf=conf, iou=iou, max_det=max_det,
               offset=2.0 * image_size)


def nms(boxes: tf.Tensor, scores: tf.Tensor, classes: tf.Tensor, *, conf: float, iou: float,
        max_det: int, offset: float) -> dict[str, tf.Tensor]:
    """Class-aware NMS per image: each class's boxes are shifted by ``class * offset`` so that
    boxes of different classes never overlap, then one NMS (``offset`` > the input's side)."""

    def one(args):
        b, s, c = args
        shifted = b + tf.cast(c, tf.float32)[:, None] * offset
        # Padded to max_det with its count beside, as LiteRT's NON_MAX_SUPPRESSION_V5 always
        # pads: the count is the op's own, never the padded length.
        keep, kept_scores, count = tf.raw_ops.NonMaxSuppressionV5(
            boxes=shifted, scores=s, max_output_size=max_det, iou_threshold=iou,
            score_threshold=conf, soft_nms_sigma=0.0, pad_to_max_output_size=True)
        valid = tf.range(max_det) < count
        out_boxes = tf.where(valid[:, None], tf.gather(b, keep), 0.0)
        out_scores = tf.where(valid, kept_scores, 0.0)
        out_classes = tf.where(valid, tf.gather(c, keep), -1)
        return out_boxes, out_scores, out_classes, count

    if boxes.shape[0] is not None:
        # A batch of known size (the TFLite file's 1) unrolled: no While loop in the graph,
        # which TensorFlow's int8 calibrator crashes on (a segmentation fault).
        each = [one((boxes[i], scores[i], classes[i])) for i in range(boxes.shape[0])]
        out_boxes, out_scores, out_classes, count = (tf.stack(parts) for parts in zip(*each))
    else:
        out_boxes, out_scores, out_classes, count = tf.map_fn(
            one, (boxes, scores, classes),
            fn_output_signature=(tf.TensorSpec([max_det, 4], tf.float32),
                                 tf.TensorSpec([max_det], tf.float32),
                                 tf.TensorSpec([max_det], tf.int32),
                                 tf.TensorSpec([], tf.int32)))
    return {"boxes": out_boxes, "scores": out_scores, "classes": out_classes, "count": count}
