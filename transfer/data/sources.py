"""Listing image files, for every task's readers.

Hidden and system files
and folders (``.DS_Store``, ``Thumbs.db``, ``__MACOSX``...) are never images; listing leaves
them out, and :func:`list_image_files` is the one place that walks a folder for image files.
Symlinks are followed, but a file reached twice (a symlinked folder or file pointing into
another class, or from ``val/`` into ``train/``) is used once: the copy not reached through a
link is kept, the others are skipped as :data:`SKIP_LINKED` with a warning, so one file is never
in two classes or two splits.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

from transfer.data.checks import (
    _Entry,
    _stat_entry,
)
from transfer.data.reports import (
    SKIP_SYSTEM,
    SKIP_UNREADABLE,
)
from transfer.data.splits import (
    ImageFolderData,
)
from transfer.errors import DataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
SYSTEM_FILES = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini", "icon\r"})
SYSTEM_FOLDERS = frozenset({"__macosx", "@eadir", "$recycle.bin", "system volume information"})


# ---- listing --------------------------------------------------------------------------------

def _is_system(name: str) -> bool:
    return name.startswith(".") or name.lower() in SYSTEM_FILES


def _is_system_folder(name: str) -> bool:
    return name.startswith(".") or name.lower() in SYSTEM_FOLDERS


def _walk(folder: str) -> tuple[list[os.DirEntry], list[tuple[str, str]]]:
    """Every file under ``folder`` (unsorted) and the hidden/system ones left out (sorted).

    Symlinked folders are followed, each folder once.
    """
    files: list[os.DirEntry] = []
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
                files.append(entry)
    skipped.sort()
    return files, skipped


def _walk_files(folder: str) -> tuple[list[_Entry], list[tuple[str, str]]]:
    """Every file under ``folder`` (sorted by path) and the hidden/system ones left out."""
    files, skipped = _walk(folder)
    return sorted(_stat_entry(entry.path, entry) for entry in files), skipped


def list_image_files(folder: str | os.PathLike, *,
                     suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[str]:
    """The image files under ``folder``, recursively, sorted by path: the one folder walk.

    Files are chosen as training lists them (hidden and system files and folders left out,
    symlinked folders followed once), then by suffix (case-insensitive); nothing is opened.
    Paths are joined as :mod:`pathlib` joins them (``./imgs/`` gives ``imgs/a.jpg``).

    Args:
        folder: the folder to search.
        suffixes: lowercase suffixes, with the dot, of the files to keep.

    Raises:
        DataError: ``folder`` does not exist or is not a folder.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"data folder {str(root)!r} does not exist or is not a folder")
    files, _ = _walk(os.fspath(root))
    return sorted(str(Path(entry.path)) for entry in files
                  if Path(entry.name).suffix.lower() in suffixes)


def changes_since(data: ImageFolderData, skipped: Sequence[str] = ()
                  ) -> tuple[list[str], list[str]]:
    """Files of ``data``'s splits that are gone, and image files under its root folder that
    it neither uses nor skipped (``skipped``: the report's paths); both sorted. Added files are
    looked for in class folders only (a segmentation split may point at normalised masks)."""
    splits = [s for s in (data.train, data.val, data.test) if s is not None]
    listed = [p for s in splits for p in (*s.paths, *s.masks)]
    missing = sorted(p for p in listed if not os.path.exists(p))
    added: list[str] = []
    if Path(data.root).is_dir() and not any(s.masks for s in splits):
        known = {os.path.abspath(p) for p in (*listed, *skipped)}
        added = [p for p in list_image_files(data.root) if os.path.abspath(p) not in known]
    return missing, added
