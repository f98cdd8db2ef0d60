"""The detection task's own parts: targets in letterboxed pixels, box-aware flips, boxes served
in each image's own pixels, one CSV row per box, and the registry choosing the task."""

import numpy as np
import pytest

from transfer.config import TrainConfig
from transfer.tasks import get_task, task_for
from transfer.tasks.detection.task import augment_boxes, encode_targets

WIDE = {"boxes": [[10.0, 20.0, 50.0, 40.0], [0.0, 0.0, 100.0, 50.0]], "classes": [2, 0],
        "difficult": [False, False], "size": [50, 100]}  # height 50, width 100
EMPTY = {"boxes": [], "classes": [], "difficult": [], "size": [64, 64]}


def test_targets_are_letterboxed_pixels_with_padding_rows():
    targets = encode_targets([WIDE, EMPTY], 64)
    assert targets.shape == (2, 2, 5)
    # 100 px wide -> scale 0.64
    np.testing.assert_allclose(targets[0], [[2, 6.4, 12.8, 32.0, 25.6], [0, 0, 0, 64.0, 32.0]],
                               rtol=1e-6)
    np.testing.assert_array_equal(targets[1], [[-1, 0, 0, 0, 0]] * 2)
    assert encode_targets([EMPTY], 32).shape == (1, 1, 5)


def test_a_flip_mirrors_the_boxes_with_the_image_and_leaves_padding():
    import tensorflow as tf

    images = np.zeros((2, 8, 8, 3), np.float32)
    images[:, :, :2] = 255.0  # a bright band at the left
    targets = np.array([[[1, 0, 0, 2, 8], [-1, 0, 0, 0, 0]]] * 2, np.float32)
    seed = tf.constant([3, 4])
    mirror = tf.random.stateless_uniform([2], seed=seed).numpy() < 0.5
    out_images, out_targets = augment_boxes(tf.constant(images), tf.constant(targets), seed,
                                            flip=True, colour=False)
    for i in range(2):
        if mirror[i]:
            np.testing.assert_array_equal(out_images[i, :, 6:].numpy(), 255.0)
            np.testing.assert_array_equal(out_targets[i].numpy(),
                                          [[1, 6, 0, 8, 8], [-1, 0, 0, 0, 0]])
        else:
            np.testing.assert_array_equal(out_targets[i].numpy(), targets[i])
    assert mirror.any() or True  # the draw is what it is; both branches are checked above


def test_served_boxes_are_in_each_images_own_pixels():
    import tensorflow as tf

    task = get_task("detection", image_size=64)
    outputs = {"boxes": tf.constant([[[6.4, 12.8, 32.0, 25.6], [0, 0, 0, 0]]]),
               "scores": tf.constant([[0.9, 0.0]]), "classes": tf.constant([[1, -1]]),
               "count": tf.constant([1])}
    served = task.serving_outputs(outputs, tf.constant(["a", "b"]), 5, tf.constant([50, 100]))
    np.testing.assert_allclose(served["boxes"].numpy()[0, 0], [10, 20, 50, 40], rtol=1e-5)
    np.testing.assert_array_equal(served["boxes"].numpy()[0, 1], [0, 0, 0, 0])
    assert served["labels"].numpy().tolist() == [[b"b", b""]]
    # a box past the image's edge (into the letterbox's grey) is clipped to the image
    outputs["boxes"] = tf.constant([[[0.0, 0.0, 64.0, 64.0], [0, 0, 0, 0]]])
    served = task.serving_outputs(outputs, tf.constant(["a", "b"]), 5, tf.constant([[50, 100]]))
    np.testing.assert_allclose(served["boxes"].numpy()[0, 0], [0, 0, 100, 50], rtol=1e-5)


def test_csv_has_one_row_per_box():
    from transfer.tasks import Prediction

    task = get_task("detection")
    p = Prediction("a.jpg", ("cat", "dog"), (0.9, 0.5), files=("a_boxes.png",),
                   details={"detections": [{"class": "cat", "score": 0.9, "box": [1, 2, 3, 4]},
                                           {"class": "dog", "score": 0.5, "box": [5, 6, 7, 8]}]})
    assert task.csv_header(5) == ["path", "class", "score", "x0", "y0", "x1", "y1", "error"]
    assert task.csv_rows(p, 5) == [
        ["a.jpg", "cat", "0.900000", "1.00", "2.00", "3.00", "4.00", ""],
        ["a.jpg", "dog", "0.500000", "5.00", "6.00", "7.00", "8.00", ""]]
    assert task.csv_rows(Prediction("b.jpg", error="not an image"), 5) == [
        ["b.jpg", "", "", "", "", "", "", "not an image"]]


@pytest.mark.parametrize("model, expected", [("detector", "detection"),
                                             ("yolov1", "detection"),
                                             ("unet", "segmentation"),
                                             ("keras_mobilenetv2", "classification")])
def test_the_model_option_alone_names_the_task(model, expected, tmp_path):
    assert task_for(TrainConfig(task="auto", model=model), tmp_path) == expected


def test_options_that_move_no_box_are_refused():
    from transfer.errors import ConfigError

    task = get_task("detection")
    with pytest.raises(ConfigError, match="drop rotate"):
        task.check(TrainConfig(task="detection", augment="flip,rotate"))
    with pytest.raises(ConfigError, match="multiple of 32"):
        task.check(TrainConfig(task="detection", image_size=100))
    with pytest.raises(ConfigError, match="full-retrain"):
        task.check(TrainConfig(task="detection", model="yolov1", mode="fine-tune"))


def test_drawing_outlines_each_box_in_its_class_colour():
    from transfer.tasks.detection.drawing import COLOURS, draw_boxes

    image = np.zeros((40, 40, 3), np.uint8)
    drawn = draw_boxes(image, np.array([[10, 20, 30, 35]]), ["cat"], [0.5], class_ids=[1])
    assert drawn.shape == (40, 40, 3) and drawn.dtype == np.uint8
    assert tuple(drawn[35, 20]) == COLOURS[1]  # the bottom edge
    assert tuple(drawn[27, 20]) == (0, 0, 0)  # inside stays


def test_each_epochs_validation_is_one_traced_pass_giving_kerass_loss_and_the_map():
    """The epoch's forward pass, loss, decoding and NMS run as one tf.function, traced once per
    batch shape and reused on later epochs (eagerly they cost more than the COCO scoring); its
    val_loss is what Keras's own validation gives, its mAP what the eager path scores."""
    import keras
    import tensorflow as tf

    from transfer.tasks.detection.task import DetectionTask, Validation, _annotations_of
    from zoo.detection import REG_MAX, anchor_points

    size, names = 64, ("cat", "dog")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3))
    shape = (len(anchor_points(size)[1]), 4 * REG_MAX + len(names))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, strides=4)(inputs))
    x = keras.layers.Dense(int(np.prod(shape)),
                           kernel_initializer=keras.initializers.RandomNormal(stddev=2.0),
                           bias_initializer=keras.initializers.RandomNormal(stddev=2.0))(x)
    model = keras.Model(inputs, keras.layers.Reshape(shape)(x))
    task = DetectionTask(image_size=size)
    model.compile(**task.compile_args(TrainConfig(task="detection"), len(names)))
    rng = np.random.default_rng(0)
    targets = np.full((5, 2, 5), -1, np.float32)
    targets[:, 0] = [[i % 2, 4 + i, 6, 30 + 2 * i, 40] for i in range(5)]
    targets[4, 1] = [1, 40, 40, 60, 62]
    images = rng.uniform(0, 255, (5, size, size, 3)).astype(np.float32)
    val = tf.data.Dataset.from_tensor_slices((images, targets)).batch(3)  # batches of 3 and 2
    callback = Validation(task, val, size, names)
    callback.set_model(model)
    logs = [{} for _ in range(3)]
    for epoch, log in enumerate(logs):
        callback.on_epoch_end(epoch, log)
        if epoch == 0:
            traces = callback.step().experimental_get_tracing_count()
    assert 1 <= traces <= 2
    assert callback.step().experimental_get_tracing_count() == traces
    kerass = model.evaluate(val, verbose=0, return_dict=True)["loss"]
    eager = task.evaluator(names, image_size=size)
    for batch_images, batch_targets in val:
        outputs = task.postprocess(model(batch_images), evaluating=True)
        eager.update(tf.nest.map_structure(np.asarray, outputs),
                     _annotations_of(np.asarray(batch_targets), size), [""] * len(batch_images))
    expected = eager.result()
    assert 0 < expected["map50"] < 1
    for log in logs:
        assert log["val_loss"] == pytest.approx(kerass, rel=1e-6)
        assert log["val_map"] == pytest.approx(expected["map"], abs=1e-9)
        assert log["val_map50"] == pytest.approx(expected["map50"], abs=1e-9)


def test_detection_fine_tunes_the_whole_backbone_with_its_batchnorm_frozen():
    """bench_detection.py --parts policies: the whole backbone at the head's rate with BatchNorm
    frozen scored best; flips; no label smoothing. What the user sets is kept."""
    blocks = tuple(f"conv_dw_{i}" for i in range(1, 14))
    task = get_task("detection")
    config = task.fill_defaults(TrainConfig(task="detection", mode="fine-tune"), blocks)
    assert (config.fine_tune_lr_factor, config.unfreeze_from, config.fine_tune_batchnorm,
            config.augment) == (1.0, "conv_dw_1", "frozen", "flip")
    config = task.fill_defaults(TrainConfig(task="detection", mode="fine-tune",
                                            fine_tune_batchnorm="train"), blocks)
    assert config.fine_tune_batchnorm == "train"


def test_each_mode_trains_exactly_the_weights_it_should():
    """MobileNet-v1 under the default detector (width 96, 2 classes): the feature-extractor
    trains the neck and head alone; the default fine-tune adds every backbone kernel from
    conv_dw_1 on, its BatchNorm frozen; full-retrain trains everything."""
    import zoo
    from transfer.model import set_trainable

    blocks = zoo.get_spec("keras_mobilenet").blocks
    task = get_task("detection")
    config = task.fill_defaults(TrainConfig(task="detection", backbone="keras_mobilenet",
                                            weights=None, image_size=64, mode="fine-tune"),
                                blocks)
    model = task.build_model(config, num_classes=2, weights=None)
    w, k, r = 96, 2, 16
    conv3 = 9 * w * w + 2 * w  # a 3 x 3 kernel and its BatchNorm's gamma and beta
    head = ((256 + 512 + 1024) * w + 3 * w  # lateral 1 x 1 convolutions with bias
            + 19 * conv3  # 3 smoothing, 4 bottom-up, 4 per level in the heads
            + 3 * (w * 4 * r + 4 * r + w * k + k))  # each level's box and class outputs
    assert head == 1_771_110
    summary = set_trainable(model, "head")
    assert (summary.trainable_weights, summary.trainable_params) == (75, head)

    # MobileNet-v1: a 3 x 3 stem to 32 channels, then 13 blocks of a depthwise 3 x 3 and a
    # pointwise 1 x 1 from each width to the next, each convolution with a BatchNorm
    widths = [32, 64, 128, 128, 256, 256] + [512] * 6 + [1024, 1024]
    stem = 3 * 3 * 3 * 32
    depthwise = 9 * sum(widths[:-1])
    pointwise = sum(a * b for a, b in zip(widths, widths[1:]))
    bn_channels = 32 + sum(widths[:-1]) + sum(widths[1:])
    summary = set_trainable(model, "fine-tune", blocks=blocks,
                            unfreeze_from=config.unfreeze_from,
                            train_batchnorm=config.fine_tune_batchnorm == "train")
    assert summary.trainable_weights == 75 + 26  # the stem's kernel stays frozen
    assert summary.trainable_params == head + depthwise + pointwise == 4_955_334
    assert summary.batchnorm == "frozen"

    summary = set_trainable(model, "full")
    assert summary.trainable_weights == 75 + 27 + 2 * 27
    assert summary.trainable_params == head + stem + depthwise + pointwise + 2 * bn_channels
    assert summary.trainable_params + summary.frozen_params == model.count_params()
    assert summary.frozen_params == 2 * bn_channels + 19 * 2 * w  # the moving statistics
