"""Classification's data sources: class folders, CSV files and TensorFlow Datasets.

Sources (:func:`load_source`): an image folder (one sub-folder per class, or ``train/``,
``val/`` and ``test/`` folders laid out that way), a CSV file of ``path,label`` rows, or a
TensorFlow Datasets dataset already prepared on disk (``tfds:NAME``). Listing goes through
:mod:`transfer.data.sources`, which leaves hidden and system files out and uses a file reached
twice through symlinks once. :func:`folder_split` reads a class folder labelled as a trained
model's classes, and :func:`is_imagenet` tells the ImageNet classes.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import logging
import os
import shutil
import tempfile
import time
import unicodedata
from pathlib import Path
from typing import Any, Sequence

from transfer.data.checks import (
    _Entry,
    _stat_entry,
    _usable_cache_dir,
    check_files,
    default_workers,
)
from transfer.data.reports import (
    SKIP_DUPLICATE,
    SKIP_LINKED,
    SKIP_MISSING,
    SKIP_OUTSIDE,
    SKIP_SYSTEM,
)
from transfer.data.sources import (
    IMAGE_SUFFIXES,
    _is_system,
    _is_system_folder,
    _walk_files,
)
from transfer.data.splits import (
    _LOAD_DEFAULTS,
    DEFAULT_MIN_PER_CLASS,
    SPLIT_FOLDERS,
    ImageFolderData,
    Split,
    _assemble,
    _Options,
    _options,
)
from transfer.errors import DataError

log = logging.getLogger(__name__)


def _class_name(folder_name: str) -> str:
    # macOS stores names decomposed (NFD); the class name should not depend on that.
    return unicodedata.normalize("NFC", folder_name)


def _list_classes(root: Path, pool: concurrent.futures.Executor
                  ) -> tuple[dict[str, list[_Entry]], list[tuple[str, str]]]:
    """Class folder name -> its files; root-level files and system folders are skipped."""
    if not root.is_dir():
        raise DataError(f"data folder {str(root)!r} does not exist or is not a folder")
    class_dirs: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    for entry in sorted(os.scandir(root), key=lambda e: _class_name(e.name)):
        if entry.is_dir():
            if _is_system_folder(entry.name):
                skipped.append((entry.path, SKIP_SYSTEM))
            else:
                class_dirs.append((_class_name(entry.name), entry.path))
        else:
            skipped.append((entry.path, SKIP_SYSTEM if _is_system(entry.name) else SKIP_OUTSIDE))
    classes: dict[str, list[_Entry]] = {}
    for (name, _), (files, hidden) in zip(class_dirs,
                                          pool.map(_walk_files, [d for _, d in class_dirs])):
        classes.setdefault(name, []).extend(files)
        skipped.extend(hidden)
    for files in classes.values():
        files.sort()  # two folders may share a name once normalised to NFC
    return classes, skipped


def scan_class_folders(root: Path) -> dict[str, list[str]]:
    """Map each class folder name to its files with an image suffix (sorted, hidden skipped).

    A quick listing without checking; :func:`load_image_folder` checks every file instead.
    """
    with concurrent.futures.ThreadPoolExecutor(default_workers()) as pool:
        classes, _ = _list_classes(Path(root), pool)
    return {name: [e[0] for e in entries if Path(e[0]).suffix.lower() in IMAGE_SUFFIXES]
            for name, entries in classes.items()}


def _is_presplit(root: Path) -> bool:
    """``train/`` beside ``val/`` or ``test/``, with class folders inside ``train/``."""
    train = root / "train"
    if not train.is_dir() or not ((root / "val").is_dir() or (root / "test").is_dir()):
        return False
    return any(e.is_dir() and not _is_system_folder(e.name) for e in os.scandir(train))


# ---- loading --------------------------------------------------------------------------------

def load_image_folder(data_dir: str | os.PathLike, *, val_split: float = 0.2, seed: int = 42,
                      test_split: float = 0.0, min_per_class: int = DEFAULT_MIN_PER_CLASS,
                      drop_small_classes: bool = False,
                      cache_dir: str | os.PathLike | None = None, workers: int | None = None,
                      dry_run: bool = False) -> ImageFolderData:
    """Discover, check and split the images under ``data_dir``.

    ``data_dir`` holds one sub-folder per class, or ``train/`` with ``val/`` and/or ``test/``
    laid out that way (a missing ``val/`` is drawn from ``train/`` with ``val_split``; a missing
    ``test/`` too when ``test_split`` > 0). Otherwise each class is split with a seeded,
    stratified draw: ``val_split`` and ``test_split`` of its images.

    Args:
        data_dir: the folder.
        val_split: fraction of each class held out for validation.
        seed: fixes the split.
        test_split: fraction of each class held out for testing (0: no test split).
        min_per_class: fewest usable images a class may have (in ``train/`` when pre-split).
        drop_small_classes: leave classes below ``min_per_class`` out with a warning instead of
            failing.
        cache_dir: where check results and normalised images are kept (default
            :func:`default_cache_dir`).
        workers: threads for listing and checking (default :func:`default_workers`).
        dry_run: check and report only; write no normalised images.

    Returns:
        The splits, with the :class:`DataReport` as ``.report``.

    Raises:
        DataError: the folder is missing, has fewer than two classes with usable images, a
            class is below ``min_per_class`` (without ``drop_small_classes``), or a split is
            empty. ``error.report`` holds the report.
    """
    options = _options(val_split, test_split, seed, min_per_class, drop_small_classes,
                       cache_dir, workers, dry_run)
    return _load_folder(Path(data_dir), str(data_dir), options)


def _load_folder(root: Path, source: str, options: _Options) -> ImageFolderData:
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(options.workers or default_workers()) as pool:
        if root.is_dir() and _is_presplit(root):
            groups: dict[str, dict[str, list[_Entry]]] = {}
            skipped: list[tuple[str, str]] = []
            for entry in sorted(os.scandir(root), key=lambda e: e.name):
                if entry.is_dir() and entry.name in SPLIT_FOLDERS:
                    groups[entry.name], more = _list_classes(Path(entry.path), pool)
                    skipped += more
                elif _is_system(entry.name) or (entry.is_dir()
                                                and _is_system_folder(entry.name)):
                    skipped.append((entry.path, SKIP_SYSTEM))
                else:
                    skipped.append((entry.path, SKIP_OUTSIDE))
        else:
            classes, skipped = _list_classes(root, pool)
            groups = {"all": classes}
        folders = {name for classes in groups.values() for name in classes}
        if folders in ({"images"}, {"masks"}):  # one class: half a segmentation layout
            raise DataError(_half_segmentation_layout(source, folders.pop()))
        skipped += _drop_linked_copies(root, groups)
        return _assemble(source, str(root), groups, skipped, options, pool, start)


def _drop_linked_copies(root: Path, groups: dict[str, dict[str, list[_Entry]]]
                        ) -> list[tuple[str, str]]:
    """Keep one listed path per real file (in place); the others, skipped as SKIP_LINKED.

    The path not reached through a symlink is kept, else the first in listing order.
    """
    real_root = os.path.realpath(root)
    entries = [e[0] for classes in groups.values() for files in classes.values() for e in files]
    real = {path: os.path.realpath(path) for path in entries}

    def direct(path: str) -> bool:  # reached from root without passing through a symlink
        return real[path] == os.path.join(real_root, os.path.relpath(path, root))

    keeper: dict[str, str] = {}
    for path in entries:
        kept = keeper.get(real[path])
        if kept is None or (direct(path) and not direct(kept)):
            keeper[real[path]] = path
    dropped = sorted((p, keeper[real[p]]) for p in entries if keeper[real[p]] != p)
    if not dropped:
        return []
    gone = {p for p, _ in dropped}
    for classes in groups.values():
        for name, files in classes.items():
            classes[name] = [e for e in files if e[0] not in gone]
    shown = ", ".join(f"{p} (= {kept})" for p, kept in dropped[:5])
    more = f" and {len(dropped) - 5} more" if len(dropped) > 5 else ""
    log.warning("%d file(s) are the same file as another listed one, reached through a symlink; "
                "each is used once: %s%s", len(dropped), shown, more)
    return [(p, SKIP_LINKED) for p, _ in dropped]


# ---- a class folder labelled as a trained model's classes --------------------------------

def folder_split(data_dir: str | os.PathLike, class_names: Sequence[str], *,
                 split: str = "val") -> tuple[Split, list[str]]:
    """The usable images of a folder with one sub-folder per class, labelled as the model's.

    A folder laid out as ``train/``, ``val/`` (and ``test/``) is read from its ``split``
    sub-folder. Files are checked as for training (:func:`transfer.data.check_files`), so they
    are decoded the same way. Every class folder must be one of ``class_names``; classes without
    a folder are allowed (a test set may lack some) and get zero support. For a model with the
    1000 ImageNet classes, folders are looked up with :func:`zoo.imagenet_class`: a class name
    (any of its synonyms, ``_`` read as a space), a WordNet id or a class index.

    Returns:
        The split, and the files left out as unusable (each logged with its reason).

    Raises:
        DataError: the folder is missing, holds no usable images, or has a class the model lacks.
    """
    root = Path(data_dir)
    if (root / "train").is_dir() and ((root / "val").is_dir() or (root / "test").is_dir()):
        if split not in SPLIT_FOLDERS or not (root / split).is_dir():
            raise DataError(f"{str(root)!r} is split into train/, val/... but has no {split}/ "
                            f"folder; choose another --split")
        root = root / split
    if not root.is_dir():
        raise DataError(f"data folder {str(root)!r} does not exist or is not a folder")
    classes = {name: files for name, files in scan_class_folders(root).items() if files}
    if not classes:
        raise DataError(f"data folder {str(root)!r} holds no class sub-folders with files")
    index = _class_index(sorted(classes), class_names, root)
    entries = []
    for files in classes.values():
        for path in files:
            try:
                st = os.stat(path)
                entries.append((path, st.st_size, st.st_mtime_ns))
            except OSError:
                entries.append((path, -1, 0))
    results, _ = check_files(entries)
    rows, skipped = [], []
    for name, files in classes.items():
        for path in files:
            result = results[path]
            if result["reason"] is None:
                rows.append((path, index[name], result))
            else:
                skipped.append(path)
                log.warning("skipping %s: %s", path, result["reason"])
    if not rows:
        raise DataError(f"data folder {str(root)!r} holds no usable images "
                        f"({len(skipped)} file(s) skipped)")
    return Split(paths=tuple(p for p, _, _ in rows), labels=tuple(y for _, y, _ in rows),
                 sources=tuple(r.get("source", p) for p, _, r in rows),
                 orientations=tuple(r.get("orientation", 1) for _, _, r in rows)), skipped


def is_imagenet(class_names: Sequence[str]) -> bool:
    """Whether ``class_names`` are the 1000 ImageNet classes in Keras's order."""
    import zoo

    return len(class_names) == len(zoo.imagenet_classes()) and \
        list(class_names) == zoo.imagenet_class_names()


def _class_index(folders: Sequence[str], class_names: Sequence[str], root: Path) -> dict[str, int]:
    """The label of each class folder; ImageNet folders by name, synonym or WordNet id."""
    if is_imagenet(class_names):
        import zoo
        from zoo.errors import ZooError

        index, failed = {}, []
        for name in folders:
            try:  # digits are class indices, as zoo.imagenet_class's errors suggest
                index[name] = zoo.imagenet_class(int(name) if name.isdigit() else name).index
            except ZooError as exc:
                failed.append((name, exc))
        if failed:
            names = ", ".join(repr(name) for name, _ in failed)
            raise DataError(
                f"class folder(s) {names} in {str(root)!r} do not name one ImageNet class "
                f"({failed[0][1]}); name each by a class name, WordNet id or index (e.g. "
                f"'Egyptian cat', 'n02124075' or '285'), or remove it")
        return index
    index = {name: i for i, name in enumerate(class_names)}
    unknown = [name for name in folders if name not in index]
    if unknown:
        raise DataError(
            f"class folder(s) {', '.join(map(repr, unknown))} in {str(root)!r} are not classes of "
            f"the model, which knows {', '.join(map(repr, class_names))}; rename or remove them")
    missing = [name for name in class_names if name not in folders]
    if missing:
        log.warning("no images of class(es) %s in %s", ", ".join(missing), root)
    return index


def _half_segmentation_layout(source: str, present: str) -> str:
    if present == "images":
        return (f"{source!r} has images/ but no masks/: for segmentation add masks/, one PNG "
                f"per image with the same file name, each pixel its class index (0, 1, ...); "
                f"for classification put the images in one sub-folder per class")
    return (f"{source!r} has masks/ but no images/: for segmentation add images/, the image of "
            f"each mask with the same file name")


def _quoted(cell: str) -> str:
    """``cell`` as a CSV writer quotes it."""
    return '"' + cell.replace('"', '""') + '"'


def load_csv(csv_path: str | os.PathLike, *, val_split: float = 0.2, seed: int = 42,
             test_split: float = 0.0, min_per_class: int = DEFAULT_MIN_PER_CLASS,
             drop_small_classes: bool = False, cache_dir: str | os.PathLike | None = None,
             workers: int | None = None, dry_run: bool = False) -> ImageFolderData:
    """Check and split the images listed in a CSV file of ``path,label`` rows.

    A first row ``path,label`` is a header. Relative paths are relative to the CSV file's
    folder. An optional third column ``split`` (``train``/``val``/``test``) fixes the split of
    every row; otherwise the split is drawn as for a folder. Missing files and repeated paths
    are skipped and reported. Arguments are those of :func:`load_image_folder`.
    """
    options = _options(val_split, test_split, seed, min_per_class, drop_small_classes,
                       cache_dir, workers, dry_run)
    csv_file = Path(csv_path)
    start = time.perf_counter()
    try:
        with open(csv_file, newline="", encoding="utf-8-sig") as f:
            rows = [(n, row) for n, row in enumerate(csv.reader(f), start=1)
                    if row and any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read CSV file {str(csv_file)!r}: {exc}") from None
    header = [c.strip().lower() for c in rows[0][1]] if rows else []
    with_split = None
    if header[:2] == ["path", "label"]:
        rows = rows[1:]
        if not any(header[2:]):  # the header says: no split column
            with_split = False
    if with_split is None:
        with_split = bool(rows) and all(len(row) >= 3 and row[2].strip() for _, row in rows)
    columns = "'path,label,split'" if with_split else "'path,label'"
    groups: dict[str, dict[str, list[_Entry]]] = {}
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()
    for line, row in rows:
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise DataError(f"{csv_file}:{line}: expected {columns}, got {row!r}")
        width = 3 if with_split else 2
        label, rest = ((row[1:-1], [row[-1]]) if with_split and len(row) > width
                       else (row[1:], []))
        quote = (f"if the label holds a comma, quote it: "
                 f"{','.join([row[0], _quoted(','.join(label)), *rest])}")
        if any(cell.strip() for cell in row[width:]):
            raise DataError(f"{csv_file}:{line}: {len(row)} columns where {columns} rows "
                            f"have {width}; {quote}")
        path = str(csv_file.parent / row[0].strip())
        split = row[2].strip().lower() if with_split else "all"
        if split not in (*SPLIT_FOLDERS, "all"):
            raise DataError(f"{csv_file}:{line}: {row[2]!r} is not a split (train, val or "
                            f"test); {quote}")
        if path in seen:
            skipped.append((path, SKIP_DUPLICATE))
            continue
        seen.add(path)
        entry = _stat_entry(path)
        if entry[1] < 0 and not os.path.lexists(path):
            skipped.append((path, SKIP_MISSING))
            continue
        groups.setdefault(split, {}).setdefault(_class_name(row[1].strip()), []).append(entry)
    _check_csv_rows(csv_file, rows, with_split, groups, skipped)
    groups = {split: dict(sorted(classes.items())) for split, classes in groups.items()}
    with concurrent.futures.ThreadPoolExecutor(workers or default_workers()) as pool:
        return _assemble(str(csv_file), str(csv_file.parent), groups, skipped, options, pool,
                         start)


def _check_csv_rows(csv_file: Path, rows: list, with_split: bool,
                    groups: dict[str, dict[str, list[_Entry]]],
                    skipped: list[tuple[str, str]]) -> None:
    """A CSV whose rows name no existing image (or no existing 'train' image) is refused here,
    naming the file, rather than deep in the split code."""
    where = f"CSV file {str(csv_file)!r}"
    if not rows:
        raise DataError(f"{where} lists no images: it has no 'path,label' rows; add one row "
                        f"per image")
    pool = "train" if with_split else "all"
    if pool in groups:
        return
    listed = [row for _, row in rows if not with_split or row[2].strip().lower() == pool]
    if not listed:
        raise DataError(f"{where} has a split column but no 'train' rows; mark the rows to "
                        f"train on with 'train'")
    missing = [path for path, reason in skipped if reason == SKIP_MISSING]
    which = "images it lists" if pool == "all" else "images of its 'train' rows"
    first = f" (first: {missing[0]!r})" if missing else ""
    raise DataError(f"{where}: none of the {len(listed)} {which} exist{first}; fix the paths: "
                    f"relative ones are read from the CSV file's folder, {str(csv_file.parent)!r}")


# ---- other sources --------------------------------------------------------------------------

TFDS_PREFIX = "tfds:"


def load_source(spec: str | os.PathLike, *, tfds_data_dir: str | os.PathLike | None = None,
                **options: Any) -> ImageFolderData:
    """Load a folder, a ``.csv`` file of ``path,label`` rows, or ``tfds:NAME[:VERSION]``.

    ``options`` are those of :func:`load_image_folder`. For ``tfds:``, ``tfds_data_dir`` is
    the local TFDS store (default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
    """
    text = os.fspath(spec)
    if text.startswith(TFDS_PREFIX):
        return load_tfds(text[len(TFDS_PREFIX):], data_dir=tfds_data_dir, **options)
    path = Path(text)
    if path.is_dir():
        return load_image_folder(path, **options)
    if path.is_file() and path.suffix.lower() == ".csv":
        return load_csv(path, **options)
    if path.is_file():
        raise DataError(f"{text!r} is a file but not a .csv of 'path,label' rows; expected an "
                        f"image folder, a CSV file or tfds:NAME")
    raise DataError(f"data source {text!r} does not exist; expected an image folder, a CSV "
                    f"file of 'path,label' rows, or tfds:NAME")


def _tfds_builder_dir(name: str, data_dir: Path) -> Path:
    """The prepared dataset's folder, found on disk only: nothing here touches the network."""
    name, _, version = name.partition(":")
    base = data_dir / name
    infos = sorted(base.glob("**/dataset_info.json")) if name and base.is_dir() else []
    if version:
        infos = [p for p in infos if p.parent.name == version]

    def version_key(p: Path) -> tuple:
        return tuple(int(x) if x.isdigit() else -1 for x in p.parent.name.split("."))

    if not infos:
        raise DataError(
            f"TFDS dataset {name + (':' + version if version else '')!r} is not prepared in "
            f"{str(data_dir)!r} (no dataset_info.json under {str(base)!r}), and it is never "
            f"downloaded here; on a machine with internet run 'tfds build {name} --data_dir "
            f"DIR', copy DIR over, and pass it as the TFDS data dir (--tfds-data-dir or "
            f"$TFDS_DATA_DIR)")
    return max(infos, key=version_key).parent


_TFDS_SPLITS = {"train": "train", "validation": "val", "valid": "val", "val": "val",
                "test": "test"}


def load_tfds(name: str, *, data_dir: str | os.PathLike | None = None,
              cache_dir: str | os.PathLike | None = None, **options: Any) -> ImageFolderData:
    """A TensorFlow Datasets dataset, prepared on disk beforehand, as a checked folder.

    The dataset is found in ``data_dir`` by its files alone (``tfds.builder_from_directory``),
    so offline it fails at once with a :class:`DataError` instead of retrying downloads. Its
    ``train``/``validation``/``test`` splits are materialised once, as the original encoded
    image files (no re-encoding), into ``CACHE_DIR/tfds/NAME/VERSION/<split>/<class>/``, and
    that folder is loaded like any other (a missing validation split is drawn from train).
    Class folders are the dataset's label names, so labels are in sorted-name order.
    """
    settings = _options(**{**_LOAD_DEFAULTS, **options, "cache_dir": cache_dir})
    data_dir = Path(data_dir or os.environ.get("TFDS_DATA_DIR")
                    or Path.home() / "tensorflow_datasets")
    builder_dir = _tfds_builder_dir(name, data_dir)
    cache_root = _usable_cache_dir(cache_dir)
    out = cache_root / "tfds" / builder_dir.relative_to(data_dir)
    if not _tfds_marker(out).is_file():
        _materialise_tfds(builder_dir, out)
    return _load_folder(out, TFDS_PREFIX + name,
                        dataclasses.replace(settings, cache_dir=cache_root))


def _materialise_tfds(builder_dir: Path, out: Path) -> None:
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(builder_dir)
    features = dict(builder.info.features.items())
    keys = builder.info.supervised_keys
    if keys and len(keys) >= 2 and isinstance(keys[0], str) and isinstance(keys[1], str):
        image_key, label_key = keys[0], keys[1]
    else:
        image_key = next((k for k, f in features.items()
                          if isinstance(f, tfds.features.Image)), None)
        label_key = next((k for k, f in features.items()
                          if isinstance(f, tfds.features.ClassLabel)), None)
    if not isinstance(features.get(image_key), tfds.features.Image) or not isinstance(
            features.get(label_key), tfds.features.ClassLabel):
        raise DataError(f"TFDS dataset in {str(builder_dir)!r} has no (image, class label) "
                        f"features; found {sorted(features)}")
    names = features[label_key].names
    safe = [n.replace(os.sep, "_").replace("\0", "_") or f"class_{i}"
            for i, n in enumerate(names)]
    splits = {s: _TFDS_SPLITS[s] for s in builder.info.splits if s in _TFDS_SPLITS}
    if "train" not in splits:
        raise DataError(f"TFDS dataset in {str(builder_dir)!r} has no train split; its splits "
                        f"are {sorted(builder.info.splits)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        for split, folder in splits.items():
            for name in safe:
                (tmp / folder / name).mkdir(parents=True, exist_ok=True)
            ds = builder.as_dataset(split=split, shuffle_files=False,
                                    decoders={image_key: tfds.decode.SkipDecoding()})
            for index, example in enumerate(tfds.as_numpy(ds)):
                encoded = example[image_key]
                target = tmp / folder / safe[int(example[label_key])] / (
                    f"{split}_{index:07d}{_suffix_of(encoded)}")
                target.write_bytes(encoded)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
        _tfds_marker(out).write_text(str(builder_dir) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing left there after the rename


def _tfds_marker(out: Path) -> Path:
    # Beside the folder, not in it: inside, it would be reported as a stray file.
    return out.with_name(out.name + ".complete")


def _suffix_of(encoded: bytes) -> str:
    for magic, suffix in ((b"\xff\xd8\xff", ".jpg"), (b"\x89PNG", ".png"), (b"GIF8", ".gif"),
                          (b"BM", ".bmp")):
        if encoded.startswith(magic):
            return suffix
    return ".img"
