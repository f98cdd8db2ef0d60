"""Segmentation losses, Keras metrics, the NumPy summary and the segmentation figures, on tiny
arrays whose values are worked out by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from transfer import plots
from transfer.errors import ConfigError, DataError
from transfer.tasks.segmentation import figures as seg_figures
from transfer.tasks.segmentation import metrics as sm

IGNORE = 255

# One image of 2x2 pixels, 3 classes; the last pixel is not labelled.
PROBS = np.array([[[[0.70, 0.20, 0.10], [0.10, 0.60, 0.30]],
                   [[0.25, 0.25, 0.50], [0.30, 0.30, 0.40]]]], dtype=np.float32)
LABELS = np.array([[[0, 1], [2, IGNORE]]], dtype=np.uint8)
# -log p_t of the three counted pixels
NLL = np.array([-math.log(0.7), -math.log(0.6), -math.log(0.5)])
P_T = np.array([0.7, 0.6, 0.5])


def value(loss, labels=LABELS, probs=PROBS) -> float:
    return float(loss(labels, probs))


def with_other_ignored_prediction(probs: np.ndarray) -> np.ndarray:
    """The same probabilities except at the ignored pixel, where they become one-hot class 0."""
    changed = probs.copy()
    changed[0, 1, 1] = [1.0, 0.0, 0.0]
    return changed


# ---- losses -----------------------------------------------------------------------------------

def test_ce_is_keras_sparse_crossentropy_with_ignore_class():
    loss = sm.make_loss("ce", num_classes=3)
    assert isinstance(loss, keras.losses.SparseCategoricalCrossentropy)
    assert value(loss) == pytest.approx(NLL.mean(), rel=1e-6)


def test_weighted_ce_weights_each_pixel_by_its_true_class():
    loss = sm.make_loss("ce", num_classes=3, class_weights=[1.0, 2.0, 3.0])
    assert isinstance(loss, sm.WeightedCrossEntropy)
    # Keras's class_weight convention: divided by the counted pixels, not the sum of weights.
    assert value(loss) == pytest.approx((1 * NLL[0] + 2 * NLL[1] + 3 * NLL[2]) / 3, rel=1e-6)
    unweighted = sm.WeightedCrossEntropy(num_classes=3, class_weights=[1.0, 1.0, 1.0])
    assert value(unweighted) == pytest.approx(value(sm.make_loss("ce", num_classes=3)), rel=1e-6)


def test_focal_by_hand_and_reduces_to_ce_when_gamma_is_zero():
    focal = sm.make_loss("focal", num_classes=3)
    assert isinstance(focal, sm.FocalLoss) and focal.gamma == 2.0
    assert value(focal) == pytest.approx(np.mean((1 - P_T) ** 2 * NLL), rel=1e-6)
    weighted = sm.make_loss("focal", num_classes=3, class_weights=[1.0, 2.0, 3.0])
    assert value(weighted) == pytest.approx(np.mean([1, 2, 3] * (1 - P_T) ** 2 * NLL), rel=1e-6)
    gamma0 = sm.FocalLoss(num_classes=3, gamma=0.0)
    assert value(gamma0) == pytest.approx(value(sm.make_loss("ce", num_classes=3)), rel=1e-6)
    gamma0w = sm.FocalLoss(num_classes=3, gamma=0.0, class_weights=[1.0, 2.0, 3.0])
    assert value(gamma0w) == pytest.approx(
        value(sm.make_loss("ce", num_classes=3, class_weights=[1.0, 2.0, 3.0])), rel=1e-6)


def test_dice_by_hand_over_counted_pixels():
    # Per class over the three counted pixels: 2 * p(true) / (sum of p_k + count of class k).
    dice = [2 * 0.7 / (1.05 + 1), 2 * 0.6 / (1.05 + 1), 2 * 0.5 / (0.90 + 1)]
    assert value(sm.make_loss("dice", num_classes=3)) == pytest.approx(1 - np.mean(dice),
                                                                       rel=1e-6)
    both = sm.make_loss("ce+dice", num_classes=3, class_weights=[1.0, 2.0, 3.0])
    assert value(both) == pytest.approx(
        (1 * NLL[0] + 2 * NLL[1] + 3 * NLL[2]) / 3 + 1 - np.mean(dice), rel=1e-6)


def test_dice_averages_over_classes_present_in_the_targets():
    labels = np.array([[[0, 1], [1, IGNORE]]], dtype=np.uint8)  # class 2 is absent
    # class 0: 2*0.7 / (1.05 + 1); class 1: 2*(0.6+0.25) / (1.05 + 2)
    dice = [2 * 0.7 / 2.05, 2 * 0.85 / 3.05]
    assert value(sm.make_loss("dice", num_classes=3), labels) == pytest.approx(
        1 - np.mean(dice), rel=1e-6)


def test_dice_of_a_perfect_prediction_is_zero():
    labels = np.array([[[0, 1, 2], [2, 1, IGNORE]]], dtype=np.uint8)
    probs = np.eye(3, dtype=np.float32)[np.where(labels == IGNORE, 0, labels)]
    probs[0, 1, 2] = [0.2, 0.3, 0.5]  # anything at the ignored pixel
    assert value(sm.make_loss("dice", num_classes=3), labels, probs) == 0.0


@pytest.mark.parametrize("name", sm.LOSSES)
def test_an_ignored_pixel_contributes_nothing(name):
    loss = sm.make_loss(name, num_classes=3, class_weights=None if name == "dice" else [1, 2, 3])
    before = value(loss)
    assert value(loss, probs=with_other_ignored_prediction(PROBS)) == before
    # Not even a NaN there counts.
    broken = PROBS.copy()
    broken[0, 1, 1] = np.nan
    assert value(loss, probs=broken) == pytest.approx(before, rel=1e-6)
    # Nor does it receive a gradient.
    probs = tf.Variable(PROBS)
    with tf.GradientTape() as tape:
        result = loss(LABELS, probs)
    gradient = tape.gradient(result, probs).numpy()
    assert np.all(gradient[0, 1, 1] == 0) and np.any(gradient[0, 0, 0] != 0)


@pytest.mark.parametrize("name", sm.LOSSES)
def test_a_batch_without_labelled_pixels_has_zero_loss(name):
    labels = np.full((1, 2, 2), IGNORE, dtype=np.uint8)
    assert value(sm.make_loss(name, num_classes=3), labels) == 0.0


@pytest.mark.parametrize("name", sm.LOSSES)
def test_ignore_index_none_counts_every_pixel(name):
    labels = np.array([[[0, 1], [2, 2]]], dtype=np.uint8)
    with_none = sm.make_loss(name, num_classes=3, ignore_index=None)
    with_255 = sm.make_loss(name, num_classes=3)
    assert value(with_none, labels) == pytest.approx(value(with_255, labels), rel=1e-6)


@pytest.mark.parametrize("name", sm.LOSSES)
def test_losses_agree_in_graph_mode_and_round_trip_through_keras_serialization(name):
    loss = sm.make_loss(name, num_classes=3, class_weights=None if name == "ce" else [1, 2, 3])
    graph = tf.function(lambda y, p: loss(y, p))
    assert float(graph(tf.constant(LABELS), tf.constant(PROBS))) == pytest.approx(value(loss),
                                                                                  rel=1e-6)
    clone = keras.losses.deserialize(json.loads(json.dumps(keras.losses.serialize(loss))))
    assert type(clone) is type(loss) and clone.get_config() == loss.get_config()
    assert value(clone) == value(loss)


@pytest.mark.parametrize("name", sm.LOSSES)
def test_num_classes_none_reads_the_depth_of_the_probabilities(name):
    weights = None if name == "ce" else [1.0, 2.0, 3.0]
    known = sm.make_loss(name, num_classes=3, class_weights=weights)
    from_probs = sm.make_loss(name, num_classes=None, class_weights=weights)
    assert value(from_probs) == value(known)
    if name != "ce":
        with pytest.raises(ConfigError, match="one weight per class \\(3\\), got 2"):
            value(sm.make_loss(name, num_classes=None, class_weights=[1.0, 2.0]))
        with pytest.raises(ConfigError, match="made for 4 classes, the probabilities have 3"):
            value(sm.make_loss(name, num_classes=4))


def test_make_loss_rejects_unknown_names_and_bad_weights():
    with pytest.raises(ConfigError, match="'ce', 'dice', 'ce\\+dice', 'focal'"):
        sm.make_loss("lovasz", num_classes=3)
    with pytest.raises(ConfigError, match="one weight per class"):
        sm.make_loss("ce", num_classes=3, class_weights=[1.0, 2.0])
    with pytest.raises(ConfigError, match=">= 0"):
        sm.make_loss("focal", num_classes=2, class_weights=[1.0, -2.0])
    with pytest.raises(ConfigError, match="num_classes"):
        sm.make_loss("dice", num_classes=0)


# ---- the hand-made evaluation example ---------------------------------------------------------

NAMES = ["background", "cat", "dog", "bird"]  # "bird" occurs nowhere
TRUE = np.array([[[0, 0, 1, 1],
                  [0, 0, 1, 1],
                  [2, 2, IGNORE, IGNORE],
                  [2, 2, IGNORE, IGNORE]],
                 [[1, 1, 1, 1],
                  [1, 1, 1, 1],
                  [0, 0, 0, 0],
                  [IGNORE] * 4]], dtype=np.uint8)
PRED = np.array([[[0, 0, 1, 1],
                  [0, 1, 1, 1],
                  [2, 2, 0, 1],
                  [2, 0, 2, 2]],
                 [[1, 1, 1, 1],
                  [1, 1, 2, 2],
                  [0, 0, 0, 1],
                  [0, 0, 0, 0]]], dtype=np.int32)
CONFUSION = [[6, 2, 0, 0], [0, 10, 2, 0], [1, 0, 3, 0], [0, 0, 0, 0]]
IOU = {"background": 6 / 9, "cat": 10 / 14, "dog": 3 / 6, "bird": None}
DICE = {"background": 12 / 15, "cat": 20 / 24, "dog": 6 / 9, "bird": None}
# image 0: IoU 3/5, 4/5, 3/4; image 1: 3/4, 6/9 and 0 for "dog", predicted but absent
PER_IMAGE = [(3 / 5 + 4 / 5 + 3 / 4) / 3, (3 / 4 + 6 / 9 + 0) / 3]


def probabilities_for(predicted: np.ndarray, k: int) -> np.ndarray:
    """Probabilities whose argmax is ``predicted``: 0.7 on it, the rest shared."""
    return (np.eye(k)[predicted] * (0.7 - 0.3 / (k - 1)) + 0.3 / (k - 1)).astype(np.float32)


def test_summary_of_the_hand_made_example():
    summary = sm.segmentation_summary(PRED, TRUE, NAMES)
    assert summary["samples"] == 2
    assert summary["pixels"] == 24
    assert summary["confusion_matrix"] == CONFUSION
    assert summary["pixel_accuracy"] == pytest.approx(19 / 24)
    assert summary["per_class_iou"] == pytest.approx(IOU)
    assert summary["mean_iou"] == pytest.approx(79 / 126)  # (2/3 + 5/7 + 1/2) / 3
    assert summary["per_class_dice"] == pytest.approx(DICE)
    assert summary["dice"] == pytest.approx(23 / 30)  # (4/5 + 5/6 + 2/3) / 3
    assert summary["per_image_iou"] == pytest.approx(PER_IMAGE)
    assert summary["class_names"] == NAMES
    assert summary["loss"] is None
    assert json.loads(json.dumps(summary)) == summary
    assert sm.per_image_iou(PRED, TRUE, 4) == pytest.approx(PER_IMAGE)


def test_summary_loss_is_mean_ce_over_counted_pixels():
    probs = probabilities_for(PRED, 4)
    probs[0, 2, 2] = 0.0  # an ignored pixel with no probability anywhere: still not counted
    summary = sm.segmentation_summary(PRED, TRUE, NAMES, probabilities=probs)
    counted = TRUE != IGNORE
    p_true = np.where(PRED == TRUE, 0.7, 0.1)[counted]
    assert summary["loss"] == pytest.approx(-np.log(p_true).mean(), rel=1e-6)
    keras_ce = float(sm.make_loss("ce", num_classes=4)(TRUE, probs))
    assert summary["loss"] == pytest.approx(keras_ce, rel=1e-5)


def test_summary_ignores_predictions_at_ignored_pixels():
    other = PRED.copy()
    other[TRUE == IGNORE] = 3  # "bird" predicted only where nothing is labelled
    assert sm.segmentation_summary(other, TRUE, NAMES) == sm.segmentation_summary(PRED, TRUE,
                                                                                   NAMES)


def test_summary_rejects_what_it_cannot_count():
    with pytest.raises(DataError, match="outside the 4 class ids"):
        sm.segmentation_summary(PRED, np.where(TRUE == 1, 7, TRUE), NAMES)
    with pytest.raises(DataError, match="every target pixel"):
        sm.segmentation_summary(PRED, np.full_like(TRUE, IGNORE), NAMES)
    with pytest.raises(DataError, match="same shape"):
        sm.segmentation_summary(PRED[:1], TRUE, NAMES)
    with pytest.raises(DataError, match="no samples"):
        sm.segmentation_summary(PRED[:0], TRUE[:0], NAMES)


def test_per_image_iou_is_none_for_an_image_without_labels():
    labels = TRUE.copy()
    labels[1] = IGNORE
    assert sm.per_image_iou(PRED, labels, 4) == pytest.approx([PER_IMAGE[0], None])


# ---- Keras metrics ----------------------------------------------------------------------------

def test_keras_metrics_equal_the_summary_on_the_same_batch():
    metrics = sm.segmentation_metrics_for_compile(4, IGNORE)
    assert [m.name for m in metrics] == ["mean_iou", "pixel_accuracy"]
    probs = probabilities_for(PRED, 4)
    for m in metrics:
        m.update_state(TRUE, probs)
    mean_iou, accuracy = (float(m.result()) for m in metrics)
    assert mean_iou == pytest.approx(79 / 126, rel=1e-6)
    assert accuracy == pytest.approx(19 / 24, rel=1e-6)
    # Streaming: one image at a time gives the same numbers, and an ignored pixel's prediction
    # changes nothing.
    other = probabilities_for(np.where(TRUE == IGNORE, 3, PRED), 4)
    for m in metrics:
        m.reset_state()
        for i in range(2):
            m.update_state(TRUE[i:i + 1], other[i:i + 1])
    assert [float(m.result()) for m in metrics] == [mean_iou, accuracy]
    assert np.array_equal(metrics[0].total_cm.numpy(), CONFUSION)


def test_keras_metrics_on_random_maps_match_the_summary():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, (3, 6, 7)).astype(np.uint8)
    labels[rng.random(labels.shape) < 0.2] = IGNORE
    probs = rng.random((3, 6, 7, 5)).astype(np.float32)
    probs /= probs.sum(-1, keepdims=True)
    summary = sm.segmentation_summary(probs.argmax(-1), labels, list("abcde"),
                                      probabilities=probs)
    metrics = sm.segmentation_metrics_for_compile(5)
    for m in metrics:
        m.update_state(labels, probs)
    assert float(metrics[0].result()) == pytest.approx(summary["mean_iou"], rel=1e-6)
    assert float(metrics[1].result()) == pytest.approx(summary["pixel_accuracy"], rel=1e-6)
    assert float(sm.make_loss("ce", num_classes=5)(labels, probs)) == pytest.approx(
        summary["loss"], rel=1e-5)


def test_metrics_round_trip_through_keras_serialization():
    for metric in sm.segmentation_metrics_for_compile(4):
        clone = keras.metrics.deserialize(keras.metrics.serialize(metric))
        assert type(clone) is type(metric) and clone.name == metric.name
        assert clone.ignore_class == IGNORE and clone.total_cm.dtype == "int64"


def test_compile_fit_evaluate_and_reload_a_tiny_segmenter(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 3))
    outputs = keras.layers.Conv2D(4, 1, activation="softmax", name="head")(inputs)
    model = keras.Model(inputs, outputs)
    loss = sm.make_loss("ce+dice", num_classes=None, class_weights=[0.5, 1.0, 1.5, 1.0])
    model.compile(optimizer="adam", loss=loss,
                  metrics=sm.segmentation_metrics_for_compile(4, IGNORE))
    images = np.random.default_rng(0).random((2, 4, 4, 3)).astype(np.float32)
    history = model.fit(images, TRUE, validation_data=(images, TRUE), batch_size=2, epochs=2,
                        verbose=0)
    assert {"loss", "mean_iou", "pixel_accuracy", "val_loss", "val_mean_iou",
            "val_pixel_accuracy"} <= set(history.history)
    results = model.evaluate(images, TRUE, batch_size=2, verbose=0, return_dict=True)
    probs = model.predict(images, verbose=0)
    summary = sm.segmentation_summary(probs.argmax(-1), TRUE, NAMES)
    assert results["loss"] == pytest.approx(float(loss(TRUE, probs)), rel=1e-5)
    assert results["mean_iou"] == pytest.approx(summary["mean_iou"], rel=1e-6)
    assert results["pixel_accuracy"] == pytest.approx(summary["pixel_accuracy"], rel=1e-6)
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(reloaded.loss, sm.CrossEntropyDiceLoss)
    assert reloaded.loss.class_weights == [0.5, 1.0, 1.5, 1.0]
    again = reloaded.evaluate(images, TRUE, batch_size=2, verbose=0, return_dict=True)
    assert again == pytest.approx(results, rel=1e-6)


# ---- figures ----------------------------------------------------------------------------------

VOC_COLOURS = [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128),
               (0, 128, 128), (128, 128, 128), (64, 0, 0), (192, 0, 0), (64, 128, 0),
               (192, 128, 0), (64, 0, 128), (192, 0, 128), (64, 128, 128), (192, 128, 128),
               (0, 64, 0), (128, 64, 0), (0, 192, 0), (128, 192, 0), (0, 64, 128)]


def test_palette_is_vocs_and_distinct():
    colours = seg_figures.palette(256)
    assert colours.shape == (256, 3) and colours.dtype == np.uint8
    assert [tuple(c) for c in colours[:21].tolist()] == VOC_COLOURS
    assert tuple(colours[255]) == (224, 224, 192)  # VOC's "void" colour, from the same rule
    assert len({tuple(c) for c in colours.tolist()}) == 256
    assert np.array_equal(seg_figures.palette(5), colours[:5])


def test_colour_mask_and_overlay():
    mask = np.array([[0, 1], [2, IGNORE]])
    colours = seg_figures.palette(3)
    rgb = seg_figures.colour_mask(mask, colours)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert rgb.tolist() == [[[0, 0, 0], [128, 0, 0]], [[0, 128, 0], [255, 255, 255]]]
    image = np.full((2, 2, 3), 100, dtype=np.uint8)
    blended = seg_figures.overlay(image, mask, colours, alpha=0.5)
    assert blended.dtype == np.uint8 and blended.shape == (2, 2, 3)
    assert blended.tolist() == [[[50, 50, 50], [114, 50, 50]], [[50, 114, 50], [100, 100, 100]]]
    assert np.array_equal(seg_figures.overlay(image[..., 0], mask, colours, alpha=0.0), image)
    with pytest.raises(ValueError, match="outside the palette"):
        seg_figures.colour_mask(np.array([[3]]), colours)
    with pytest.raises(ValueError, match=r"\(h, w\) mask"):
        seg_figures.overlay(image, np.zeros((3, 2), int), colours)


def test_palette_png_round_trips_class_ids(tmp_path):
    from PIL import Image

    path = seg_figures.save_palette_png(TRUE[0], tmp_path / "masks" / "a.png",
                                        seg_figures.palette(4))
    with Image.open(path) as image:
        assert image.mode == "P"
        assert np.array_equal(np.asarray(image), TRUE[0])
        table = np.array(image.getpalette()).reshape(-1, 3)
    assert table[:4].tolist() == [list(c) for c in VOC_COLOURS[:4]]
    assert table[IGNORE].tolist() == [255, 255, 255]
    with pytest.raises(ValueError, match="ids 0-255"):
        seg_figures.save_palette_png(np.array([[256]]), tmp_path / "b.png", seg_figures.palette(4))


def test_worst_figure_orders_rows_by_iou_lowest_first():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 4, 4, 3), dtype=np.uint8)
    labels = np.concatenate([TRUE, TRUE])
    predicted = np.concatenate([PRED, PRED])
    ious = np.array([0.9, np.nan, 0.2, 0.5])  # NaN, like None: nothing labelled
    colours = seg_figures.palette(4)
    fig = seg_figures.worst_figure(images, labels, predicted, ious, NAMES, colours, limit=2,
                                   names=["a.png", "b.png", "c.png", "d.png"])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["c.png: mean IoU 0.200", "truth", "prediction",
                      "d.png: mean IoU 0.500", "truth", "prediction"]
    assert np.array_equal(fig.axes[0].images[0].get_array(), images[2])
    assert np.array_equal(fig.axes[1].images[0].get_array(),
                          seg_figures.colour_mask(TRUE[0], colours))
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["background", "cat", "dog", "not labelled"]
    everything = seg_figures.worst_figure(images, labels, predicted, ious, NAMES, colours)
    assert [ax.get_title() for ax in everything.axes[::3]] == [
        "#2: mean IoU 0.200", "#3: mean IoU 0.500", "#0: mean IoU 0.900"]
    assert plots.figure_png(everything).startswith(b"\x89PNG")
    assert [ax.get_title() for ax in seg_figures.worst_figure(
        images, labels, predicted, [0.9, None, 0.2, 0.5], NAMES, colours).axes[::3]] == [
        "#2: mean IoU 0.200", "#3: mean IoU 0.500", "#0: mean IoU 0.900"]
    empty = seg_figures.worst_figure(images[:1], labels[:1], predicted[:1], [None], NAMES,
                                     colours)
    assert "no labelled pixels in 1 images" in empty.texts[0].get_text()


def test_iou_bar_and_pixel_confusion_figures(tmp_path):
    summary = sm.segmentation_summary(PRED, TRUE, NAMES)
    bars = seg_figures.iou_bar_figure(summary["per_class_iou"])
    ax = bars.axes[0]
    assert [p.get_width() for p in ax.patches] == pytest.approx([6 / 9, 10 / 14, 3 / 6, 0.0])
    assert [t.get_text() for t in ax.texts] == ["0.667", "0.714", "0.500", "absent"]
    assert ax.get_title() == "IoU per class (3 of 4 classes present)"
    assert ax.get_legend().get_texts()[0].get_text() == f"mean {79 / 126:.3f}"
    confusion = seg_figures.pixel_confusion_figure(np.array(CONFUSION) * 100_000, NAMES)
    assert confusion.axes[0].get_title() == (
        f"confusion matrix: 2,400,000 pixels, pixel accuracy {19 / 24:.3f}")
    assert [t.get_text() for t in confusion.axes[0].texts][:3] == ["600k", "200k", "0"]
    assert plots.save_figure(bars, tmp_path / "iou.png").stat().st_size > 0
