"""Splits of a data source: :class:`Split`, :class:`ImageFolderData`, and how they are drawn.

Given ``train/``, ``val/`` and ``test/`` folders (or a CSV ``split`` column) are kept as they
are; otherwise each class is split with a seeded, stratified draw, so the same data and seed
always give the same split. Classes below the minimum size are an error, or are dropped.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from transfer.config import check_field, check_splits
from transfer.data.checks import _Entry, check_files
from transfer.data.reports import SKIP_OUTSIDE, DataReport, _error

log = logging.getLogger(__name__)

SPLIT_FOLDERS = ("train", "val", "test")
DEFAULT_MIN_PER_CLASS = 2


@dataclasses.dataclass(frozen=True)
class Split:
    """File paths and integer labels of one split.

    ``sources`` (when given) are the files the pipeline actually reads, position by position:
    the path itself, or its normalised PNG in the cache. ``orientations`` are the EXIF
    orientations (1-8) TensorFlow applies after decoding a source; empty means all 1.

    ``masks`` (segmentation only) are the class-index masks, position by position: the user's
    mask file, or its normalised copy in the cache (see
    :mod:`transfer.tasks.segmentation.masks`). A segmentation split's ``labels`` are the
    positions ``0..n-1``, not classes, so :meth:`class_counts` means nothing for it; the report
    counts the masks holding each class.

    ``annotations`` (a task's own ground truth that is neither a class nor a mask file) are
    JSON-ready mappings, position by position: a detector's boxes and their classes. Such a
    split's ``labels`` are positions too.
    """

    paths: tuple[str, ...]
    labels: tuple[int, ...]
    sources: tuple[str, ...] = ()
    orientations: tuple[int, ...] = ()
    masks: tuple[str, ...] = ()
    annotations: tuple[Mapping[str, Any], ...] = ()

    def __len__(self) -> int:
        return len(self.paths)

    def class_counts(self, num_classes: int) -> list[int]:
        return np.bincount(np.asarray(self.labels, dtype=np.int64),
                           minlength=num_classes).tolist()

    def to_dict(self) -> dict[str, list]:
        data: dict[str, list] = {"paths": list(self.paths), "labels": list(self.labels)}
        if self.sources and list(self.sources) != list(self.paths):
            data["sources"] = list(self.sources)
        if any(o != 1 for o in self.orientations):
            data["orientations"] = list(self.orientations)
        if self.masks:
            data["masks"] = list(self.masks)
        if self.annotations:
            data["annotations"] = [dict(a) for a in self.annotations]
        return data

    def subset(self, keep: Sequence[int]) -> Split:
        """The items at positions ``keep``, every column kept."""
        return Split(*(tuple(getattr(self, f.name)[i] for i in keep)
                       if getattr(self, f.name) else ()
                       for f in dataclasses.fields(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, list]) -> Split:
        return cls(tuple(data["paths"]), tuple(data["labels"]),
                   tuple(data.get("sources", ())), tuple(data.get("orientations", ())),
                   tuple(data.get("masks", ())), tuple(data.get("annotations", ())))


@dataclasses.dataclass(frozen=True)
class ImageFolderData:
    """The class names and the train/validation(/test) splits of a data source.

    ``report`` is the :class:`DataReport` of the check that produced the splits.
    """

    root: str
    class_names: tuple[str, ...]
    train: Split
    val: Split
    test: Split | None = None
    report: DataReport | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of ``split.json``."""
        return {
            "root": self.root,
            "class_names": list(self.class_names),
            **{name: s.to_dict()
               for name, s in (("train", self.train), ("val", self.val), ("test", self.test))
               if s is not None},
        }

    def save(self, path: Path) -> None:
        """Write the exact split, so evaluation later uses the same images."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: Path) -> ImageFolderData:
        data = json.loads(Path(path).read_text())
        splits = {name: Split.from_dict(data[name]) for name in SPLIT_FOLDERS if name in data}
        return cls(root=data["root"], class_names=tuple(data["class_names"]),
                   train=splits["train"], val=splits["val"], test=splits.get("test"))


# ---- drawing the splits ---------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Options:
    val_split: float
    test_split: float
    seed: int
    min_per_class: int
    drop_small_classes: bool
    cache_dir: str | os.PathLike | None
    workers: int | None
    dry_run: bool


_LOAD_DEFAULTS: dict[str, Any] = dict(
    val_split=0.2, test_split=0.0, seed=42, min_per_class=DEFAULT_MIN_PER_CLASS,
    drop_small_classes=False, cache_dir=None, workers=None, dry_run=False)


def _options(val_split: float, test_split: float, seed: int, min_per_class: int,
             drop_small_classes: bool, cache_dir, workers, dry_run) -> _Options:
    # The rules are TrainConfig's, whoever calls (zoo train, zoo data check, the API).
    check_splits(val_split, test_split)
    check_field("min_per_class", min_per_class)
    return _Options(val_split, test_split, seed, min_per_class, drop_small_classes, cache_dir,
                    workers, dry_run)


def _assemble(source: str, root: str, groups: dict[str, dict[str, list[_Entry]]],
              skipped: list[tuple[str, str]], options: _Options,
              pool: concurrent.futures.Executor, start: float) -> ImageFolderData:
    """Check every listed file, choose the classes, split, and report."""
    report = DataReport(source=source, root=root)
    entries = [e for classes in groups.values() for files in classes.values() for e in files]
    results, report.from_cache = check_files(entries, cache_dir=options.cache_dir,
                                             write_images=not options.dry_run, pool=pool)
    report.files_checked = len(entries) + len(skipped)
    notes: collections.Counter[str] = collections.Counter()
    usable: dict[str, dict[str, list[tuple[str, dict]]]] = {}
    for split, classes in groups.items():
        usable[split] = {}
        for name, files in classes.items():
            kept = usable[split][name] = []
            for path, _, _ in files:
                result = results[path]
                if result["reason"] is None:
                    kept.append((path, result))
                    notes.update(result["notes"])
                else:
                    skipped.append((path, result["reason"]))
    report.skipped = sorted(skipped)
    report.notes = dict(notes.most_common())

    pool_split = "train" if "train" in usable else "all"
    present = {name: files for name, files in usable[pool_split].items()
               if groups[pool_split][name]}
    for name, files in usable[pool_split].items():
        if not groups[pool_split][name]:
            report.dropped_classes[name] = "no files"
            log.warning("skipping class folder %r: it holds no files", name)
    needs = 1 + ("val" not in usable) + ("test" not in usable and options.test_split > 0)
    minimum = max(options.min_per_class, needs)
    small = {name: len(files) for name, files in present.items() if len(files) < minimum}
    if small and not options.drop_small_classes:
        report.class_counts = {name: len(files) for name, files in present.items()}
        report.seconds = time.perf_counter() - start
        listed = ", ".join(f"{name!r} has {n}" for name, n in small.items())
        where = " in train/" if pool_split == "train" else ""
        raise _error(
            f"class{'es' if len(small) > 1 else ''} below the minimum of {minimum} usable "
            f"images{where}: {listed}; add images, or drop "
            f"{'them' if len(small) > 1 else 'it'} with --drop-small-classes "
            f"(drop_small_classes=True)", report)
    for name, n in small.items():
        report.dropped_classes[name] = f"{n} usable image(s), fewer than {minimum}"
        log.warning("dropping class %r: %d usable image(s), fewer than %d", name, n, minimum)
    class_names = tuple(name for name in present if name not in small)
    report.class_counts = {name: sum(len(usable[s].get(name, ())) for s in usable)
                           for name in class_names}
    report.seconds = time.perf_counter() - start
    if len(class_names) < 2:
        skipped_note = (f"; {len(skipped)} file(s) were skipped "
                        f"({', '.join(f'{n} {r}' for r, n in report.reason_counts.items())})"
                        if skipped else "")
        if SKIP_OUTSIDE in report.reason_counts:
            skipped_note += "; images belong in one sub-folder per class"
        found = ", ".join(f"{n}: {c}" for n, c in report.class_counts.items()) or "none"
        raise _error(
            f"{source!r} needs at least 2 classes with usable images; found "
            f"{len(class_names)} ({found}){skipped_note}; run 'zoo data check {source} --json' "
            f"to see every file", report)
    for split in usable:
        extra = sorted(name for name, files in usable[split].items()
                       if files and name not in class_names and name not in small
                       and name not in report.dropped_classes)
        if extra:
            raise _error(f"{str(Path(root) / split)!r} has classes not in train/: "
                         f"{', '.join(extra)}", report)

    for split in ("val", "test"):
        missing = [name for name in class_names if not usable.get(split, {name: 1}).get(name)]
        if missing:
            report.missing_classes[split] = missing
            log.warning("%r has no usable images of %d class(es) of train/: %s; they are not "
                        "%s", str(Path(root) / split), len(missing), ", ".join(missing),
                        "validated" if split == "val" else "tested")
    label_of = {name: i for i, name in enumerate(class_names)}
    splits = _split(usable, label_of, options)
    report.split_counts = {
        name: dict(zip(class_names, split.class_counts(len(class_names))))
        for name, split in splits.items()}
    if not len(splits["val"]):
        raise _error(f"{str(Path(root) / 'val')!r} holds no usable images of the classes in "
                     f"train/", report)
    return ImageFolderData(root=root, class_names=class_names, train=splits["train"],
                           val=splits["val"], test=splits.get("test"), report=report)


def held_out(n: int, rng: np.random.Generator, *, draw_val: bool, draw_test: bool,
             val_split: float, test_split: float) -> tuple[np.ndarray, int, int]:
    """The draw of the splits not given, from a pool of ``n`` items: their order and how many
    of the first go to validation, then test (the rest train).

    A seeded permutation when anything is drawn (the identity otherwise); each drawn split
    gets at least one item while train keeps one.
    """
    order = rng.permutation(n) if draw_val or draw_test else np.arange(n)
    n_val = min(max(1, round(n * val_split)), n - 1 - draw_test) if draw_val else 0
    n_test = min(max(1, round(n * test_split)), n - 1 - n_val) if draw_test else 0
    return order, max(n_val, 0), max(n_test, 0)


def _split(usable: dict[str, dict[str, list[tuple[str, dict]]]], label_of: dict[str, int],
           options: _Options) -> dict[str, Split]:
    """Given splits as they are; the rest drawn per class from the pool with a seeded RNG."""
    pool_split = "train" if "train" in usable else "all"
    rows: dict[str, list[tuple[str, int, dict]]] = {name: [] for name in SPLIT_FOLDERS}
    for split in ("val", "test"):
        for name, files in usable.get(split, {}).items():
            rows[split] += [(p, label_of[name], r) for p, r in files if name in label_of]
    draw_val = "val" not in usable
    draw_test = "test" not in usable and options.test_split > 0
    rng = np.random.default_rng(options.seed)
    for name, label in label_of.items():
        files = usable[pool_split][name]
        order, n_val, n_test = held_out(len(files), rng, draw_val=draw_val,
                                        draw_test=draw_test, val_split=options.val_split,
                                        test_split=options.test_split)
        for rank, index in enumerate(order):
            target = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
            path, result = files[index]
            rows[target].append((path, label, result))
    splits = {}
    for name in SPLIT_FOLDERS:
        if name == "test" and not rows["test"] and "test" not in usable:
            continue
        items = rows[name]
        splits[name] = Split(
            paths=tuple(p for p, _, _ in items), labels=tuple(y for _, y, _ in items),
            sources=tuple(r.get("source", p) for p, _, r in items),
            orientations=tuple(r["orientation"] for _, _, r in items))
    return splits
