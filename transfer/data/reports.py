"""What checking a data source found: :class:`DataReport`, and class balance.

A report lists usable images per class and split, every skipped file with its reason (the
``SKIP_*`` strings) and how many usable files each normalisation touched (the ``NOTE_*``
strings of :mod:`transfer.data.checks`). :func:`class_weights` and :func:`imbalance_ratio`
read the class counts.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from transfer.errors import DataError

# Why a file was skipped: the keys of DataReport.reason_counts.
SKIP_SYSTEM = "system or hidden file"
SKIP_OUTSIDE = "outside class folders"
SKIP_EMPTY = "empty file"
SKIP_NOT_IMAGE = "not an image"
SKIP_TRUNCATED = "truncated"
SKIP_CORRUPT = "corrupt image"
SKIP_TOO_LARGE = "too large"
SKIP_UNREADABLE = "unreadable"
SKIP_MISSING = "missing"
SKIP_DUPLICATE = "listed twice"
SKIP_LINKED = "same file as another (symlink)"
# Segmentation: an image and its mask are used together or not at all
# (transfer.tasks.segmentation.masks).
SKIP_NO_MASK = "image without mask"
SKIP_NO_IMAGE = "mask without image"
SKIP_SIZE_MISMATCH = "mask size differs from image"
SKIP_LABELS = "mask values outside the classes"
SKIP_COLOUR = "mask colour not in the colour table"
SKIP_LOSSY_MASK = "JPEG mask (lossy)"
SKIP_MASK_MODE = "mask is not class indices"
SKIP_SAME_STEM = "another file has the same stem"
# Annotation files (detection: transfer.tasks.detection.layouts).
SKIP_NO_IMAGE_FOR_ANNOTATION = "annotation without image"
SKIP_BAD_ANNOTATION = "annotation file not readable"
SKIP_ANNOTATION_SIZE = "annotation size differs from image"

# Why one annotation (a box) was left out of a kept image: the keys of
# DataReport.dropped_reason_counts.
DROP_EMPTY_BOX = "zero-area or inverted box"
DROP_OUTSIDE = "box outside the image"
DROP_UNKNOWN_CLASS = "class not in the class list"
DROP_UNKNOWN_IMAGE = "annotation of an image not listed"
DROP_MALFORMED = "malformed annotation"


@dataclasses.dataclass
class DataReport:
    """What checking a data source found: usable images per class, and every skipped file.

    Attributes:
        source: the folder, CSV file or ``tfds:NAME`` that was checked.
        root: the folder that relative paths in the summary are relative to.
        class_counts: usable images per kept class, in label order.
        split_counts: usable images per class in each split (``train``, ``val``, ``test``).
        skipped: ``(path, reason)`` of every file left out, in listing order.
        dropped_classes: class name -> why it was left out.
        notes: how many usable files each normalisation touched (EXIF orientation, ...).
        files_checked: files found (usable or not).
        from_cache: files whose check result came from the cache.
        seconds: wall time of listing and checking.
        pairs: usable image/mask pairs (segmentation only; 0 for classification). For
            segmentation, ``class_counts`` and ``split_counts`` count the pairs whose mask
            holds each class.
        pixel_counts: labelled pixels per class in the training masks (segmentation only).
        pixel_frequencies: per class, its pixels over the labelled pixels of the training
            masks that hold it (Eigen & Fergus 2015); 0.0 for a class no training mask holds.
        missing_classes: given split folder (``val``, ``test``) -> the classes of ``train/``
            it holds no usable image of (they are neither validated nor tested).
        images: usable images, where the classes' counts do not add up to them (detection: an
            image holds several classes, or none); 0 otherwise. For detection,
            ``class_counts`` and ``split_counts`` count the images holding each class.
        box_counts: annotated boxes per class, all splits together (detection only).
        background_images: usable images kept without any box (detection only).
        box_notes: how many boxes each adjustment touched (clipped to the image, read from a
            polygon, ...) or left out by design (crowd regions), counted, not named.
        dropped_boxes: ``(where, reason)`` of every box left out of a kept image, ``where``
            naming the file and its line or annotation id (the ``DROP_*`` reasons).
    """

    source: str
    root: str = ""
    class_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    split_counts: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    dropped_classes: dict[str, str] = dataclasses.field(default_factory=dict)
    notes: dict[str, int] = dataclasses.field(default_factory=dict)
    files_checked: int = 0
    from_cache: int = 0
    seconds: float = 0.0
    pairs: int = 0
    pixel_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    pixel_frequencies: dict[str, float] = dataclasses.field(default_factory=dict)
    missing_classes: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    images: int = 0
    box_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    background_images: int = 0
    box_notes: dict[str, int] = dataclasses.field(default_factory=dict)
    dropped_boxes: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    @property
    def usable(self) -> int:
        # A mask holds several classes, so for segmentation the classes' counts overlap; an
        # image of a detection task holds several, or none.
        return self.pairs or self.images or sum(self.class_counts.values())

    @property
    def dropped_reason_counts(self) -> dict[str, int]:
        return dict(collections.Counter(reason for _, reason in self.dropped_boxes)
                    .most_common())

    @property
    def reason_counts(self) -> dict[str, int]:
        return dict(collections.Counter(reason for _, reason in self.skipped).most_common())

    @property
    def imbalance_ratio(self) -> float:
        return imbalance_ratio(list(self.class_counts.values()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "root": self.root,
            "usable": self.usable,
            "files_checked": self.files_checked,
            "from_cache": self.from_cache,
            "seconds": round(self.seconds, 3),
            "class_counts": self.class_counts,
            "imbalance_ratio": round(self.imbalance_ratio, 4),
            "split_counts": self.split_counts,
            "reason_counts": self.reason_counts,
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "dropped_classes": self.dropped_classes,
            "notes": self.notes,
            # Segmentation only, so a classification report reads as it always did.
            **({"pairs": self.pairs, "pixel_counts": self.pixel_counts,
                "pixel_frequencies": self.pixel_frequencies} if self.pairs else {}),
            **({"missing_classes": self.missing_classes} if self.missing_classes else {}),
            # Detection only, likewise.
            **({"images": self.images, "box_counts": self.box_counts,
                "background_images": self.background_images, "box_notes": self.box_notes,
                "dropped_reason_counts": self.dropped_reason_counts,
                "dropped_boxes": [{"where": w, "reason": r} for w, r in self.dropped_boxes]}
               if self.images else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataReport:
        return cls(source=data["source"], root=data.get("root", ""),
                   class_counts=dict(data["class_counts"]),
                   split_counts={k: dict(v) for k, v in data["split_counts"].items()},
                   skipped=[(s["path"], s["reason"]) for s in data["skipped"]],
                   dropped_classes=dict(data["dropped_classes"]), notes=dict(data["notes"]),
                   files_checked=data["files_checked"], from_cache=data["from_cache"],
                   seconds=data["seconds"], pairs=data.get("pairs", 0),
                   pixel_counts=dict(data.get("pixel_counts", {})),
                   pixel_frequencies=dict(data.get("pixel_frequencies", {})),
                   missing_classes={k: list(v)
                                    for k, v in data.get("missing_classes", {}).items()},
                   images=data.get("images", 0), box_counts=dict(data.get("box_counts", {})),
                   background_images=data.get("background_images", 0),
                   box_notes=dict(data.get("box_notes", {})),
                   dropped_boxes=[(d["where"], d["reason"])
                                  for d in data.get("dropped_boxes", [])])

    def save(self, path: str | os.PathLike) -> None:
        """Write the report as JSON (``RUN_DIR/data_report.json``)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> DataReport:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def summary(self, max_paths: int = 5) -> str:
        """A few lines for the terminal: counts per class and per reason, the first paths."""
        what = "image/mask pair(s) with" if self.pairs else "image(s) in"
        lines = [f"{self.usable} usable {what} {len(self.class_counts)} class(es) from "
                 f"{self.source} ({self.files_checked} file(s) checked, {self.from_cache} from "
                 f"cache, {self.seconds:.1f} s)"]
        if self.class_counts and self.pairs:
            counts = ", ".join(f"{name} {n}" for name, n in self.class_counts.items())
            lines.append(f"  masks holding each class: {counts}")
            if self.pixel_frequencies:
                freqs = ", ".join(f"{name} {f:.3g}" for name, f in self.pixel_frequencies.items())
                lines.append(f"  training pixel frequencies: {freqs}")
        elif self.images:
            lines += self._box_lines(max_paths)
        elif self.class_counts:
            counts = ", ".join(f"{name} {n}" for name, n in self.class_counts.items())
            lines.append(f"  classes: {counts} (largest/smallest {self.imbalance_ratio:.2f})")
        for name, why in self.dropped_classes.items():
            lines.append(f"  dropped class {name!r}: {why}")
        if self.skipped:
            reasons = ", ".join(f"{n} {reason}" for reason, n in self.reason_counts.items())
            lines.append(f"  skipped {len(self.skipped)} file(s): {reasons}")
            for path, reason in self.skipped[:max_paths]:
                lines.append(f"    {self._short(path)}: {reason}")
            if len(self.skipped) > max_paths:
                lines.append(f"    ... and {len(self.skipped) - max_paths} more "
                             f"(the JSON report lists them all)")
        if self.notes:
            lines.append("  normalised: " + ", ".join(f"{n} {note}"
                                                      for note, n in self.notes.items()))
        return "\n".join(lines)

    def _box_lines(self, max_paths: int) -> list[str]:
        """The detection lines of :meth:`summary`: boxes per class, background images, what
        was done to boxes, and the boxes left out, the first ones named."""
        boxes = ", ".join(f"{name} {n}" for name, n in self.box_counts.items())
        images = ", ".join(f"{name} {n}" for name, n in self.class_counts.items())
        lines = [f"  boxes per class: {boxes or 'none'}",
                 f"  images holding each class: {images or 'none'}"]
        if self.background_images:
            lines.append(f"  background images (no boxes): {self.background_images}")
        if self.box_notes:
            lines.append("  boxes: " + ", ".join(f"{n} {note}"
                                                 for note, n in self.box_notes.items()))
        if self.dropped_boxes:
            reasons = ", ".join(f"{n} {r}" for r, n in self.dropped_reason_counts.items())
            lines.append(f"  dropped {len(self.dropped_boxes)} box(es): {reasons}")
            for where, reason in self.dropped_boxes[:max_paths]:
                lines.append(f"    {self._short(where)}: {reason}")
            if len(self.dropped_boxes) > max_paths:
                lines.append(f"    ... and {len(self.dropped_boxes) - max_paths} more "
                             f"(the JSON report lists them all)")
        return lines

    def _short(self, path: str) -> str:
        try:
            return os.path.relpath(path, self.root) if self.root else path
        except ValueError:
            return path


def _error(message: str, report: DataReport) -> DataError:
    """A DataError carrying the report, so ``zoo data check --json`` can still print it."""
    error = DataError(message)
    error.report = report  # type: ignore[attr-defined]
    return error


def class_weights(counts: Sequence[int]) -> dict[int, float]:
    """Inverse-frequency weights, normalised so that the average weight per sample is 1."""
    counts_arr = np.asarray(counts, dtype=np.float64)
    total, k = counts_arr.sum(), len(counts_arr)
    return {i: float(total / (k * c)) if c else 0.0 for i, c in enumerate(counts_arr)}


def imbalance_ratio(counts: Sequence[int]) -> float:
    nonzero = [c for c in counts if c]
    return max(nonzero) / min(nonzero) if nonzero else 1.0
