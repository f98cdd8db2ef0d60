"""Evaluation: loss, top-1/top-5 accuracy, per-class precision/recall/F1, confusion matrix.

:func:`evaluate` loads a run directory (or a ``.keras`` classifier) and evaluates it on the saved
split of its training run, or on a new image folder, writing into one output folder::

    metrics.json           the numbers of :func:`classification_metrics`, with the data evaluated
    confusion_matrix.png   counts, coloured by the share of each true class (row-normalised)
    mistakes.png           the most confident mistakes: image, true label, prediction and score

The plots are the task's (:meth:`transfer.tasks.Task.write_artifacts`); training draws the same
ones at the end of a run.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from transfer.data import (
    SPLIT_FOLDERS,
    ImageFolderData,
    Split,
    check_files,
    image_dataset,
    scan_class_folders,
)
from transfer.errors import DataError, RunDirError
from transfer.predict import load_classifier
from transfer.rundir import write_json
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
    a folder are allowed (a test set may lack some) and get zero support.

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
    index = {name: i for i, name in enumerate(class_names)}
    unknown = sorted(set(classes) - set(index))
    if unknown:
        raise DataError(
            f"class folder(s) {', '.join(map(repr, unknown))} in {str(root)!r} are not classes of "
            f"the model, which knows {', '.join(map(repr, class_names))}; rename or remove them")
    missing = [name for name in class_names if name not in classes]
    if missing:
        log.warning("no images of class(es) %s in %s", ", ".join(missing), root)
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


def evaluate(source: str | os.PathLike, data_dir: str | os.PathLike | None = None, *,
             output_dir: str | os.PathLike | None = None, split: str = "val",
             batch_size: int = 32) -> dict:
    """Evaluate a trained classifier and write ``metrics.json`` and the two plots.

    Args:
        source: a run directory or a ``.keras`` classifier (class names from a
            ``class_names.json`` beside it).
        data_dir: a folder with one sub-folder per class, named as the model's classes. Without
            it, a run directory is evaluated on ``split`` of its saved ``split.json``: exactly
            the images it was validated on.
        output_dir: where the files go; default ``evaluation/<split>`` (saved split) or
            ``evaluation/<folder name>`` (``data_dir``) beside the model.
        split: ``"val"``, ``"train"`` or ``"test"``; which saved split (or which sub-folder of a
            ``data_dir`` laid out in splits) to evaluate.
        batch_size: images per forward pass.

    Returns:
        The metrics of :func:`classification_metrics`, plus ``source``, ``data``, ``split``,
        ``unreadable`` (files left out) and ``artifacts`` (the paths written), as in
        ``metrics.json``.

    Raises:
        RunDirError: ``source`` is not a run directory or ``.keras`` file, or has no saved split.
        DataError: the images or their class folders do not fit the model.
    """
    if split not in SPLIT_FOLDERS:
        raise DataError(f"split must be one of {SPLIT_FOLDERS}, got {split!r}")
    classifier = load_classifier(source)
    home = classifier.run_dir or Path(source).parent
    task = get_task(classifier.contract.task, **classifier.contract.task_options())
    skipped: list[str] = []
    if data_dir is not None:
        data, skipped = task.evaluation_split(data_dir, classifier.class_names, split=split)
        described, used_split = str(data_dir), None
        default_out = home / "evaluation" / Path(data_dir).resolve().name
    else:
        data = _saved_split(classifier.run_dir, source, classifier.class_names, split)
        described, used_split = str(classifier.run_dir / "split.json"), split
        default_out = home / "evaluation" / split
    out_dir = Path(output_dir) if output_dir is not None else default_out

    predictions = predict_split(classifier.model, data, batch_size=batch_size,
                                truth=task.labels(data, classifier.image_size))
    metrics = task.summarise(predictions.outputs, predictions.labels, classifier.class_names)
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


def _saved_split(run_dir: Path | None, source, class_names: Sequence[str], split: str) -> Split:
    if run_dir is None or not (run_dir / "split.json").is_file():
        raise RunDirError(f"{str(source)!r} has no split.json to evaluate on; pass DATA_DIR, a "
                          f"folder with one sub-folder per class")
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
