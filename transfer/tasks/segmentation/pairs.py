"""Image/mask pairs: the layouts people download, checking, and the splits
(:func:`load_segmentation`).

**Layouts**, recognised in this order:

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

**Checking.** Images are checked as for classification (:func:`~transfer.data.checks.
check_files`: every file decoded once, results cached, odd files normalised into the cache);
masks as :mod:`transfer.tasks.segmentation.masks` reads them. An image with an EXIF
orientation is compared, rotated as training sees it, with the mask as stored, and a pair
whose sizes then differ is skipped. Pairs that cannot be used are skipped and named in the
:class:`~transfer.data.reports.DataReport` with one of the ``SKIP_*`` reasons; nothing in
``DATA_DIR`` is modified.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import time
import unicodedata
from pathlib import Path

import numpy as np

from transfer.config import check_splits
from transfer.data.checks import (
    NOTE_EXIF,
    _stat_entry,
    check_files,
    default_workers,
)
from transfer.data.reports import (
    SKIP_COLOUR,
    SKIP_LABELS,
    SKIP_MISSING,
    SKIP_NO_IMAGE,
    SKIP_NO_MASK,
    SKIP_NOT_IMAGE,
    SKIP_SAME_STEM,
    SKIP_SIZE_MISMATCH,
    DataReport,
    _error,
)
from transfer.data.sources import _walk
from transfer.data.splits import SPLIT_FOLDERS, ImageFolderData, Split
from transfer.errors import ConfigError, DataError
from transfer.tasks.segmentation.masks import (
    _IMAGE_SUFFIXES,
    _LOSSLESS_SUFFIXES,
    _NEEDS_TABLE,
    DEFAULT_IGNORE_INDEX,
    NOTE_MASK_BINARY,
    NOTE_MASK_MAPPED,
    NOTE_UNLISTED,
    NOTE_UNUSED_IMAGES,
    PET_CLASSES,
    PET_TRIMAP,
    VOC_CLASSES,
    _check_masks,
    _frequencies,
    _Mapping,
    _needs_table_message,
    _read_class_names,
    read_palette,
    voc_colours,
)

log = logging.getLogger(__name__)

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


def looks_like_segmentation(data_dir: str | os.PathLike) -> bool:
    """Whether a data folder is laid out as image/mask pairs: ``images/`` + ``masks/`` (also
    under ``train/``), Pascal VOC (``JPEGImages/`` + ``SegmentationClass/``) or Oxford-IIIT Pet
    (``images/`` + ``annotations/trimaps/``)."""
    root = Path(data_dir)
    if not root.is_dir():
        return False
    for folder in (root, root / "train"):
        if (folder / "images").is_dir() and (folder / "masks").is_dir():
            return True
    return ((root / "JPEGImages").is_dir() and (root / "SegmentationClass").is_dir()) or (
        (root / "images").is_dir() and (root / "annotations" / "trimaps").is_dir())


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
                      ignore_index: int | None = None,
                      cache_dir: str | os.PathLike | None = None, workers: int | None = None,
                      dry_run: bool = False) -> ImageFolderData:
    """Discover, pair, check and split the images and masks under ``data_dir``.

    The layouts, class names and how masks are read are in
    :mod:`transfer.tasks.segmentation.masks`. Given splits (folders or lists) are kept; a
    missing ``val`` is drawn from ``train`` with ``val_split``, a missing ``test`` too when
    ``test_split`` > 0, with a seeded permutation.

    Args:
        data_dir: the folder.
        val_split: fraction of the pairs held out for validation, when not given.
        test_split: fraction held out for testing, when not given (0: no test split).
        seed: fixes the split.
        palette: a ``index,name,r,g,b`` CSV file overriding the folder's class names and
            colour table.
        ignore_index: the mask value that marks pixels without a label (0-255, not a class).
            ``None``: 255, except that masks holding only 0 and 255 with 2 classes (named, or
            inferred) are binary masks saved as 0/255: 255 is read as class 1, with a logged
            line and the :data:`NOTE_MASK_BINARY` note in the report.
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
    binary_ok = ignore_index is None
    ignore_index = DEFAULT_IGNORE_INDEX if ignore_index is None else ignore_index
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int) or not (
            0 <= ignore_index <= 255):
        raise ConfigError(f"ignore_index must be an integer 0-255 (masks are 8-bit); got "
                          f"{ignore_index!r}", field="ignore_index")
    start = time.perf_counter()
    root = Path(data_dir)
    layout = _layout(root)
    names, colours = _class_table(layout, root, palette, ignore_index)
    if ignore_index < len(names):
        clash = f"ignore_index {ignore_index} is also a class index (classes 0-{len(names) - 1})"
        if len(names) > 255:  # no 8-bit value is left: the option cannot fix it
            table = next((str(p) for p in (palette, root / "classes.csv", root / "classes.txt")
                          if p is not None and Path(p).is_file()), "the class table")
            # a data error: no --ignore-index can fix it, so the option is not blamed
            raise DataError(f"{clash}, and 8-bit masks leave no other value for it: list at "
                            f"most 255 classes in {table!r}")
        raise ConfigError(f"{clash}; choose an ignore_index from {len(names)} to 255",
                          field="ignore_index")
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
        binary = _binary_masks(usable) if (binary_ok and len(names) in (0, 2) and not colours
                                           and values is None) else 0
        if binary:
            log.info("%d mask(s) hold only the values 0 and %d with 2 classes: read as binary "
                     "masks, %d as class 1 (pass an ignore_index to keep %d as ignored)",
                     binary, ignore_index, ignore_index, ignore_index)
            mapping = _Mapping(colours, ((0, 0), (ignore_index, 1)), ignore_index)
            report.skipped, notes = list(layout.skipped), dict(layout.notes)
            usable = _check_pairs(layout, mapping, report, notes, cache_dir=cache_dir,
                                  dry_run=dry_run, pool=pool)
            notes.pop(NOTE_MASK_MAPPED, None)
            notes[NOTE_MASK_BINARY] = binary
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


def _binary_masks(usable: dict[str, list[dict]]) -> int:
    """How many usable masks there are when together they hold exactly the values 0 and 255
    (binary masks saved as 0/255), else 0."""
    masks = [pair for group in usable.values() for pair in group]
    seen = {int(v) for pair in masks for v in pair["counts"]}
    return len(masks) if seen == {0, DEFAULT_IGNORE_INDEX} else 0


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
    if ignore_index < k:
        if k > 255:  # labels 0-255 (or 16-bit ones) leave no 8-bit value to ignore
            raise _error(f"the masks in {report.source!r} hold labels up to {k - 1}, and 8-bit "
                         f"masks leave no other value for ignore_index {ignore_index}: use at "
                         f"most 255 classes (0-254; ignore_index 255)", report)
        raise _error(f"the masks in {report.source!r} hold labels up to {k - 1}, above "
                     f"ignore_index {ignore_index}; choose an ignore_index from {k} to 255",
                     report)
    if k < 2:
        seen = sorted({int(v) for g in usable.values() for p in g for v in p["counts"]})
        hint = ""
        if seen == [0, ignore_index] == [0, 255]:
            # another ignore_index would make 255 a label: 256 classes, more than 8 bits hold
            hint = "; masks of 0 and 255 only are usually binary masks saved as 0/255: save " \
                   "them as 0/1"
        elif seen == [0, ignore_index]:
            hint = (f"; if {ignore_index} is a class, choose an ignore_index from "
                    f"{ignore_index + 1} to 255")
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
            f"{found}{skipped}; run 'zoo data check {layout.root} --json' to see every file")
