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
from transfer.data import (
    SPLIT_FOLDERS,
    ImageFolderData,
    Split,
    check_files,
    image_dataset,
    scan_class_folders,
)
from transfer.errors import DataError, RunDirError
from transfer.predict import is_model_name, load_classifier
from transfer.rundir import make_folder, write_json
from transfer.tasks import Predictions, get_task
from transfer.tasks.classification import classification_metrics

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


def folder_split(data_dir: str | os.PathLike, class_names: Sequence[str], *,
                 split: str = "val") -> tuple[Split, list[str]]:
    """The usable images of a folder with one sub-folder per class, labelled as the model's.

    A folder laid out as ``train/``, ``val/`` (and ``test/``) is read from its ``split``
    sub-folder. Files are checked as for training (:func:`transfer.data.check_files`), so they
    are decoded the same way. Every class folder must be one of ``class_names``; classes without
    a folder are allowed (a test set may lack some) and get zero support. For a model with the
    1000 ImageNet classes, folders are looked up with :func:`zoo.imagenet_class`: a class name
    (any of its synonyms, ``_`` read as a space), a WordNet id or a class index.

    Returns:
        The split, and the files left out as unusable (each logged with its reason).

    Raises:
        DataError: the folder is missing, holds no usable images, or has a class the model lacks.
    """
    root = Path(data_dir)
    if (root / "train").is_dir() and ((root / "val").is_dir() or (root / "test").is_dir()):
        if split not in SPLIT_FOLDERS or not (root / split).is_dir():
            raise DataError(f"{str(root)!r} is split into train/, val/... but has no {split}/ "
                            f"folder; choose another --split")
        root = root / split
    if not root.is_dir():
        raise DataError(f"data folder {str(root)!r} does not exist or is not a folder")
    classes = {name: files for name, files in scan_class_folders(root).items() if files}
    if not classes:
        raise DataError(f"data folder {str(root)!r} holds no class sub-folders with files")
    index = _class_index(sorted(classes), class_names, root)
    entries = []
    for files in classes.values():
        for path in files:
            try:
                st = os.stat(path)
                entries.append((path, st.st_size, st.st_mtime_ns))
            except OSError:
                entries.append((path, -1, 0))
    results, _ = check_files(entries)
    rows, skipped = [], []
    for name, files in classes.items():
        for path in files:
            result = results[path]
            if result["reason"] is None:
                rows.append((path, index[name], result))
            else:
                skipped.append(path)
                log.warning("skipping %s: %s", path, result["reason"])
    if not rows:
        raise DataError(f"data folder {str(root)!r} holds no usable images "
                        f"({len(skipped)} file(s) skipped)")
    return Split(paths=tuple(p for p, _, _ in rows), labels=tuple(y for _, y, _ in rows),
                 sources=tuple(r.get("source", p) for p, _, r in rows),
                 orientations=tuple(r.get("orientation", 1) for _, _, r in rows)), skipped


def is_imagenet(class_names: Sequence[str]) -> bool:
    """Whether ``class_names`` are the 1000 ImageNet classes in Keras's order."""
    import zoo

    return len(class_names) == len(zoo.imagenet_classes()) and \
        list(class_names) == zoo.imagenet_class_names()


def _class_index(folders: Sequence[str], class_names: Sequence[str], root: Path) -> dict[str, int]:
    """The label of each class folder; ImageNet folders by name, synonym or WordNet id."""
    if is_imagenet(class_names):
        import zoo
        from zoo.errors import ZooError

        index, failed = {}, []
        for name in folders:
            try:  # digits are class indices, as zoo.imagenet_class's errors suggest
                index[name] = zoo.imagenet_class(int(name) if name.isdigit() else name).index
            except ZooError as exc:
                failed.append((name, exc))
        if failed:
            names = ", ".join(repr(name) for name, _ in failed)
            raise DataError(
                f"class folder(s) {names} in {str(root)!r} do not name one ImageNet class "
                f"({failed[0][1]}); name each by a class name, WordNet id or index (e.g. "
                f"'Egyptian cat', 'n02124075' or '285'), or remove it")
        return index
    index = {name: i for i, name in enumerate(class_names)}
    unknown = [name for name in folders if name not in index]
    if unknown:
        raise DataError(
            f"class folder(s) {', '.join(map(repr, unknown))} in {str(root)!r} are not classes of "
            f"the model, which knows {', '.join(map(repr, class_names))}; rename or remove them")
    missing = [name for name in class_names if name not in folders]
    if missing:
        log.warning("no images of class(es) %s in %s", ", ".join(missing), root)
    return index


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
    from transfer.tasks.segmentation import looks_like_segmentation

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
