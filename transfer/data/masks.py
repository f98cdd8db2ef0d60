"""Semantic segmentation data: image/mask pairs, class-index masks, and joint augmentation.

**Layouts** (:func:`load_segmentation`), recognised in this order:

- Pascal VOC: ``JPEGImages/`` and ``SegmentationClass/`` (palette PNGs), in ``DATA_DIR``,
  ``DATA_DIR/VOC*`` or ``DATA_DIR/VOCdevkit/VOC*``. ``ImageSets/Segmentation/{train,val,test}
  .txt`` fix the split when present, and then only the listed stems are used (most VOC images
  have no mask; they are counted in the report's notes, not listed one by one). The 21 VOC
  class names by default; 255 (the object borders) is ``ignore_index``.
- Oxford-IIIT Pet: ``images/*.jpg`` and ``annotations/trimaps/*.png``, whose values 1 = pet,
  2 = background, 3 = border become 0 = background, 1 = pet, border = ``ignore_index``.
  ``annotations/trainval.txt`` and ``test.txt`` fix the split when present.
- Any other: ``DATA_DIR/images/*`` and ``DATA_DIR/masks/*`` paired by file stem (the path
  under the folder without its suffix, so sub-folders pair too), or ``train/``, ``val/`` and
  ``test/`` folders each laid out that way. Splits not given are drawn with a seeded random
  permutation of the pairs (not stratified: a mask holds several classes).

**Class names**, in this order: ``palette`` (a CSV file), ``DATA_DIR/classes.csv``,
``DATA_DIR/classes.txt`` (one name per line, in index order), the layout's names (VOC, Pet),
else ``class_0 .. class_{K-1}`` with K the largest label in the usable masks plus one. A CSV
holds ``index,name,r,g,b`` rows (a header row is optional, colours are optional); its colours
are the colour table of RGB colour-coded masks, and a row whose index is ``ignore_index`` gives
the colour of ignored pixels (its name is not a class).

**What a mask means.** A mask holds a class index per pixel. Palette ("P") PNGs are read as
their indices, never converted to RGB; 8-bit, 16-bit and 1-bit grayscale masks as their values.
RGB masks are mapped through the colour table (a colour outside it makes the pair unusable);
without a table an RGB mask whose three channels are equal everywhere is read as grayscale,
any other is a :class:`~transfer.errors.DataError` naming the file. JPEG masks are never used:
compression invents labels at every edge. Masks are **never EXIF-rotated** (a label file's
pixels are its labels): an image with an EXIF orientation is compared, rotated as training sees
it, with the mask as stored, and a pair whose sizes then differ is skipped. A square image whose
orientation is not 1 cannot be caught this way; fix such images' orientation, not the masks.

**Checking.** Images are checked as for classification (:func:`~transfer.data.checks.
check_files`: every file decoded once, results cached, odd files normalised into the cache).
Every mask is decoded once too (results cached in ``CACHE_DIR/masks-<mapping>.sqlite``); a mask
that is not already 8-bit class indices Pillow reads as such (RGB, 16-bit, 1-bit, a trimap) is
written once, as class indices, as an 8-bit PNG under ``CACHE_DIR/masks/``, and
``Split.masks`` points there. Pairs that cannot be used are skipped and named in the
:class:`~transfer.data.reports.DataReport` with one of the ``SKIP_*`` reasons; nothing in
``DATA_DIR`` is modified.

**Joint augmentation** (:func:`joint_augment`) runs on batches inside ``tf.data``: one random
flip, scale, crop and rotation per sample moves image and mask together (images bilinear, masks
nearest, pixels from outside the mask ``ignore_index``), then colour jitter on the image only.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import hashlib
import logging
import math
import os
import time
import unicodedata
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from transfer.config import check_splits
from transfer.data.checks import (
    _BATCH,
    _FORMAT_SUFFIXES,
    CHECK_VERSION,
    NOTE_EXIF,
    _CheckCache,
    _Entry,
    _open_first_frame,
    _reason_for,
    _save_png,
    _stat_entry,
    _usable_cache_dir,
    check_files,
    default_workers,
)
from transfer.data.reports import (
    SKIP_COLOUR,
    SKIP_EMPTY,
    SKIP_LABELS,
    SKIP_LOSSY_MASK,
    SKIP_MASK_MODE,
    SKIP_MISSING,
    SKIP_NO_IMAGE,
    SKIP_NO_MASK,
    SKIP_NOT_IMAGE,
    SKIP_SAME_STEM,
    SKIP_SIZE_MISMATCH,
    SKIP_UNREADABLE,
    DataReport,
    _error,
)
from transfer.data.sources import _walk
from transfer.data.splits import SPLIT_FOLDERS, ImageFolderData, Split
from transfer.errors import ConfigError, DataError

log = logging.getLogger(__name__)

DEFAULT_IGNORE_INDEX = 255

#: The 21 Pascal VOC classes, in label order (Everingham et al. 2010).
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor")
PET_CLASSES = ("background", "pet")
#: Oxford-IIIT Pet trimap value -> class (None: ignore_index), Parkhi et al. 2012.
PET_TRIMAP = {1: 1, 2: 0, 3: None}

# What mask reading did to usable masks: keys of DataReport.notes, beside the images' NOTE_*.
NOTE_MASK_RGB = "colour mask mapped through the colour table"
NOTE_MASK_GRAY_RGB = "RGB mask with equal channels read as grayscale"
NOTE_MASK_16BIT = "16-bit mask read as indices"
NOTE_MASK_MAPPED = "mask values mapped (trimap)"
NOTE_UNUSED_IMAGES = "images without a mask in the listed layout (not used)"
NOTE_UNLISTED = "pairs not in the split lists (not used)"

_MASK_CHECK_VERSION = 1  # bump when mask reading changes, to invalidate cached mask checks
_LOSSLESS_SUFFIXES = (".png", ".bmp", ".gif", ".tif", ".tiff", ".pgm", ".ppm", ".pbm",
                      ".pnm", ".webp")
_IMAGE_SUFFIXES = tuple(sorted({s for group in _FORMAT_SUFFIXES.values() for s in group}))
_OUTSIDE = -1  # a mapped value that is no class and not ignore_index


# ---- class names and colour tables ------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Palette:
    """Class names in index order and the colour table of RGB masks.

    Attributes:
        names: class names, index order.
        colours: ``((r, g, b), index)`` pairs; an index may be the ignore index.
        source: the file it was read from, for messages.
    """

    names: tuple[str, ...]
    colours: tuple[tuple[tuple[int, int, int], int], ...] = ()
    source: str = ""


def read_palette(path: str | os.PathLike, *, ignore_index: int = DEFAULT_IGNORE_INDEX
                 ) -> Palette:
    """Read a ``classes.csv`` / ``--palette`` file of ``index,name[,r,g,b]`` rows.

    A first row whose first cell is not a number is a header. Class indices must be
    ``0..K-1``, each once; a row with ``ignore_index`` only gives a colour to ignored pixels.

    Raises:
        DataError: unreadable file, a malformed row, a repeated index, name or colour, or gaps.
    """
    file = Path(path)
    try:
        with open(file, newline="", encoding="utf-8-sig") as f:
            rows = [(n, [c.strip() for c in row]) for n, row in enumerate(csv.reader(f), 1)
                    if row and any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read class file {str(file)!r}: {exc}") from None
    if rows and not rows[0][1][0].lstrip("-").isdigit():
        rows = rows[1:]
    names: dict[int, str] = {}
    colours: dict[tuple[int, int, int], int] = {}
    for line, row in rows:
        where = f"{str(file)}:{line}"
        if len(row) not in (2, 5) or not row[0].isdigit() or not row[1]:
            raise DataError(f"{where}: expected 'index,name' or 'index,name,r,g,b', got {row!r}")
        index = int(row[0])
        if len(row) == 5:
            try:
                colour = tuple(int(c) for c in row[2:])
            except ValueError:
                colour = ()
            if len(colour) != 3 or not all(0 <= c <= 255 for c in colour):
                raise DataError(f"{where}: r,g,b must be integers 0-255, got {row[2:]!r}")
            if colour in colours:
                raise DataError(f"{where}: colour {colour} is already class {colours[colour]}")
            colours[colour] = index  # type: ignore[index]
        if index == ignore_index:
            continue
        if index in names:
            raise DataError(f"{where}: index {index} is listed twice")
        names[index] = row[1]
    if sorted(names) != list(range(len(names))):
        missing = sorted(set(range(max(names, default=-1) + 1)) - set(names))
        raise DataError(f"{str(file)!r}: class indices must be 0..K-1 each once; missing "
                        f"{missing[:10]}")
    ordered = tuple(names[i] for i in range(len(names)))
    _check_names(ordered, str(file))
    return Palette(ordered, tuple(sorted(colours.items(), key=lambda kv: (kv[1], kv[0]))),
                   str(file))


def _read_class_names(path: Path) -> Palette:
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read class file {str(path)!r}: {exc}") from None
    names = tuple(line.strip() for line in lines if line.strip())
    _check_names(names, str(path))
    return Palette(names, (), str(path))


def _check_names(names: Sequence[str], source: str) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f"{source!r} names a class more than once: {', '.join(repeated)}")


def voc_colours() -> tuple[tuple[tuple[int, int, int], int], ...]:
    """The Pascal VOC colour table (the devkit's ``labelcolormap``), border 255 included."""
    table = []
    for index in range(len(VOC_CLASSES)):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        table.append(((r, g, b), index))
    return tuple(table) + (((224, 224, 192), DEFAULT_IGNORE_INDEX),)


# ---- reading one mask -------------------------------------------------------------------------

class _MaskProblem(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(detail or reason)
        self.reason, self.detail = reason, detail


_NEEDS_TABLE = "needs a colour table"  # not a skip: the whole load stops with a DataError


def _indices(image, colours: Mapping[tuple[int, int, int], int]) -> tuple[np.ndarray, str | None]:
    """A loaded Pillow mask to its raw class indices, and the note it earns (or None)."""
    mode = image.mode
    if mode in ("P", "L", "PA", "LA"):
        return np.asarray(image)[..., 0] if mode in ("PA", "LA") else np.asarray(image), None
    if mode == "1":
        return np.asarray(image).astype(np.uint8), None
    if mode.startswith("I;16") or mode == "I":
        pixels = np.asarray(image)
        if pixels.size and (pixels.min() < 0 or pixels.max() > 65535):
            raise _MaskProblem(SKIP_MASK_MODE, f"32-bit values {pixels.min()}..{pixels.max()}")
        return pixels.astype(np.uint16), NOTE_MASK_16BIT
    if mode in ("RGB", "RGBA"):
        rgb = np.asarray(image)[..., :3]
        if colours:
            return _map_colours(rgb, colours), NOTE_MASK_RGB
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
            return rgb[..., 0].copy(), NOTE_MASK_GRAY_RGB
        raise _MaskProblem(_NEEDS_TABLE)
    raise _MaskProblem(SKIP_MASK_MODE, f"mode {mode!r}")


def _map_colours(rgb: np.ndarray, colours: Mapping[tuple[int, int, int], int]) -> np.ndarray:
    packed = ((rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8)
              | rgb[..., 2].astype(np.int32))
    unique, inverse = np.unique(packed, return_inverse=True)
    lookup = {(r << 16) | (g << 8) | b: i for (r, g, b), i in colours.items()}
    values = np.array([lookup.get(int(u), -1) for u in unique], np.int32)
    unknown = unique[values < 0]
    if unknown.size:
        shown = ", ".join(str(((int(u) >> 16) & 255, (int(u) >> 8) & 255, int(u) & 255))
                          for u in unknown[:3])
        raise _MaskProblem(SKIP_COLOUR, f"{unknown.size} colour(s) not in the table: {shown}"
                                        + (", ..." if unknown.size > 3 else ""))
    dtype = np.uint8 if values.max(initial=0) <= 255 else np.uint16
    return values[inverse].reshape(packed.shape).astype(dtype)


def _colour_dict(palette: Palette | None) -> dict[tuple[int, int, int], int]:
    return dict(palette.colours) if palette is not None else {}


def read_mask(path: str | os.PathLike, *, palette: Palette | str | os.PathLike | None = None
              ) -> np.ndarray:
    """The class indices of a mask file: a 2-D uint8 (uint16 for 16-bit masks) array.

    Palette PNGs give their indices, grayscale masks their values, RGB masks are mapped through
    ``palette``'s colour table. The mask is read as stored: never EXIF-rotated, never resized.

    Args:
        path: the mask file.
        palette: a :class:`Palette` or the path of a ``classes.csv``-style file; needed for
            RGB colour-coded masks only.

    Raises:
        DataError: the file cannot be read, is a JPEG, is RGB without a colour table (or with
            a colour the table lacks), or is not a mode that holds class indices.
    """
    if palette is not None and not isinstance(palette, Palette):
        palette = read_palette(palette)
    try:
        with open(path, "rb") as file:
            image, _ = _open_first_frame(file)
            with image:
                if image.format in ("JPEG", "MPO"):
                    raise _MaskProblem(SKIP_LOSSY_MASK)
                return _indices(image, _colour_dict(palette))[0]
    except _MaskProblem as problem:
        if problem.reason == _NEEDS_TABLE:
            raise DataError(_needs_table_message(str(path), 1)) from None
        raise DataError(f"mask {str(path)!r}: {problem.reason}"
                        + (f" ({problem.detail})" if problem.detail else "")) from None
    except OSError as exc:
        raise DataError(f"cannot read mask {str(path)!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for a broken file
        raise DataError(f"cannot read mask {str(path)!r}: {_reason_for(exc)} "
                        f"({type(exc).__name__}: {exc})") from None


def _needs_table_message(path: str, count: int) -> str:
    more = f" (and {count - 1} more mask(s))" if count > 1 else ""
    return (f"mask {path!r}{more} is an RGB colour-coded image, so it needs a colour table "
            f"mapping each colour to a class: write DATA_DIR/classes.csv with 'index,name,r,g,b' "
            f"rows, or pass one with --palette FILE (palette=FILE); or save masks as class "
            f"indices (8-bit grayscale or palette PNGs)")


# ---- checking masks ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Mapping:
    """How raw mask values become classes: the colour table and an optional value map."""

    colours: tuple[tuple[tuple[int, int, int], int], ...]
    values: tuple[tuple[int, int | None], ...] | None  # raw -> class, None: ignore_index
    ignore_index: int

    @property
    def digest(self) -> str:
        text = repr((_MASK_CHECK_VERSION, CHECK_VERSION, self.colours, self.values,
                     self.ignore_index))
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def lookup_table(self, size: int) -> np.ndarray | None:
        if self.values is None:
            return None
        table = np.full(size, _OUTSIDE, np.int32)
        for raw, value in self.values:
            if raw < size:
                table[raw] = self.ignore_index if value is None else value
        return table


def _mask_cache_path(mask_dir: Path, entry: _Entry, mapping: _Mapping) -> Path:
    path, size, mtime = entry
    digest = hashlib.sha1(f"{mapping.digest}\0{os.path.abspath(path)}\0{size}\0{mtime}"
                          .encode()).hexdigest()
    return mask_dir / digest[:2] / f"{digest}.png"


def _check_mask(entry: _Entry, mapping: _Mapping, mask_dir: Path | None) -> dict:
    """Decode one mask; return its JSON-able result (``reason`` None when readable).

    ``counts`` maps each class value (``ignore_index`` included) to its pixels; ``outside``
    counts pixels a value map has no class for. A mask Pillow does not read as 8-bit indices
    already is written, mapped, to ``mask_dir`` (unless None: a dry run).
    """
    from PIL import Image

    path, size, _ = entry
    if size < 0:
        return {"reason": SKIP_UNREADABLE}
    if size == 0:
        return {"reason": SKIP_EMPTY}
    try:
        with open(path, "rb") as file:
            image, _ = _open_first_frame(file)
            with image:
                if image.format in ("JPEG", "MPO"):
                    return {"reason": SKIP_LOSSY_MASK}
                raw, note = _indices(image, dict(mapping.colours))
                mode = image.mode
    except _MaskProblem as problem:
        return {"reason": problem.reason, "detail": problem.detail}
    except Exception as exc:  # noqa: BLE001 - any failure to decode means "skip this pair"
        log.debug("skipping mask %s: %s: %s", path, type(exc).__name__, exc)
        return {"reason": _reason_for(exc), "detail": f"{type(exc).__name__}: {exc}"[:200]}
    table = mapping.lookup_table(65536 if raw.dtype == np.uint16 else 256)
    values = table[raw] if table is not None else raw.astype(np.int32)
    if table is not None:
        note = NOTE_MASK_MAPPED
    counts = np.bincount(values[values >= 0].ravel())
    direct = table is None and mode in ("L", "P") and raw.dtype == np.uint8
    height, width = raw.shape
    result = {"reason": None, "width": width, "height": height, "direct": direct,
              "counts": {str(v): int(n) for v, n in enumerate(counts) if n},
              "outside": int((values < 0).sum()), "notes": [note] if note else []}
    if not direct and mask_dir is not None and result["outside"] == 0 and len(counts) <= 256:
        _save_png(Image.fromarray(values.astype(np.uint8), "L"),
                  _mask_cache_path(mask_dir, entry, mapping))
    return result


def _check_masks(entries: Sequence[_Entry], mapping: _Mapping, *, cache_dir, write: bool,
                 pool: concurrent.futures.Executor) -> tuple[dict[str, dict], int]:
    """Check masks in parallel, reusing cached results (as :func:`check_files` does images)."""
    cache_root = _usable_cache_dir(cache_dir)
    mask_dir = cache_root / "masks" if write else None
    cache = _CheckCache(cache_root / f"masks-{mapping.digest}.sqlite")
    try:
        cached = cache.get_many([e for e in entries if e[1] > 0])

        def hit(entry: _Entry) -> bool:
            result = cached.get(entry[0])
            if result is None:
                return False
            if (result["reason"] is None and not result["direct"] and mask_dir is not None
                    and result["outside"] == 0):
                return _mask_cache_path(mask_dir, entry, mapping).is_file()
            return True

        todo = [e for e in entries if not hit(e)]
        results = {e[0]: cached[e[0]] for e in entries if e[0] in cached}
        batches = [todo[i:i + _BATCH] for i in range(0, len(todo), _BATCH)]
        run = pool.map if len(batches) > 1 else map
        checked = [r for batch in run(
            lambda b: [_check_mask(e, mapping, mask_dir) for e in b], batches) for r in batch]
        results.update((e[0], r) for e, r in zip(todo, checked))
        cache.put_many((e, r) for e, r in zip(todo, checked)
                       if r["reason"] not in (SKIP_UNREADABLE, SKIP_EMPTY, _NEEDS_TABLE))
    finally:
        cache.close()
    if mask_dir is not None:
        for entry in entries:
            result = results[entry[0]]
            if result["reason"] is None and not result["direct"] and result["outside"] == 0:
                result["source"] = str(_mask_cache_path(mask_dir, entry, mapping))
    return results, len(entries) - len(todo)


# ---- layouts ------------------------------------------------------------------------------------

# One sample as listed: (stem, image path or None, mask path or None).
_Pair = tuple[str, str | None, str | None]


@dataclasses.dataclass
class _Layout:
    root: Path
    kind: str                                # "folders", "voc" or "pet"
    groups: dict[str, list[_Pair]]           # split name (or "all") -> pairs
    skipped: list[tuple[str, str]]
    notes: dict[str, int]
    names: tuple[str, ...] = ()
    colours: tuple[tuple[tuple[int, int, int], int], ...] = ()
    values: tuple[tuple[int, int | None], ...] | None = None


def _stems(folder: Path, *, masks: bool) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Stem (path under ``folder`` without suffix, NFC) -> file, and the files left out."""
    files, skipped = _walk(os.fspath(folder))
    by_stem: dict[str, list[str]] = {}
    for entry in files:
        rel = Path(os.path.relpath(entry.path, folder))
        stem = unicodedata.normalize("NFC", rel.with_suffix("").as_posix())
        by_stem.setdefault(stem, []).append(str(Path(entry.path)))
    chosen: dict[str, str] = {}
    for stem, paths in sorted(by_stem.items()):
        if len(paths) > 1:
            known = [p for p in paths if Path(p).suffix.lower() in _IMAGE_SUFFIXES]
            skipped += [(p, SKIP_NOT_IMAGE) for p in paths if p not in known]
            # A mask saved both ways: the lossless one is the mask.
            paths = sorted(known or paths, key=lambda p: (
                masks and Path(p).suffix.lower() not in _LOSSLESS_SUFFIXES, p))
            skipped += [(p, SKIP_SAME_STEM) for p in paths[1:]]
        if paths:
            chosen[stem] = paths[0]
    return chosen, skipped


def _pair_stems(images: dict[str, str], masks: dict[str, str]) -> list[_Pair]:
    return [(stem, images.get(stem), masks.get(stem)) for stem in sorted({*images, *masks})]


def _read_list(path: Path) -> list[str]:
    try:
        return [line.split()[0] for line in path.read_text().splitlines() if line.split()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read split list {str(path)!r}: {exc}") from None


def _listed(lists: dict[str, Path], images: dict[str, str], masks: dict[str, str],
            image_dir: Path, mask_dir: Path, notes: dict[str, int], skipped: list
            ) -> dict[str, list[_Pair]]:
    """Pairs of the stems each list names; listed files that are absent are skipped."""
    groups: dict[str, list[_Pair]] = {}
    seen: set[str] = set()
    for split, path in lists.items():
        pairs = groups.setdefault(split, [])
        for stem in _read_list(path):
            if stem in seen:
                continue
            seen.add(stem)
            image, mask = images.get(stem), masks.get(stem)
            if image is None and mask is None:
                skipped.append((str(image_dir / stem), SKIP_MISSING))
            else:
                pairs.append((stem, image, mask))
    unlisted = len({*masks} - seen)
    if unlisted:
        notes[NOTE_UNLISTED] = unlisted
    unused = len({*images} - {*masks} - seen)
    if unused:
        notes[NOTE_UNUSED_IMAGES] = unused
    return groups


def _find_voc(root: Path) -> Path | None:
    candidates = [root, *sorted(root.glob("VOC*")), *sorted(root.glob("VOCdevkit/VOC*"))]
    found = [c for c in candidates
             if (c / "JPEGImages").is_dir() and (c / "SegmentationClass").is_dir()]
    if len(found) > 1:
        raise DataError(f"{str(root)!r} holds several Pascal VOC folders "
                        f"({', '.join(str(f) for f in found)}); pass one of them")
    return found[0] if found else None


def _voc_layout(root: Path) -> _Layout:
    images, skipped = _stems(root / "JPEGImages", masks=False)
    masks, more = _stems(root / "SegmentationClass", masks=True)
    skipped += more
    notes: dict[str, int] = {}
    sets = root / "ImageSets" / "Segmentation"
    lists = {split: sets / f"{file}.txt" for split, file in
             (("train", "train"), ("val", "val"), ("test", "test"))
             if (sets / f"{file}.txt").is_file()}
    if "train" in lists:
        groups = _listed(lists, images, masks, root / "JPEGImages", root / "SegmentationClass",
                         notes, skipped)
    else:
        # Without the lists, the masks say which images are segmentation samples.
        groups = {"all": _pair_stems({s: p for s, p in images.items() if s in masks}, masks)}
        unused = len({*images} - {*masks})
        if unused:
            notes[NOTE_UNUSED_IMAGES] = unused
    return _Layout(root, "voc", groups, skipped, notes, VOC_CLASSES, voc_colours())


def _pet_layout(root: Path) -> _Layout:
    images, skipped = _stems(root / "images", masks=False)
    masks, more = _stems(root / "annotations" / "trimaps", masks=True)
    skipped += more
    notes: dict[str, int] = {}
    annotations = root / "annotations"
    if (annotations / "trainval.txt").is_file() and (annotations / "test.txt").is_file():
        groups = _listed({"all": annotations / "trainval.txt",
                          "test": annotations / "test.txt"}, images, masks, root / "images",
                         annotations / "trimaps", notes, skipped)
    else:
        groups = {"all": _pair_stems(images, masks)}
    return _Layout(root, "pet", groups, skipped, notes, PET_CLASSES, (),
                   tuple(sorted(PET_TRIMAP.items())))


def _has_pairs_folders(folder: Path) -> bool:
    return (folder / "images").is_dir() and (folder / "masks").is_dir()


def _folders_layout(root: Path) -> _Layout:
    skipped: list[tuple[str, str]] = []
    groups: dict[str, list[_Pair]] = {}
    presplit = _has_pairs_folders(root / "train") and not _has_pairs_folders(root)
    for split in SPLIT_FOLDERS if presplit else ("all",):
        folder = root if split == "all" else root / split
        if not _has_pairs_folders(folder):
            if (folder).is_dir():
                raise DataError(f"{str(folder)!r} needs images/ and masks/ folders, as "
                                f"{str(root / 'train')!r} has")
            continue
        images, more = _stems(folder / "images", masks=False)
        skipped += more
        masks, more = _stems(folder / "masks", masks=True)
        skipped += more
        groups[split] = _pair_stems(images, masks)
    return _Layout(root, "folders", groups, skipped, {})


def _layout(root: Path) -> _Layout:
    if not root.is_dir():
        raise DataError(f"data folder {str(root)!r} does not exist or is not a folder")
    voc = _find_voc(root)
    if voc is not None:
        return _voc_layout(voc)
    if (root / "images").is_dir() and (root / "annotations" / "trimaps").is_dir():
        return _pet_layout(root)
    if _has_pairs_folders(root) or _has_pairs_folders(root / "train"):
        return _folders_layout(root)
    raise DataError(
        f"{str(root)!r} is not a segmentation data folder; expected images/ and masks/ "
        f"(paired by file name), train/ and val/ each holding those, Pascal VOC's JPEGImages/ "
        f"and SegmentationClass/, or Oxford-IIIT Pet's images/ and annotations/trimaps/")


# ---- loading ------------------------------------------------------------------------------------

def load_segmentation(data_dir: str | os.PathLike, *, val_split: float = 0.2,
                      test_split: float = 0.0, seed: int = 42,
                      palette: str | os.PathLike | None = None,
                      ignore_index: int = DEFAULT_IGNORE_INDEX,
                      cache_dir: str | os.PathLike | None = None, workers: int | None = None,
                      dry_run: bool = False) -> ImageFolderData:
    """Discover, pair, check and split the images and masks under ``data_dir``.

    The layouts, class names and how masks are read are in :mod:`transfer.data.masks`. Given
    splits (folders or lists) are kept; a missing ``val`` is drawn from ``train`` with
    ``val_split``, a missing ``test`` too when ``test_split`` > 0, with a seeded permutation.

    Args:
        data_dir: the folder.
        val_split: fraction of the pairs held out for validation, when not given.
        test_split: fraction held out for testing, when not given (0: no test split).
        seed: fixes the split.
        palette: a ``index,name,r,g,b`` CSV file overriding the folder's class names and
            colour table.
        ignore_index: the mask value that marks pixels without a label (0-255, not a class).
        cache_dir: where check results and normalised images and masks are kept (default
            :func:`~transfer.data.checks.default_cache_dir`).
        workers: threads for listing and checking (default
            :func:`~transfer.data.checks.default_workers`).
        dry_run: check and report only; write no normalised images or masks.

    Returns:
        Splits whose ``paths``/``sources``/``orientations`` are the images as for
        classification, ``masks`` the class-index masks, and ``labels`` the positions
        ``0..n-1``. ``.report`` has ``pairs``, the masks holding each class per split, and the
        training pixel counts and frequencies (see :func:`class_pixel_weights`).

    Raises:
        DataError: an unknown layout, an unreadable class file, an RGB mask without a colour
            table, fewer than 2 classes, too many classes for 8-bit masks, or too few usable
            pairs for the splits. ``error.report`` holds the report when checking had started.
    """
    check_splits(val_split, test_split)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int) or not (
            0 <= ignore_index <= 255):
        raise ConfigError(f"ignore_index must be an integer 0-255 (masks are 8-bit); got "
                          f"{ignore_index!r}", field="ignore_index")
    start = time.perf_counter()
    root = Path(data_dir)
    layout = _layout(root)
    names, colours = _class_table(layout, root, palette, ignore_index)
    if ignore_index < len(names):
        raise ConfigError(f"ignore_index {ignore_index} is also a class index (classes "
                          f"0-{len(names) - 1}); choose an ignore_index of at least "
                          f"{len(names)}", field="ignore_index")
    values = layout.values
    if layout.kind == "voc" and ignore_index != DEFAULT_IGNORE_INDEX:
        # VOC stores its borders as 255 whatever ignore_index the user trains with.
        values = (*((i, i) for i in range(len(VOC_CLASSES))), (DEFAULT_IGNORE_INDEX, None))
    mapping = _Mapping(colours, values, ignore_index)
    report = DataReport(source=str(data_dir), root=str(layout.root))
    report.skipped = list(layout.skipped)
    notes = dict(layout.notes)
    with concurrent.futures.ThreadPoolExecutor(workers or default_workers()) as pool:
        usable = _check_pairs(layout, mapping, report, notes, cache_dir=cache_dir,
                              dry_run=dry_run, pool=pool)
    report.notes = dict(sorted(notes.items(), key=lambda kv: -kv[1]))
    report.files_checked = sum(
        (image is not None) + (mask is not None) for pairs in layout.groups.values()
        for _, image, mask in pairs) + len(layout.skipped)
    names = _final_names(names, usable, ignore_index, report, start)
    for group in usable.values():
        for pair in list(group):
            values = [int(v) for v in pair["counts"] if int(v) != ignore_index]
            if pair["outside"] or any(v >= len(names) for v in values):
                report.skipped.append((pair["mask"], SKIP_LABELS))
                group.remove(pair)
    report.skipped.sort()
    splits = _draw(usable, val_split=val_split, test_split=test_split, seed=seed)
    report.pairs = sum(len(pairs) for pairs in splits.values())
    report.seconds = time.perf_counter() - start
    _count_classes(report, splits, names, ignore_index)
    if not splits.get("train") or not splits.get("val"):
        raise _error(_too_few_message(layout, splits, report), report)
    return ImageFolderData(
        root=str(layout.root), class_names=names, report=report,
        **{name: _as_split(pairs) for name, pairs in splits.items()})


def _class_table(layout: _Layout, root: Path, palette, ignore_index: int
                 ) -> tuple[tuple[str, ...], tuple]:
    """Class names (maybe empty: from the masks) and the colour table, by precedence."""
    if palette is not None:
        table = read_palette(palette, ignore_index=ignore_index)
    elif (root / "classes.csv").is_file():
        table = read_palette(root / "classes.csv", ignore_index=ignore_index)
    elif (root / "classes.txt").is_file():
        table = _read_class_names(root / "classes.txt")
    else:
        # VOC's table maps its RGB colours, and its 224,224,192 border to the ignore index.
        colours = tuple((c, ignore_index if i == DEFAULT_IGNORE_INDEX else i)
                        for c, i in layout.colours)
        return layout.names, colours
    return table.names, table.colours


def _check_pairs(layout: _Layout, mapping: _Mapping, report: DataReport,
                 notes: dict[str, int], *, cache_dir, dry_run: bool,
                 pool: concurrent.futures.Executor) -> dict[str, list[dict]]:
    """Check the images and masks of complete pairs; skip the rest; the usable pairs."""
    complete = [(image, mask) for pairs in layout.groups.values() for _, image, mask in pairs
                if image is not None and mask is not None]
    image_entries = [_stat_entry(image) for image, _ in complete]
    mask_entries = [_stat_entry(mask) for _, mask in complete]
    image_results, image_hits = check_files(image_entries, cache_dir=cache_dir,
                                            write_images=not dry_run, pool=pool)
    mask_results, mask_hits = _check_masks(mask_entries, mapping, cache_dir=cache_dir,
                                           write=not dry_run, pool=pool)
    report.from_cache = image_hits + mask_hits
    needs_table = [m for _, m in complete if mask_results[m]["reason"] == _NEEDS_TABLE]
    if needs_table:
        raise _error(_needs_table_message(needs_table[0], len(needs_table)), report)
    usable: dict[str, list[dict]] = {}
    mismatched, bad_colour = [], []
    for split, pairs in layout.groups.items():
        kept = usable[split] = []
        for _, image, mask in pairs:
            if mask is None:
                report.skipped.append((image, SKIP_NO_MASK))
                continue
            if image is None:
                report.skipped.append((mask, SKIP_NO_IMAGE))
                continue
            ir, mr = image_results[image], mask_results[mask]
            if ir["reason"] is not None:
                report.skipped.append((image, ir["reason"]))
            elif mr["reason"] is not None:
                report.skipped.append((mask, mr["reason"]))
                if mr["reason"] == SKIP_COLOUR:
                    bad_colour.append(f"{mask}: {mr.get('detail', '')}")
            elif (ir["width"], ir["height"]) != (mr["width"], mr["height"]):
                report.skipped.append((mask, SKIP_SIZE_MISMATCH))
                mismatched.append(f"{mask}: {mr['width']}x{mr['height']}, image "
                                  f"{ir['width']}x{ir['height']}"
                                  + (" after EXIF rotation" if NOTE_EXIF in ir["notes"]
                                     else ""))
            else:
                kept.append({"image": image, "mask": mask, "counts": mr["counts"],
                             "outside": mr["outside"], "source": ir.get("source", image),
                             "orientation": ir["orientation"],
                             "mask_source": mr.get("source", mask)})
                for note in (*ir["notes"], *mr["notes"]):
                    notes[note] = notes.get(note, 0) + 1
    for what, found in (("sizes differ from their images", mismatched),
                        ("hold colours not in the colour table", bad_colour)):
        if found:
            log.warning("skipping %d pair(s) whose masks %s, e.g. %s", len(found), what,
                        "; ".join(found[:3]))
    return usable


def _final_names(names: tuple[str, ...], usable: dict[str, list[dict]], ignore_index: int,
                 report: DataReport, start: float) -> tuple[str, ...]:
    if names:
        return names
    values = [int(v) for group in usable.values() for pair in group for v in pair["counts"]
              if int(v) != ignore_index and not pair["outside"]]
    k = max(values, default=-1) + 1
    report.seconds = time.perf_counter() - start
    if k > 256 or ignore_index < k:
        raise _error(f"the masks hold labels up to {k - 1}, which do not fit 8-bit masks "
                     f"beside ignore_index {ignore_index}; at most {ignore_index} classes "
                     f"(0-{ignore_index - 1}) are supported", report)
    if k < 2:
        seen = sorted({int(v) for g in usable.values() for p in g for v in p["counts"]})
        hint = (f"; masks of 0 and {ignore_index} only are usually binary masks saved as "
                f"0/255: save them as 0/1, or pass another ignore_index"
                if seen == [0, ignore_index] else "")
        raise _error(f"{report.source!r} needs masks with at least 2 classes; the usable masks "
                     f"hold the values {seen or 'none'} (ignore_index {ignore_index}){hint}",
                     report)
    return tuple(f"class_{i}" for i in range(k))


def _draw(usable: dict[str, list[dict]], *, val_split: float, test_split: float, seed: int
          ) -> dict[str, list[dict]]:
    """Given splits as they are; the rest drawn from the pool with a seeded permutation."""
    pool_name = "train" if "train" in usable else "all"
    pool = usable.get(pool_name, [])
    draw_val = "val" not in usable
    draw_test = "test" not in usable and test_split > 0
    n = len(pool)
    order = (np.random.default_rng(seed).permutation(n) if draw_val or draw_test
             else np.arange(n))
    n_val = min(max(1, round(n * val_split)), n - 1 - draw_test) if draw_val else 0
    n_test = min(max(1, round(n * test_split)), n - 1 - n_val) if draw_test else 0
    n_val, n_test = max(n_val, 0), max(n_test, 0)
    splits = {"train": [pool[i] for i in order[n_val + n_test:]],
              "val": usable["val"] if not draw_val else [pool[i] for i in order[:n_val]]}
    if "test" in usable or draw_test:
        splits["test"] = (usable["test"] if not draw_test
                          else [pool[i] for i in order[n_val:n_val + n_test]])
    # Sorted, so split.json reads like the folder and diffs cleanly between seeds.
    return {name: sorted(pairs, key=lambda p: p["image"]) for name, pairs in splits.items()}


def _as_split(pairs: list[dict]) -> Split:
    return Split(paths=tuple(p["image"] for p in pairs), labels=tuple(range(len(pairs))),
                 sources=tuple(p["source"] for p in pairs),
                 orientations=tuple(p["orientation"] for p in pairs),
                 masks=tuple(p["mask_source"] for p in pairs))


def _count_classes(report: DataReport, splits: dict[str, list[dict]],
                   names: tuple[str, ...], ignore_index: int) -> None:
    k = len(names)

    def rows(pairs: list[dict]) -> np.ndarray:
        table = np.zeros((len(pairs), k), np.int64)
        for row, pair in zip(table, pairs):
            for value, n in pair["counts"].items():
                if int(value) != ignore_index:
                    row[int(value)] = n
        return table

    present = {name: rows(pairs) > 0 for name, pairs in splits.items()}
    report.split_counts = {name: dict(zip(names, p.sum(axis=0).tolist()))
                           for name, p in present.items()}
    report.class_counts = {c: sum(report.split_counts[s][c] for s in splits) for c in names}
    counts, freqs = _frequencies(rows(splits.get("train", [])))
    report.pixel_counts = dict(zip(names, counts))
    report.pixel_frequencies = dict(zip(names, freqs))


def _too_few_message(layout: _Layout, splits: dict[str, list[dict]], report: DataReport
                     ) -> str:
    found = ", ".join(f"{name} {len(pairs)}" for name, pairs in splits.items())
    skipped = (f"; {len(report.skipped)} file(s) were skipped ("
               f"{', '.join(f'{n} {r}' for r, n in report.reason_counts.items())})"
               if report.skipped else "")
    return (f"{str(layout.root)!r} needs usable image/mask pairs in train and val; found "
            f"{found}{skipped}; run 'zoo data check' on it to see every file")


# ---- pixel statistics ---------------------------------------------------------------------------

def _frequencies(rows: np.ndarray) -> tuple[list[int], list[float]]:
    """Per-class pixels and Eigen & Fergus frequencies from a (masks, classes) count table."""
    rows = np.asarray(rows, np.int64)
    counts = rows.sum(axis=0)
    totals = rows.sum(axis=1, keepdims=True)  # labelled pixels of each mask
    holding = (np.where(rows > 0, totals, 0)).sum(axis=0)
    freqs = [float(c / h) if h else 0.0 for c, h in zip(counts, holding)]
    return counts.tolist(), freqs


def pixel_frequencies(masks: Iterable[np.ndarray], num_classes: int, *,
                      ignore_index: int = DEFAULT_IGNORE_INDEX) -> list[float]:
    """Per class, its pixels over the labelled pixels of the masks that hold it.

    The ``freq(c)`` of median frequency balancing (Eigen & Fergus, "Predicting Depth, Surface
    Normals and Semantic Labels with a Common Multi-Scale Convolutional Architecture", 2015).
    Pixels equal to ``ignore_index`` are not labelled; a class no mask holds gets 0.0.
    """
    rows = []
    for mask in masks:
        values = np.asarray(mask).ravel().astype(np.int64)
        values = values[values != ignore_index]
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise DataError(f"mask values must be 0-{num_classes - 1} or {ignore_index}; got "
                            f"{values.min()}..{values.max()}")
        rows.append(np.bincount(values, minlength=num_classes))
    return _frequencies(np.asarray(rows).reshape(-1, num_classes))[1]


def class_pixel_weights(freqs: Sequence[float]) -> list[float]:
    """Median frequency balancing: ``median(freq) / freq(c)`` per class (Eigen & Fergus 2015).

    The median is over the classes present (``freq > 0``); an absent class gets weight 0.0 (it
    has no training pixels to weigh). ``freqs`` as :func:`pixel_frequencies` gives them, or
    ``list(report.pixel_frequencies.values())``.

    Raises:
        DataError: no class is present.
    """
    present = [f for f in freqs if f > 0]
    if not present:
        raise DataError("cannot weigh classes: no class has labelled pixels in the training masks")
    median = float(np.median(present))
    return [median / f if f > 0 else 0.0 for f in freqs]


# ---- masks for training -------------------------------------------------------------------------

def _nearest(mask: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize with pixel centres aligned, as ``tf.image.resize`` does."""
    h, w = mask.shape
    rows = np.minimum(((np.arange(size) + 0.5) * h / size).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(size) + 0.5) * w / size).astype(np.int64), w - 1)
    return mask[rows[:, None], cols[None, :]]


def load_masks(split: Split, image_size: int, *, ignore_index: int = DEFAULT_IGNORE_INDEX,
               workers: int | None = None) -> np.ndarray:
    """The masks of a split as uint8 ``(n, size, size)`` class indices, in split order.

    Resized with nearest neighbour (a label is never interpolated), stretched to a square as
    the images are, so pixel ``(y, x)`` of a mask labels pixel ``(y, x)`` of its image. Values
    that do not fit 8 bits (a 16-bit mask edited since the check) become ``ignore_index``.

    Raises:
        DataError: the split has no masks, or a mask cannot be read (changed or removed from
            the cache since the data was checked: load the data again).
    """
    if not split.masks or len(split.masks) != len(split.paths):
        raise DataError(f"the split has {len(split.masks)} mask(s) for {len(split.paths)} "
                        f"image(s); load it with load_segmentation")
    out = np.empty((len(split.masks), image_size, image_size), np.uint8)

    def one(index: int) -> None:
        path = split.masks[index]
        if not os.path.exists(path):
            raise DataError(f"mask {path!r} is missing (removed since the data was checked, "
                            f"or the cache was cleared); load the data again to re-create it")
        mask = _nearest(read_mask(path), image_size)
        if mask.dtype != np.uint8:
            mask = np.where(mask > 255, ignore_index, mask).astype(np.uint8)
        out[index] = mask

    if len(split.masks) > _BATCH:
        with concurrent.futures.ThreadPoolExecutor(workers or default_workers()) as pool:
            list(pool.map(one, range(len(split.masks))))
    else:
        for index in range(len(split.masks)):
            one(index)
    return out


# ---- joint augmentation -------------------------------------------------------------------------

_COLOUR_STRENGTH = 0.2  # brightness, contrast and saturation factors drawn from 1 +- this


def _check_augment(scale: Sequence[float] | None, rotate: float, ignore_index: int) -> None:
    if scale is not None and (len(scale) != 2 or not 0 < scale[0] <= scale[1]):
        raise ConfigError(f"scale must be (low, high) with 0 < low <= high, or None; got "
                          f"{scale!r}")
    if not 0 <= rotate <= 180:
        raise ConfigError(f"rotate must be 0-180 degrees; got {rotate!r}")
    if not 0 <= ignore_index <= 255:
        raise ConfigError(f"ignore_index must be 0-255; got {ignore_index!r}")


def joint_augment(images, masks, seed, *, flip: bool = True,
                  scale: Sequence[float] | None = (0.75, 1.25), rotate: float = 10.0,
                  colour: bool = True, ignore_index: int = DEFAULT_IGNORE_INDEX):
    """Augment a batch of images and their masks together, deterministically from ``seed``.

    Each sample gets one transform: a left-right flip (p = 0.5), a zoom by a factor drawn
    uniformly from ``scale`` with a random crop of the output size (zooming out pads instead),
    and a rotation drawn uniformly from +-``rotate`` degrees. Images are sampled bilinearly
    (pixels from outside reflected), masks by nearest neighbour (pixels from outside are
    ``ignore_index``). Then, on the images only, brightness, contrast and saturation factors
    from 1 +- 0.2, clipped to 0-255. Stateless random ops only, so it runs inside
    ``tf.data.Dataset.map`` (graph mode) and a seed gives the same batch every time; the
    geometry does not depend on ``colour``.

    Args:
        images: float32 ``(b, h, w, 3)``, 0-255.
        masks: uint8 or int32 ``(b, h, w)`` class indices.
        seed: int32/int64 tensor of shape ``[2]``, e.g. a ``tf.data.Dataset.random`` pair.
        flip: random left-right flips.
        scale: ``(low, high)`` zoom factors (> 1 zooms in), or None for none.
        rotate: largest rotation, degrees (0: none).
        colour: colour jitter on the images.
        ignore_index: the mask value of pixels that came from outside the mask.

    Returns:
        ``(images, masks)`` with the input shapes and dtypes.
    """
    import tensorflow as tf

    _check_augment(scale, rotate, ignore_index)
    images = tf.convert_to_tensor(images, tf.float32)
    masks = tf.convert_to_tensor(masks)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 6)
    shape = tf.shape(images)
    b, h, w = shape[0], shape[1], shape[2]
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)

    def uniform(index: int, low: float = 0.0, high: float = 1.0, n: int = 1):
        return tf.random.stateless_uniform([b, n] if n > 1 else [b], seeds[index], low, high)

    mirror = (tf.where(uniform(0) < 0.5, -1.0, 1.0) if flip else tf.ones([b]))
    zoom = uniform(1, float(scale[0]), float(scale[1])) if scale is not None else tf.ones([b])
    angle = (uniform(2, -rotate, rotate) * (math.pi / 180.0) if rotate
             else tf.zeros([b]))
    # Crop offset: the sampled window moves by up to the slack between it and the image.
    shift = uniform(3, -1.0, 1.0, n=2)
    tx = shift[:, 0] * tf.abs(wf - wf / zoom) / 2
    ty = shift[:, 1] * tf.abs(hf - hf / zoom) / 2
    # Output pixel p maps to source point c + R(angle) F (p - c) / zoom + t (F: the mirror).
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    a0, a1 = cos * mirror, -sin
    b0, b1 = sin * mirror, cos
    cx, cy = (wf - 1) / 2, (hf - 1) / 2
    transforms = tf.stack([a0, a1, cx + tx - a0 * cx - a1 * cy,
                           b0, b1, cy + ty - b0 * cx - b1 * cy,
                           tf.zeros([b]), tf.zeros([b])], axis=1)
    warp = tf.raw_ops.ImageProjectiveTransformV3
    out_images = warp(images=images, transforms=transforms, output_shape=shape[1:3],
                      fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")
    out_masks = warp(images=masks[..., None], transforms=transforms, output_shape=shape[1:3],
                     fill_value=float(ignore_index), interpolation="NEAREST",
                     fill_mode="CONSTANT")[..., 0]
    if colour:
        out_images = _jitter(out_images, uniform(4, 1 - _COLOUR_STRENGTH,
                                                 1 + _COLOUR_STRENGTH, n=3))
    out_images = tf.ensure_shape(out_images, images.shape)
    out_masks = tf.ensure_shape(out_masks, masks.shape)
    return out_images, out_masks


def _jitter(images, factors):
    """Brightness, contrast, then saturation, each by its per-sample factor; clipped."""
    import tensorflow as tf

    brightness, contrast, saturation = (factors[:, i, None, None, None] for i in range(3))
    x = images * brightness
    mean = tf.reduce_mean(tf.image.rgb_to_grayscale(x), axis=[1, 2, 3], keepdims=True)
    x = (x - mean) * contrast + mean
    gray = tf.image.rgb_to_grayscale(x)
    x = (x - gray) * saturation + gray
    return tf.clip_by_value(x, 0.0, 255.0)


def augment_batches(dataset, *, seed: int, **options: Any):
    """Map :func:`joint_augment` over a batched ``(images, masks)`` dataset.

    Each batch gets its own seed from ``tf.data.Dataset.random(seed)``, new each epoch and the
    same for the same ``seed`` in every run. ``options`` are those of :func:`joint_augment`.
    """
    import tensorflow as tf

    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.zip(dataset, seeds).map(
        lambda batch, pair: joint_augment(batch[0], batch[1], pair, **options),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
