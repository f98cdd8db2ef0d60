"""Detection's box-aware augmentation: boxes move exactly as the pixels do, are clipped and
dropped at the border, padding stays padding, mosaic tiles land in their quadrants, and it is
all stateless (same seed, same batch) and runs in a tf.data map."""

import numpy as np
import pytest
import tensorflow as tf

from transfer.config import TrainConfig
from transfer.errors import ConfigError
from transfer.tasks import get_task
from transfer.tasks.detection.augment import (
    MIN_SIDE,
    MIN_VISIBLE,
    augment_boxes,
    clip_and_drop,
    target_rows,
)

SIZE = 64
PAD = [-1, 0, 0, 0, 0]
# one bright rectangle per image, on black; the rest of the rows padding
RECTANGLES = [(10, 20, 30, 40), (0, 0, 16, 24), (40, 44, 64, 64), (24, 8, 52, 30)]


def painted(rectangles=RECTANGLES, rows=2):
    images = np.zeros((len(rectangles), SIZE, SIZE, 3), np.float32)
    targets = np.tile(np.array(PAD, np.float32), (len(rectangles), rows, 1))
    for i, (x0, y0, x1, y1) in enumerate(rectangles):
        images[i, y0:y1, x0:x1] = 255.0
        targets[i, 0] = [i, x0, y0, x1, y1]
    return images, targets


def extent(image):
    """The rectangle's pixel extent (x0, y0, x1, y1), or None: brighter than the letterbox grey
    (114) that a zoom out fills with."""
    ys, xs = np.nonzero(np.asarray(image)[..., 0] > 185)
    return None if not len(xs) else (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


@pytest.mark.parametrize("ops", [{"scale": True}, {"crop": True},
                                 {"scale": True, "crop": True, "flip": True}])
def test_a_box_moves_exactly_as_its_rectangle_does(ops):
    images, targets = painted()
    checked = 0
    for seed in range(6):
        out_images, out_targets = augment_boxes(images, targets, tf.constant([seed, 1]), **ops)
        for image, rows in zip(out_images.numpy(), out_targets.numpy()):
            kept = rows[rows[:, 0] >= 0]
            if len(kept):  # the box within a pixel of where the painted pixels went
                np.testing.assert_allclose(kept[0, 1:], extent(image), atol=1.0)
                checked += 1
            else:  # dropped only where the border cut the rectangle, or it left the image
                found = extent(image)
                assert found is None or min(found[:2]) == 0 or max(found[2:]) == SIZE
    assert checked >= 12


def test_boxes_are_clipped_to_the_image_and_slivers_dropped():
    classes = tf.constant([[[3.0], [1.0], [2.0], [4.0], [-1.0]]])
    boxes = tf.constant([[[-10.0, 10.0, 30.0, 30.0],  # half out at the left: clipped
                          [62.5, 10.0, 90.0, 30.0],  # 1.5 px left inside: too thin
                          [-40.0, 0.0, 8.0, 40.0],  # 8 of 48 px wide inside (17%): dropped
                          [-4.0, -4.0, 70.0, 70.0],  # larger than the image: the image
                          [0.0, 0.0, 0.0, 0.0]]])
    out = clip_and_drop(classes, boxes, tf.constant([64.0, 64.0])).numpy()[0]
    np.testing.assert_array_equal(out, [[3, 0, 10, 30, 30], PAD, PAD, [4, 0, 0, 64, 64], PAD])
    assert 8 / 48 < MIN_VISIBLE < 30 / 40  # the cases above sit on either side of the rule


def test_padding_rows_stay_padding_and_every_box_stays_inside():
    images, targets = painted(rows=3)
    for seed in range(4):
        _, out = augment_boxes(images, targets, tf.constant([seed, 9]), flip=True, scale=True,
                               crop=True, mosaic=True, colour=True)
        out = out.numpy()
        assert out.shape == (4, target_rows(3, mosaic=True), 5)
        padding = out[..., 0] < 0
        np.testing.assert_array_equal(out[padding], np.tile(PAD, (padding.sum(), 1)))
        boxes = out[~padding][:, 1:]
        assert (boxes >= 0).all() and (boxes <= SIZE).all()
        assert ((boxes[:, 2:] - boxes[:, :2]) >= MIN_SIDE).all()


def test_the_same_seed_gives_the_same_batch_and_another_seed_another():
    images, targets = painted()
    ops = {"flip": True, "scale": True, "crop": True, "mosaic": True, "colour": True}
    first = augment_boxes(images, targets, tf.constant([5, 6], tf.int64), **ops)
    again = augment_boxes(images, targets, tf.constant([5, 6], tf.int64), **ops)
    other = augment_boxes(images, targets, tf.constant([5, 7], tf.int64), **ops)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(first[0].numpy(), other[0].numpy())
    assert not np.array_equal(first[1].numpy(), other[1].numpy())


def test_a_mosaic_puts_each_tiles_boxes_in_its_quadrant():
    # image k: a flat grey of 40 * (k + 1), its one box of class k
    boxes = [(8, 8, 40, 24), (0, 32, 64, 64), (16, 0, 48, 64), (20, 20, 44, 44)]
    _, targets = painted(boxes, rows=1)
    images = np.stack([np.full((SIZE, SIZE, 3), 40.0 * (k + 1), np.float32) for k in range(4)])
    offsets = [(0, 0), (32, 0), (0, 32), (32, 32)]  # top left, top right, bottom left, right
    mosaics = 0
    for seed in range(4):
        out_images, out_targets = augment_boxes(images, targets, tf.constant([seed, 0]),
                                                mosaic=True)
        for i in range(4):
            image, rows = out_images[i].numpy(), out_targets[i].numpy()
            if np.array_equal(image, images[i]):  # not chosen: its own box, padded to 4 rows
                np.testing.assert_array_equal(rows, [targets[i, 0], PAD, PAD, PAD])
                continue
            mosaics += 1
            assert rows[0, 0] == i  # the image itself, top left
            for q, (dx, dy) in enumerate(offsets):
                tile = image[dy:dy + 32, dx:dx + 32, 0]
                source = int(round(tile.mean() / 40.0)) - 1
                np.testing.assert_array_equal(tile, 40.0 * (source + 1))  # one whole image
                x0, y0, x1, y1 = np.asarray(boxes[source], np.float32) / 2
                np.testing.assert_array_equal(rows[q], [source, x0 + dx, y0 + dy, x1 + dx,
                                                        y1 + dy])
    assert mosaics >= 3


def test_it_runs_in_the_engines_tf_data_map_and_replays_the_same_batches():
    from transfer.feeding import epoch_dataset, fetch_arrays

    task = get_task("detection")
    config = TrainConfig(task="detection", augment="flip,scale,crop,mosaic,colour")
    task.check(config)
    images, targets = painted(RECTANGLES * 2)
    fetch = fetch_arrays([images], tf.constant(targets))

    def batches():
        return list(epoch_dataset(len(images), fetch, seed=3, start_epoch=0, end_epoch=2,
                                  batch_size=4, shuffle=True, batch_fn=task.batch_fn(config),
                                  batched=True).as_numpy_iterator())

    first, again = batches(), batches()
    assert len(first) == 4 and first[0][1].shape == (4, 8, 5)
    for (xa, ya), (xb, yb) in zip(first, again):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(first[0][1], first[2][1])  # epochs draw anew


def test_detection_takes_the_box_aware_ops_and_refuses_the_rest_in_one_line():
    task = get_task("detection")
    task.check(TrainConfig(task="detection", augment="flip,scale,crop,mosaic,colour"))
    for op in ("vflip", "rotate"):
        with pytest.raises(ConfigError, match=f"drop {op} from --augment") as error:
            task.check(TrainConfig(task="detection", augment=f"flip,{op}"))
        assert "\n" not in str(error.value)



def test_the_view_cache_keeps_as_many_rows_for_the_image_itself_as_for_its_mosaic_views():
    task = get_task("detection")
    config = TrainConfig(task="detection", augment="flip,mosaic")
    images, targets = painted(rows=3)
    shapes = [task.view_fn(config, k)(tf.constant(images), tf.constant(targets), 0)[1].shape
              for k in range(3)]
    assert shapes == [(4, 12, 5)] * 3
    itself = task.view_fn(config, 0)(tf.constant(images), tf.constant(targets), 0)
    np.testing.assert_array_equal(itself[0], images)
    np.testing.assert_array_equal(itself[1][:, :3], targets)
    assert (itself[1][:, 3:, 0] == -1).numpy().all()


@pytest.mark.slow  # 55 s: a whole run; the view test above checks the rows it needs
def test_fine_tune_trains_with_every_box_aware_op_on_cached_views_then_live(tmp_path):
    """The head phase on the view cache (4 views drawn with mosaic), the fine-tune phase with
    the augmentation live."""
    import transfer
    from tests.transfer.test_detection import make_yolo_folder

    data = make_yolo_folder(tmp_path / "boxes", counts=(("train", 8), ("val", 4), ("test", 2)))
    result = transfer.train(data, output=tmp_path / "run", backbone="keras_mobilenet",
                            weights=None, mode="fine-tune", image_size=64, epochs=1,
                            fine_tune_epochs=1, batch_size=4, verbose=0,
                            augment="flip,scale,crop,mosaic,colour")
    assert result.config.augment == "flip,crop,scale,colour,mosaic"
    assert [row["phase"] for row in result.history] == ["head", "fine-tune"]
