"""Checking every file once, caching the results, and the normalised pixels of an image.

**Checking.** Every file is checked once, up front, by a thread pool: Pillow decodes it fully
(``load()``, not just ``verify()``). Threads, not processes: Pillow releases the GIL while it
decodes, a process forked after TensorFlow started is unsafe, and a spawned one imports
TensorFlow again (6-10 s per worker, measured by ``benchmarks/bench_data.py``). Results are
cached in SQLite keyed by (path, size, mtime), so a second run over the same folder re-checks
nothing. Unusable files (empty, truncated, not an image, system files...) are skipped and named,
with the reason, in a :class:`~transfer.data.reports.DataReport`.

**What an image means.** The pixels of a file are Pillow's decode with the EXIF orientation
applied (``ImageOps.exif_transpose``), as 8-bit RGB: grayscale and palette images are expanded,
16-bit images keep their high byte (``v >> 8``, which is also what Pillow does with 48-bit RGB
and TensorFlow with 16-bit PNG), CMYK is converted, an animation gives its first frame, and
**transparency is composited on white** (a screenshot or logo then looks as it does on a page;
on black, dark text on a transparent background would vanish). :func:`load_normalized` returns
exactly these pixels. A usable file that TensorFlow cannot decode to these pixels is written
once, while it is checked, as a lossless PNG in the cache directory (see
:mod:`transfer.data.pipelines`).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from transfer.data.reports import (
    SKIP_CORRUPT,
    SKIP_EMPTY,
    SKIP_NOT_IMAGE,
    SKIP_TOO_LARGE,
    SKIP_TRUNCATED,
    SKIP_UNREADABLE,
)

log = logging.getLogger(__name__)

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

#: Formats Pillow may identify a file as (JPEG includes MPO, the multi-picture JPEG of many
#: phones); anything else is "not an image". Limiting the list keeps Pillow from taking random
#: bytes for a header-less format such as TGA.
PILLOW_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "DIB", "TIFF", "WEBP", "PPM")

CHECK_VERSION = 1  # bump when checking or normalising changes, to invalidate caches
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


def _stat_entry(path: str, dir_entry: os.DirEntry | None = None) -> _Entry:
    try:
        st = dir_entry.stat() if dir_entry is not None else os.stat(path)
        return path, st.st_size, st.st_mtime_ns
    except OSError:
        return path, -1, 0


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
    (then resized); see :mod:`transfer.data.pipelines`.
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


def _size_problem(size: int) -> dict | None:
    """The check result of a file that cannot be read (stat failed) or is empty."""
    if size < 0:
        return {"reason": SKIP_UNREADABLE}
    if size == 0:
        return {"reason": SKIP_EMPTY}
    return None


def _check_one(entry: _Entry, image_dir: Path | None) -> dict:
    """Decode one file with Pillow; return the JSON-able result (``reason`` None when usable).

    Usable files that TensorFlow cannot decode to the normalised pixels are written to
    ``image_dir`` as PNG (unless it is None: a dry run).
    """
    path, size, _ = entry
    if (problem := _size_problem(size)) is not None:
        return problem
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
