"""Evaluation: loss, top-1/top-5 accuracy, per-class precision/recall/F1, confusion matrix.

:func:`evaluate` loads a run directory (or a ``.keras`` classifier) and evaluates it on the saved
split of its training run, or on a new image folder, writing into one output folder::

    metrics.json           the numbers of :func:`classification_metrics`, with the data evaluated
    confusion_matrix.png   counts, coloured by the share of each true class (row-normalised)
    mistakes.png           the most confident mistakes: image, true label, prediction and score

The plots are the task's (:meth:`transfer.tasks.Task.write_artifacts`); training draws the same
ones at the end of a run.

A registry classifier (``evaluate("keras_mobilenet", "photos/")``) is evaluated on a folder whose
sub-folders are ImageNet classes, named by class name or WordNet id (``Egyptian cat/`` or
``n02124075/``). Top-1/top-5 are over the 1000 classes; the per-class rows, their macro average
and the confusion matrix cover the classes present in the folder (and, for the matrix, the
classes predicted), not the 1000.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from transfer import outputs, plots
from transfer.classification_metrics import classification_metrics
from transfer.data import (
    SPLIT_FOLDERS,
    ImageFolderData,
    Split,
    folder_split,  # noqa: F401  (importable from here, as before it moved to transfer.data)
    image_dataset,
    is_imagenet,
    looks_like_segmentation,
    scan_class_folders,
)
from transfer.errors import DataError, RunDirError
from transfer.predict import is_model_name, load_classifier
from transfer.rundir import make_folder, write_json
from transfer.tasks import Predictions, get_task

log = logging.getLogger(__name__)


def evaluate_model(model, dataset, class_names: Sequence[str]) -> dict:
    """Run ``model`` over a dataset of ``(images, labels)`` batches and compute the metrics."""
    probabilities, labels = [], []
    for images, batch_labels in dataset:
        probabilities.append(np.asarray(model(images, training=False)))
        batch_labels = np.asarray(batch_labels)
        labels.append(batch_labels.argmax(-1) if batch_labels.ndim == 2 else batch_labels)
    return classification_metrics(np.concatenate(probabilities), np.concatenate(labels),
                                  class_names)


def predict_split(model, split: Split, *, batch_size: int = 32,
                  truth: np.ndarray | None = None) -> Predictions:
    """Run a classifier taking raw images over the files of ``split``.

    Images are read, decoded and resized by the training pipeline
    (:func:`transfer.data.image_dataset`: normalised sources, EXIF orientation, bilinear
    resize), so a saved split is evaluated on exactly the pixels it was validated on. Files that
    fail to decode are left out and listed in ``unreadable``.
    """
    import tensorflow as tf

    if not split.paths:
        raise DataError("no images to evaluate")
    # Labels replaced by positions: the pipeline may drop a file, and positions say which.
    indexed = dataclasses.replace(split, labels=tuple(range(len(split))))
    ds = image_dataset(indexed, image_size=int(model.input_shape[1]))
    probabilities, kept = [], []
    for images, positions in ds.batch(batch_size).prefetch(tf.data.AUTOTUNE):
        probabilities.append(np.asarray(model(images, training=False)))
        kept.append(positions.numpy())
    kept_idx = np.concatenate(kept).astype(np.int64) if kept else np.zeros(0, np.int64)
    kept_set = set(kept_idx.tolist())
    unreadable = tuple(p for i, p in enumerate(split.paths) if i not in kept_set)
    if unreadable:
        log.warning("%d of %d image(s) could not be read and were left out, e.g. %s",
                    len(unreadable), len(split.paths), unreadable[0])
    if not len(kept_idx):
        raise DataError(f"none of the {len(split.paths)} images could be read, e.g. "
                        f"{split.paths[0]!r}")
    truth = np.asarray(split.labels, dtype=np.int64) if truth is None else truth
    labels = truth[kept_idx]
    return Predictions(np.concatenate(probabilities), labels,
                            tuple(split.paths[i] for i in kept_idx), unreadable)


def evaluate(source: str | os.PathLike, data_dir: str | os.PathLike | None = None, *,
             output_dir: str | os.PathLike | None = None, split: str = "val",
             batch_size: int = 32, weights: str | None = "imagenet") -> dict:
    """Evaluate a trained or pretrained classifier and write ``metrics.json`` and the two plots.

    Args:
        source: a run directory, a ``.keras`` classifier (class names from a
            ``class_names.json`` beside it) or a registry model name (built with ``weights``).
        data_dir: a folder with one sub-folder per class, named as the model's classes (ImageNet
            models: class names or WordNet ids). Without it, a run directory is evaluated on
            ``split`` of its saved ``split.json``: exactly the images it was validated on.
        output_dir: where the files go; default ``evaluation/<split>`` (saved split) or
            ``evaluation/<folder name>`` (``data_dir``) beside the model; for a registry model
            ``evaluation/<name>/<folder name>`` in the working directory.
        split: ``"val"``, ``"train"`` or ``"test"``; which saved split (or which sub-folder of a
            ``data_dir`` laid out in splits) to evaluate.
        batch_size: images per forward pass.
        weights: registry models only: ``"imagenet"``, ``None`` (random) or a weights file.

    Returns:
        The metrics of :func:`classification_metrics`, plus ``source``, ``data``, ``split``,
        ``unreadable`` (files left out) and ``artifacts`` (the paths written), as in
        ``metrics.json``.

    Raises:
        RunDirError: ``source`` is not a run directory or ``.keras`` file, or has no saved split.
        DataError: the images or their class folders do not fit the model.
        WeightsError: a registry model's weights cannot be found or do not fit.
    """
    if split not in SPLIT_FOLDERS:
        raise DataError(f"split must be one of {SPLIT_FOLDERS}, got {split!r}")
    pretrained = is_model_name(source)
    if pretrained and data_dir is None:  # checked before the model is built
        raise DataError(f"registry model {str(source)!r} has no saved split to evaluate on; pass "
                        f"DATA_DIR, a folder with one sub-folder per class (ImageNet class names "
                        f"or WordNet ids)")
    classifier = load_classifier(source, weights=weights)
    # Beside the model; a registry model has no folder, so the working directory.
    evaluations = (Path("evaluation") / str(source) if pretrained else
                   (classifier.run_dir or Path(source).parent) / "evaluation")
    task = get_task(classifier.contract.task, **classifier.contract.task_options())
    skipped: list[str] = []
    if data_dir is not None:
        data, skipped = _evaluation_split(task, source, data_dir, classifier.class_names, split)
        described, used_split = str(data_dir), None
        default_out = evaluations / Path(data_dir).resolve().name
    else:
        data = _saved_split(classifier.run_dir, source, classifier.class_names, split,
                            task.name)
        described, used_split = str(classifier.run_dir / "split.json"), split
        default_out = evaluations / split
    out_dir = make_folder(output_dir if output_dir is not None else default_out,
                          kind="evaluation")
    outputs.check_file(out_dir / "metrics.json")  # before the evaluation, not after it

    predictions = predict_split(classifier.model, data, batch_size=batch_size,
                                truth=task.labels(data, classifier.image_size))
    metrics = task.summarise(predictions.outputs, predictions.labels, classifier.class_names)
    if task.name == "classification" and is_imagenet(classifier.class_names):
        metrics = present_classes(metrics)
        artifacts = _imagenet_artifacts(metrics, predictions, out_dir)
    else:
        artifacts = task.write_artifacts(metrics, predictions, classifier.class_names, out_dir)
    metrics_path = out_dir / "metrics.json"
    result = {"source": str(source), "data": described, "split": used_split,
              "unreadable": skipped + list(predictions.unreadable), **metrics,
              "artifacts": {"metrics": str(metrics_path),
                            **{k: str(v) for k, v in artifacts.items()}}}
    write_json(metrics_path, result)
    log.info("%s: %s on %d images; wrote %s", described, task.headline(metrics),
             metrics["samples"], out_dir)
    return result


def _segmentation_layout(root: Path) -> str | None:
    """The folders that make ``root`` a segmentation layout, or ``None``."""
    if not looks_like_segmentation(root):
        return None
    if (root / "JPEGImages").is_dir() and (root / "SegmentationClass").is_dir():
        return "JPEGImages/ + SegmentationClass/"
    if (root / "annotations" / "trimaps").is_dir() and not (root / "masks").is_dir():
        return "images/ + annotations/trimaps/"
    return "images/ + masks/"


def _evaluation_split(task, source, data_dir: str | os.PathLike, class_names: Sequence[str],
                      split: str) -> tuple[Split, list[str]]:
    """``task.evaluation_split``, with a data layout of the other task named as such (rather
    than as class folders to rename, or a segmentation folder that lacks its masks)."""
    root = Path(data_dir)
    layout = _segmentation_layout(root)
    if task.name == "classification" and layout:
        raise DataError(f"{str(source)!r} is a classification model but {str(root)!r} is a "
                        f"segmentation layout ({layout}); evaluate it with a segmentation run, "
                        f"or pass a folder with one sub-folder per class")
    try:
        return task.evaluation_split(data_dir, class_names, split=split)
    except DataError:
        if task.name != "segmentation" or layout or not root.is_dir():
            raise
        folder = root / split if (root / "train").is_dir() and (root / split).is_dir() else root
        if not any(scan_class_folders(folder).values()):
            raise
        raise DataError(f"{str(source)!r} is a segmentation model but {str(root)!r} is a "
                        f"classification layout (one sub-folder per class); evaluate it with a "
                        f"classification run, or pass a folder of images/ + masks/") from None


def imagenet_labels() -> list[str]:
    """The ImageNet class names, a name two classes share followed by its WordNet id
    (``"crane (n02012849)"``), so that per-class rows keyed by name stay apart."""
    import zoo

    classes = zoo.imagenet_classes()
    counts: dict[str, int] = {}
    for c in classes:
        counts[c.name] = counts.get(c.name, 0) + 1
    return [c.name if counts[c.name] == 1 else f"{c.name} ({c.wnid})" for c in classes]


def present_classes(metrics: dict) -> dict:
    """ImageNet metrics reduced to the classes present in the data.

    Top-1/top-5 and the loss stay over the 1000 classes. ``per_class`` keeps the classes with
    images (keyed by :func:`imagenet_labels`), ``macro`` averages over them (``weighted`` is
    unchanged: absent classes weigh nothing), and ``confusion_matrix`` covers the classes
    present or predicted, named in ``confusion_classes``.
    """
    confusion = np.asarray(metrics["confusion_matrix"], dtype=np.int64)
    labels = imagenet_labels()
    support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    present = np.flatnonzero(support)
    shown = np.flatnonzero(support + predicted)
    per_class = {}
    for i in present:
        tp = confusion[i, i]
        precision = tp / predicted[i] if predicted[i] else 0.0
        recall = tp / support[i]
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[labels[i]] = {"precision": float(precision), "recall": float(recall),
                                "f1": float(f1), "support": int(support[i])}
    rows = list(per_class.values())
    weights = np.array([row["support"] for row in rows], dtype=np.float64)
    return {**metrics, "per_class": per_class,
            "macro": {key: float(np.mean([row[key] for row in rows]))
                      for key in ("precision", "recall", "f1")},
            "weighted": {key: float(np.dot([row[key] for row in rows], weights) / weights.sum())
                         for key in ("precision", "recall", "f1")},
            "confusion_matrix": confusion[np.ix_(shown, shown)].tolist(),
            "confusion_classes": [labels[i] for i in shown]}


def _imagenet_artifacts(metrics: dict, predictions: Predictions, out_dir: Path) -> dict[str, Path]:
    """The classification plots, the confusion matrix over :func:`present_classes` only."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {"confusion_matrix": out_dir / "confusion_matrix.png",
               "mistakes": out_dir / "mistakes.png"}
    plots.save_figure(plots.confusion_figure(metrics["confusion_matrix"],
                                             metrics["confusion_classes"]),
                      written["confusion_matrix"])
    plots.save_figure(plots.mistakes_figure(predictions.outputs, predictions.labels,
                                            predictions.paths, imagenet_labels()),
                      written["mistakes"])
    return written


def _saved_split(run_dir: Path | None, source, class_names: Sequence[str], split: str,
                 task: str) -> Split:
    if run_dir is None or not (run_dir / "split.json").is_file():
        layout = ("with one sub-folder per class" if task == "classification"
                  else "of images/ + masks/")
        raise RunDirError(f"{str(source)!r} has no split.json to evaluate on; pass DATA_DIR, a "
                          f"folder {layout}")
    folder = ImageFolderData.load(run_dir / "split.json")
    if tuple(folder.class_names) != tuple(class_names):
        raise RunDirError(f"split.json in {str(run_dir)!r} lists classes {folder.class_names} "
                          f"but class_names.json lists {tuple(class_names)}")
    chosen = getattr(folder, split)
    if chosen is None or not len(chosen):
        raise RunDirError(f"split.json in {str(run_dir)!r} has no {split!r} images")
    sources = chosen.sources or chosen.paths
    missing = [p for p, source in zip(chosen.paths, sources)
               if not Path(p).is_file() and not Path(source).is_file()]
    if missing:
        raise DataError(f"{len(missing)} of the {len(chosen)} {split} images listed in split.json "
                        f"no longer exist (e.g. {missing[0]!r}); pass DATA_DIR to evaluate on "
                        f"another folder")
    return chosen
