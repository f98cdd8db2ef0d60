"""Image folders into seeded, stratified splits and ``tf.data`` pipelines.

``DATA_DIR`` holds one sub-folder per class. If it holds ``train/`` and ``val/`` (and optionally
``test/``) sub-folders, each laid out that way, those are the splits; otherwise each class is split
with a seeded, stratified draw.

Decoding and resizing are the same TensorFlow ops that the exported model runs on raw pixels
(``decode_image`` then bilinear ``tf.image.resize``), so training and serving see identical inputs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from transfer.errors import DataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
SPLIT_FOLDERS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class Split:
    """File paths and integer labels of one split."""

    paths: tuple[str, ...]
    labels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def class_counts(self, num_classes: int) -> list[int]:
        return np.bincount(np.asarray(self.labels, dtype=np.int64),
                           minlength=num_classes).tolist()


@dataclasses.dataclass(frozen=True)
class ImageFolderData:
    """The class names and the train/validation(/test) splits of a data folder."""

    root: str
    class_names: tuple[str, ...]
    train: Split
    val: Split
    test: Split | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def save(self, path: Path) -> None:
        """Write the exact split, so evaluation later uses the same images."""
        data = {
            "root": self.root,
            "class_names": list(self.class_names),
            **{name: {"paths": list(s.paths), "labels": list(s.labels)}
               for name, s in (("train", self.train), ("val", self.val), ("test", self.test))
               if s is not None},
        }
        Path(path).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: Path) -> ImageFolderData:
        data = json.loads(Path(path).read_text())
        splits = {name: Split(tuple(data[name]["paths"]), tuple(data[name]["labels"]))
                  for name in SPLIT_FOLDERS if name in data}
        return cls(root=data["root"], class_names=tuple(data["class_names"]),
                   train=splits["train"], val=splits["val"], test=splits.get("test"))


def _is_image_file(path: Path) -> bool:
    return (path.is_file() and not path.name.startswith(".")
            and path.suffix.lower() in IMAGE_SUFFIXES)


def scan_class_folders(root: Path) -> dict[str, list[str]]:
    """Map each class folder name to its image files (sorted, hidden files skipped)."""
    if not root.is_dir():
        raise DataError(f"data folder {str(root)!r} does not exist or is not a folder")
    classes: dict[str, list[str]] = {}
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and not entry.name.startswith("."):
            files = sorted(str(p) for p in entry.rglob("*") if _is_image_file(p))
            classes[entry.name] = files
    return classes


def load_image_folder(data_dir: str | os.PathLike, *, val_split: float = 0.2,
                      seed: int = 42) -> ImageFolderData:
    """Discover classes and images under ``data_dir`` and split them.

    Raises:
        DataError: the folder is missing, has fewer than two classes with images, or a class has
            too few images to appear in both splits.
    """
    root = Path(data_dir)
    if (root / "train").is_dir() and (root / "val").is_dir():
        return _load_presplit(root)
    classes = scan_class_folders(root)
    empty = [name for name, files in classes.items() if not files]
    if empty:
        log.warning("skipping class folders without images: %s", ", ".join(empty))
    classes = {name: files for name, files in classes.items() if files}
    if len(classes) < 2:
        raise DataError(
            f"data folder {str(root)!r} needs at least 2 class sub-folders holding images "
            f"({', '.join(IMAGE_SUFFIXES)}); found {len(classes)}"
        )
    rng = np.random.default_rng(seed)
    train_paths, train_labels, val_paths, val_labels = [], [], [], []
    for label, (name, files) in enumerate(classes.items()):
        if len(files) < 2:
            raise DataError(
                f"class {name!r} in {str(root)!r} has {len(files)} image; each class needs at "
                f"least 2 (one for training, one for validation)"
            )
        order = rng.permutation(len(files))
        n_val = min(max(1, round(len(files) * val_split)), len(files) - 1)
        for rank, index in enumerate(order):
            target = (val_paths, val_labels) if rank < n_val else (train_paths, train_labels)
            target[0].append(files[index])
            target[1].append(label)
    return ImageFolderData(
        root=str(root), class_names=tuple(classes),
        train=Split(tuple(train_paths), tuple(train_labels)),
        val=Split(tuple(val_paths), tuple(val_labels)),
    )


def _load_presplit(root: Path) -> ImageFolderData:
    per_split = {name: scan_class_folders(root / name)
                 for name in SPLIT_FOLDERS if (root / name).is_dir()}
    class_names = tuple(name for name, files in per_split["train"].items() if files)
    if len(class_names) < 2:
        raise DataError(f"{str(root / 'train')!r} needs at least 2 class sub-folders with images")
    splits: dict[str, Split] = {}
    for split_name, classes in per_split.items():
        extra = sorted(set(n for n, f in classes.items() if f) - set(class_names))
        if extra:
            raise DataError(
                f"{str(root / split_name)!r} has classes not in train/: {', '.join(extra)}")
        paths, labels = [], []
        for label, name in enumerate(class_names):
            for path in classes.get(name, []):
                paths.append(path)
                labels.append(label)
        splits[split_name] = Split(tuple(paths), tuple(labels))
    if not splits["val"].paths:
        raise DataError(f"{str(root / 'val')!r} holds no images")
    return ImageFolderData(root=str(root), class_names=class_names, train=splits["train"],
                           val=splits["val"], test=splits.get("test"))


def decode_and_resize(contents, image_size: int):
    """Encoded image bytes to a float32 ``(size, size, 3)`` tensor of 0-255 pixels."""
    import tensorflow as tf

    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    return resize_images(image, image_size)


def resize_images(images, image_size: int):
    """Bilinear resize of uint8 or float 0-255 images; the same op in training and serving."""
    import tensorflow as tf

    return tf.image.resize(tf.cast(images, tf.float32), (image_size, image_size),
                           method="bilinear")


def make_dataset(split: Split, *, image_size: int, batch_size: int, shuffle: bool = False,
                 seed: int = 42, cache: bool = True):
    """A batched ``tf.data.Dataset`` of ``(images, labels)`` from a split.

    Decoding runs in parallel; decoded images are cached in memory after the first epoch when
    ``cache`` is set and shuffling happens after the cache, so each epoch sees a new order.
    """
    import tensorflow as tf

    if not split.paths:
        raise DataError("cannot build a dataset from an empty split")
    ds = tf.data.Dataset.from_tensor_slices((list(split.paths), list(split.labels)))
    ds = ds.map(lambda p, y: (decode_and_resize(tf.io.read_file(p), image_size), y),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(len(split.paths), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def class_weights(counts: Sequence[int]) -> dict[int, float]:
    """Inverse-frequency weights, normalised so that the average weight per sample is 1."""
    counts_arr = np.asarray(counts, dtype=np.float64)
    total, k = counts_arr.sum(), len(counts_arr)
    return {i: float(total / (k * c)) if c else 0.0 for i, c in enumerate(counts_arr)}


def imbalance_ratio(counts: Sequence[int]) -> float:
    nonzero = [c for c in counts if c]
    return max(nonzero) / min(nonzero) if nonzero else 1.0
