"""The Pascal VOC layout: ``JPEGImages/`` + ``Annotations/*.xml`` (:func:`read_voc`).

Found in ``DATA_DIR``, ``DATA_DIR/VOC*`` or ``DATA_DIR/VOCdevkit/VOC*``. An image and its XML
share their stem. ``ImageSets/Main/{train,val,trainval,test}.txt`` fix the splits when present
(train and val when both exist, else trainval or train as the pool validation is drawn from),
and then only the listed images are used; without them every image is. The class names are
VOC's 20 in their standard order when every name found is one of them, else the sorted names
found (Everingham et al. 2010, "The PASCAL Visual Object Classes (VOC) Challenge").

VOC pixels are numbered from 1: a box ``xmin ymin xmax ymax`` covers ``[xmin - 1, xmax]`` and
``[ymin - 1, ymax]`` in the 0-based, edge-to-edge frame of the internal form. ``<difficult>``
is kept and flagged. ``<size>``, when present, is checked against the image.
"""

from __future__ import annotations

import os
import unicodedata
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from transfer.data.reports import (
    DROP_MALFORMED,
    SKIP_BAD_ANNOTATION,
    SKIP_DUPLICATE,
    SKIP_MISSING,
    SKIP_NO_IMAGE_FOR_ANNOTATION,
    SKIP_SAME_STEM,
)
from transfer.data.sources import _walk
from transfer.errors import DataError
from transfer.tasks.detection.annotations import RawBox, RawImage, RawLayout, finite

LAYOUT_VOC = "Pascal VOC XML (JPEGImages/ + Annotations/)"
VOC_DETECTION_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor")
_LISTS = ("train", "val", "trainval", "test")


def find_voc(root: Path) -> Path | None:
    """The VOC folder at or under ``root`` (``VOC*``, ``VOCdevkit/VOC*``), or None."""
    if not root.is_dir():
        return None
    candidates = [root, *sorted(root.glob("VOC*")), *sorted(root.glob("VOCdevkit/VOC*"))]
    found = [c for c in candidates
             if (c / "JPEGImages").is_dir() and (c / "Annotations").is_dir()]
    if len(found) > 1:
        raise DataError(f"{str(root)!r} holds several Pascal VOC folders "
                        f"({', '.join(str(f) for f in found)}); pass one of them")
    return found[0] if found else None


def looks_like_voc(root: Path) -> str | None:
    try:
        return LAYOUT_VOC if find_voc(root) is not None else None
    except DataError:
        return LAYOUT_VOC


def _stems(folder: Path, suffix: str | None, skipped: list[tuple[str, str]]) -> dict[str, str]:
    """Stem (path under ``folder`` without suffix) -> file; a second file of a stem is
    skipped."""
    files, more = _walk(os.fspath(folder))
    skipped += more
    chosen: dict[str, str] = {}
    for entry in sorted(files, key=lambda e: e.path):
        if suffix is not None and not entry.name.lower().endswith(suffix):
            continue
        rel = Path(os.path.relpath(entry.path, folder)).with_suffix("").as_posix()
        stem = unicodedata.normalize("NFC", rel)
        if stem in chosen:
            skipped.append((str(Path(entry.path)), SKIP_SAME_STEM))
        else:
            chosen[stem] = str(Path(entry.path))
    return chosen


def _read_list(path: Path) -> list[str]:
    try:
        return [line.split()[0] for line in path.read_text(encoding="utf-8-sig").splitlines()
                if line.split()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read split list {str(path)!r}: {exc}") from None


def _groups(root: Path, images: dict[str, str]) -> dict[str, list[str]]:
    """Split -> stems, from ``ImageSets/Main`` lists when present."""
    folder = root / "ImageSets" / "Main"
    lists = {name: folder / f"{name}.txt" for name in _LISTS if (folder / f"{name}.txt").is_file()}
    if "train" in lists and "val" in lists:
        groups = {"train": _read_list(lists["train"]), "val": _read_list(lists["val"])}
    elif "trainval" in lists or "train" in lists:
        groups = {"train": _read_list(lists.get("trainval", lists.get("train")))}
    elif "test" in lists:
        raise DataError(f"{str(folder)!r} lists only test images; add train.txt and val.txt "
                        f"(or trainval.txt), or remove the lists to use every image")
    else:
        return {"all": sorted(images)}
    if "test" in lists:
        groups["test"] = _read_list(lists["test"])
    return groups


def _parse(xml: str, names: list[str]) -> tuple[list[tuple[str, str, tuple, bool]],
                                                list[tuple[str, str]], tuple[int, int] | None]:
    """The objects of a VOC XML file as ``(where, name, box, difficult)``, the malformed
    ones, and the recorded size. Raises ElementTree.ParseError or OSError."""
    tree = ElementTree.parse(xml).getroot()
    objects, dropped = [], []
    for number, obj in enumerate(tree.iter("object"), 1):
        where = f"{xml}: object {number}"
        name = (obj.findtext("name") or "").strip()
        try:
            box = obj.find("bndbox")
            xmin, ymin, xmax, ymax = (float(box.findtext(k)) for k in
                                      ("xmin", "ymin", "xmax", "ymax"))
            difficult = (obj.findtext("difficult") or "").strip().lower() in ("1", "true")
        except (AttributeError, TypeError, ValueError):
            dropped.append((where, DROP_MALFORMED))
            continue
        if not name or not finite([xmin, ymin, xmax, ymax]):
            dropped.append((where, DROP_MALFORMED))
            continue
        objects.append((where, name, (xmin - 1, ymin - 1, xmax, ymax), difficult))
        names.append(name)
    size = None
    try:
        width, height = int(tree.findtext("size/width")), int(tree.findtext("size/height"))
        size = (width, height) if width > 0 and height > 0 else None
    except (TypeError, ValueError):
        pass
    return objects, dropped, size


def read_voc(root: Path, class_names: tuple[str, ...] | None = None) -> RawLayout:
    """Read a VOC folder: its splits, images, objects and class names.

    Args:
        root: the folder, or one holding it (``VOC*``, ``VOCdevkit/VOC*``).
        class_names: the classes to number the objects by (a trained model's), which must
            include every name found. None: from the names found.
    """
    found = find_voc(root)
    if found is None:
        raise DataError(f"{str(root)!r} has no JPEGImages/ and Annotations/ folders")
    layout = RawLayout(found, LAYOUT_VOC, (), {})
    images = _stems(found / "JPEGImages", None, layout.skipped)
    xmls = _stems(found / "Annotations", ".xml", layout.skipped)
    layout.skipped += [(path, SKIP_NO_IMAGE_FOR_ANNOTATION) for stem, path in xmls.items()
                       if stem not in images]
    seen: set[str] = set()
    names: list[str] = []
    parsed: dict[str, list[tuple[str, str, tuple, bool]]] = {}
    for split, stems in _groups(found, images).items():
        group = layout.groups[split] = []
        for stem in stems:
            if stem not in images:
                layout.skipped.append((str(found / "JPEGImages" / f"{stem}.jpg"), SKIP_MISSING))
                continue
            if stem in seen:
                layout.skipped.append((images[stem], SKIP_DUPLICATE))
                continue
            seen.add(stem)
            image = RawImage(images[stem])
            if stem in xmls:
                try:
                    parsed[images[stem]], dropped, image.recorded_size = _parse(xmls[stem], names)
                except (ElementTree.ParseError, OSError):
                    layout.skipped.append((xmls[stem], SKIP_BAD_ANNOTATION))
                    continue
                layout.dropped += dropped
            group.append(image)
    found_names = set(names)
    if class_names is None:
        class_names = (VOC_DETECTION_CLASSES if found_names <= set(VOC_DETECTION_CLASSES)
                       else tuple(sorted(found_names)))
    elif not found_names <= set(class_names):
        raise DataError(f"the classes of {str(found)!r} ({', '.join(sorted(found_names))}) are "
                        f"not the model's ({', '.join(class_names)})")
    index = {name: i for i, name in enumerate(class_names)}
    for group in layout.groups.values():
        for image in group:
            image.boxes = [RawBox(where, index[name], box, difficult)
                           for where, name, box, difficult in parsed.get(image.path, ())]
    layout.class_names = tuple(class_names)
    return layout
