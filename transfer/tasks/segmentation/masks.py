"""Segmentation masks: class tables and colour tables, reading a mask as class indices,
nearest-neighbour resizing and the classes' pixel frequencies.

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
pixels are its labels). Every mask is decoded once (results cached in
``CACHE_DIR/masks-<mapping>.sqlite``); a mask that is not already 8-bit class indices Pillow
reads as such (RGB, 16-bit, 1-bit, a trimap) is written once, as class indices, as an 8-bit PNG
under ``CACHE_DIR/masks/``, and ``Split.masks`` points there.

Image/mask pairs and their layouts are in :mod:`transfer.tasks.segmentation.pairs`, the joint
augmentation in :mod:`transfer.tasks.segmentation.augment`.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import hashlib
import logging
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from transfer.data.checks import (
    _BATCH,
    _FORMAT_SUFFIXES,
    CHECK_VERSION,
    _CheckCache,
    _Entry,
    _open_first_frame,
    _reason_for,
    _save_png,
    _size_problem,
    _usable_cache_dir,
    default_workers,
)
from transfer.data.reports import (
    SKIP_COLOUR,
    SKIP_EMPTY,
    SKIP_LOSSY_MASK,
    SKIP_MASK_MODE,
    SKIP_UNREADABLE,
)
from transfer.data.splits import Split
from transfer.errors import DataError

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
NOTE_MASK_BINARY = "binary mask of 0/255 read as 0/1"
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
    if (problem := _size_problem(size)) is not None:
        return problem
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
