"""Boxes as the layouts' readers find them, and their conversion into the internal form.

A reader (:mod:`.yolo_layout`, :mod:`.coco_layout`, :mod:`.voc_layout`) turns its files into a
:class:`RawLayout`: per split, the images and their :class:`RawBox` es, in the file's own frame
(fractions of the image for YOLO, pixels for COCO and VOC), each box naming where it came from.
Once the image has been checked (its oriented size is then known), :func:`convert` gives the
annotation of the detection contract::

    {"boxes": [[x0, y0, x1, y1], ...], "classes": [...], "difficult": [...],
     "size": [height, width]}

in pixels of the image as decoded and EXIF-oriented (:func:`transfer.data.load_normalized`).
Boxes are clipped to the image, and boxes without area are dropped; both are reported (see
:mod:`.layouts` for the rules, and for EXIF orientation).
"""

from __future__ import annotations

import collections
import dataclasses
import math
from pathlib import Path
from typing import Any

from transfer.data.reports import (
    DROP_EMPTY_BOX,
    DROP_OUTSIDE,
    SKIP_ANNOTATION_SIZE,
)

# What was done to boxes: the keys of DataReport.box_notes.
NOTE_CLIPPED = "clipped to the image"
NOTE_CROWD = "crowd regions left out (iscrowd)"
NOTE_POLYGON = "read from a polygon as its bounding box"
NOTE_ROTATED = "mapped from the stored pixels to the EXIF orientation"
NOTE_DIFFICULT = "difficult (kept out of the score)"

# A coordinate this close to the image (in pixels) is snapped to it without counting a clip:
# label tools round fractions, so 1.0000001 * width is the edge, not a box outside the image.
_SNAP = 1e-3
_DIGITS = 4  # boxes are kept to 1/10000 pixel, so split.json stays short


@dataclasses.dataclass(frozen=True)
class RawBox:
    """One box as its file gives it.

    Attributes:
        where: the file and its line, object or annotation id (for the report).
        cls: the class index (0..K-1 of the layout's class names).
        box: ``(x0, y0, x1, y1)``: pixels, or fractions of the image's width and height when
            the image's boxes are ``normalised``.
        difficult: VOC's flag.
    """

    where: str
    cls: int
    box: tuple[float, float, float, float]
    difficult: bool = False


@dataclasses.dataclass
class RawImage:
    """An image and its boxes as read (none: a background image).

    Attributes:
        path: the image file.
        boxes: its boxes.
        normalised: boxes are fractions of the oriented image (YOLO).
        recorded_size: ``(width, height)`` the annotation file records (VOC ``<size>``, COCO
            ``width``/``height``), or None.
    """

    path: str
    boxes: list[RawBox] = dataclasses.field(default_factory=list)
    normalised: bool = False
    recorded_size: tuple[int, int] | None = None


@dataclasses.dataclass
class RawLayout:
    """What a reader found, before any image is checked.

    Attributes:
        root: the folder that holds the data (a VOC folder, a YOLO dataset's ``path``).
        kind: the layout, in words (:data:`~.layouts.LAYOUT_YOLO`, ...).
        class_names: in label order.
        groups: split name (``train``, ``val``, ``test``, or ``all`` when the layout names no
            split) -> its images, in listing order.
        skipped: ``(path, reason)`` of files left out so far.
        dropped: ``(where, reason)`` of boxes left out so far.
        box_notes: boxes counted by what was done to them.
    """

    root: Path
    kind: str
    class_names: tuple[str, ...]
    groups: dict[str, list[RawImage]]
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    dropped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    box_notes: collections.Counter = dataclasses.field(default_factory=collections.Counter)


def finite(values: list[float]) -> bool:
    return all(math.isfinite(v) for v in values)


def orient_box(box: tuple[float, float, float, float], orientation: int, width: int,
               height: int) -> tuple[float, float, float, float]:
    """A box on the stored pixels (``width`` x ``height``, as the file stores them) moved to
    the image that EXIF orientation ``orientation`` (1-8) shows, as
    ``PIL.ImageOps.exif_transpose`` (and so :func:`transfer.data.load_normalized`) turns it."""
    x0, y0, x1, y1 = box
    w, h = width, height
    corners = {
        1: lambda x, y: (x, y),
        2: lambda x, y: (w - x, y),          # mirrored left-right
        3: lambda x, y: (w - x, h - y),      # rotated 180
        4: lambda x, y: (x, h - y),          # mirrored top-bottom
        5: lambda x, y: (y, x),              # transposed
        6: lambda x, y: (h - y, x),          # rotated 90 clockwise to show
        7: lambda x, y: (h - y, w - x),      # transversed
        8: lambda x, y: (y, w - x),          # rotated 90 counter-clockwise to show
    }[orientation]
    (ax, ay), (bx, by) = corners(x0, y0), corners(x1, y1)
    return min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)


def convert(image: RawImage, width: int, height: int, orientation: int
            ) -> tuple[dict[str, Any] | None, str | None, list[tuple[str, str]],
                       collections.Counter]:
    """The annotation of a checked image: its boxes in pixels of the oriented image.

    Args:
        image: as read.
        width, height: of the image as decoded and EXIF-oriented.
        orientation: the EXIF orientation of the stored pixels (1 when none).

    Returns:
        The annotation (None when the image is left out), the skip reason when it is, the
        boxes dropped ``(where, reason)``, and the boxes counted by what was done to them.
    """
    notes: collections.Counter = collections.Counter()
    rotate = False
    if image.recorded_size is not None and image.recorded_size != (width, height):
        # The file was annotated on the stored pixels when it records their size: the
        # oriented one turned a quarter (orientations 5-8), and only then.
        if orientation in (5, 6, 7, 8) and image.recorded_size == (height, width):
            rotate = True
        else:
            return None, SKIP_ANNOTATION_SIZE, [], notes
    boxes, classes, difficult, dropped = [], [], [], []
    for raw in image.boxes:
        box = raw.box
        if image.normalised:
            box = (box[0] * width, box[1] * height, box[2] * width, box[3] * height)
        if rotate:
            box = orient_box(box, orientation, height, width)  # stored: height x width
            notes[NOTE_ROTATED] += 1
        x0, y0, x1, y1 = box
        if not (x1 > x0 and y1 > y0):
            dropped.append((raw.where, DROP_EMPTY_BOX))
            continue
        clipped = (_clip(x0, width), _clip(y0, height), _clip(x1, width), _clip(y1, height))
        if not (clipped[2] > clipped[0] and clipped[3] > clipped[1]):
            dropped.append((raw.where, DROP_OUTSIDE))
            continue
        if any(abs(a - b) > _SNAP for a, b in zip(clipped, box)):
            notes[NOTE_CLIPPED] += 1
        boxes.append([round(v, _DIGITS) for v in clipped])
        classes.append(raw.cls)
        difficult.append(raw.difficult)
        notes[NOTE_DIFFICULT] += raw.difficult
    annotation = {"boxes": boxes, "classes": classes, "difficult": difficult,
                  "size": [height, width]}
    return annotation, None, dropped, +notes


def _clip(value: float, limit: int) -> float:
    return min(max(float(value), 0.0), float(limit))
