"""The COCO layout: ``annotations/instances_<split>.json`` (:func:`read_coco`).

Each file is one split: its name after ``instances_`` says which (``train2017`` and ``train``
are train, ``val2017``, ``minival`` and ``val`` are val, ``test...`` is test). A single file of
another name (CVAT writes ``instances_default.json``) is the whole dataset, split as a folder
without splits is. The images of split ``<name>`` are looked for in ``<root>/<name>/``,
``<root>/images/<name>/``, ``<root>/images/`` and ``<root>/``, the first that holds the
``file_name``.

Categories keep their names and are numbered 0..K-1 in ascending id order (COCO's ids run
1-90 with gaps). ``bbox`` is ``[x, y, width, height]`` in pixels of the image of the recorded
``width`` and ``height``. Crowd regions (``iscrowd: 1``) are left out and counted.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from transfer.data.reports import (
    DROP_MALFORMED,
    DROP_UNKNOWN_CLASS,
    DROP_UNKNOWN_IMAGE,
    SKIP_DUPLICATE,
    SKIP_MISSING,
)
from transfer.errors import DataError
from transfer.tasks.detection.annotations import (
    NOTE_CROWD,
    RawBox,
    RawImage,
    RawLayout,
    finite,
)

log = logging.getLogger(__name__)

LAYOUT_COCO = "COCO JSON (annotations/instances_*.json)"
_PREFIX = "instances_"


def annotation_files(root: Path) -> list[Path]:
    folder = root / "annotations"
    return sorted(folder.glob(f"{_PREFIX}*.json")) if folder.is_dir() else []


def looks_like_coco(root: Path) -> str | None:
    return LAYOUT_COCO if annotation_files(root) else None


def split_of(name: str) -> str | None:
    """``train2017`` -> ``train``, ``val2017`` -> ``val``, ``test-dev`` -> ``test``; None for a
    name that says no split."""
    lower = name.lower()
    for split in ("train", "val", "test"):
        if split in lower:
            return split
    return None


def _splits(root: Path) -> dict[str, tuple[str, Path]]:
    """Split -> (the file's own split name, its path)."""
    files = annotation_files(root)
    found: dict[str, tuple[str, Path]] = {}
    for path in files:
        name = path.stem[len(_PREFIX):]
        split = split_of(name) or ("all" if len(files) == 1 else None)
        if split is None:
            raise DataError(f"cannot tell which split {str(path)!r} is: name the files "
                            f"instances_train.json, instances_val.json, instances_test.json")
        if split in found:
            raise DataError(f"{str(found[split][1])!r} and {str(path)!r} are both the {split} "
                            f"split; keep one of them in {str(root / 'annotations')!r}")
        found[split] = (name, path)
    return found


def _load(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{str(path)!r} is not a COCO annotation file: it needs an 'images' "
                        f"list (and 'annotations' and 'categories')")
    return data


def _categories(files: dict[str, dict[str, Any]]) -> dict[int, str]:
    """Category id -> name over every file; an id named differently in two files is an error."""
    names: dict[int, str] = {}
    for path, data in files.items():
        for category in data.get("categories") or []:
            try:
                cid, name = int(category["id"]), str(category["name"])
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{path!r}: a category needs an 'id' and a 'name'; got "
                                f"{category!r}") from None
            if names.setdefault(cid, name) != name:
                raise DataError(f"{path!r}: category {cid} is {name!r} here but "
                                f"{names[cid]!r} in another annotation file")
    by_name = [names[c] for c in sorted(names)]
    doubled = sorted({n for n in by_name if by_name.count(n) > 1})
    if doubled:
        raise DataError(f"categories of {', '.join(files)} share the name(s) "
                        f"{', '.join(doubled)}; give each category its own name")
    return names


def _image_folders(root: Path, name: str) -> list[Path]:
    candidates = [root / name, root / "images" / name, root / "images", root]
    return [c for c in dict.fromkeys(candidates) if c.is_dir()]


def _size(entry: dict[str, Any]) -> tuple[int, int] | None:
    try:
        width, height = int(entry["width"]), int(entry["height"])
    except (KeyError, TypeError, ValueError):
        return None
    return (width, height) if width > 0 and height > 0 else None


def read_coco(root: Path) -> RawLayout:
    """Read a COCO folder: its splits, images, boxes and categories."""
    splits = _splits(root)
    files = {str(path): _load(path) for _, path in splits.values()}
    categories = _categories(files)
    index = {cid: i for i, cid in enumerate(sorted(categories))}
    layout = RawLayout(root, LAYOUT_COCO, tuple(categories[c] for c in sorted(categories)), {})
    seen: set[str] = set()
    for split, (name, path) in splits.items():
        data = files[str(path)]
        folders = _image_folders(root, name)
        by_id: dict[Any, RawImage] = {}
        listed = {e.get("id") for e in data["images"] if isinstance(e, dict)}
        images = layout.groups[split] = []
        for entry in data["images"]:
            file_name = str(entry.get("file_name", "")) if isinstance(entry, dict) else ""
            found = next((f / file_name for f in folders if file_name
                          and (f / file_name).is_file()), None)
            if found is None:
                missing = (folders[0] if folders else root / name) / file_name
                layout.skipped.append((str(missing), SKIP_MISSING))
                continue
            if os.path.abspath(found) in seen or entry.get("id") in by_id:
                layout.skipped.append((str(found), SKIP_DUPLICATE))
                continue
            seen.add(os.path.abspath(found))
            by_id[entry.get("id")] = image = RawImage(str(found), recorded_size=_size(entry))
            images.append(image)
        for number, annotation in enumerate(data.get("annotations") or []):
            if not isinstance(annotation, dict):
                layout.dropped.append((f"{path}: annotation #{number}", DROP_MALFORMED))
                continue
            where = f"{path}: annotation {annotation.get('id', f'#{number}')}"
            if annotation.get("iscrowd"):
                layout.box_notes[NOTE_CROWD] += 1
                continue
            image = by_id.get(annotation.get("image_id"))
            if image is None:
                # Images skipped above (missing, listed twice) take their boxes with them.
                if annotation.get("image_id") not in listed:
                    layout.dropped.append((where, DROP_UNKNOWN_IMAGE))
                continue
            bbox = annotation.get("bbox")
            try:
                x, y, w, h = (float(v) for v in bbox)
            except (TypeError, ValueError):
                layout.dropped.append((where, DROP_MALFORMED))
                continue
            if not finite([x, y, w, h]):
                layout.dropped.append((where, DROP_MALFORMED))
                continue
            try:
                cls = index[int(annotation.get("category_id"))]
            except (KeyError, TypeError, ValueError):
                layout.dropped.append((where, DROP_UNKNOWN_CLASS))
                continue
            image.boxes.append(RawBox(where, cls, (x, y, x + w, y + h)))
    layout.box_notes = +layout.box_notes
    return layout
