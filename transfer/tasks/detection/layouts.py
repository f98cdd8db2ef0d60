"""Detection data: the three layouts people have, read into one form (:func:`load_detection`).

**Layouts**, recognised in this order (:func:`detection_layout`):

- YOLO with ``data.yaml`` (:mod:`.yolo_layout`): images, ``labels/*.txt`` rows
  ``class cx cy w h`` as fractions of the image.
- COCO (:mod:`.coco_layout`): ``annotations/instances_<split>.json``, boxes ``[x, y, w, h]``
  in pixels, categories renumbered 0..K-1 in ascending id order.
- Pascal VOC (:mod:`.voc_layout`): ``JPEGImages/`` + ``Annotations/*.xml``, 1-based pixels.
- YOLO without ``data.yaml``: ``images/`` + ``labels/`` (class names from ``classes.txt``, else
  the class numbers).

Each split becomes a :class:`~transfer.data.Split` whose ``labels`` are the positions
``0..n-1`` and whose ``annotations`` are, position by position, ``{"boxes": [[x0, y0, x1, y1],
...], "classes": [...], "difficult": [...], "size": [height, width]}`` in pixels of the image
as decoded and EXIF-oriented (see :mod:`.annotations`). Splits the layout names are kept; a
missing ``val`` (and ``test``, when ``test_split`` > 0) is drawn from ``train`` (or from all
the images) with a seeded permutation: a box's classes cannot stratify an image.

**Messy data** is reported, never fatal, in the :class:`~transfer.data.DataReport`:

- images are checked as for every task (:func:`~transfer.data.check_files`: decoded once,
  cached); unusable ones are skipped with their reason;
- an image without a label file, or without boxes, is a background image: kept, counted in
  ``background_images``;
- a box partly outside the image is clipped to it (``box_notes``); a zero-area or inverted box,
  a box wholly outside the image, an unknown class or a malformed row is dropped and named, file
  and line (YOLO), object (VOC) or annotation id (COCO), in ``dropped_boxes``;
- a label file without an image, an unreadable annotation file, a recorded image size that is
  not the image's, an image listed twice or listed but absent: skipped and named.

**EXIF orientation.** Boxes are taken to be drawn on the image as it is shown: EXIF-oriented,
as viewers, browsers and labelling tools display it and as OpenCV's ``imread`` and ``imdecode``
decode it by default (they apply the orientation unless told ``IMREAD_IGNORE_ORIENTATION``).
The tools that make and read these layouts see that frame: Ultralytics decodes with OpenCV and
checks images by their EXIF-corrected size, Detectron2's ``read_image`` applies the orientation.
It is also the internal frame, so YOLO's fractions are of the oriented width and height and the
boxes need no change. VOC's ``<size>`` and COCO's ``width`` and ``height`` record the image the
boxes were drawn on: when that is the stored pixels and not the oriented image (orientations
5-8 turn it a quarter, swapping width and height), the boxes were drawn by a tool that ignored
EXIF, and they are moved to the oriented image (counted in ``box_notes``). A recorded size that
is neither skips the image (:data:`~transfer.data.SKIP_ANNOTATION_SIZE`). Orientations 2-4
(mirrors, half turn) keep the size, so nothing tells the two frames apart: the shown one is
assumed.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from transfer.config import check_splits
from transfer.data.checks import (
    NOTE_EXIF,
    _orientation,
    _stat_entry,
    check_files,
    default_workers,
)
from transfer.data.reports import DataReport, _error
from transfer.data.splits import ImageFolderData, Split, held_out
from transfer.errors import DataError
from transfer.tasks.detection.annotations import RawImage, RawLayout, convert
from transfer.tasks.detection.coco_layout import LAYOUT_COCO, looks_like_coco, read_coco
from transfer.tasks.detection.voc_layout import LAYOUT_VOC, looks_like_voc, read_voc
from transfer.tasks.detection.yolo_layout import (
    LAYOUT_YOLO,
    LAYOUT_YOLO_FOLDERS,
    find_yaml,
    looks_like_yolo,
    read_yolo,
)

log = logging.getLogger(__name__)

__all__ = ["LAYOUT_COCO", "LAYOUT_VOC", "LAYOUT_YOLO", "LAYOUT_YOLO_FOLDERS", "detection_layout",
           "evaluation_split", "load_detection", "read_layout"]

_EXPECTED = ("a YOLO folder (data.yaml, or images/ + labels/), a COCO folder "
             "(annotations/instances_*.json) or a Pascal VOC folder (JPEGImages/ + Annotations/)")


def detection_layout(source: str | os.PathLike) -> str | None:
    """The detection layout of a folder, in words (``LAYOUT_*``), or None."""
    root = Path(source)
    if not root.is_dir():
        return None
    if find_yaml(root) is not None:
        return LAYOUT_YOLO
    return looks_like_coco(root) or looks_like_voc(root) or looks_like_yolo(root)


def read_layout(source: str | os.PathLike, class_names: Sequence[str] | None = None
                ) -> RawLayout:
    """The images and boxes of a detection folder as its files give them (nothing checked).

    ``class_names`` (a trained model's) number VOC's objects, whose names are otherwise
    found in the files.
    """
    root = Path(source)
    if not root.is_dir():
        raise DataError(f"data folder {str(root)!r} does not exist or is not a folder")
    kind = detection_layout(root)
    if kind in (LAYOUT_YOLO, LAYOUT_YOLO_FOLDERS):
        return read_yolo(root)
    if kind == LAYOUT_COCO:
        return read_coco(root)
    if kind == LAYOUT_VOC:
        return read_voc(root, None if class_names is None else tuple(class_names))
    raise DataError(f"{str(root)!r} is not a detection data folder; expected {_EXPECTED}")


def load_detection(source: str | os.PathLike, *, val_split: float = 0.2,
                   test_split: float = 0.0, seed: int = 42,
                   cache_dir: str | os.PathLike | None = None, workers: int | None = None,
                   dry_run: bool = False) -> ImageFolderData:
    """Read, check and split a detection folder.

    Args:
        source: the folder, in one of the layouts of this module.
        val_split: fraction of the images held out for validation, when the layout names no
            val split.
        test_split: fraction held out for testing, when it names no test split (0: none).
        seed: fixes the drawn splits.
        cache_dir: where check results and normalised images are kept (default
            :func:`~transfer.data.checks.default_cache_dir`).
        workers: threads for checking (default :func:`~transfer.data.checks.default_workers`).
        dry_run: check and report only; write no normalised images.

    Returns:
        Splits whose ``paths``/``sources``/``orientations`` are the images as for every task,
        ``labels`` the positions, ``annotations`` the boxes; ``class_names`` in label order;
        ``.report`` naming every file and box left out.

    Raises:
        DataError: not a detection layout, an unreadable ``data.yaml`` or annotation JSON,
            contradictory class names, no classes, no boxes to train on, or too few usable
            images for train and val. ``error.report`` holds the report when checking had
            started.
    """
    check_splits(val_split, test_split)
    start = time.perf_counter()
    layout = read_layout(source)
    report = DataReport(source=str(source), root=str(layout.root))
    usable = _check(layout, layout.groups, report, cache_dir=cache_dir, workers=workers,
                    dry_run=dry_run)
    names = layout.class_names
    if not names:
        report.seconds = time.perf_counter() - start
        raise _error(f"{str(layout.root)!r} names no classes and its labels hold none; name "
                     f"them ('names:' in data.yaml, a classes.txt, COCO 'categories')", report)
    splits = _draw(usable, val_split=val_split, test_split=test_split, seed=seed)
    _count(report, splits, names)
    report.seconds = time.perf_counter() - start
    if not splits["train"] or not splits["val"]:
        found = ", ".join(f"{name} {len(items)}" for name, items in splits.items())
        raise _error(f"{str(layout.root)!r} needs usable images in train and val; found "
                     f"{found}{_skipped_note(report)}; run 'zoo data check {source} --json' "
                     f"to see every file", report)
    if not any(item["annotation"]["boxes"] for item in splits["train"]):
        raise _error(f"{str(layout.root)!r} has no boxes to train on: its {len(splits['train'])}"
                     f" training image(s) are all background{_skipped_note(report)}", report)
    return ImageFolderData(root=str(layout.root), class_names=tuple(names), report=report,
                           **{name: _as_split(items) for name, items in splits.items()})


def evaluation_split(data_dir: str | os.PathLike, class_names: Sequence[str], *,
                     split: str = "val") -> tuple[Split, list[str]]:
    """The usable images of a folder to evaluate a trained detector on, and the files left out.

    A layout that names splits gives its ``split``; one that names none gives all its images.
    Its class names must be the model's: equal, or for VOC (named by the objects found) among
    them, or for YOLO without names (class numbers) no more than the model has.

    Raises:
        DataError: not a detection layout, no such split, or other class names (both lists
            named).
    """
    root = Path(data_dir)
    model = tuple(class_names)
    layout = read_layout(root, class_names=model)
    numbered = layout.class_names == tuple(str(i) for i in range(len(layout.class_names)))
    if layout.class_names != model and not (
            layout.kind in (LAYOUT_YOLO, LAYOUT_YOLO_FOLDERS) and numbered
            and len(layout.class_names) <= len(model)):
        raise DataError(f"the classes of {str(layout.root)!r} "
                        f"({', '.join(layout.class_names) or 'none'}) are not the model's "
                        f"({', '.join(model)})")
    if set(layout.groups) == {"all"}:
        groups = layout.groups
    elif split in layout.groups:
        groups = {split: layout.groups[split]}
    else:
        raise DataError(f"{str(layout.root)!r} names the splits {', '.join(layout.groups)}; "
                        f"it has no {split!r} split to evaluate on")
    report = DataReport(source=str(data_dir), root=str(layout.root))
    usable = _check(layout, groups, report, cache_dir=None, workers=None, dry_run=False)
    items = sorted((item for group in usable.values() for item in group),
                   key=lambda item: item["path"])
    return _as_split(items), [path for path, _ in report.skipped]


# ---- checking, converting, splitting --------------------------------------------------------

def _check(layout: RawLayout, groups: dict[str, list[RawImage]], report: DataReport, *,
           cache_dir, workers: int | None, dry_run: bool) -> dict[str, list[dict[str, Any]]]:
    """Check the images of ``groups``, convert their boxes; fill the report's files, notes and
    boxes left out; the usable images by split."""
    entries = [_stat_entry(image.path) for images in groups.values() for image in images]
    with concurrent.futures.ThreadPoolExecutor(workers or default_workers()) as pool:
        results, report.from_cache = check_files(entries, cache_dir=cache_dir,
                                                 write_images=not dry_run, pool=pool)
    skipped, dropped = list(layout.skipped), list(layout.dropped)
    notes: collections.Counter[str] = collections.Counter()
    box_notes = collections.Counter(layout.box_notes)
    usable: dict[str, list[dict[str, Any]]] = {}
    for split, images in groups.items():
        kept = usable[split] = []
        for image in images:
            result = results[image.path]
            if result["reason"] is not None:
                skipped.append((image.path, result["reason"]))
                continue
            width, height = result["width"], result["height"]
            annotation, reason, lost, done = convert(image, width, height,
                                                     _stored_orientation(image, result))
            if reason is not None:
                log.warning("skipping %s: its annotation records %dx%d pixels, the image is "
                            "%dx%d", image.path, *image.recorded_size, width, height)
                skipped.append((image.path, reason))
                continue
            dropped += lost
            box_notes.update(done)
            notes.update(result["notes"])
            kept.append({"path": image.path, "source": result.get("source", image.path),
                         "orientation": result["orientation"], "annotation": annotation})
    report.files_checked = len(entries) + len(layout.skipped)
    report.skipped = sorted(skipped)
    report.dropped_boxes = dropped
    report.notes = dict(notes.most_common())
    report.box_notes = dict(box_notes.most_common())
    return usable


def _stored_orientation(image: RawImage, result: dict[str, Any]) -> int:
    """The EXIF orientation of the stored pixels, read again only when it matters: a recorded
    size that is not the oriented one (checking writes 1 for images it normalised itself)."""
    if image.recorded_size in (None, (result["width"], result["height"])):
        return result["orientation"]
    if result["orientation"] != 1 or NOTE_EXIF not in result["notes"]:
        return result["orientation"]
    from PIL import Image

    try:
        with Image.open(image.path) as opened:
            return _orientation(opened)
    except Exception:  # noqa: BLE001 - checked once already; unreadable now means no rotation
        return 1


def _draw(usable: dict[str, list[dict[str, Any]]], *, val_split: float, test_split: float,
          seed: int) -> dict[str, list[dict[str, Any]]]:
    """Given splits as they are; the rest drawn from the pool with a seeded permutation."""
    pool = usable.get("train" if "train" in usable else "all", [])
    draw_val = "val" not in usable
    draw_test = "test" not in usable and test_split > 0
    order, n_val, n_test = held_out(len(pool), np.random.default_rng(seed), draw_val=draw_val,
                                    draw_test=draw_test, val_split=val_split,
                                    test_split=test_split)
    splits = {"train": [pool[i] for i in order[n_val + n_test:]],
              "val": [pool[i] for i in order[:n_val]] if draw_val else usable["val"]}
    if "test" in usable or draw_test:
        splits["test"] = ([pool[i] for i in order[n_val:n_val + n_test]] if draw_test
                          else usable["test"])
    # Sorted, so split.json reads like the folder and diffs cleanly between seeds.
    return {name: sorted(items, key=lambda item: item["path"]) for name, items in splits.items()}


def _as_split(items: list[dict[str, Any]]) -> Split:
    return Split(paths=tuple(i["path"] for i in items), labels=tuple(range(len(items))),
                 sources=tuple(i["source"] for i in items),
                 orientations=tuple(i["orientation"] for i in items),
                 annotations=tuple(i["annotation"] for i in items))


def _count(report: DataReport, splits: dict[str, list[dict[str, Any]]],
           names: Sequence[str]) -> None:
    """Images holding each class (per split and in all), boxes per class, background images,
    and the classes of train that a given val or test lacks."""
    k = len(names)
    holding = {split: np.zeros(k, np.int64) for split in splits}
    boxes = np.zeros(k, np.int64)
    background = 0
    for split, items in splits.items():
        for item in items:
            classes = item["annotation"]["classes"]
            background += not classes
            holding[split][sorted(set(classes))] += 1
            np.add.at(boxes, classes, 1)
    report.images = sum(len(items) for items in splits.values())
    report.split_counts = {split: dict(zip(names, counts.tolist()))
                           for split, counts in holding.items()}
    report.class_counts = dict(zip(names, sum(holding.values()).tolist()))
    report.box_counts = dict(zip(names, boxes.tolist()))
    report.background_images = background
    for split in ("val", "test"):
        if split in holding:
            missing = [n for n, t, s in zip(names, holding["train"], holding[split]) if t and not s]
            if missing:
                report.missing_classes[split] = missing
                log.warning("the %s split holds no box of %d class(es) of train: %s", split,
                            len(missing), ", ".join(missing))


def _skipped_note(report: DataReport) -> str:
    if not report.skipped:
        return ""
    reasons = ", ".join(f"{n} {r}" for r, n in report.reason_counts.items())
    return f"; {len(report.skipped)} file(s) were skipped ({reasons})"
