"""Evaluation: a trained or pretrained model's metrics on a saved split or a new folder.

:func:`evaluate` loads a run directory (or a ``.keras`` model, or a registry classifier) and
evaluates it on the saved split of its training run, or on a new folder of the task's layout,
writing into one output folder ``metrics.json`` (the numbers of the task's
:meth:`~transfer.tasks.Task.summarise`, with the data evaluated) and the task's figures
(:meth:`~transfer.tasks.Task.write_artifacts`; classification: ``confusion_matrix.png`` and
``mistakes.png``; segmentation: ``worst.png``). Training draws the same ones at the end of a
run. A folder laid out for another task is named as such.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from transfer import outputs
from transfer.data import SPLIT_FOLDERS, ImageFolderData, Split, image_dataset
from transfer.errors import DataError, RunDirError
from transfer.predict import is_model_name, load_classifier
from transfer.rundir import make_folder, write_json
from transfer.tasks import TASKS, Evaluator, Predictions, Task, get_task, recognise

log = logging.getLogger(__name__)


def score_split(model, split: Split, evaluator: Evaluator, *, batch_size: int = 32,
                truth=None, task: Task | None = None) -> tuple[str, ...]:
    """Run a model taking raw images over the files of ``split``, batch by batch, into
    ``evaluator``; the files that could not be read (left out, with a warning).

    Images are read, decoded and resized by the training pipeline
    (:func:`transfer.data.image_dataset`: normalised sources, EXIF orientation, bilinear
    resize), so a saved split is evaluated on exactly the pixels it was validated on.
    ``truth``: the ground truth by position (default: the split's labels); ``task``: whose
    :attr:`~transfer.tasks.Task.fit` brings images to the model's size and whose
    :meth:`~transfer.tasks.Task.postprocess` (for evaluation) turns raw outputs into results
    (default: stretched images, raw outputs).
    """
    import tensorflow as tf

    if not split.paths:
        raise DataError("no images to evaluate")
    # Labels replaced by positions: the pipeline may drop a file, and positions say which.
    indexed = dataclasses.replace(split, labels=tuple(range(len(split))))
    ds = image_dataset(indexed, image_size=int(model.input_shape[1]),
                       fit=task.fit if task is not None else "stretch")
    truth = np.asarray(split.labels, dtype=np.int64) if truth is None else truth
    kept: set[int] = set()
    for images, positions in ds.batch(batch_size).prefetch(tf.data.AUTOTUNE):
        outputs = model(images, training=False)
        if task is not None:
            outputs = task.postprocess(outputs, evaluating=True)
        positions = positions.numpy().astype(np.int64)
        evaluator.update(tf.nest.map_structure(np.asarray, outputs), truth[positions],
                         [split.paths[i] for i in positions])
        kept.update(positions.tolist())
    unreadable = tuple(p for i, p in enumerate(split.paths) if i not in kept)
    if unreadable:
        log.warning("%d of %d image(s) could not be read and were left out, e.g. %s",
                    len(unreadable), len(split.paths), unreadable[0])
    if not kept:
        raise DataError(f"none of the {len(split.paths)} images could be read, e.g. "
                        f"{split.paths[0]!r}")
    return unreadable


class _Collect(Evaluator):
    """Keeps every output, for :func:`predict_split`."""

    def __init__(self):
        super().__init__(())
        self.outputs: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.paths: list[str] = []

    def update(self, outputs, labels, paths):
        self.outputs.append(outputs)
        self.labels.append(np.asarray(labels))
        self.paths += paths

    def result(self):
        return {}


def predict_split(model, split: Split, *, batch_size: int = 32,
                  truth: np.ndarray | None = None) -> Predictions:
    """Every output of a model taking raw images on the files of ``split``, with their labels
    (see :func:`score_split`, which scores a split without keeping them)."""
    collected = _Collect()
    unreadable = score_split(model, split, collected, batch_size=batch_size, truth=truth)
    return Predictions(np.concatenate(collected.outputs), np.concatenate(collected.labels),
                       tuple(collected.paths), unreadable)


def evaluate(source: str | os.PathLike, data_dir: str | os.PathLike | None = None, *,
             output_dir: str | os.PathLike | None = None, split: str = "val",
             batch_size: int = 32, weights: str | None = "imagenet",
             trust_model: bool = False) -> dict:
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
        trust_model: load a ``.keras`` file with ``safe_mode=False``: code in it (a Lambda
            layer) runs. Only for files you trust.

    Returns:
        The metrics of the task's :meth:`~transfer.tasks.Task.summarise`, plus ``source``,
        ``data``, ``split``, ``unreadable`` (files left out) and ``artifacts`` (the paths
        written), as in ``metrics.json``.

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
    classifier = load_classifier(source, weights=weights, trust_model=trust_model)
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
        data = _saved_split(classifier.run_dir, source, classifier.class_names, split, task)
        described, used_split = str(classifier.run_dir / "split.json"), split
        default_out = evaluations / split
    out_dir = make_folder(output_dir if output_dir is not None else default_out,
                          kind="evaluation")
    outputs.check_file(out_dir / "metrics.json")  # before the evaluation, not after it

    evaluator = task.evaluator(classifier.class_names, image_size=classifier.image_size)
    unreadable = score_split(classifier.model, data, evaluator, batch_size=batch_size,
                             truth=task.labels(data, classifier.image_size), task=task)
    metrics = evaluator.result()
    artifacts = evaluator.write_artifacts(metrics, out_dir)
    metrics_path = out_dir / "metrics.json"
    result = {"source": str(source), "task": task.name, "data": described, "split": used_split,
              "unreadable": skipped + list(unreadable), **metrics,
              "artifacts": {"metrics": str(metrics_path),
                            **{k: str(v) for k, v in artifacts.items()}}}
    write_json(metrics_path, result)
    log.info("%s: %s on %d images; wrote %s", described, task.headline(metrics),
             metrics["samples"], out_dir)
    return result


def _evaluation_split(task: Task, source, data_dir: str | os.PathLike,
                      class_names: Sequence[str], split: str) -> tuple[Split, list[str]]:
    """``task.evaluation_split``, with a data layout of another task named as such (rather than
    as class folders to rename, or a segmentation folder that lacks its masks)."""
    root = Path(data_dir)
    claimed = recognise(root, split=split)
    other = claimed if claimed is not None and claimed[0] != task.name else None
    order = list(TASKS)
    if other is not None and order.index(other[0]) < order.index(task.name):
        raise _other_layout(task, source, root, *other)
    try:
        return task.evaluation_split(data_dir, class_names, split=split)
    except DataError:
        if other is None:
            raise
        raise _other_layout(task, source, root, *other) from None


def _other_layout(task: Task, source, root: Path, other: str, layout: str) -> DataError:
    return DataError(f"{str(source)!r} is a {task.name} model but {str(root)!r} is a {other} "
                     f"layout ({layout}); evaluate it with a {other} run, or pass "
                     f"{task.layout_hint}")


def _saved_split(run_dir: Path | None, source, class_names: Sequence[str], split: str,
                 task: Task) -> Split:
    if run_dir is None or not (run_dir / "split.json").is_file():
        raise RunDirError(f"{str(source)!r} has no split.json to evaluate on; pass DATA_DIR, "
                          f"{task.layout_hint}")
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
