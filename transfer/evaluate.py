"""Evaluation: loss, top-1/top-5 accuracy, per-class precision/recall/F1, confusion matrix.

:func:`evaluate` loads a run directory (or a ``.keras`` classifier) and evaluates it on the saved
split of its training run, or on a new image folder, writing into one output folder::

    metrics.json           the numbers of :func:`classification_metrics`, with the data evaluated
    confusion_matrix.png   counts, coloured by the share of each true class (row-normalised)
    mistakes.png           the most confident mistakes: image, true label, prediction and score

The two plots are drawn by :func:`write_evaluation_artifacts`, which training calls too.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from transfer.data import SPLIT_FOLDERS, ImageFolderData, Split, scan_class_folders
from transfer.errors import DataError, RunDirError

log = logging.getLogger(__name__)

MAX_MISTAKES = 16


def classification_metrics(probabilities: np.ndarray, labels: np.ndarray,
                           class_names: Sequence[str]) -> dict:
    """Metrics of predicted class probabilities against integer labels.

    Returns a JSON-ready dict: ``loss`` (mean cross-entropy), ``top1_accuracy``,
    ``top5_accuracy`` (top-k with k = min(5, classes)), ``top1_error``, ``top5_error``,
    ``per_class`` precision/recall/F1/support, ``macro`` and ``weighted`` averages, and the
    ``confusion_matrix`` (rows: true class, columns: predicted class).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n, k = probabilities.shape
    if n == 0:
        raise ValueError("no samples to evaluate")
    eps = 1e-12
    loss = float(-np.mean(np.log(np.clip(probabilities[np.arange(n), labels], eps, 1.0))))
    predicted = probabilities.argmax(axis=1)
    top_k = min(5, k)
    top_idx = np.argsort(-probabilities, axis=1)[:, :top_k]
    top1 = float(np.mean(predicted == labels))
    top5 = float(np.mean((top_idx == labels[:, None]).any(axis=1)))

    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = {}
    for i, name in enumerate(class_names):
        tp = confusion[i, i]
        predicted_i = confusion[:, i].sum()
        support = confusion[i, :].sum()
        precision = tp / predicted_i if predicted_i else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": float(precision), "recall": float(recall),
                           "f1": float(f1), "support": int(support)}
    supports = np.array([c["support"] for c in per_class.values()], dtype=np.float64)

    def average(key: str, weights: np.ndarray | None) -> float:
        values = np.array([c[key] for c in per_class.values()])
        if weights is None:
            return float(values.mean())
        return float((values * weights).sum() / weights.sum()) if weights.sum() else 0.0

    return {
        "samples": int(n),
        "loss": loss if math.isfinite(loss) else None,
        "top1_accuracy": top1,
        "top5_accuracy": top5,
        "top1_error": 1.0 - top1,
        "top5_error": 1.0 - top5,
        "top_k": top_k,
        "per_class": per_class,
        "macro": {key: average(key, None) for key in ("precision", "recall", "f1")},
        "weighted": {key: average(key, supports) for key in ("precision", "recall", "f1")},
        "confusion_matrix": confusion.tolist(),
        "class_names": list(class_names),
    }


def evaluate_model(model, dataset, class_names: Sequence[str]) -> dict:
    """Run ``model`` over a dataset of ``(images, labels)`` batches and compute the metrics."""
    probabilities, labels = [], []
    for images, batch_labels in dataset:
        probabilities.append(np.asarray(model(images, training=False)))
        batch_labels = np.asarray(batch_labels)
        labels.append(batch_labels.argmax(-1) if batch_labels.ndim == 2 else batch_labels)
    return classification_metrics(np.concatenate(probabilities), np.concatenate(labels),
                                  class_names)


@dataclasses.dataclass(frozen=True)
class SplitPredictions:
    """Class probabilities of the readable images of a split, with their labels and paths."""

    probabilities: np.ndarray
    labels: np.ndarray
    paths: tuple[str, ...]
    unreadable: tuple[str, ...] = ()


def predict_split(model, split: Split, *, batch_size: int = 32) -> SplitPredictions:
    """Run a classifier taking raw images over the files of ``split``.

    Images are read, decoded and resized by the training pipeline
    (:func:`transfer.data.image_dataset`: normalised sources, EXIF orientation, bilinear
    resize), so a saved split is evaluated on exactly the pixels it was validated on. Files that
    fail to decode are left out and listed in ``unreadable``.
    """
    import tensorflow as tf

    from transfer.data import image_dataset

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
    labels = np.asarray(split.labels, dtype=np.int64)[kept_idx]
    return SplitPredictions(np.concatenate(probabilities), labels,
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
    from transfer.data import check_files

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
    from transfer.predict import load_classifier

    if split not in SPLIT_FOLDERS:
        raise DataError(f"split must be one of {SPLIT_FOLDERS}, got {split!r}")
    classifier = load_classifier(source)
    home = classifier.run_dir or Path(source).parent
    skipped: list[str] = []
    if data_dir is not None:
        data, skipped = folder_split(data_dir, classifier.class_names, split=split)
        described, used_split = str(data_dir), None
        default_out = home / "evaluation" / Path(data_dir).resolve().name
    else:
        data = _saved_split(classifier.run_dir, source, classifier.class_names, split)
        described, used_split = str(classifier.run_dir / "split.json"), split
        default_out = home / "evaluation" / split
    out_dir = Path(output_dir) if output_dir is not None else default_out

    predictions = predict_split(classifier.model, data, batch_size=batch_size)
    metrics = classification_metrics(predictions.probabilities, predictions.labels,
                                     classifier.class_names)
    out_dir.mkdir(parents=True, exist_ok=True)
    artifacts = write_evaluation_artifacts(metrics, predictions.probabilities,
                                           predictions.labels, predictions.paths,
                                           classifier.class_names, out_dir)
    metrics_path = out_dir / "metrics.json"
    result = {"source": str(source), "data": described, "split": used_split,
              "unreadable": skipped + list(predictions.unreadable), **metrics,
              "artifacts": {"metrics": str(metrics_path),
                            **{k: str(v) for k, v in artifacts.items()}}}
    tmp = metrics_path.with_name(f".{metrics_path.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, metrics_path)
    log.info("%s: top-1 accuracy %.4f, top-%d accuracy %.4f on %d images; wrote %s",
             described, metrics["top1_accuracy"], metrics["top_k"], metrics["top5_accuracy"],
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


def write_evaluation_artifacts(metrics: dict, probabilities: np.ndarray,
                               labels: Sequence[int] | np.ndarray, paths: Sequence[str],
                               class_names: Sequence[str],
                               out_dir: str | os.PathLike) -> dict[str, Path]:
    """Draw ``confusion_matrix.png`` and ``mistakes.png`` into ``out_dir``.

    ``metrics`` is a :func:`classification_metrics` result for the same ``probabilities`` and
    ``labels``; ``paths`` are the image files, in the same order. ``metrics.json`` is left to the
    caller, whose layout it is.

    Returns:
        ``{"confusion_matrix": path, "mistakes": path}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    confusion = np.asarray(metrics["confusion_matrix"], dtype=np.int64)
    written = {"confusion_matrix": out / "confusion_matrix.png", "mistakes": out / "mistakes.png"}
    plot_confusion_matrix(confusion, class_names, written["confusion_matrix"])
    plot_mistakes(np.asarray(probabilities), np.asarray(labels, dtype=np.int64), list(paths),
                  class_names, written["mistakes"])
    return written


def _figure(width: float, height: float):
    # A bare Agg figure: no pyplot, so no global backend switch and nothing left open.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def plot_confusion_matrix(confusion: np.ndarray, class_names: Sequence[str],
                          path: str | os.PathLike) -> Path:
    """Counts in each cell, colours by the share of the true class (rows sum to 1)."""
    k = len(class_names)
    rows = confusion.sum(axis=1, keepdims=True)
    share = np.divide(confusion, rows, out=np.zeros(confusion.shape, dtype=np.float64),
                      where=rows > 0)
    side = min(max(4.0, 0.45 * k + 2.5), 30.0)
    fig = _figure(side + 1.0, side)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set_xticks(range(k), labels=list(class_names), rotation=45, ha="right",
                  rotation_mode="anchor")
    ax.set_yticks(range(k), labels=list(class_names))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    total = int(confusion.sum())
    accuracy = np.trace(confusion) / total if total else 0.0
    ax.set_title(f"confusion matrix: {total} images, top-1 accuracy {accuracy:.3f}")
    if k <= 40:  # beyond that the numbers would be unreadable; the colours still tell
        size = 10 if k <= 10 else max(4, 10 - (k - 10) // 5)
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=size,
                        color="white" if share[i, j] > 0.5 else "black")
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def plot_mistakes(probabilities: np.ndarray, labels: np.ndarray, paths: Sequence[str],
                  class_names: Sequence[str], path: str | os.PathLike, *,
                  limit: int = MAX_MISTAKES) -> Path:
    """A grid of the most confident mistakes, most confident first."""
    predicted = probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, np.int64)
    confidence = probabilities.max(axis=1) if len(probabilities) else np.zeros(0)
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:limit]
    if not len(wrong):
        fig = _figure(4.0, 1.5)
        fig.text(0.5, 0.5, f"no mistakes on {len(labels)} images", ha="center", va="center")
        fig.savefig(path)
        return Path(path)
    cols = min(4, len(wrong))
    rows = math.ceil(len(wrong) / cols)
    fig = _figure(2.6 * cols, 2.9 * rows)
    for n, i in enumerate(wrong):
        ax = fig.add_subplot(rows, cols, n + 1)
        ax.imshow(_thumbnail(paths[i]))
        ax.set_axis_off()
        ax.set_title(f"true: {class_names[labels[i]]}\n"
                     f"pred: {class_names[predicted[i]]} ({confidence[i]:.2f})",
                     fontsize=9, color="firebrick")
    fig.suptitle(f"most confident mistakes ({len(wrong)} shown of "
                 f"{int((predicted != labels).sum())})")
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def _thumbnail(path: str, side: int = 160) -> np.ndarray:
    from PIL import Image

    from transfer.data import load_normalized

    try:  # the pixels training saw: EXIF orientation applied, transparency on white
        image = Image.fromarray(load_normalized(path))
    except Exception:  # noqa: BLE001  - a file that vanished since prediction: draw a blank
        return np.full((side, side, 3), 255, dtype=np.uint8)
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return np.asarray(image)
