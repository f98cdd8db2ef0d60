"""The YOLO layout: ``data.yaml``, ``images/`` and ``labels/`` (:func:`read_yolo`).

``data.yaml`` names the dataset's ``path`` and its ``train``, ``val`` and ``test`` images: each
a folder, a ``.txt`` list of image paths, or a list of those. Relative values are taken from
``path`` (itself relative to the yaml's folder), else from the yaml's folder; a value that
starts with ``../`` and is found nowhere else is also tried without it (Roboflow exports write
``train: ../train/images`` beside the yaml). In a ``.txt`` list, relative lines are relative to
the list's folder, else to ``path``. ``names`` is a list or an ``{id: name}`` mapping; ``nc``,
when given, must agree with it.

Without ``data.yaml``, ``images/`` + ``labels/`` (or ``images/train`` + ``labels/train``...,
or ``train/images`` + ``train/labels``...; ``valid`` and ``validation`` mean ``val``) are read
the same way, with the class names of a ``classes.txt`` (in the folder or beside the labels),
else the class numbers as names.

The label file of ``.../images/<sub>/x.jpg`` is ``.../labels/<sub>/x.txt`` (the last ``images``
component of the path replaced by ``labels``; beside the image when the path has none). A row is
``class cx cy w h``, fractions of the image's width and height; a row of a class and three or
more ``x y`` points (a polygon) is read as its bounding box.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from transfer.data.reports import (
    DROP_MALFORMED,
    DROP_UNKNOWN_CLASS,
    SKIP_BAD_ANNOTATION,
    SKIP_DUPLICATE,
    SKIP_MISSING,
    SKIP_NO_IMAGE_FOR_ANNOTATION,
)
from transfer.data.sources import _walk
from transfer.errors import DataError
from transfer.tasks.detection.annotations import (
    NOTE_POLYGON,
    RawBox,
    RawImage,
    RawLayout,
    finite,
)

log = logging.getLogger(__name__)

LAYOUT_YOLO = "YOLO (data.yaml + images/ + labels/)"
LAYOUT_YOLO_FOLDERS = "YOLO (images/ + labels/)"
YAML_FILES = ("data.yaml", "data.yml")
SPLIT_ALIASES = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
_CLASSES_FILE = "classes.txt"
_LIST_NAMES = frozenset({"train.txt", "val.txt", "valid.txt", "test.txt"})


def find_yaml(root: Path) -> Path | None:
    return next((root / name for name in YAML_FILES if (root / name).is_file()), None)


def looks_like_yolo(root: Path) -> str | None:
    """The YOLO layout ``root`` is in, in words, or None."""
    if find_yaml(root) is not None:
        return LAYOUT_YOLO
    for folder in (root, root / "train"):
        if (folder / "images").is_dir() and (folder / "labels").is_dir():
            return LAYOUT_YOLO_FOLDERS
    return None


# ---- data.yaml ------------------------------------------------------------------------------

def read_yaml(path: Path) -> dict[str, Any]:
    """The top-level mapping of a ``data.yaml``.

    PyYAML reads it when installed (it is not a dependency of this package: it comes with the
    docs and test tools); otherwise :func:`parse_flat_yaml`, which reads the flat keys a
    dataset yaml has.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc}") from None
    try:
        import yaml
    except ImportError:
        data = parse_flat_yaml(text, path)
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise DataError(f"{str(path)!r} is not valid YAML: "
                            f"{str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise DataError(f"{str(path)!r} must be a mapping of keys (path, train, val, test, "
                        f"names); got {type(data).__name__}")
    return data


def parse_flat_yaml(text: str, path: Path | str = "data.yaml") -> dict[str, Any]:
    """The YAML of a dataset file without PyYAML: top-level ``key: value`` lines, whose value
    is a scalar, an inline ``[a, b]`` list or ``{0: a}`` mapping, or the indented ``- item``
    or ``key: value`` lines below it. Block scalars (``download: |``) are skipped. Enough for
    ``path``, ``train``, ``val``, ``test``, ``nc`` and ``names``."""
    data: dict[str, Any] = {}
    key: str | None = None
    block_scalar = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw).rstrip()
        if not line.strip() or line.strip() in ("---", "..."):
            continue
        top = not line[0].isspace() and not line.startswith("-")
        if block_scalar and not top:
            continue
        block_scalar = False
        if top:
            name, sep, value = line.partition(":")
            if not sep:
                raise DataError(f"{str(path)!r} line {number}: expected 'key: value', got "
                                f"{raw.strip()!r}")
            key, value = str(_scalar(name.strip())), value.strip()
            block_scalar = value[:1] in ("|", ">")
            data[key] = None if block_scalar or not value else _value(value)
            continue
        item = line.strip()
        if key is None:
            raise DataError(f"{str(path)!r} line {number}: indented line before any key")
        if item == "-" or item.startswith("- "):
            if data[key] is None:
                data[key] = []
            if isinstance(data[key], list):
                data[key].append(_value(item[1:].strip()))
                continue
        name, sep, value = item.partition(":")
        if sep and isinstance(data[key] or {}, dict):
            data[key] = data[key] or {}
            data[key][_scalar(name.strip())] = _value(value.strip())
            continue
        raise DataError(f"{str(path)!r} line {number}: cannot read {raw.strip()!r} without "
                        f"PyYAML; install pyyaml")
    return data


def _strip_comment(line: str) -> str:
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def _split_items(text: str) -> list[str]:
    items, current, quote = [], "", None
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == ",":
            items.append(current.strip())
            current = ""
            continue
        current += char
    if current.strip():
        items.append(current.strip())
    return items


def _value(text: str) -> Any:
    if text.startswith("[") and text.endswith("]"):
        return [_scalar(item) for item in _split_items(text[1:-1])]
    if text.startswith("{") and text.endswith("}"):
        pairs = [item.partition(":") for item in _split_items(text[1:-1])]
        return {_scalar(k.strip()): _scalar(v.strip()) for k, _, v in pairs}
    return _scalar(text)


def _scalar(text: str) -> Any:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if re.fullmatch(r"[-+]?\d+", text):
        return int(text)
    if text in ("", "~", "null", "Null", "NULL"):
        return None
    if text in ("true", "True", "false", "False"):
        return text in ("true", "True")
    return text


def _yaml_names(data: dict[str, Any], path: Path) -> tuple[str, ...] | None:
    names, nc = data.get("names"), data.get("nc")
    if nc is not None and (isinstance(nc, bool) or not isinstance(nc, int) or nc < 1):
        raise DataError(f"{str(path)!r}: nc must be a positive number of classes; got {nc!r}")
    if isinstance(names, dict):
        try:
            by_id = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            raise DataError(f"{str(path)!r}: names must map class numbers to names; got keys "
                            f"{', '.join(map(str, names))}") from None
        missing = sorted(set(range(max(by_id, default=-1) + 1)) - set(by_id))
        if missing or min(by_id, default=0) < 0:
            raise DataError(f"{str(path)!r}: names must name every class 0..{len(by_id) - 1}; "
                            f"missing {', '.join(map(str, missing)) or 'none'}")
        names = [by_id[i] for i in range(len(by_id))]
    elif names is not None and not isinstance(names, list):
        raise DataError(f"{str(path)!r}: names must be a list or an {{id: name}} mapping; got "
                        f"{names!r}")
    if names is None:
        return tuple(str(i) for i in range(nc)) if nc else None
    if nc is not None and nc != len(names):
        raise DataError(f"{str(path)!r}: nc is {nc} but names lists {len(names)} class(es)")
    return tuple(str(n) for n in names)


def _base(data: dict[str, Any], yaml_path: Path) -> Path:
    folder = yaml_path.parent
    if not data.get("path"):
        return folder
    base = Path(str(data["path"])).expanduser()
    base = base if base.is_absolute() else folder / base
    if not base.is_dir():
        log.info("%s: path %r is not a folder here; reading the dataset from %s", yaml_path,
                 str(data["path"]), folder)
        return folder
    return base


def _resolve(value: str, base: Path, yaml_path: Path) -> Path:
    path = Path(value).expanduser()
    if path.is_absolute():
        candidates = [path]
    else:
        candidates = [base / path, yaml_path.parent / path]
        if value.startswith("../"):
            candidates.append(base / value[3:])
    found = next((c for c in candidates if c.exists()), None)
    if found is None:
        tried = ", ".join(dict.fromkeys(str(c) for c in candidates))
        raise DataError(f"{str(yaml_path)!r} names {value!r}, which is not there (looked for "
                        f"{tried}); fix the path in the yaml")
    return found


def _yaml_specs(data: dict[str, Any], yaml_path: Path, base: Path) -> dict[str, list[Path]]:
    specs: dict[str, list[Path]] = {}
    for split in ("train", "val", "test"):
        value = data.get(split)
        if value in (None, "", []):
            continue
        values = value if isinstance(value, list) else [value]
        specs[split] = [_resolve(str(v), base, yaml_path) for v in values]
    if "train" not in specs:
        raise DataError(f"{str(yaml_path)!r} names no train images; add 'train: images/train' "
                        f"(a folder or a .txt list of images)")
    if specs.get("val") == specs["train"]:
        log.warning("%s: val is the same images as train; drawing a validation split from "
                    "them instead", yaml_path)
        del specs["val"]
    return specs


def _folder_specs(root: Path) -> dict[str, list[Path]]:
    """The image folders of a YOLO folder without ``data.yaml``, by split."""
    for parent, inner in ((root / "images", None), (root, "images")):
        found = {}
        for split, aliases in SPLIT_ALIASES.items():
            for alias in aliases:
                folder = parent / alias / inner if inner else parent / alias
                if folder.is_dir():
                    found[split] = [folder]
                    break
        if "train" in found:
            return found
    return {"all": [root / "images"]}


# ---- images and labels --------------------------------------------------------------------

def label_path(image: str | os.PathLike) -> Path:
    """``.../images/<sub>/x.jpg`` -> ``.../labels/<sub>/x.txt`` (the last ``images``
    component), or ``x.txt`` beside the image when its path has no ``images`` component."""
    parts = Path(image).parts
    at = max((i for i, part in enumerate(parts[:-1]) if part == "images"), default=None)
    if at is None:
        return Path(image).with_suffix(".txt")
    return Path(*parts[:at], "labels", *parts[at + 1:]).with_suffix(".txt")


def _list_images(source: Path, base: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """The image files of a folder (label ``.txt`` files beside them left out) or of a
    ``.txt`` list, and what was skipped on the way."""
    if source.is_dir():
        files, skipped = _walk(os.fspath(source))
        return sorted(str(Path(f.path)) for f in files
                      if not f.name.lower().endswith(".txt")), skipped
    try:
        lines = [line.strip() for line in source.read_text(encoding="utf-8-sig").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the image list {str(source)!r}: {exc}") from None
    paths, skipped = [], []
    for line in filter(None, lines):
        path = Path(line).expanduser()
        candidates = [path] if path.is_absolute() else [source.parent / path, base / path]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            skipped.append((str(candidates[0]), SKIP_MISSING))
        else:
            paths.append(str(found))
    return paths, skipped


def _read_labels(path: Path) -> tuple[list[RawBox], list[tuple[str, str]], int]:
    """The rows of a label file (classes not yet checked), the malformed ones, and how many
    rows were polygons. Raises OSError or UnicodeDecodeError when the file cannot be read."""
    boxes, dropped, polygons = [], [], 0
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{number}"
        try:
            values = [float(f) for f in fields]
        except ValueError:
            dropped.append((where, DROP_MALFORMED))
            continue
        cls = values[0]
        if not finite(values) or cls != int(cls):
            dropped.append((where, DROP_MALFORMED))
            continue
        if len(values) == 5:
            cx, cy, w, h = values[1:]
            box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        elif len(values) >= 7 and len(values) % 2:
            xs, ys = values[1::2], values[2::2]
            box = (min(xs), min(ys), max(xs), max(ys))
            polygons += 1
        else:
            dropped.append((where, DROP_MALFORMED))
            continue
        boxes.append(RawBox(where, int(cls), box))
    return boxes, dropped, polygons


def _class_file(base: Path, specs: dict[str, list[Path]]) -> tuple[str, ...] | None:
    """Names from a ``classes.txt`` in the dataset folder or beside the labels."""
    folders = [base, base / "labels", *(label_path(s / "x").parent for ss in specs.values()
                                        for s in ss if s.is_dir())]
    for folder in folders:
        path = folder / _CLASSES_FILE
        if path.is_file():
            try:
                return tuple(n.strip() for n in path.read_text(encoding="utf-8-sig").splitlines()
                             if n.strip())
            except (OSError, UnicodeDecodeError) as exc:
                raise DataError(f"cannot read class names from {str(path)!r}: {exc}") from None
    return None


def _orphans(folder: Path, images: list[str]) -> list[tuple[str, str]]:
    """Label files under the labels folder of an image folder that belong to no image."""
    labels = label_path(folder / "x").parent
    if not labels.is_dir():
        return []
    expected = {os.path.abspath(label_path(p)) for p in images}
    files, _ = _walk(os.fspath(labels))
    # Labels beside their images: the folder's own split lists are not labels.
    lists = _LIST_NAMES if labels == folder else frozenset()
    return sorted((str(Path(f.path)), SKIP_NO_IMAGE_FOR_ANNOTATION) for f in files
                  if f.name.lower().endswith(".txt") and f.name != _CLASSES_FILE
                  and f.name not in lists and os.path.abspath(f.path) not in expected)


def read_yolo(root: Path) -> RawLayout:
    """Read a YOLO folder: its splits, images, label rows and class names."""
    yaml_path = find_yaml(root)
    if yaml_path is not None:
        data = read_yaml(yaml_path)
        base = _base(data, yaml_path)
        specs = _yaml_specs(data, yaml_path, base)
        names = _yaml_names(data, yaml_path)
        kind = LAYOUT_YOLO
    else:
        base, specs, names, kind = root, _folder_specs(root), None, LAYOUT_YOLO_FOLDERS
    names = names or _class_file(base, specs)
    layout = RawLayout(base, kind, (), {})
    seen: set[str] = set()
    labelled: set[str] = set()
    for split, sources in specs.items():
        images = layout.groups[split] = []
        for source in sources:
            paths, skipped = _list_images(source, base)
            layout.skipped += skipped
            if source.is_dir():
                layout.skipped += _orphans(source, paths)
            for path in paths:
                if os.path.abspath(path) in seen:
                    layout.skipped.append((path, SKIP_DUPLICATE))
                    continue
                seen.add(os.path.abspath(path))
                image = RawImage(path, normalised=True)
                label = label_path(path)
                if label.is_file():
                    try:
                        image.boxes, dropped, polygons = _read_labels(label)
                    except (OSError, UnicodeDecodeError) as exc:
                        log.warning("skipping %s: cannot read its labels %s: %s", path, label,
                                    exc)
                        layout.skipped.append((str(label), SKIP_BAD_ANNOTATION))
                        continue
                    layout.dropped += dropped
                    layout.box_notes[NOTE_POLYGON] += polygons
                    labelled.add(split)
                images.append(image)
    all_images = [image for images in layout.groups.values() for image in images]
    if names is None:
        # Neither data.yaml nor classes.txt names the classes: the numbers found are the names.
        k = max((b.cls for image in all_images for b in image.boxes), default=-1) + 1
        names = tuple(str(i) for i in range(k))
    for image in all_images:
        known = [b for b in image.boxes if 0 <= b.cls < len(names)]
        layout.dropped += [(b.where, DROP_UNKNOWN_CLASS) for b in image.boxes
                           if not 0 <= b.cls < len(names)]
        image.boxes = known
    layout.class_names = names
    layout.box_notes = +layout.box_notes
    for split in (s for s, images in layout.groups.items() if images and s not in labelled):
        log.warning("no image of %s in %s has a label file (looked for %s); all are read as "
                    "background images", split, base, label_path(layout.groups[split][0].path))
    return layout

