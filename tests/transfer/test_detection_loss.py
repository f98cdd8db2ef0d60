"""The detector's decoding and loss on tensors built by hand: exact boxes back, NMS, padding,
and a loss that rewards the right boxes."""

import numpy as np
import pytest
import tensorflow as tf

from transfer.tasks.detection import boxes as box_ops
from transfer.tasks.detection.decode import decode
from transfer.tasks.detection.loss import DetectionLoss
from zoo.detection import REG_MAX, anchor_points

S, K = 64, 2
CENTRES, STRIDES = anchor_points(S)


def raw_for(boxes_by_point: dict[int, tuple[list[float], int]], *, sure: float = 8.0):
    """Raw outputs ``[1, N, 4 * REG_MAX + K]`` whose decoding puts ``box`` of ``class`` at
    each given point (distances on exact bins), every other point at a low score."""
    n = len(CENTRES)
    raw = np.full((1, n, 4 * REG_MAX + K), -20.0, np.float32)
    raw[0, :, :4 * REG_MAX] = 0.0
    for point, (box, cls) in boxes_by_point.items():
        cx, cy = CENTRES[point]
        stride = STRIDES[point]
        sides = [(cx - box[0]) / stride, (cy - box[1]) / stride, (box[2] - cx) / stride,
                 (box[3] - cy) / stride]
        for side, distance in enumerate(sides):
            assert float(distance).is_integer(), "choose boxes on whole strides"
            logits = np.full(REG_MAX, -30.0, np.float32)
            logits[int(distance)] = 30.0
            raw[0, point, side * REG_MAX:(side + 1) * REG_MAX] = logits
        raw[0, point, 4 * REG_MAX + cls] = sure
    return tf.constant(raw)


def test_decode_returns_the_boxes_it_was_given_padded():
    # point 9 is (12, 12) at stride 8; point 64 is (8, 8) at stride 16
    raw = raw_for({9: ([4, 4, 28, 36], 1), 64: ([8, 8, 40, 24], 0)})
    out = decode(raw, S, conf=0.25, iou=0.45, max_det=5)
    assert int(out["count"][0]) == 2
    np.testing.assert_allclose(out["boxes"][0, :2].numpy(), [[4, 4, 28, 36], [8, 8, 40, 24]],
                               atol=1e-3)
    assert out["classes"][0].numpy().tolist() == [1, 0, -1, -1, -1]
    np.testing.assert_allclose(out["scores"][0, 2:].numpy(), 0.0)
    assert out["boxes"].shape == (1, 5, 4)


def test_nms_keeps_the_best_of_a_class_and_spares_other_classes():
    same = {9: ([4, 4, 28, 36], 1), 10: ([4, 4, 28, 36], 1)}  # a duplicate, a bit less sure
    raw = raw_for(same).numpy()
    raw[0, 10, 4 * REG_MAX + 1] = 4.0
    out = decode(tf.constant(raw), S, conf=0.25, iou=0.45, max_det=5)
    assert int(out["count"][0]) == 1 and float(out["scores"][0, 0]) == pytest.approx(
        1 / (1 + np.exp(-8.0)), rel=1e-5)
    raw[0, 10, 4 * REG_MAX + 1] = -20.0
    raw[0, 10, 4 * REG_MAX + 0] = 4.0  # the same box, another class: kept
    out = decode(tf.constant(raw), S, conf=0.25, iou=0.45, max_det=5)
    assert int(out["count"][0]) == 2
    out = decode(tf.constant(raw), S, conf=0.99999, iou=0.45, max_det=5)  # conf filters
    assert int(out["count"][0]) == 0 and out["classes"][0, 0] == -1


def test_distances_and_boxes_invert_each_other():
    centres, strides = box_ops.points(S)
    boxes = tf.constant(np.tile([[[3.0, 5.0, 40.0, 50.0]]], (1, len(CENTRES), 1)), tf.float32)
    back = box_ops.distances_to_boxes(box_ops.boxes_to_distances(boxes, centres, strides),
                                      centres, strides)
    np.testing.assert_allclose(back.numpy(), boxes.numpy(), atol=1e-4)
    assert box_ops.image_size_of(tf.zeros([1, len(CENTRES), 70])) == S


def test_iou_ciou_and_giou_on_known_boxes():
    a = tf.constant([0.0, 0.0, 10.0, 10.0])
    b = tf.constant([5.0, 0.0, 15.0, 10.0])
    assert float(box_ops.iou(a, b)) == pytest.approx(50 / 150, rel=1e-5)
    assert float(box_ops.iou(a, a)) == pytest.approx(1.0, rel=1e-5)
    assert float(box_ops.ciou(a, a)) == pytest.approx(1.0, abs=1e-5)
    # GIoU: enclosing box 15 x 10 = 150 = the union: GIoU = IoU
    assert float(box_ops.giou(a, b)) == pytest.approx(50 / 150, rel=1e-4)
    far = tf.constant([20.0, 0.0, 30.0, 10.0])  # enclosing 300, union 200
    assert float(box_ops.giou(a, far)) == pytest.approx(0 - 100 / 300, rel=1e-4)


def targets(rows):
    out = np.zeros((1, 3, 5), np.float32)
    out[..., 0] = -1
    out[0, :len(rows)] = rows
    return tf.constant(out)


@pytest.mark.parametrize("assigner, box_loss", [("tal", "ciou"), ("centre", "giou")])
def test_the_right_boxes_cost_less_than_wrong_ones(assigner, box_loss):
    loss = DetectionLoss(assigner=assigner, box_loss=box_loss)
    truth = targets([[1, 4, 4, 28, 36]])
    # every point inside the box predicts it exactly
    inside = [i for i, (x, y) in enumerate(CENTRES) if 4 < x < 28 and 4 < y < 36]
    right = raw_for({i: ([4, 4, 28, 36], 1) for i in inside
                     if all(float(v).is_integer() for v in
                            ((CENTRES[i][0] - 4) / STRIDES[i], (CENTRES[i][1] - 4) / STRIDES[i],
                             (28 - CENTRES[i][0]) / STRIDES[i],
                             (36 - CENTRES[i][1]) / STRIDES[i]))})
    wrong_class = raw_for({i: ([4, 4, 28, 36], 0) for i in (9,)})
    good, bad = loss.parts(truth, right), loss.parts(truth, wrong_class)
    assert float(good["box"]) < 0.05 and float(good["dfl"]) < 0.05
    assert float(good["cls"]) < float(bad["cls"])
    total_good = float(tf.reduce_mean(loss(truth, right)))
    total_bad = float(tf.reduce_mean(loss(truth, wrong_class)))
    assert 0 < total_good < total_bad


def test_images_without_boxes_train_the_classes_only_and_stay_finite():
    loss = DetectionLoss()
    raw = tf.Variable(tf.random.stateless_normal([2, len(CENTRES), 4 * REG_MAX + K], [1, 2]))
    with tf.GradientTape() as tape:
        parts = loss.parts(tf.constant(np.full((2, 1, 5), [-1, 0, 0, 0, 0], np.float32)), raw)
        total = tf.reduce_mean(loss(tf.constant(np.full((2, 1, 5), [-1, 0, 0, 0, 0],
                                                        np.float32)), raw))
    assert float(parts["box"]) == 0.0 and float(parts["dfl"]) == 0.0
    assert np.isfinite(float(parts["cls"])) and float(parts["cls"]) > 0
    gradient = tape.gradient(total, raw)
    assert np.isfinite(gradient.numpy()).all()
    assert np.abs(gradient.numpy()[..., :4 * REG_MAX]).max() == 0.0  # no box, no box gradient


def test_the_loss_round_trips_through_keras_serialisation():
    import keras

    loss = DetectionLoss(assigner="centre", box_loss="giou", top_k=7)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(again, DetectionLoss)
    assert (again.assigner, again.box_loss, again.top_k) == ("centre", "giou", 7)


def assign(loss, *, centres, scores, pred_boxes, rows, classes=2):
    """Run the assigner on one image of hand-placed points, all at stride 8."""
    rows = np.asarray(rows, np.float32)
    boxes, target, positive = loss.assign(
        tf.constant([scores], tf.float32), tf.constant([pred_boxes], tf.float32),
        tf.constant([rows[:, 0].astype(np.int32)]), tf.constant([rows[:, 0] >= 0]),
        tf.constant([rows[:, 1:]]), tf.constant(centres, tf.float32),
        tf.constant([8.0] * len(centres)), classes)
    return boxes[0].numpy(), target[0].numpy(), positive[0].numpy()


BOX = [0.0, 0.0, 24.0, 16.0]  # 384 px^2
CENTRES_6 = [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [40, 40]]  # the last is outside


def test_task_aligned_assignment_takes_the_top_k_inside_and_scores_them_by_quality():
    # class-1 scores and predicted boxes (IoU with BOX: 1, 1/2, 1/2, 1, 1/4, 1)
    scores = [[0.0, s] for s in (0.9, 0.4, 0.1, 0.6, 0.8, 0.99)]
    pred = [BOX, [0, 0, 24, 8], [0, 0, 12, 16], BOX, [6, 4, 18, 12], BOX]
    # alignment s^0.5 * IoU^6: 0.949, 0.0099, 0.0049, 0.775, 0.0002; the outside point none
    boxes, target, positive = assign(DetectionLoss(top_k=2), centres=CENTRES_6, scores=scores,
                                     pred_boxes=pred, rows=[[1, *BOX], [-1, 0, 0, 64, 64]])
    assert positive.tolist() == [True, False, False, True, False, False]
    np.testing.assert_allclose(boxes[[0, 3]], [BOX, BOX])
    # the best point's target is its IoU (1); the next is scaled by alignment: sqrt(0.6 / 0.9)
    np.testing.assert_allclose(target[:, 1], [1.0, 0, 0, np.sqrt(0.6 / 0.9), 0, 0], rtol=1e-5)
    np.testing.assert_array_equal(target[:, 0], 0.0)
    # top_k 4 takes the two weak points as well, and still not the one outside the box
    _, target, positive = assign(DetectionLoss(top_k=4), centres=CENTRES_6, scores=scores,
                                 pred_boxes=pred, rows=[[1, *BOX]])
    assert positive.tolist() == [True, True, True, True, False, False]
    np.testing.assert_allclose(target[1, 1], np.sqrt(0.4 / 0.9) / 64, rtol=1e-5)


def test_a_point_inside_two_boxes_keeps_the_one_its_box_overlaps_most():
    tall = [0.0, 0.0, 16.0, 24.0]  # overlaps BOX by 256 of 512: IoU 1/2
    centres = [[4, 4], [12, 12]]  # both inside both boxes
    pred = [BOX, tall]
    _, target, positive = assign(DetectionLoss(top_k=10), centres=centres,
                                 scores=[[0.5, 0.5]] * 2, pred_boxes=pred,
                                 rows=[[0, *BOX], [1, *tall]])
    assert positive.tolist() == [True, True]
    # point 0 predicts BOX (class 0), point 1 the tall box (class 1): each is its owner's best
    np.testing.assert_allclose(target, [[1.0, 0.0], [0.0, 1.0]], rtol=1e-5)


def test_centre_sampling_takes_the_points_near_the_centre_scored_by_their_iou():
    wide = [0.0, 0.0, 100.0, 16.0]  # centre (50, 8); 2.5 strides = 20 px
    centres = [[4, 4], [36, 4], [44, 12], [60, 4], [76, 12], [92, 4]]
    pred = [wide, wide, [0, 0, 50, 16], wide, wide, wide]
    boxes, target, positive = assign(DetectionLoss(assigner="centre"), centres=centres,
                                     scores=[[0.0, 0.0]] * 6, pred_boxes=pred,
                                     rows=[[1, *wide]])
    assert positive.tolist() == [False, True, True, True, False, False]
    np.testing.assert_allclose(target[:, 1], [0, 1.0, 0.5, 1.0, 0, 0], rtol=1e-5)
    np.testing.assert_allclose(boxes[1:4], [wide] * 3)
