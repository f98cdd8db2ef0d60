"""Semantic segmentation: losses, Keras metrics and the NumPy evaluation summary.

Model outputs are per-pixel softmax probabilities ``(b, h, w, K)``; targets are integer class
maps ``(b, h, w)`` in which ``ignore_index`` (255, the Pascal VOC convention) marks a pixel that
is not labelled. Such a pixel counts nowhere: not in a loss's numerator, not in its denominator,
not in any metric. Every other target value must be a class id in ``[0, K)`` (the data reader
checks this; :func:`segmentation_summary` checks it again).

Keras's own pieces are used where they do the job, and the tests check that they do:
``SparseCategoricalCrossentropy(ignore_class=...)`` for the plain cross-entropy and
``MeanIoU(ignore_class=..., sparse_y_pred=False)`` for the IoU. The custom losses return one value
per pixel, zero at ignored pixels and rescaled by ``pixels / counted`` the way Keras rescales a
masked loss, so Keras's own reduction (the mean over counted pixels), per-pixel sample weights and
its per-replica scaling under a distribution strategy apply to them unchanged.

Importing this module imports Keras (the loss and metric classes are registered for
``keras.saving``); import it where Keras is wanted anyway.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import keras
import numpy as np
from keras import ops

from transfer.errors import ConfigError, DataError

IGNORE_INDEX = 255
LOSSES = ("ce", "dice", "ce+dice", "focal")
#: probabilities are clipped to [EPSILON, 1] before the log, as Keras's cross-entropy does
EPSILON = 1e-7


# ---- argument checks --------------------------------------------------------------------------

def _check_num_classes(num_classes: Any) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    return int(num_classes)


def _check_class_weights(class_weights: Sequence[float] | None,
                         num_classes: int | None) -> list[float] | None:
    """The weights as floats; their number is checked against ``num_classes`` when it is known
    (otherwise against the probabilities' depth, when the loss is first called)."""
    if class_weights is None:
        return None
    weights = [float(w) for w in class_weights]
    if num_classes is not None and len(weights) != num_classes:
        raise ConfigError(f"class_weights needs one weight per class ({num_classes}), got "
                          f"{len(weights)}: {weights}", field="class_weights")
    if any(not math.isfinite(w) or w < 0 for w in weights):
        raise ConfigError(f"class_weights must be finite and >= 0, got {weights}",
                          field="class_weights")
    return weights


# ---- losses -----------------------------------------------------------------------------------

class SegmentationLoss(keras.losses.Loss):
    """Shared part of the custom losses: the counted-pixel mask, class weights and config.

    Subclasses implement :meth:`pixel_losses`; its values at ignored pixels are discarded.
    Every subclass takes these arguments; ``name`` defaults to its ``default_name``.

    Args:
        num_classes: K, the depth of the probabilities; ``None`` reads it from their last axis.
        ignore_index: target value of unlabelled pixels, or ``None`` when every pixel is labelled.
        class_weights: K weights; each pixel's loss is multiplied by the weight of its true
            class. The mean is still taken over the counted pixels (Keras's ``class_weight``
            convention), so weights that average 1 over pixels keep the loss's scale.
        name: the loss's name (a TensorFlow name scope).
        reduction: Keras's reduction; the default ``"sum_over_batch_size"`` gives the mean over
            counted pixels.
        dtype: Keras's loss dtype.
    """

    default_name = "segmentation_loss"

    def __init__(self, *, num_classes: int | None, ignore_index: int | None = IGNORE_INDEX,
                 class_weights: Sequence[float] | None = None, name: str | None = None,
                 reduction: str = "sum_over_batch_size", dtype: str | None = None) -> None:
        super().__init__(name=name or self.default_name, reduction=reduction, dtype=dtype)
        self.num_classes = None if num_classes is None else _check_num_classes(num_classes)
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self.class_weights = _check_class_weights(class_weights, self.num_classes)

    def call(self, y_true, y_pred):
        self._check_depth(y_pred)
        labels = ops.cast(y_true, "int32")
        if len(labels.shape) == len(y_pred.shape):  # (b, h, w, 1) targets
            labels = ops.squeeze(labels, axis=-1)
        if self.ignore_index is None:
            counted = ops.ones_like(labels, dtype="bool")
        else:
            counted = ops.not_equal(labels, self.ignore_index)
        labels = ops.where(counted, labels, 0)  # any class id will do: the value is dropped
        # Keras's own rescaling of a masked loss: the mean over all pixels, which the reduction
        # takes, becomes the mean over counted pixels (0 when none is counted).
        pixels = ops.cast(ops.size(labels), y_pred.dtype)
        scale = ops.divide_no_nan(pixels, ops.sum(ops.cast(counted, y_pred.dtype)))
        # where, not a product with the mask: nothing at an ignored pixel, not even a NaN, counts
        return ops.where(counted, self.pixel_losses(labels, y_pred, counted) * scale, 0.0)

    def _check_depth(self, probabilities) -> None:
        depth = probabilities.shape[-1]
        classes = self.num_classes if self.num_classes is not None else depth
        if classes is None:
            raise ConfigError("the probabilities' last axis has no static size; give the loss "
                              "num_classes")
        if depth is not None and depth != classes:
            raise ConfigError(f"the loss was made for {classes} classes, the probabilities have "
                              f"{depth}")
        if self.class_weights is not None and len(self.class_weights) != classes:
            raise ConfigError(f"class_weights needs one weight per class ({classes}), got "
                              f"{len(self.class_weights)}", field="class_weights")

    def _classes(self, probabilities) -> int:
        return self.num_classes if self.num_classes is not None else probabilities.shape[-1]

    def pixel_losses(self, labels, probabilities, counted):
        """The loss of each pixel, ``(b, h, w)``, from labels with ignored pixels set to 0."""
        raise NotImplementedError

    def _class_weight_map(self, labels, dtype):
        if self.class_weights is None:
            return None
        return ops.take(ops.convert_to_tensor(self.class_weights, dtype=dtype), labels)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(num_classes=self.num_classes, ignore_index=self.ignore_index,
                      class_weights=self.class_weights)
        return config


@keras.saving.register_keras_serializable(package="transfer")
class WeightedCrossEntropy(SegmentationLoss):
    """Cross-entropy on softmax probabilities, each pixel weighted by its true class.

    :func:`make_loss` returns Keras's ``SparseCategoricalCrossentropy(ignore_class=...)`` when no
    class weights are given; with all weights 1 this loss equals it.
    """

    default_name = "cross_entropy"

    def pixel_losses(self, labels, probabilities, counted):
        losses = ops.sparse_categorical_crossentropy(labels, probabilities)
        weights = self._class_weight_map(labels, losses.dtype)
        return losses if weights is None else losses * weights


@keras.saving.register_keras_serializable(package="transfer")
class DiceLoss(SegmentationLoss):
    """Soft multi-class Dice loss: 1 - the mean Dice over the classes present in the batch.

    For class k, ``dice_k = 2 * sum(p_k * y_k) / (sum(p_k) + sum(y_k))`` over every counted pixel
    of the batch (Milletari et al. 2016, "V-Net", arXiv:1606.04797; the multi-class form of
    segmentation_models), where ``p_k`` is the predicted probability and ``y_k`` the one-hot
    target. Classes absent from the batch's targets are left out of the mean, as
    segmentation_models.pytorch does; a false positive of such a class still costs, through the
    probability it takes from the true class. ``class_weights`` are not used by Dice.
    """

    default_name = "dice"

    def pixel_losses(self, labels, probabilities, counted):
        return ops.broadcast_to(self.dice_loss(labels, probabilities, counted), ops.shape(labels))

    def dice_loss(self, labels, probabilities, counted):
        """The batch's Dice loss, a scalar."""
        mask = ops.expand_dims(counted, -1)
        one_hot = ops.one_hot(labels, self._classes(probabilities), dtype=probabilities.dtype)
        truth = ops.where(mask, one_hot, 0.0)
        predicted = ops.where(mask, probabilities, 0.0)
        axes = tuple(range(len(probabilities.shape) - 1))
        intersection = ops.sum(truth * predicted, axis=axes)
        cardinality = ops.sum(truth + predicted, axis=axes)
        present = ops.cast(ops.sum(truth, axis=axes) > 0, probabilities.dtype)
        dice = 2.0 * intersection / ops.maximum(cardinality, EPSILON)
        return 1.0 - ops.divide_no_nan(ops.sum(dice * present), ops.sum(present))


@keras.saving.register_keras_serializable(package="transfer")
class CrossEntropyDiceLoss(DiceLoss):
    """Cross-entropy (class-weighted when weights are given) plus the Dice loss, both over the
    counted pixels."""

    default_name = "ce_dice"

    def pixel_losses(self, labels, probabilities, counted):
        cross_entropy = ops.sparse_categorical_crossentropy(labels, probabilities)
        weights = self._class_weight_map(labels, cross_entropy.dtype)
        if weights is not None:
            cross_entropy = cross_entropy * weights
        # A constant added to every counted pixel adds itself to their mean.
        return cross_entropy + self.dice_loss(labels, probabilities, counted)


@keras.saving.register_keras_serializable(package="transfer")
class FocalLoss(SegmentationLoss):
    """Focal loss on softmax probabilities, ``-(1 - p_t)**gamma * log(p_t)`` per pixel, with
    ``p_t`` the probability of the true class (Lin et al. 2017, "Focal Loss for Dense Object
    Detection", arXiv:1708.02002), weighted by ``class_weights`` (the paper's alpha, per class).
    With ``gamma=0`` it is the (weighted) cross-entropy.
    """

    default_name = "focal"

    def __init__(self, *, num_classes: int | None, ignore_index: int | None = IGNORE_INDEX,
                 class_weights: Sequence[float] | None = None, gamma: float = 2.0,
                 name: str | None = None, reduction: str = "sum_over_batch_size",
                 dtype: str | None = None) -> None:
        super().__init__(num_classes=num_classes, ignore_index=ignore_index,
                         class_weights=class_weights, name=name, reduction=reduction,
                         dtype=dtype)
        if not math.isfinite(gamma) or gamma < 0:
            raise ConfigError(f"focal gamma must be finite and >= 0, got {gamma!r}")
        self.gamma = float(gamma)

    def pixel_losses(self, labels, probabilities, counted):
        truth = ops.one_hot(labels, self._classes(probabilities), dtype=probabilities.dtype)
        losses = keras.losses.categorical_focal_crossentropy(
            truth, probabilities, alpha=1.0, gamma=self.gamma)
        weights = self._class_weight_map(labels, losses.dtype)
        return losses if weights is None else losses * weights

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "gamma": self.gamma}


def make_loss(name: str, *, num_classes: int | None, ignore_index: int | None = IGNORE_INDEX,
              class_weights: Sequence[float] | None = None) -> keras.losses.Loss:
    """The segmentation loss called ``name``, with ``ignore_index`` pixels left out.

    Args:
        name: ``"ce"`` (cross-entropy), ``"dice"`` (soft Dice), ``"ce+dice"`` (their sum) or
            ``"focal"`` (gamma 2).
        num_classes: K, the depth of the model's probabilities; ``None`` reads it from the
            probabilities when the loss is first called.
        ignore_index: target value of unlabelled pixels, or ``None``.
        class_weights: K weights applied per pixel by its true class to the cross-entropy and
            focal terms (Dice does not use them).

    Returns:
        A Keras loss taking ``(b, h, w)`` integer targets and ``(b, h, w, K)`` probabilities.

    Raises:
        ConfigError: an unknown name, or class weights that do not fit ``num_classes``.
    """
    num_classes = None if num_classes is None else _check_num_classes(num_classes)
    class_weights = _check_class_weights(class_weights, num_classes)
    common = {"num_classes": num_classes, "ignore_index": ignore_index,
              "class_weights": class_weights}
    if name == "ce":
        if class_weights is None:
            return keras.losses.SparseCategoricalCrossentropy(ignore_class=ignore_index,
                                                              name="cross_entropy")
        return WeightedCrossEntropy(**common)
    if name == "dice":
        return DiceLoss(**common)
    if name == "ce+dice":
        return CrossEntropyDiceLoss(**common)
    if name == "focal":
        return FocalLoss(**common)
    raise ConfigError(f"unknown segmentation loss {name!r}; expected one of "
                      f"{', '.join(repr(n) for n in LOSSES)}", field="loss")


# ---- Keras metrics ----------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package="transfer")
class PixelAccuracy(keras.metrics.MeanIoU):
    """The share of counted pixels whose most probable class is the true one.

    Read off the same streaming confusion matrix as Keras's ``MeanIoU`` (this class only changes
    ``result``), so both metrics count exactly the same pixels: ``ignore_class`` and target values
    outside ``[0, K)`` are left out. The counts are int64: an epoch of 512x512 crops passes 2**31
    pixels after about 8,000 images.
    """

    def __init__(self, num_classes: int, name: str = "pixel_accuracy", dtype: str = "int64",
                 ignore_class: int | None = IGNORE_INDEX, sparse_y_true: bool = True,
                 sparse_y_pred: bool = False, axis: int = -1) -> None:
        super().__init__(num_classes=num_classes, name=name, dtype=dtype,
                         ignore_class=ignore_class, sparse_y_true=sparse_y_true,
                         sparse_y_pred=sparse_y_pred, axis=axis)

    def result(self):
        correct = ops.cast(ops.trace(self.total_cm), "float32")
        total = ops.cast(ops.sum(self.total_cm), "float32")
        return ops.divide_no_nan(correct, total)


def mean_iou_metric(num_classes: int, ignore_index: int | None = IGNORE_INDEX
                    ) -> keras.metrics.MeanIoU:
    """Keras's streaming mean IoU on probabilities, named ``mean_iou``, with int64 counts.

    The mean is over the classes that occur in the targets or the predictions seen so far, as in
    :func:`segmentation_summary`.
    """
    return keras.metrics.MeanIoU(num_classes=_check_num_classes(num_classes), name="mean_iou",
                                 dtype="int64", ignore_class=ignore_index, sparse_y_pred=False)


def segmentation_metrics_for_compile(num_classes: int, ignore_index: int | None = IGNORE_INDEX
                                     ) -> list[keras.metrics.Metric]:
    """``[mean_iou, pixel_accuracy]`` for ``model.compile(metrics=...)``; the history gets the
    columns ``mean_iou``, ``pixel_accuracy``, ``val_mean_iou`` and ``val_pixel_accuracy``."""
    num_classes = _check_num_classes(num_classes)
    return [mean_iou_metric(num_classes, ignore_index),
            PixelAccuracy(num_classes, ignore_class=ignore_index)]


# ---- NumPy summary ----------------------------------------------------------------------------

def _check_maps(predicted: np.ndarray, labels: np.ndarray, num_classes: int,
                ignore_index: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(predicted, labels, counted)`` as int64 arrays and a mask, after checking the values."""
    predicted = np.asarray(predicted)
    labels = np.asarray(labels)
    if predicted.shape != labels.shape or predicted.ndim != 3:
        raise DataError(f"expected predicted and labels of the same shape (n, h, w), got "
                        f"{predicted.shape} and {labels.shape}")
    predicted = predicted.astype(np.int64)
    labels = labels.astype(np.int64)
    counted = labels != ignore_index if ignore_index is not None else np.ones(labels.shape, bool)
    for what, values in (("labels", labels[counted]), ("predictions", predicted)):
        bad = (values < 0) | (values >= num_classes)
        if bad.any():
            raise DataError(f"{what} hold values outside the {num_classes} class ids "
                            f"(ignore_index {ignore_index}): {np.unique(values[bad])[:10]}")
    return predicted, labels, counted


def _confusion(predicted: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(labels * num_classes + predicted,
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _ratios(confusion: np.ndarray) -> tuple[list[float | None], list[float | None]]:
    """Per-class IoU and Dice; ``None`` for a class absent from both targets and predictions."""
    tp = np.diag(confusion).astype(np.float64)
    fp = confusion.sum(axis=0) - tp
    fn = confusion.sum(axis=1) - tp
    iou = [float(t / (t + p + n)) if t + p + n else None for t, p, n in zip(tp, fp, fn)]
    dice = [float(2 * t / (2 * t + p + n)) if t + p + n else None for t, p, n in zip(tp, fp, fn)]
    return iou, dice


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def per_image_iou(predicted: np.ndarray, labels: np.ndarray, num_classes: int,
                  ignore_index: int | None = IGNORE_INDEX) -> list[float | None]:
    """The mean IoU of each image over the classes in its targets or predictions; ``None`` for
    an image without a counted pixel."""
    num_classes = _check_num_classes(num_classes)
    return _per_image_iou(*_check_maps(predicted, labels, num_classes, ignore_index), num_classes)


def _per_image_iou(predicted: np.ndarray, labels: np.ndarray, counted: np.ndarray,
                   num_classes: int) -> list[float | None]:
    return [_mean(_ratios(_confusion(p[c], t[c], num_classes))[0]) if c.any() else None
            for p, t, c in zip(predicted, labels, counted)]


def segmentation_summary(predicted: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                         *, ignore_index: int | None = IGNORE_INDEX,
                         probabilities: np.ndarray | None = None) -> dict[str, Any]:
    """JSON-ready metrics of predicted class maps against target class maps.

    Args:
        predicted: ``(n, h, w)`` predicted class ids.
        labels: ``(n, h, w)`` target class ids, ``ignore_index`` where unlabelled.
        class_names: the K class names, in id order.
        ignore_index: target value of unlabelled pixels, or ``None``.
        probabilities: ``(n, h, w, K)`` probabilities, for the loss; optional.

    Returns:
        ``samples``; ``pixels`` (counted, ignored ones left out); ``pixel_accuracy``;
        ``mean_iou`` over the classes that occur in the targets or the predictions;
        ``per_class_iou`` ``{name: IoU, or None when the class occurs in neither}``; ``dice``
        (mean) and ``per_class_dice`` likewise; ``confusion_matrix`` (K x K pixel counts, rows:
        true class, columns: predicted class); ``class_names``; ``loss`` (mean cross-entropy
        over counted pixels, ``None`` without probabilities); ``per_image_iou`` (the mean IoU of
        each image, ``None`` for an image without counted pixels).

    Raises:
        DataError: no images or no counted pixel, shapes that differ, or class ids out of range.
    """
    score = SegmentationScore(class_names, ignore_index=ignore_index)
    score.update(predicted, labels, probabilities)
    return score.result()


class SegmentationScore:
    """:func:`segmentation_summary`, accumulated batch by batch: pixel counts, the loss's sum
    and each image's IoU are kept, never the probabilities, so a split of any size is scored
    in the memory of one batch."""

    def __init__(self, class_names: Sequence[str], *, ignore_index: int | None = IGNORE_INDEX):
        self.class_names = list(class_names)
        self.ignore_index = ignore_index
        k = len(self.class_names)
        self.confusion = np.zeros((k, k), dtype=np.int64)
        self.samples = 0
        self.per_image_iou: list[float | None] = []
        self.loss_sum: float | None = 0.0  # None once a batch comes without probabilities

    def update(self, predicted: np.ndarray, labels: np.ndarray,
               probabilities: np.ndarray | None = None) -> None:
        """Add a batch: ``(n, h, w)`` predicted and target class ids, and optionally the
        ``(n, h, w, K)`` probabilities for the loss."""
        num_classes = len(self.class_names)
        predicted, labels, counted = _check_maps(predicted, labels, num_classes,
                                                 self.ignore_index)
        self.confusion += _confusion(predicted[counted], labels[counted], num_classes)
        self.samples += len(labels)
        self.per_image_iou += _per_image_iou(predicted, labels, counted, num_classes)
        if probabilities is None or self.loss_sum is None:
            self.loss_sum = None
            return
        probabilities = np.asarray(probabilities)
        if probabilities.shape != labels.shape + (num_classes,):
            raise DataError(f"expected probabilities of shape {labels.shape + (num_classes,)}, "
                            f"got {probabilities.shape}")
        true_p = np.take_along_axis(probabilities, np.where(counted, labels, 0)[..., None],
                                    axis=-1)[..., 0][counted]
        self.loss_sum += float(-np.sum(np.log(np.clip(true_p.astype(np.float64), EPSILON,
                                                      1.0))))

    def result(self) -> dict[str, Any]:
        """The metrics of every batch added (see :func:`segmentation_summary`)."""
        if not self.samples:
            raise DataError("no samples to evaluate")
        pixels = int(self.confusion.sum())
        if not pixels:
            raise DataError(f"every target pixel is ignore_index ({self.ignore_index}): "
                            f"nothing to evaluate")
        iou, dice = _ratios(self.confusion)
        loss = None if self.loss_sum is None else self.loss_sum / pixels
        return {
            "samples": self.samples,
            "pixels": pixels,
            "pixel_accuracy": float(np.trace(self.confusion) / pixels),
            "mean_iou": _mean(iou),
            "per_class_iou": dict(zip(self.class_names, iou)),
            "dice": _mean(dice),
            "per_class_dice": dict(zip(self.class_names, dice)),
            "confusion_matrix": self.confusion.tolist(),
            "class_names": list(self.class_names),
            "loss": loss if loss is not None and math.isfinite(loss) else None,
            "per_image_iou": list(self.per_image_iou),
        }
