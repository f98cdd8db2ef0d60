"""Image sources into checked, seeded, stratified splits and ``tf.data`` pipelines.

Sources (:func:`load_source`): an image folder (one sub-folder per class, or ``train/``,
``val/`` and ``test/`` folders laid out that way), a CSV file of ``path,label`` rows, or a
TensorFlow Datasets dataset already prepared on disk (``tfds:NAME``).

**Checking.** Every file is checked once, up front, by a thread pool: Pillow decodes it fully
(``load()``, not just ``verify()``). Threads, not processes: Pillow releases the GIL while it
decodes, a process forked after TensorFlow started is unsafe, and a spawned one imports
TensorFlow again (6-10 s per worker, measured by ``benchmarks/bench_data.py``). Results are
cached in SQLite keyed by (path, size, mtime), so a second run over the same folder re-checks
nothing. Unusable files (empty, truncated, not an image, system files...) are skipped and named,
with the reason, in a :class:`DataReport`.

**What an image means.** The pixels of a file are Pillow's decode with the EXIF orientation
applied (``ImageOps.exif_transpose``), as 8-bit RGB: grayscale and palette images are expanded,
16-bit images keep their high byte (``v >> 8``, which is also what Pillow does with 48-bit RGB
and TensorFlow with 16-bit PNG), CMYK is converted, an animation gives its first frame, and
**transparency is composited on white** (a screenshot or logo then looks as it does on a page;
on black, dark text on a transparent background would vanish). :func:`load_normalized` returns
exactly these pixels.

**Decoding for training.** Where TensorFlow decodes the original file to exactly these pixels,
training reads the file itself: RGB or grayscale JPEGs (with libjpeg's accurate integer DCT,
which Pillow uses; TensorFlow's default fast DCT differs by up to 12 levels) and 8-bit RGB or
grayscale PNGs without transparency, with the EXIF orientation applied by TensorFlow ops. These
are nearly all photos. Every other usable file (transparency, palette, 16-bit, CMYK, GIF, BMP,
TIFF, WebP, a PNG without its end chunk) is normalised once into a lossless PNG in the cache
directory (``~/.cache/cnn-zoo/images`` by default), which TensorFlow decodes exactly. Then
comes bilinear ``tf.image.resize``, the op the exported model runs on raw pixels, so training
sees what the exported model sees for the normalised image. Caching every image instead would
cost disk (a 12 MP photo is 36 MB as raw pixels) and a write per file for no gain in pixels.
"""

from __future__ import annotations

import collections
import concurrent.futures
import csv
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import tempfile
import time
import unicodedata
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from transfer.errors import ConfigError, DataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
SPLIT_FOLDERS = ("train", "val", "test")
#: Formats Pillow may identify a file as (JPEG includes MPO, the multi-picture JPEG of many
#: phones); anything else is "not an image". Limiting the list keeps Pillow from taking random
#: bytes for a header-less format such as TGA.
PILLOW_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "DIB", "TIFF", "WEBP", "PPM")
SYSTEM_FILES = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini", "icon\r"})
SYSTEM_FOLDERS = frozenset({"__macosx", "@eadir", "$recycle.bin", "system volume information"})

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

# What normalisation did to usable files: the keys of DataReport.notes.
NOTE_EXIF = "EXIF orientation applied"
NOTE_ALPHA = "transparency composited on white"
NOTE_16BIT = "16-bit scaled to 8-bit"
NOTE_CMYK = "CMYK converted to RGB"
NOTE_GRAY = "grayscale expanded to RGB"
NOTE_PALETTE = "palette expanded to RGB"
NOTE_OTHER_MODE = "other colour mode converted to RGB"
NOTE_ANIMATION = "first frame of an animation"
NOTE_SUFFIX = "suffix does not match content"
NOTE_PNG_END = "PNG without its end chunk"

CHECK_VERSION = 1  # bump when checking or normalising changes, to invalidate caches
DEFAULT_MIN_PER_CLASS = 2
_FORMAT_SUFFIXES = {
    "JPEG": (".jpg", ".jpeg", ".jpe", ".jfif"), "MPO": (".jpg", ".jpeg", ".mpo"),
    "PNG": (".png",), "GIF": (".gif",), "BMP": (".bmp", ".dib"), "DIB": (".bmp", ".dib"),
    "TIFF": (".tif", ".tiff"), "WEBP": (".webp",), "PPM": (".ppm", ".pgm", ".pbm", ".pnm"),
}
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_EXIF_ORIENTATION = 0x0112
_BATCH = 64  # files per pool task: few futures even for a million files

# A listed file: (path, size in bytes, mtime in ns); size -1 when it could not be stat'ed.
_Entry = tuple[str, int, int]


# ---- splits ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Split:
    """File paths and integer labels of one split.

    ``sources`` (when given) are the files the pipeline actually reads, position by position:
    the path itself, or its normalised PNG in the cache. ``orientations`` are the EXIF
    orientations (1-8) TensorFlow applies after decoding a source; empty means all 1.
    """

    paths: tuple[str, ...]
    labels: tuple[int, ...]
    sources: tuple[str, ...] = ()
    orientations: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.paths)

    def class_counts(self, num_classes: int) -> list[int]:
        return np.bincount(np.asarray(self.labels, dtype=np.int64),
                           minlength=num_classes).tolist()

    def to_dict(self) -> dict[str, list]:
        data: dict[str, list] = {"paths": list(self.paths), "labels": list(self.labels)}
        if self.sources and list(self.sources) != list(self.paths):
            data["sources"] = list(self.sources)
        if any(o != 1 for o in self.orientations):
            data["orientations"] = list(self.orientations)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, list]) -> Split:
        return cls(tuple(data["paths"]), tuple(data["labels"]),
                   tuple(data.get("sources", ())), tuple(data.get("orientations", ())))


@dataclasses.dataclass(frozen=True)
class ImageFolderData:
    """The class names and the train/validation(/test) splits of a data source.

    ``report`` is the :class:`DataReport` of the check that produced the splits.
    """

    root: str
    class_names: tuple[str, ...]
    train: Split
    val: Split
    test: Split | None = None
    report: DataReport | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def save(self, path: Path) -> None:
        """Write the exact split, so evaluation later uses the same images."""
        data = {
            "root": self.root,
            "class_names": list(self.class_names),
            **{name: s.to_dict()
               for name, s in (("train", self.train), ("val", self.val), ("test", self.test))
               if s is not None},
        }
        Path(path).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: Path) -> ImageFolderData:
        data = json.loads(Path(path).read_text())
        splits = {name: Split.from_dict(data[name]) for name in SPLIT_FOLDERS if name in data}
        return cls(root=data["root"], class_names=tuple(data["class_names"]),
                   train=splits["train"], val=splits["val"], test=splits.get("test"))


# ---- the report -----------------------------------------------------------------------------

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

    @property
    def usable(self) -> int:
        return sum(self.class_counts.values())

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
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataReport:
        return cls(source=data["source"], root=data.get("root", ""),
                   class_counts=dict(data["class_counts"]),
                   split_counts={k: dict(v) for k, v in data["split_counts"].items()},
                   skipped=[(s["path"], s["reason"]) for s in data["skipped"]],
                   dropped_classes=dict(data["dropped_classes"]), notes=dict(data["notes"]),
                   files_checked=data["files_checked"], from_cache=data["from_cache"],
                   seconds=data["seconds"])

    def save(self, path: str | os.PathLike) -> None:
        """Write the report as JSON (``RUN_DIR/data_report.json``)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> DataReport:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def summary(self, max_paths: int = 5) -> str:
        """A few lines for the terminal: counts per class and per reason, the first paths."""
        lines = [f"{self.usable} usable image(s) in {len(self.class_counts)} class(es) from "
                 f"{self.source} ({self.files_checked} file(s) checked, {self.from_cache} from "
                 f"cache, {self.seconds:.1f} s)"]
        if self.class_counts:
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


# ---- the cache ------------------------------------------------------------------------------

def default_cache_dir() -> Path:
    """``$CNN_ZOO_CACHE_DIR``, else ``$XDG_CACHE_HOME/cnn-zoo``, else ``~/.cache/cnn-zoo``."""
    if os.environ.get("CNN_ZOO_CACHE_DIR"):
        return Path(os.environ["CNN_ZOO_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnn-zoo"


def _usable_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    path = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
        return path
    except OSError as exc:
        fallback = Path(tempfile.gettempdir()) / f"cnn-zoo-cache-{os.getuid()}"
        log.warning("cache directory %s is not usable (%s); using %s", path, exc, fallback)
        fallback.mkdir(parents=True, exist_ok=True)
        return fallback


class _CheckCache:
    """Check results in SQLite, keyed by absolute path and valid while size and mtime match.

    A cache that cannot be opened or written is a warning, never a failure.
    """

    def __init__(self, path: Path):
        self.path = path
        try:
            self.db: sqlite3.Connection | None = sqlite3.connect(str(path), timeout=30)
            self.db.execute("CREATE TABLE IF NOT EXISTS checks (path TEXT PRIMARY KEY, "
                            "size INTEGER, mtime_ns INTEGER, version INTEGER, result TEXT)")
        except sqlite3.Error as exc:
            log.warning("check cache %s is not usable (%s); checking without it", path, exc)
            self.db = None

    def get_many(self, entries: Sequence[_Entry]) -> dict[str, dict]:
        found: dict[str, dict] = {}
        if self.db is None:
            return found
        by_abs = {os.path.abspath(p): (p, size, mtime) for p, size, mtime in entries}
        keys = list(by_abs)
        try:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                rows = self.db.execute(
                    f"SELECT path, size, mtime_ns, version, result FROM checks WHERE path IN "
                    f"({','.join('?' * len(chunk))})", chunk)
                for abs_path, size, mtime, version, result in rows:
                    path, want_size, want_mtime = by_abs[abs_path]
                    if (size, mtime, version) == (want_size, want_mtime, CHECK_VERSION):
                        found[path] = json.loads(result)
        except (sqlite3.Error, ValueError) as exc:
            log.warning("check cache %s could not be read (%s); checking again", self.path, exc)
        return found

    def put_many(self, rows: Iterable[tuple[_Entry, dict]]) -> None:
        if self.db is None:
            return
        try:
            with self.db:
                self.db.executemany(
                    "INSERT OR REPLACE INTO checks VALUES (?, ?, ?, ?, ?)",
                    [(os.path.abspath(p), size, mtime, CHECK_VERSION, json.dumps(result))
                     for (p, size, mtime), result in rows])
        except sqlite3.Error as exc:
            log.warning("check cache %s could not be written (%s)", self.path, exc)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()


def _normalized_path(image_dir: Path, entry: _Entry) -> Path:
    path, size, mtime = entry
    digest = hashlib.sha1(f"{CHECK_VERSION}\0{os.path.abspath(path)}\0{size}\0{mtime}"
                          .encode()).hexdigest()
    return image_dir / digest[:2] / f"{digest}.png"


# ---- checking and normalising one file --------------------------------------------------------

def _orientation(image) -> int:
    value = image.getexif().get(_EXIF_ORIENTATION, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _normalize(image) -> tuple[Any, list[str]]:
    """A loaded Pillow image to the RGB image it means, and what was done to get there."""
    from PIL import Image, ImageOps

    notes = []
    if _orientation(image) != 1:
        image = ImageOps.exif_transpose(image)
        notes.append(NOTE_EXIF)
    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        pixels = np.asarray(image)
        if mode == "F":
            scale = 255.0 if pixels.size and pixels.max() <= 1.0 else 1.0
            pixels = np.clip(np.rint(pixels * scale), 0, 255).astype(np.uint8)
            notes.append(NOTE_OTHER_MODE)
        elif mode.startswith("I;16") or (pixels.size and pixels.max() > 255):
            pixels = (np.clip(pixels, 0, 65535).astype(np.uint32) >> 8).astype(np.uint8)
            notes.append(NOTE_16BIT)
        else:
            pixels = np.clip(pixels, 0, 255).astype(np.uint8)
            notes.append(NOTE_OTHER_MODE)
        image, mode = Image.fromarray(pixels, "L"), "L"
    if mode == "CMYK":
        image, mode = image.convert("RGB"), "RGB"
        notes.append(NOTE_CMYK)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba).convert("RGB")
        notes.append(NOTE_ALPHA)
    elif mode == "P":
        image = image.convert("RGB")
        notes.append(NOTE_PALETTE)
    elif mode in ("L", "1"):
        image = image.convert("RGB")
        notes.append(NOTE_GRAY)
    elif mode != "RGB":
        image = image.convert("RGB")
        notes.append(NOTE_OTHER_MODE)
    return image, notes


def _open_first_frame(file):
    from PIL import Image

    Image.init()  # registers every plugin (MPO, TIFF, WebP...), not only the common five
    image = Image.open(file, formats=PILLOW_FORMATS)
    animated = image.format != "MPO" and getattr(image, "is_animated", False)
    if animated:
        image.seek(0)
    image.load()
    return image, animated


def load_normalized(path: str | os.PathLike) -> np.ndarray:
    """The normalised pixels of an image file: uint8 ``(height, width, 3)`` RGB.

    EXIF orientation applied, transparency composited on white, 16-bit scaled to 8-bit,
    CMYK converted, first frame of an animation. Training feeds the model exactly these pixels
    (then resized); see the module docstring.
    """
    with open(path, "rb") as file:
        image, _ = _open_first_frame(file)
        with image:
            rgb, _ = _normalize(image)
            return np.asarray(rgb)


def _reason_for(exc: BaseException) -> str:
    from PIL import Image, UnidentifiedImageError

    if isinstance(exc, (Image.DecompressionBombError, MemoryError)):
        return SKIP_TOO_LARGE
    if isinstance(exc, UnidentifiedImageError):
        return SKIP_NOT_IMAGE
    if isinstance(exc, EOFError) or "truncated" in str(exc).lower():
        return SKIP_TRUNCATED
    return SKIP_CORRUPT


def _check_one(entry: _Entry, image_dir: Path | None) -> dict:
    """Decode one file with Pillow; return the JSON-able result (``reason`` None when usable).

    Usable files that TensorFlow cannot decode to the normalised pixels are written to
    ``image_dir`` as PNG (unless it is None: a dry run).
    """
    path, size, _ = entry
    if size < 0:
        return {"reason": SKIP_UNREADABLE}
    if size == 0:
        return {"reason": SKIP_EMPTY}
    try:
        file = open(path, "rb")
    except OSError as exc:
        return {"reason": SKIP_UNREADABLE, "detail": str(exc)}
    try:
        with file:
            head = file.read(32)
            file.seek(0)
            image, animated = _open_first_frame(file)
            with image:
                fmt, mode = image.format or "", image.mode
                orientation = _orientation(image)
                notes = []
                if Path(path).suffix.lower() not in _FORMAT_SUFFIXES.get(fmt, ()):
                    notes.append(NOTE_SUFFIX)
                if animated:
                    notes.append(NOTE_ANIMATION)
                direct = fmt in ("JPEG", "MPO") and mode in ("RGB", "L")
                if fmt == "PNG" and not animated and mode in ("RGB", "L"):
                    file.seek(-len(_PNG_END), os.SEEK_END)
                    complete = file.read() == _PNG_END
                    if not complete:
                        notes.append(NOTE_PNG_END)
                    direct = (complete and head[12:16] == b"IHDR" and head[24] == 8
                              and head[25] in (0, 2) and "transparency" not in image.info)
                if direct:
                    width, height = image.size
                    if orientation in (5, 6, 7, 8):
                        width, height = height, width
                    notes += [NOTE_EXIF] * (orientation != 1) + [NOTE_GRAY] * (mode == "L")
                else:
                    rgb, more = _normalize(image)
                    notes += more
                    width, height = rgb.size
                    orientation = 1
                    if image_dir is not None:
                        _save_png(rgb, _normalized_path(image_dir, entry))
    except Exception as exc:  # noqa: BLE001 - any failure to decode means "skip this file"
        log.debug("skipping %s: %s: %s", path, type(exc).__name__, exc)
        return {"reason": _reason_for(exc), "detail": f"{type(exc).__name__}: {exc}"[:200]}
    return {"reason": None, "format": fmt, "mode": mode, "width": width, "height": height,
            "orientation": orientation, "direct": direct, "notes": notes}


def _save_png(image, target: Path) -> None:
    """Write atomically, so concurrent runs and interrupted ones never leave half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            image.save(out, format="PNG", compress_level=1)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_batch(entries: Sequence[_Entry], image_dir: Path | None) -> list[dict]:
    return [_check_one(entry, image_dir) for entry in entries]


def default_workers() -> int:
    """Threads for listing and checking: decoding releases the GIL, and I/O waits.

    At most 16: each thread may hold one fully decoded image (up to Pillow's 179 MP limit).
    """
    return min(16, 2 * (os.cpu_count() or 1))


def check_files(entries: Sequence[_Entry], *, cache_dir: str | os.PathLike | None = None,
                workers: int | None = None, write_images: bool = True,
                pool: concurrent.futures.Executor | None = None
                ) -> tuple[dict[str, dict], int]:
    """Check listed files in parallel, reusing cached results.

    Returns:
        path -> result (``reason`` None when usable), and how many results came from the cache.
    """
    cache_root = _usable_cache_dir(cache_dir)
    image_dir = cache_root / "images" if write_images else None
    cache = _CheckCache(cache_root / "checks.sqlite")
    try:
        cached = cache.get_many([e for e in entries if e[1] > 0])
        todo = [e for e in entries if not _cache_hit(cached.get(e[0]), e, image_dir)]
        results = {e[0]: cached[e[0]] for e in entries if e[0] in cached}
        hits = len(entries) - len(todo)
        batches = [todo[i:i + _BATCH] for i in range(0, len(todo), _BATCH)]
        own_pool = pool is None and len(batches) > 1
        if own_pool:
            pool = concurrent.futures.ThreadPoolExecutor(workers or default_workers())
        try:
            run = pool.map if pool is not None and len(batches) > 1 else map
            checked = [r for batch in run(lambda b: _check_batch(b, image_dir), batches)
                       for r in batch]
        finally:
            if own_pool:
                pool.shutdown()
        results.update((e[0], r) for e, r in zip(todo, checked))
        cache.put_many((e, r) for e, r in zip(todo, checked)
                       if r["reason"] not in (SKIP_UNREADABLE, SKIP_EMPTY))
    finally:
        cache.close()
    if image_dir is not None:
        for entry in entries:
            result = results[entry[0]]
            if result["reason"] is None and not result["direct"]:
                result["source"] = str(_normalized_path(image_dir, entry))
    return results, hits


def _cache_hit(result: dict | None, entry: _Entry, image_dir: Path | None) -> bool:
    if result is None:
        return False
    if result["reason"] is None and not result["direct"] and image_dir is not None:
        return _normalized_path(image_dir, entry).is_file()
    return True


# ---- listing --------------------------------------------------------------------------------

def _is_system(name: str) -> bool:
    return name.startswith(".") or name.lower() in SYSTEM_FILES


def _is_system_folder(name: str) -> bool:
    return name.startswith(".") or name.lower() in SYSTEM_FOLDERS


def _stat_entry(path: str, dir_entry: os.DirEntry | None = None) -> _Entry:
    try:
        st = dir_entry.stat() if dir_entry is not None else os.stat(path)
        return path, st.st_size, st.st_mtime_ns
    except OSError:
        return path, -1, 0


def _walk_files(folder: str) -> tuple[list[_Entry], list[tuple[str, str]]]:
    """Every file under ``folder`` (sorted by path) and the hidden/system ones left out."""
    files: list[_Entry] = []
    skipped: list[tuple[str, str]] = []
    stack = [folder]
    seen: set[tuple[int, int]] = set()  # (device, inode): symlinked folders can form loops
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError as exc:
            log.debug("cannot list %s: %s", current, exc)
            skipped.append((current, SKIP_UNREADABLE))
            continue
        for entry in entries:
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                if _is_system_folder(entry.name):
                    skipped.append((entry.path, SKIP_SYSTEM))
                    continue
                try:
                    st = entry.stat()
                except OSError:
                    skipped.append((entry.path, SKIP_UNREADABLE))
                    continue
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    stack.append(entry.path)
            elif _is_system(entry.name):
                skipped.append((entry.path, SKIP_SYSTEM))
            else:
                files.append(_stat_entry(entry.path, entry))
    files.sort()
    skipped.sort()
    return files, skipped


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

@dataclasses.dataclass(frozen=True)
class _Options:
    val_split: float
    test_split: float
    seed: int
    min_per_class: int
    drop_small_classes: bool
    cache_dir: str | os.PathLike | None
    workers: int | None
    dry_run: bool


_LOAD_DEFAULTS: dict[str, Any] = dict(
    val_split=0.2, test_split=0.0, seed=42, min_per_class=DEFAULT_MIN_PER_CLASS,
    drop_small_classes=False, cache_dir=None, workers=None, dry_run=False)


def _options(val_split: float, test_split: float, seed: int, min_per_class: int,
             drop_small_classes: bool, cache_dir, workers, dry_run) -> _Options:
    if not 0 < val_split < 1:
        raise ConfigError(f"val_split must be in (0, 1); got {val_split!r}")
    if not 0 <= test_split < 1 or val_split + test_split >= 1:
        raise ConfigError(f"test_split must be in [0, 1) with val_split + test_split < 1; got "
                        f"test_split={test_split!r}, val_split={val_split!r}")
    if min_per_class < 1:
        raise ConfigError(f"min_per_class must be at least 1; got {min_per_class!r}")
    return _Options(val_split, test_split, seed, min_per_class, drop_small_classes, cache_dir,
                    workers, dry_run)


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
        return _assemble(source, str(root), groups, skipped, options, pool, start)


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
    if rows and [c.strip().lower() for c in rows[0][1][:2]] == ["path", "label"]:
        rows = rows[1:]
    with_split = bool(rows) and all(len(row) >= 3 and row[2].strip() for _, row in rows)
    groups: dict[str, dict[str, list[_Entry]]] = {}
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()
    for line, row in rows:
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise DataError(f"{str(csv_file)}:{line}: expected 'path,label', got {row!r}")
        path = str(csv_file.parent / row[0].strip())
        split = row[2].strip().lower() if with_split else "all"
        if split not in (*SPLIT_FOLDERS, "all"):
            raise DataError(f"{str(csv_file)}:{line}: split must be one of {SPLIT_FOLDERS}, "
                            f"got {row[2]!r}")
        if path in seen:
            skipped.append((path, SKIP_DUPLICATE))
            continue
        seen.add(path)
        entry = _stat_entry(path)
        if entry[1] < 0 and not os.path.lexists(path):
            skipped.append((path, SKIP_MISSING))
            continue
        groups.setdefault(split, {}).setdefault(_class_name(row[1].strip()), []).append(entry)
    if with_split and "train" not in groups:
        raise DataError(f"{str(csv_file)!r} has a split column but no 'train' rows")
    groups = {split: dict(sorted(classes.items())) for split, classes in groups.items()}
    with concurrent.futures.ThreadPoolExecutor(workers or default_workers()) as pool:
        return _assemble(str(csv_file), str(csv_file.parent), groups, skipped, options, pool,
                         start)


def _assemble(source: str, root: str, groups: dict[str, dict[str, list[_Entry]]],
              skipped: list[tuple[str, str]], options: _Options,
              pool: concurrent.futures.Executor, start: float) -> ImageFolderData:
    """Check every listed file, choose the classes, split, and report."""
    report = DataReport(source=source, root=root)
    entries = [e for classes in groups.values() for files in classes.values() for e in files]
    results, report.from_cache = check_files(entries, cache_dir=options.cache_dir,
                                             write_images=not options.dry_run, pool=pool)
    report.files_checked = len(entries) + len(skipped)
    notes: collections.Counter[str] = collections.Counter()
    usable: dict[str, dict[str, list[tuple[str, dict]]]] = {}
    for split, classes in groups.items():
        usable[split] = {}
        for name, files in classes.items():
            kept = usable[split][name] = []
            for path, _, _ in files:
                result = results[path]
                if result["reason"] is None:
                    kept.append((path, result))
                    notes.update(result["notes"])
                else:
                    skipped.append((path, result["reason"]))
    report.skipped = sorted(skipped)
    report.notes = dict(notes.most_common())

    pool_split = "train" if "train" in usable else "all"
    present = {name: files for name, files in usable[pool_split].items()
               if groups[pool_split][name]}
    for name, files in usable[pool_split].items():
        if not groups[pool_split][name]:
            report.dropped_classes[name] = "no files"
            log.warning("skipping class folder %r: it holds no files", name)
    needs = 1 + ("val" not in usable) + ("test" not in usable and options.test_split > 0)
    minimum = max(options.min_per_class, needs)
    small = {name: len(files) for name, files in present.items() if len(files) < minimum}
    if small and not options.drop_small_classes:
        report.class_counts = {name: len(files) for name, files in present.items()}
        report.seconds = time.perf_counter() - start
        listed = ", ".join(f"{name!r} has {n}" for name, n in small.items())
        where = " in train/" if pool_split == "train" else ""
        raise _error(
            f"class{'es' if len(small) > 1 else ''} below the minimum of {minimum} usable "
            f"images{where}: {listed}; add images, or drop "
            f"{'them' if len(small) > 1 else 'it'} with --drop-small-classes "
            f"(drop_small_classes=True)", report)
    for name, n in small.items():
        report.dropped_classes[name] = f"{n} usable image(s), fewer than {minimum}"
        log.warning("dropping class %r: %d usable image(s), fewer than %d", name, n, minimum)
    class_names = tuple(name for name in present if name not in small)
    report.class_counts = {name: sum(len(usable[s].get(name, ())) for s in usable)
                           for name in class_names}
    report.seconds = time.perf_counter() - start
    if len(class_names) < 2:
        skipped_note = (f"; {len(skipped)} file(s) were skipped "
                        f"({', '.join(f'{n} {r}' for r, n in report.reason_counts.items())})"
                        if skipped else "")
        if SKIP_OUTSIDE in report.reason_counts:
            skipped_note += "; images belong in one sub-folder per class"
        found = ", ".join(f"{n}: {c}" for n, c in report.class_counts.items()) or "none"
        raise _error(
            f"{source!r} needs at least 2 classes with usable images; found "
            f"{len(class_names)} ({found}){skipped_note}; run 'zoo data check {source}' to "
            f"see every file", report)
    for split in usable:
        extra = sorted(name for name, files in usable[split].items()
                       if files and name not in class_names and name not in small
                       and name not in report.dropped_classes)
        if extra:
            raise _error(f"{str(Path(root) / split)!r} has classes not in train/: "
                         f"{', '.join(extra)}", report)

    label_of = {name: i for i, name in enumerate(class_names)}
    splits = _split(usable, label_of, options)
    report.split_counts = {
        name: dict(zip(class_names, split.class_counts(len(class_names))))
        for name, split in splits.items()}
    if not len(splits["val"]):
        raise _error(f"{str(Path(root) / 'val')!r} holds no usable images of the classes in "
                     f"train/", report)
    return ImageFolderData(root=root, class_names=class_names, train=splits["train"],
                           val=splits["val"], test=splits.get("test"), report=report)


def _split(usable: dict[str, dict[str, list[tuple[str, dict]]]], label_of: dict[str, int],
           options: _Options) -> dict[str, Split]:
    """Given splits as they are; the rest drawn per class from the pool with a seeded RNG."""
    pool_split = "train" if "train" in usable else "all"
    rows: dict[str, list[tuple[str, int, dict]]] = {name: [] for name in SPLIT_FOLDERS}
    for split in ("val", "test"):
        for name, files in usable.get(split, {}).items():
            rows[split] += [(p, label_of[name], r) for p, r in files if name in label_of]
    draw_val = "val" not in usable
    draw_test = "test" not in usable and options.test_split > 0
    rng = np.random.default_rng(options.seed)
    for name, label in label_of.items():
        files = usable[pool_split][name]
        n = len(files)
        order = rng.permutation(n) if draw_val or draw_test else np.arange(n)
        n_val = min(max(1, round(n * options.val_split)), n - 1 - draw_test) if draw_val else 0
        n_test = min(max(1, round(n * options.test_split)), n - 1 - n_val) if draw_test else 0
        for rank, index in enumerate(order):
            target = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
            path, result = files[index]
            rows[target].append((path, label, result))
    splits = {}
    for name in SPLIT_FOLDERS:
        if name == "test" and not rows["test"] and "test" not in usable:
            continue
        items = rows[name]
        splits[name] = Split(
            paths=tuple(p for p, _, _ in items), labels=tuple(y for _, y, _ in items),
            sources=tuple(r.get("source", p) for p, _, r in items),
            orientations=tuple(r["orientation"] for _, _, r in items))
    return splits


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


# ---- tf.data --------------------------------------------------------------------------------

def decode_rgb(contents):
    """Encoded image bytes to uint8 RGB, JPEGs with the accurate DCT (as Pillow decodes them)."""
    import tensorflow as tf

    return tf.cond(
        tf.io.is_jpeg(contents),
        lambda: tf.io.decode_jpeg(contents, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(contents, channels=3, expand_animations=False))


def orient_image(image, orientation):
    """Apply an EXIF orientation (1-8) as ``ImageOps.exif_transpose`` does."""
    import tensorflow as tf

    transpose = tf.image.transpose
    branches = [
        lambda: image,                                   # 0: not an orientation
        lambda: image,                                   # 1: as stored
        lambda: tf.image.flip_left_right(image),         # 2: mirrored
        lambda: tf.image.rot90(image, 2),                # 3: upside down
        lambda: tf.image.flip_up_down(image),            # 4: mirrored upside down
        lambda: transpose(image),                        # 5: transposed
        lambda: tf.image.rot90(image, 3),                # 6: rotated 90 clockwise to view
        lambda: tf.image.rot90(transpose(image), 2),     # 7: transversed
        lambda: tf.image.rot90(image, 1),                # 8: rotated 90 counter-clockwise
    ]
    return tf.switch_case(tf.clip_by_value(tf.cast(orientation, tf.int32), 0, 8), branches)


def decode_and_resize(contents, image_size: int):
    """Encoded image bytes to a float32 ``(size, size, 3)`` tensor of 0-255 pixels."""
    return resize_images(decode_rgb(contents), image_size)


def resize_images(images, image_size: int):
    """Bilinear resize of uint8 or float 0-255 images; the same op in training and serving."""
    import tensorflow as tf

    return tf.image.resize(tf.cast(images, tf.float32), (image_size, image_size),
                           method="bilinear")


def _ensure_normalized(split: Split) -> None:
    """Re-create normalised PNGs that were removed from the cache since the check."""
    for path, source in zip(split.paths, split.sources):
        if source != path and not os.path.exists(source):
            from PIL import Image

            log.info("re-creating the normalised copy of %s", path)
            _save_png(Image.fromarray(load_normalized(path)), Path(source))


def split_loader(split: Split, *, image_size: int):
    """A function ``i -> image`` (float32, resized) for an int tensor index into ``split``.

    For pipelines that index a split themselves; it reads the same sources and applies the same
    orientations as :func:`image_dataset`.
    """
    import tensorflow as tf

    _ensure_normalized(split)
    sources = tf.constant(list(split.sources or split.paths))
    if not any(o != 1 for o in split.orientations):
        return lambda i: decode_and_resize(tf.io.read_file(tf.gather(sources, i)), image_size)
    orientations = tf.constant(list(split.orientations), tf.int32)
    return lambda i: resize_images(orient_image(decode_rgb(tf.io.read_file(tf.gather(sources, i))),
                                                tf.gather(orientations, i)), image_size)


def image_dataset(split: Split, *, image_size: int):
    """An unbatched ``tf.data.Dataset`` of ``(image, label)``, in split order.

    Reads each file's source (the file, or its normalised PNG), decodes it as Pillow does,
    applies its EXIF orientation and resizes bilinearly. A file that fails to decode anyway
    (changed since the check) is dropped with a logged warning instead of ending training.
    """
    import tensorflow as tf

    if not split.paths:
        raise DataError("cannot build a dataset from an empty split")
    load = split_loader(split, image_size=image_size)
    labels = tf.constant(list(split.labels), tf.int32)
    ds = tf.data.Dataset.range(len(split))
    ds = ds.map(lambda i: (load(i), tf.gather(labels, i)), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True)
    return ds.ignore_errors(log_warning=True)


def make_dataset(split: Split, *, image_size: int, batch_size: int, shuffle: bool = False,
                 seed: int = 42, cache: bool = True, cache_max_bytes: int = 2 << 30):
    """A batched ``tf.data.Dataset`` of ``(images, labels)`` from a split.

    Decoding runs in parallel. With ``cache``, decoded images are kept in memory after the first
    epoch when they fit in ``cache_max_bytes`` (float32 pixels); larger splits are decoded again
    each epoch rather than filling memory. Shuffling happens after the cache, so each epoch
    sees a new order.
    """
    import tensorflow as tf

    ds = image_dataset(split, image_size=image_size)
    if cache:
        needed = len(split) * image_size * image_size * 3 * 4
        if needed <= cache_max_bytes:
            ds = ds.cache()
        else:
            log.info("not caching decoded images in memory: %.1f GiB > %.1f GiB",
                     needed / 2**30, cache_max_bytes / 2**30)
    if shuffle:
        ds = ds.shuffle(len(split.paths), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def class_weights(counts: Sequence[int]) -> dict[int, float]:
    """Inverse-frequency weights, normalised so that the average weight per sample is 1."""
    counts_arr = np.asarray(counts, dtype=np.float64)
    total, k = counts_arr.sum(), len(counts_arr)
    return {i: float(total / (k * c)) if c else 0.0 for i, c in enumerate(counts_arr)}


def imbalance_ratio(counts: Sequence[int]) -> float:
    nonzero = [c for c in counts if c]
    return max(nonzero) / min(nonzero) if nonzero else 1.0
