"""YOLO v1's loss and decode (Redmon et al. 2016, section 2.2) on hand-made grids, and a tiny
network that overfits one image."""

from __future__ import annotations

import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from transfer.errors import ConfigError, DataError
from transfer.tasks.detection.yolov1_loss import YOLOv1Loss, decode_yolov1, encode_yolov1
from zoo.yolov1 import yolov1

SIZE, S, B, C = 128, 2, 2, 3  # 128 pixels at stride 64: a 2x2 grid of 64-pixel cells
DEPTH = B * 5 + C
PAD = [-1, 0, 0, 0, 0]
# Two boxes, a third whose centre falls in the first one's cell (dropped: one object per cell)
# and a padding row.
TARGETS = np.array([[[0, 10, 12, 50, 60],      # centre (30, 36): cell row 0, column 0
                     [2, 70, 64, 120, 110],    # centre (95, 87): cell row 1, column 1
                     [1, 20, 20, 40, 40],      # centre (30, 30): cell (0, 0) again
                     PAD]], dtype=np.float32)


def _numpy(tensors):
    return {key: np.asarray(value) for key, value in tensors.items()}


def _perfect(targets, *, predictor: int = 0) -> np.ndarray:
    """The output a perfect network gives: the encoded box in ``predictor`` with confidence 1,
    every other predictor empty, the class one-hot."""
    truth = _numpy(encode_yolov1(targets, SIZE, S, C))
    raw = np.zeros((len(targets), S, S, DEPTH), np.float32)
    box = np.concatenate([truth["boxes"][..., :2], np.sqrt(truth["boxes"][..., 2:]),
                          truth["object"][..., None]], axis=-1)
    raw[..., predictor * 5:predictor * 5 + 5] = box
    raw[..., B * 5:] = truth["classes"]
    return raw


def test_encoding_puts_two_boxes_on_the_grid_exactly():
    truth = _numpy(encode_yolov1(TARGETS, SIZE, S, C))
    np.testing.assert_array_equal(truth["object"], [[[1, 0], [0, 1]]])
    boxes = np.zeros((1, S, S, 4), np.float32)
    # (centre offset in the 64-pixel cell, size / 128): all exact in binary
    boxes[0, 0, 0] = [30 / 64, 36 / 64, 40 / 128, 48 / 128]
    boxes[0, 1, 1] = [95 / 64 - 1, 87 / 64 - 1, 50 / 128, 46 / 128]
    np.testing.assert_array_equal(truth["boxes"], boxes)
    corners = np.zeros((1, S, S, 4), np.float32)
    corners[0, 0, 0] = np.array([10, 12, 50, 60]) / 128
    corners[0, 1, 1] = np.array([70, 64, 120, 110]) / 128
    np.testing.assert_array_equal(truth["corners"], corners)
    classes = np.zeros((1, S, S, C), np.float32)
    classes[0, 0, 0, 0] = classes[0, 1, 1, 2] = 1
    np.testing.assert_array_equal(truth["classes"], classes)
    # Only padding: an empty grid.
    empty = _numpy(encode_yolov1(np.array([[PAD]], np.float32), SIZE, S, C))
    assert all(not value.any() for value in empty.values())


def test_loss_terms_by_hand():
    """One box (0, 0, 64, 64) in cell (0, 0): x = y = 0.5, w = h = 0.5 of the image."""
    targets = np.array([[[0, 0, 0, 64, 64]]], np.float32)
    raw = np.zeros((1, S, S, B * 5 + 1), np.float32)
    raw[0, 0, 0, 0:5] = [0.6, 0.5, 0.75, math.sqrt(0.5), 0.6]  # the better box: responsible
    raw[0, 0, 0, 5:10] = [0.5, 0.5, 0.5, 0.5, 0.4]  # a quarter-side box: IoU 0.25
    raw[0, 1, 1, 4] = 0.2  # a confidence where there is no object
    raw[0, 0, 0, 10] = 0.7  # Pr(class 0) in the object's cell
    raw[0, 1, 0, 10] = 0.9  # class probabilities of empty cells cost nothing
    # Predictor 0's box: centre (0.3, 0.25), 0.5625 x 0.5 -> x from 0.01875 to 0.58125.
    intersection = (0.5 - 0.01875) * 0.5
    iou = intersection / (0.5625 * 0.5 + 0.25 - intersection)
    terms = _numpy(YOLOv1Loss(SIZE, boxes_per_cell=B).components(targets, raw))
    expected = {"xy": 5 * 0.1 ** 2, "wh": 5 * (0.75 - math.sqrt(0.5)) ** 2,
                "object": (0.6 - iou) ** 2, "noobject": 0.5 * (0.4 ** 2 + 0.2 ** 2),
                "class": 0.3 ** 2}
    for key, value in expected.items():
        np.testing.assert_allclose(terms[key], [value], rtol=1e-5, err_msg=key)
    loss = YOLOv1Loss(SIZE, boxes_per_cell=B)(targets, raw)
    np.testing.assert_allclose(float(loss), sum(expected.values()), rtol=1e-5)


def test_perfect_prediction_costs_nothing_and_random_costs_much():
    loss = YOLOv1Loss(SIZE)
    assert float(loss(TARGETS, _perfect(TARGETS))) < 1e-10
    # The responsible predictor is the one with the highest IoU, whichever slot it is in.
    assert float(loss(TARGETS, _perfect(TARGETS, predictor=1))) < 1e-10
    rng = np.random.default_rng(0)
    random = rng.normal(0, 1, (1, S, S, DEPTH)).astype(np.float32)
    assert float(loss(TARGETS, random)) > 10.0
    # The batch mean of per-image sums.
    two = np.concatenate([TARGETS, TARGETS])
    both = np.concatenate([_perfect(TARGETS), random])
    np.testing.assert_allclose(float(loss(two, both)), float(loss(TARGETS, random)) / 2,
                               rtol=1e-6)


def test_gradients_are_finite_and_skip_the_iou_target():
    raw = tf.Variable(np.random.default_rng(1).normal(0, 1, (1, S, S, DEPTH)).astype(np.float32))
    loss = YOLOv1Loss(SIZE)
    with tf.GradientTape() as tape:
        value = loss(TARGETS, raw)
    gradient = tape.gradient(value, raw).numpy()
    assert np.isfinite(gradient).all()
    # Zero widths and zero-size truths (sqrt(0)) too.
    degenerate = np.array([[[1, 30, 30, 30, 30]]], np.float32)
    zeros = tf.Variable(np.zeros((1, S, S, DEPTH), np.float32))
    with tf.GradientTape() as tape:
        value = loss(degenerate, zeros)
    assert np.isfinite(tape.gradient(value, zeros).numpy()).all()
    # d loss / d x of a cell's responsible predictor is the coordinate term's alone,
    # 2 * lambda_coord * (x - x^): the IoU target of its confidence carries no gradient.
    perfect = _perfect(TARGETS)
    perfect[0, 0, 0, 0] += 0.25
    shifted = tf.Variable(perfect)
    with tf.GradientTape() as tape:
        value = loss(TARGETS, shifted)
    np.testing.assert_allclose(tape.gradient(value, shifted).numpy()[0, 0, 0, 0], 2 * 5 * 0.25,
                               rtol=1e-5)


def test_loss_config_and_errors():
    loss = YOLOv1Loss(448, boxes_per_cell=3, lambda_noobj=0.25)
    again = YOLOv1Loss.from_config(loss.get_config())
    assert (again.image_size, again.boxes_per_cell, again.lambda_coord, again.lambda_noobj) == (
        448, 3, 5.0, 0.25)
    with pytest.raises(ConfigError, match="image_size must be a positive integer"):
        YOLOv1Loss(0)
    with pytest.raises(ConfigError, match="cannot hold 2 boxes"):
        YOLOv1Loss(SIZE)(TARGETS, np.zeros((1, S, S, 10), np.float32))
    with pytest.raises(DataError, match=r"\[batch, boxes, 5\]"):
        YOLOv1Loss(SIZE)(TARGETS[..., :4], np.zeros((1, S, S, DEPTH), np.float32))


def _constructed_raw() -> np.ndarray:
    raw = np.zeros((1, S, S, DEPTH), np.float32)
    # Cell (0, 0), predictor 0: centre (32, 32), side 0.5**2 * 128 = 32 -> (16, 16, 48, 48);
    # Pr(class) (0.1, 0.8, 0.1): class 1 at 0.9 * 0.8, class 0 at 0.09 (below conf).
    raw[0, 0, 0, 0:5] = [0.5, 0.5, 0.5, 0.5, 0.9]
    raw[0, 0, 0, 10:] = [0.1, 0.8, 0.1]
    # Cell (0, 1), predictor 0: an offset of -0.5 puts the same box there; class 0 at 0.8. Other
    # classes do not suppress it.
    raw[0, 0, 1, 0:5] = [-0.5, 0.5, 0.5, 0.5, 0.8]
    raw[0, 0, 1, 10:] = [1.0, 0.0, 0.0]
    # Cell (1, 1), predictor 1: centre (80, 112), 64 x 8 -> (48, 108, 112, 116), class 2 at 0.5;
    # predictor 0 nearly the same box at 0.4, suppressed (same class, IoU 0.75).
    raw[0, 1, 1, 5:10] = [0.25, 0.75, math.sqrt(0.5), 0.25, 0.5]
    raw[0, 1, 1, 0:5] = [0.25, 0.75, math.sqrt(0.375), 0.25, 0.4]
    raw[0, 1, 1, 10:] = [0.0, 0.0, 1.0]
    # Cell (1, 0): a box past the image's left edge, clipped: centre (0, 96), 64 x 32.
    raw[0, 1, 0, 0:5] = [0.0, 0.5, math.sqrt(0.5), 0.5, 0.3]
    raw[0, 1, 0, 10:] = [0.0, 1.0, 0.0]
    return raw


def test_decode_returns_the_constructed_boxes():
    out = _numpy(decode_yolov1(_constructed_raw(), SIZE, conf=0.25, iou=0.45, max_det=6))
    assert {k: v.dtype for k, v in out.items()} == {
        "boxes": np.float32, "scores": np.float32, "classes": np.int32, "count": np.int32}
    assert out["boxes"].shape == (1, 6, 4) and out["scores"].shape == out["classes"].shape
    assert out["count"].tolist() == [4]
    np.testing.assert_allclose(out["scores"][0], [0.8, 0.72, 0.5, 0.3, 0, 0], rtol=1e-6)
    assert out["classes"][0].tolist() == [0, 1, 2, 1, -1, -1]
    np.testing.assert_allclose(out["boxes"][0], [
        [16, 16, 48, 48], [16, 16, 48, 48], [48, 108, 112, 116], [0, 80, 32, 112],
        [0, 0, 0, 0], [0, 0, 0, 0]], atol=1e-4)
    # A higher threshold keeps fewer; max_det caps the count.
    assert decode_yolov1(_constructed_raw(), SIZE, conf=0.75)["count"].numpy().tolist() == [1]
    assert decode_yolov1(_constructed_raw(), SIZE, max_det=2)["count"].numpy().tolist() == [2]


def test_decode_runs_in_a_savedmodel(tmp_path):
    module = tf.Module()
    module.serve = tf.function(
        lambda raw: decode_yolov1(raw, SIZE, conf=0.25, iou=0.45, max_det=6),
        input_signature=[tf.TensorSpec([None, S, S, DEPTH], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "decode"))
    loaded = tf.saved_model.load(str(tmp_path / "decode"))
    raw = np.concatenate([_constructed_raw(), np.zeros((1, S, S, DEPTH), np.float32)])
    served = _numpy(loaded.serve(tf.constant(raw)))
    direct = _numpy(decode_yolov1(raw, SIZE, conf=0.25, iou=0.45, max_det=6))
    assert served["count"].tolist() == [4, 0]
    for key in direct:
        np.testing.assert_array_equal(served[key], direct[key])


def _image_with_boxes(targets: np.ndarray) -> np.ndarray:
    """Grey 114 (the letterbox fill) with each box painted in its class's colour."""
    image = np.full((1, SIZE, SIZE, 3), 114, np.float32)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    for label, x0, y0, x1, y1 in targets[0]:
        if label >= 0:
            image[0, int(y0):int(y1), int(x0):int(x1)] = colours[int(label)]
    return image


@pytest.mark.slow  # 8 s of training; the loss and decode are checked exactly above
def test_tiny_yolov1_overfits_one_image():
    """width 1/16 (4 to 64 channels, 256 hidden units), 128 pixels: a 2x2 grid; 100 Adam steps
    on one image with two boxes cut the loss more than fivefold (about 20x measured), and
    decoding finds both."""
    keras.utils.set_random_seed(0)
    targets = TARGETS[:, :2]
    images = _image_with_boxes(targets)
    model = yolov1(input_shape=(SIZE, SIZE, 3), classes=C, width=0.0625)
    loss = YOLOv1Loss(SIZE)
    before = float(loss(targets, model(images, training=False)))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    # Ten epochs of ten steps: Keras's per-epoch overhead would double the time of 100 epochs.
    batches = tf.data.Dataset.from_tensors((images, targets)).repeat()
    history = model.fit(batches, epochs=10, steps_per_epoch=10, shuffle=False,
                        verbose=0).history["loss"]
    assert np.isfinite(history).all()
    assert history[-1] < before / 5, (before, history)
    out = _numpy(decode_yolov1(model(images, training=False), SIZE, conf=0.1))
    found = out["count"][0]
    for label, x0, y0, x1, y1 in targets[0]:
        # A box of the right class centred inside the object (the sizes are still growing).
        mine = out["boxes"][0, :found][out["classes"][0, :found] == label]
        centres = (mine[:, :2] + mine[:, 2:]) / 2
        assert ((centres > [x0, y0]) & (centres < [x1, y1])).all(axis=1).any(), (label, out)
