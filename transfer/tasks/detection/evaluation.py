"""Detection's evaluation: COCO's box metrics through pycocotools, batch by batch, and the figures
people look at (precision-recall curves per class, the worst-detected images, and a confusion
matrix with a background class).

The metrics are COCO's (Lin et al. 2014, "Microsoft COCO: Common Objects in Context"): average
precision over ten IoU thresholds 0.50:0.05:0.95, each the mean of the interpolated precision at
101 recall levels, at most 100 detections per image and class, areas split at 32^2 and 96^2
image pixels. pycocotools computes them from in-memory COCO objects, so the numbers are the ones
published results are compared with.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import io
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from transfer import plots
from transfer.errors import DataError
from transfer.tasks.base import Evaluator, present_numbers

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: predictions at least this confident are drawn in ``worst.png`` and counted in the confusion
#: matrix (predict's default threshold); the COCO metrics take every detection given
SHOWN_SCORE = 0.25
#: the IoU at which a prediction finds its box in the curves, the worst images and the matrix
MATCH_IOU = 0.5
#: the images drawn in ``worst.png``
WORST = 8
#: the classes drawn in ``pr_curves.png`` (those with the most boxes); the rest are named
MAX_CURVES = 20

TRUTH_COLOUR = "#1a9850"
PREDICTION_COLOUR = "#d73027"


def letterbox_scale(size: Sequence[int], image_size: int) -> float:
    """``r = image_size / max(height, width)``: model-input pixels per image pixel."""
    height, width = (int(v) for v in size)
    if height <= 0 or width <= 0:
        raise DataError(f"an image size must be positive, got height {height}, width {width}")
    return image_size / max(height, width)


def to_image_pixels(boxes: np.ndarray, size: Sequence[int], image_size: int) -> np.ndarray:
    """Boxes ``[n, 4]`` (x0, y0, x1, y1) in model-input pixels of a letterboxed image of
    ``size`` (height, width), in the image's own pixels: divided by :func:`letterbox_scale`
    and clipped to the image (a box may reach into the grey padding right of or below it)."""
    height, width = (float(v) for v in size)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) / letterbox_scale(size,
                                                                                  image_size)
    return np.clip(boxes, 0.0, [width, height, width, height])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of each box of ``a`` ``[n, 4]`` with each of ``b`` ``[m, 4]`` (x0, y0, x1, y1):
    ``[n, m]``, 0 where a union is empty. Areas are ``(x1 - x0) * (y1 - y0)``, as COCO's."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = (a[:, 2] - a[:, 0]).clip(0) * (a[:, 3] - a[:, 1]).clip(0)
    area_b = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    wide = (np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]))
    tall = (np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]))
    inter = wide.clip(0) * tall.clip(0)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


@dataclasses.dataclass(frozen=True)
class _Image:
    """What is kept of one image: its boxes and detections in its own pixels, not its pixels."""

    path: str | None
    size: tuple[int, int]  # height, width
    boxes: np.ndarray  # [n, 4] float64
    classes: np.ndarray  # [n] int64
    difficult: np.ndarray  # [n] bool
    det_boxes: np.ndarray  # [m, 4] float64, best first
    det_scores: np.ndarray  # [m] float64
    det_classes: np.ndarray  # [m] int64

    def shown(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        keep = self.det_scores >= SHOWN_SCORE
        return self.det_boxes[keep], self.det_scores[keep], self.det_classes[keep]


class DetectionEvaluator(Evaluator):
    """COCO box metrics of a split, batch by batch.

    :meth:`update` keeps each image's ground truth and valid detections, mapped back from the
    model's letterboxed square to the image's pixels (boxes only: a few kilobytes an image);
    :meth:`result` scores them with pycocotools' ``COCOeval``.

    Difficult boxes (Pascal VOC's flag) follow VOC's rule: a missed difficult box is not a
    miss, and a detection on one is not a false positive. pycocotools has that rule for its
    crowd regions, so a difficult box goes in as ``iscrowd=1``: ``COCOeval`` then marks it
    ignored (its own ``ignore`` field is overwritten from ``iscrowd``), leaves it out of the
    boxes to find, lets any number of detections land on it, and leaves those detections out
    of the precision (a detection takes a regular box over an ignored one when it overlaps
    both). Only the overlap differs: COCO measures a detection against a crowd region by
    intersection over the detection's area, VOC by the plain IoU, so :func:`_voc_cocoeval`
    computes the plain IoU for every box.
    """

    def __init__(self, class_names: Sequence[str], *, image_size: int):
        super().__init__(class_names)
        if not self.class_names:
            raise DataError("a detection evaluation needs at least one class name")
        self.image_size = int(image_size)
        self._images: list[_Image] = []
        self._scored: tuple[int, dict[str, Any], np.ndarray] | None = None

    # ---- streaming ------------------------------------------------------------------------
    def update(self, outputs: Mapping[str, np.ndarray], labels: Any,
               paths: Sequence[str]) -> None:
        """Add a batch: ``outputs`` the decode dict (``boxes`` in model-input pixels,
        ``scores``, ``classes``, ``count``), ``labels`` the images' annotation dicts (image
        pixels), ``paths`` their files (may be empty when there are none to draw)."""
        boxes = np.asarray(outputs["boxes"], dtype=np.float64)
        scores = np.asarray(outputs["scores"], dtype=np.float64)
        classes = np.asarray(outputs["classes"], dtype=np.int64)
        counts = np.asarray(outputs["count"], dtype=np.int64).reshape(-1)
        if len(labels) != len(counts):
            raise ValueError(f"{len(counts)} images of outputs but {len(labels)} annotations")
        k = len(self.class_names)
        for i, annotation in enumerate(labels):
            path = str(paths[i]) if i < len(paths) else None
            where = path or f"image {len(self._images)} of the split"
            truth = np.asarray(annotation["boxes"], dtype=np.float64).reshape(-1, 4)
            truth_classes = np.asarray(annotation["classes"], dtype=np.int64).reshape(-1)
            flags = annotation.get("difficult")
            difficult = np.asarray(flags if flags is not None else [False] * len(truth),
                                   dtype=bool).reshape(-1)
            if not len(truth_classes) == len(difficult) == len(truth):
                raise DataError(f"{where}: {len(truth)} boxes, {len(truth_classes)} classes and "
                                f"{len(difficult)} difficult flags; re-create its annotations")
            outside = truth_classes[(truth_classes < 0) | (truth_classes >= k)]
            if len(outside):
                raise DataError(f"{where}: a box of class {int(outside[0])} is outside the "
                                f"model's {k} classes (0..{k - 1}); evaluate it with data "
                                "labelled as the model's classes")
            size = tuple(int(v) for v in annotation["size"])
            n = int(min(counts[i], len(scores[i])))
            keep = np.argsort(-scores[i, :n], kind="stable")
            keep = keep[(classes[i, keep] >= 0) & (classes[i, keep] < k)]
            self._images.append(_Image(
                path=path, size=(size[0], size[1]), boxes=truth, classes=truth_classes,
                difficult=difficult,
                det_boxes=to_image_pixels(boxes[i, keep], size, self.image_size),
                det_scores=scores[i, keep], det_classes=classes[i, keep]))

    # ---- metrics --------------------------------------------------------------------------
    def result(self) -> dict[str, Any]:
        """The JSON-ready metrics: ``map`` (AP at IoU 0.50:0.95), ``map50``, ``map75``,
        ``map_small`` / ``_medium`` / ``_large`` (``None`` where the split has no such box),
        ``per_class`` (``ap``, ``ap50`` and ``boxes`` per class name, the APs ``None`` for a
        class without boxes), ``precision`` and ``recall`` at the best F1 of the all-class
        curve at IoU 0.5, ``confusion_matrix`` (at IoU 0.5 of the detections scoring at
        least :data:`SHOWN_SCORE`, true class by row, predicted by column, the last of each
        ``background``), the counts (``samples`` images, ``boxes`` scored, ``difficult``
        boxes left out) and ``class_names``."""
        return copy.deepcopy(self._evaluate()[1])

    def map_result(self) -> dict[str, float | None]:
        """``map`` and ``map50`` as :meth:`result` gives them, for a quarter of its matching
        and none of the rest (each epoch's validation mAP)."""
        if not self._images:
            raise DataError("no images to evaluate: the detection evaluation received none")
        return _coco_map(self._images, self.class_names)

    def _evaluate(self) -> tuple[int, dict[str, Any], np.ndarray]:
        if not self._images:
            raise DataError("no images to evaluate: the detection evaluation received none")
        if self._scored is None or self._scored[0] != len(self._images):
            metrics, curves = _coco_metrics(self._images, self.class_names)
            metrics["confusion_matrix"] = _confusion(self._images,
                                                     len(self.class_names)).tolist()
            metrics["class_names"] = list(self.class_names)
            self._scored = (len(self._images), metrics, curves)
        return self._scored

    # ---- figures --------------------------------------------------------------------------
    def write_artifacts(self, metrics: dict[str, Any],
                        out_dir: str | os.PathLike) -> dict[str, Path]:
        """``pr_curves.png``, ``worst.png`` and ``confusion_matrix.png`` in ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        _, scored, curves = self._evaluate()
        written = {"pr_curves": out / "pr_curves.png", "worst": out / "worst.png",
                   "confusion_matrix": out / "confusion_matrix.png"}
        plots.save_figure(pr_curves_figure(curves, metrics, self.class_names),
                          written["pr_curves"])
        plots.save_figure(worst_figure(self._worst(), self.class_names), written["worst"])
        confusion = metrics.get("confusion_matrix", scored["confusion_matrix"])
        plots.save_figure(detection_confusion_figure(confusion, self.class_names,
                                                     len(self._images)),
                          written["confusion_matrix"])
        return written

    def _worst(self) -> list[tuple[_Image, float, int, int]]:
        """Up to :data:`WORST` images with a file and boxes to find, lowest recall at IoU 0.5
        of the shown predictions (right class) first, then most false detections: ``(image,
        recall, boxes found, false detections)``."""
        ranked = []
        for position, image in enumerate(self._images):
            wanted = int((~image.difficult).sum())
            if image.path is None or not wanted:
                continue
            det_boxes, _, det_classes = image.shown()
            match = _match(det_boxes, det_classes, image, same_class=True)
            hits = match[match >= 0]
            found = int(np.unique(hits[~image.difficult[hits]]).size)
            false = int((match == -1).sum())
            ranked.append((found / wanted, -false, position, image, found, false))
        ranked.sort(key=lambda r: r[:3])
        return [(r[3], r[0], r[4], r[5]) for r in ranked[:WORST]]


@functools.cache
def _voc_cocoeval() -> type:
    """``COCOeval`` with the plain IoU against every box, crowd-like (difficult) boxes
    included; the rest of COCO's evaluation as it is. Made on first use, so pycocotools is
    imported when scoring, not with this module."""
    from pycocotools.cocoeval import COCOeval

    class VocIoU(COCOeval):
        def computeIoU(self, imgId, catId):  # noqa: N802, N803 - COCOeval's names
            truth, dets = self._gts[imgId, catId], self._dts[imgId, catId]
            if not truth and not dets:
                return []
            # COCOeval's order of the detections: best first, stable, maxDets[-1] of them
            order = np.argsort([-d["score"] for d in dets], kind="mergesort")
            dets = [dets[i] for i in order[:self.params.maxDets[-1]]]
            return box_iou(_xyxy([d["bbox"] for d in dets]), _xyxy([g["bbox"] for g in truth]))

    return VocIoU


def _xyxy(xywh: list) -> np.ndarray:
    boxes = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def _coco_evaluation(images: Sequence[_Image], class_names: Sequence[str], *,
                     areas: bool = True):
    """pycocotools' evaluation of ``images``, accumulated, from in-memory COCO objects (ids from
    1: pycocotools takes a match id of 0 for none); ``areas=False`` scores the "all" area range
    alone (a quarter of the matching), which leaves mAP and mAP50 as they are."""
    from pycocotools.coco import COCO

    gt_anns, dt_anns = [], []
    for img_id, image in enumerate(images, start=1):
        for box, cls, hard in zip(image.boxes, image.classes, image.difficult):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            gt_anns.append({"id": len(gt_anns) + 1, "image_id": img_id,
                            "category_id": int(cls) + 1, "bbox": [float(box[0]), float(box[1]),
                                                                  w, h],
                            "area": max(w, 0.0) * max(h, 0.0), "iscrowd": int(hard)})
        for box, score, cls in zip(image.det_boxes, image.det_scores, image.det_classes):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            dt_anns.append({"id": len(dt_anns) + 1, "image_id": img_id,
                            "category_id": int(cls) + 1, "bbox": [float(box[0]), float(box[1]),
                                                                  w, h],
                            "area": w * h, "score": float(score), "iscrowd": 0})
    coco_images = [{"id": i, "height": im.size[0], "width": im.size[1]}
                   for i, im in enumerate(images, start=1)]
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(class_names)]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        truth, detections = COCO(), COCO()
        truth.dataset = {"images": coco_images, "categories": categories,
                         "annotations": gt_anns}
        detections.dataset = {"images": coco_images, "categories": categories,
                              "annotations": dt_anns}
        truth.createIndex()
        detections.createIndex()
        evaluation = _voc_cocoeval()(truth, detections, "bbox")
        if not areas:
            evaluation.params.areaRng = evaluation.params.areaRng[:1]
            evaluation.params.areaRngLbl = evaluation.params.areaRngLbl[:1]
        evaluation.evaluate()
        evaluation.accumulate()
    return evaluation


def _coco_map(images: Sequence[_Image], class_names: Sequence[str]) -> dict[str, float | None]:
    """``map`` and ``map50`` alone, as :func:`_coco_metrics` gives them (COCO's mean of the
    precisions that exist, over every class and recall level, at IoU 0.50:0.95 and at 0.5)."""
    precision = _coco_evaluation(images, class_names, areas=False).eval["precision"][..., 0, -1]
    present = precision > -1
    return {"map": _clean(precision[present].mean()) if present.any() else None,
            "map50": _clean(precision[0][present[0]].mean()) if present[0].any() else None}


def _coco_metrics(images: Sequence[_Image],
                  class_names: Sequence[str]) -> tuple[dict[str, Any], np.ndarray]:
    """COCO's metrics of ``images``, and the precision at IoU 0.5 by recall level and class
    ``[101, K]`` (-1 for a class without boxes)."""
    evaluation = _coco_evaluation(images, class_names)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its summary
        evaluation.summarize()
    stats = [_clean(s) for s in evaluation.stats[:6]]
    # precision [T, R, K, A, M]: IoU thresholds, recall levels, classes, areas, max dets
    precision = evaluation.eval["precision"][:, :, :, 0, -1]
    scored = [~im.difficult for im in images]
    boxes = np.bincount(np.concatenate([im.classes[s] for im, s in zip(images, scored)]),
                        minlength=len(class_names))
    per_class = {}
    for k, name in enumerate(class_names):
        present = precision[:, :, k] > -1
        per_class[name] = {
            "ap": _clean(precision[:, :, k][present].mean()) if present.any() else None,
            "ap50": _clean(precision[0, :, k].mean()) if present[0].all() else None,
            "boxes": int(boxes[k])}
    curves = precision[0]
    best_precision, best_recall = _best_f1(curves, evaluation.params.recThrs)
    metrics = {"samples": len(images), "boxes": int(boxes.sum()),
               "difficult": int(sum(int(im.difficult.sum()) for im in images)),
               "map": stats[0], "map50": stats[1], "map75": stats[2], "map_small": stats[3],
               "map_medium": stats[4], "map_large": stats[5], "per_class": per_class,
               "precision": best_precision, "recall": best_recall}
    return metrics, curves


def _best_f1(curves: np.ndarray, recall_levels: np.ndarray) -> tuple[float | None, float | None]:
    """Precision and recall where F1 is highest on the all-class curve: the precision at each
    recall level averaged over the classes with boxes (the curve whose mean is mAP50)."""
    present = (curves > -1).all(axis=0)
    if not present.any():
        return None, None
    precision = curves[:, present].mean(axis=1)
    total = precision + recall_levels
    f1 = np.divide(2 * precision * recall_levels, total, out=np.zeros_like(total),
                   where=total > 0)
    best = int(np.argmax(f1))
    return _clean(precision[best]), _clean(recall_levels[best])


def _clean(value: float) -> float | None:
    """A number of pycocotools as reported: ``None`` for its -1 (nothing to score), else
    rounded to 12 decimals. Its precision is ``tp / (tp + fp + eps)``, which leaves a perfect
    score at 1 - 2e-16; the rounding gives 1.0 back and changes nothing else that matters."""
    return None if value < 0 else round(float(value), 12)


def _match(det_boxes: np.ndarray, det_classes: np.ndarray, image: _Image, *,
           same_class: bool) -> np.ndarray:
    """The box each detection (best first) finds at IoU >= :data:`MATCH_IOU`, COCO's greedy
    way: the free regular box of highest IoU, else a difficult box (which any number may
    find); -1 for none. ``same_class``: only boxes of the detection's class count."""
    iou = box_iou(det_boxes, image.boxes)
    if same_class:
        iou = np.where(det_classes[:, None] == image.classes[None, :], iou, 0.0)
    taken = np.zeros(len(image.boxes), dtype=bool)
    match = np.full(len(det_boxes), -1, dtype=np.int64)
    for d in range(len(det_boxes)):
        regular = np.where(~image.difficult & ~taken & (iou[d] >= MATCH_IOU), iou[d], -1.0)
        if regular.size and regular.max() >= 0:
            match[d] = int(regular.argmax())
            taken[match[d]] = True
            continue
        hard = np.where(image.difficult & (iou[d] >= MATCH_IOU), iou[d], -1.0)
        if hard.size and hard.max() >= 0:
            match[d] = int(hard.argmax())
    return match


def _confusion(images: Sequence[_Image], num_classes: int) -> np.ndarray:
    """``[K + 1, K + 1]`` counts: true class by row, predicted class by column, index K the
    background (a row of false detections, a column of missed boxes); detections scoring at
    least :data:`SHOWN_SCORE` matched to boxes of any class at IoU 0.5; difficult boxes and
    the detections on them left out."""
    confusion = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    for image in images:
        det_boxes, _, det_classes = image.shown()
        match = _match(det_boxes, det_classes, image, same_class=False)
        found = np.zeros(len(image.boxes), dtype=bool)
        for cls, m in zip(det_classes, match):
            if m < 0:
                confusion[num_classes, cls] += 1
            elif not image.difficult[m]:
                confusion[image.classes[m], cls] += 1
                found[m] = True
        for cls in image.classes[~found & ~image.difficult]:
            confusion[cls, num_classes] += 1
    return confusion


# ---- figures ----------------------------------------------------------------------------------

def pr_curves_figure(curves: np.ndarray, metrics: Mapping[str, Any],
                     class_names: Sequence[str]) -> Figure:
    """Precision against recall at IoU 0.5 per class (COCO's interpolated precision at 101
    recall levels), each class's AP50 in the legend, the all-class mean curve in black with
    the best-F1 point; the :data:`MAX_CURVES` classes with the most boxes, the rest named."""
    recall = np.linspace(0.0, 1.0, curves.shape[0])
    per_class = metrics.get("per_class", {})
    present = [k for k in range(len(class_names)) if (curves[:, k] > -1).all()]
    present.sort(key=lambda k: (-(per_class.get(class_names[k]) or {}).get("boxes", 0), k))
    drawn, left = present[:MAX_CURVES], present[MAX_CURVES:]
    fig = plots.new_figure(9.0, 6.0)
    ax = fig.add_axes((0.08, 0.13, 0.55, 0.78))
    colours = _colours(len(drawn))
    for colour, k in zip(colours, drawn):
        ax.plot(recall, curves[:, k], color=colour, linewidth=1.2,
                label=f"{class_names[k]} {curves[:, k].mean():.3f}")
    if present:
        mean = curves[:, present].mean(axis=1)
        ax.plot(recall, mean, color="black", linewidth=2.5,
                label=f"all classes {mean.mean():.3f}")
        if metrics.get("precision") is not None:
            ax.plot([metrics["recall"]], [metrics["precision"]], "o", color="black",
                    label=f"best F1: P {metrics['precision']:.3f}, R {metrics['recall']:.3f}")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), title="AP50",
                  title_fontsize=8)
    else:
        ax.text(0.5, 0.5, "no boxes to find", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)
    ax.set_title(f"precision-recall at IoU 0.5 on {metrics.get('samples', '?')} images")
    if left:
        names = ", ".join(class_names[k] for k in left)
        note = f"not drawn ({len(left)}, fewest boxes): {names}"
        fig.text(0.01, 0.01, plots.wrap_title(note, 8.8, 7)[:600], fontsize=7, va="bottom")
    return fig


def worst_figure(worst: Sequence[tuple[_Image, float, int, int]],
                 class_names: Sequence[str]) -> Figure:
    """The worst-detected images, each from its file, boxes in green and predictions scoring
    at least :data:`SHOWN_SCORE` in red, labelled (difficult boxes dashed)."""
    from matplotlib.patches import Rectangle

    if not worst:
        fig = plots.new_figure(4.5, 1.5)
        fig.text(0.5, 0.5, "no images with boxes to draw", ha="center", va="center")
        return fig
    cols = min(4, len(worst))
    rows = math.ceil(len(worst) / cols)
    fig = plots.new_figure(3.2 * cols, 3.6 * rows + 0.4)
    for n, (image, recall, found, false) in enumerate(worst):
        ax = fig.add_subplot(rows, cols, n + 1)
        pixels = plots.thumbnail(image.path, 320)
        ax.imshow(pixels)
        ax.set_axis_off()
        scale = min(pixels.shape[1] / image.size[1], pixels.shape[0] / image.size[0])
        det_boxes, det_scores, det_classes = image.shown()
        drawn = [(box, TRUTH_COLOUR, class_names[cls], "--" if hard else "-", "bottom")
                 for box, cls, hard in zip(image.boxes, image.classes, image.difficult)]
        drawn += [(box, PREDICTION_COLOUR, f"{class_names[cls]} {score:.2f}", "-", "top")
                  for box, score, cls in zip(det_boxes, det_scores, det_classes)]
        for box, colour, text, style, side in drawn:
            x0, y0, x1, y1 = (float(v) * scale for v in box)
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour,
                                   linewidth=1.2, linestyle=style))
            ax.text(x0, y0 if side == "bottom" else y1, text, fontsize=6, color="white",
                    va=side, bbox={"facecolor": colour, "pad": 1, "linewidth": 0})
        wanted = int((~image.difficult).sum())
        ax.set_title(plots.wrap_title(f"{Path(image.path).name}: recall {recall:.2f} "
                                      f"({found}/{wanted}), {false} false", 3.0, 8),
                     fontsize=8)
    fig.suptitle(f"lowest recall at IoU 0.5: boxes in green, predictions (score >= "
                 f"{SHOWN_SCORE}) in red", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / (3.6 * rows + 0.4)))
    return fig


def detection_confusion_figure(confusion: Any, class_names: Sequence[str],
                               samples: int) -> Figure:
    """The confusion matrix of :meth:`DetectionEvaluator.result` with its background row and
    column, drawn by :func:`transfer.plots.confusion_figure`."""
    confusion = np.asarray(confusion, dtype=np.int64)
    fig = plots.confusion_figure(confusion, [*class_names, "background"])
    found = int(np.trace(confusion[:-1, :-1]))
    boxes = int(confusion[:-1].sum())
    fig.axes[0].set_title(f"boxes matched at IoU 0.5 by predictions scoring >= {SHOWN_SCORE}"
                          f"\n{found} of {boxes} boxes found with their class, {samples} images",
                          fontsize=9)
    fig.tight_layout()
    return fig


def _colours(n: int) -> list:
    from matplotlib import colormaps

    table = colormaps["tab20"] if n > 10 else colormaps["tab10"]
    return [table(i % table.N) for i in range(n)]


# ---- what the task prints ---------------------------------------------------------------------

def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def headline(metrics: Mapping[str, Any]) -> str:
    """``mAP50-95 0.xxx, mAP50 0.xxx, mAP75 0.xxx`` (``n/a`` where the split has no boxes)."""
    return (f"mAP50-95 {_number(metrics['map'])}, mAP50 {_number(metrics['map50'])}, "
            f"mAP75 {_number(metrics['map75'])}")


def key_numbers(metrics: Mapping[str, Any]) -> list[tuple[str, float]]:
    """``(label, value)`` of the numbers a summary shows, those present."""
    return present_numbers(metrics, (("map", "mAP50-95"), ("map50", "mAP50"),
                                     ("map75", "mAP75"), ("precision", "precision"),
                                     ("recall", "recall")))


def evaluation_lines(result: Mapping[str, Any]) -> list[str]:
    """What ``zoo evaluate`` prints: the headline on N images (and the data, when the result
    names it), precision and recall at the best F1, then AP50-95, AP50 and boxes per class."""
    data = f" ({result['data']})" if result.get("data") else ""
    lines = [f"{headline(result)} on {result['samples']} images{data}"]
    difficult = f" ({result['difficult']} difficult left out)" if result.get("difficult") else ""
    lines.append(f"{result['boxes']} boxes{difficult}; precision {_number(result['precision'])},"
                 f" recall {_number(result['recall'])} at the best F1 (IoU 0.5)")
    width = max([20, *(len(name) for name in result["per_class"])])
    lines.append(f"{'class':<{width}} {'AP50-95':>8} {'AP50':>7} {'boxes':>6}")
    for name, row in result["per_class"].items():
        lines.append(f"{name:<{width}} {_number(row['ap']):>8} {_number(row['ap50']):>7} "
                     f"{row['boxes']:>6}")
    return lines
