"""What the toolkit may write over and remove: only what it can prove it wrote.

Every command that writes (train, export, predict ``--output``, report, viz, embed, lr-find)
checks its output here before it writes, and removes nothing that this module has not proved is
the toolkit's own. The proof is one of:

- **a folder's marker**: each folder the toolkit makes (a run directory, a SavedModel export, a
  predictions or figures folder) holds :data:`MARKER`, a JSON file naming the folder's kind and
  the entries written into it (:func:`claim` adds each file as it is written). A folder is the
  toolkit's when it has a marker and every entry in it is listed there, is part of its kind's
  layout (:func:`register_layout`), or is itself the toolkit's;
- **a mark inside the file**, where the format has room for one: PNG files carry a ``Software``
  text chunk (:data:`SOFTWARE`), ``.keras`` exports a ``cnn-zoo.json`` entry in their zip,
  JSON files and ``.npz`` arrays a ``written_by`` key, ONNX models a ``written_by`` entry in
  their ``metadata_props`` (read with the ``onnx`` package: without it, none is proved ours);
- **the format alone** for TFLite flatbuffers, which have no room for a mark: ``--force``
  replaces a file that is a TFLite model, and nothing else.

:func:`check_output` is the rule: an output never is or contains a path the command reads (the
data, the run or model being read), a run directory never lies inside the data, an existing
output is replaced only with the command's ``--force``/``--overwrite`` and only when it is the
toolkit's, and each refusal is one line naming the path, the entry that is not the toolkit's,
and what to do.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Iterable, Sequence

from transfer.errors import RunDirError

MARKER = ".cnn-zoo.json"
SOFTWARE = "cnn-zoo"
KERAS_MARK = "cnn-zoo.json"  # an entry of a .keras zip the toolkit exported

# The entries each kind of folder holds by its layout, so that folders written before markers
# existed, and subfolders made by other libraries (TensorBoard logs, SavedModel variables), need
# no claim per file.
_LAYOUTS: dict[str, frozenset[str]] = {
    "savedmodel": frozenset({"saved_model.pb", "variables", "assets", "fingerprint.pb",
                             "keras_metadata.pb"}),
}


def register_layout(kind: str, names: Iterable[str]) -> None:
    """Declare the entries a folder of ``kind`` holds by its layout."""
    _LAYOUTS[kind] = frozenset(names) | _LAYOUTS.get(kind, frozenset())


def _read_marker(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("written_by") == SOFTWARE else None


def _write_marker(folder: Path, data: dict) -> None:
    tmp = folder / f".{MARKER}.tmp"
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, folder / MARKER)


def mark_folder(folder: str | os.PathLike, kind: str) -> Path:
    """Make ``folder`` (created if missing) the toolkit's: write its marker, keeping the entries
    an earlier marker listed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    old = _read_marker(folder) or {}
    _write_marker(folder, {"written_by": SOFTWARE, "kind": kind, "files": old.get("files", [])})
    return folder


def mark_keras(path: str | os.PathLike) -> None:
    """Mark a ``.keras`` file as the toolkit's: an entry in its zip that Keras ignores."""
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(KERAS_MARK, json.dumps({"written_by": SOFTWARE}))


def folder_kind(folder: str | os.PathLike) -> str | None:
    """The kind in ``folder``'s marker, or ``None`` where it has none."""
    marker = _read_marker(Path(folder))
    return None if marker is None else marker.get("kind")


def claim(path: str | os.PathLike) -> None:
    """Record that the toolkit wrote ``path``, in its folder's marker (if the folder has one)."""
    path = Path(path)
    marker = _read_marker(path.parent)
    if marker is None or path.name == MARKER:
        return
    files = marker.setdefault("files", [])
    if path.name not in files:
        files.append(path.name)
        _write_marker(path.parent, marker)


def _unmarked_kind(folder: Path) -> dict | None:
    """The kind of a folder the toolkit wrote before folders carried markers: a run directory
    (a ``config.json`` of a TrainConfig) or a SavedModel; its entries are then checked against
    that kind's layout."""
    if (folder / "saved_model.pb").is_file():
        return {"kind": "savedmodel", "files": []}
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if isinstance(config, dict) and {"model", "mode"} <= config.keys():
        return {"kind": "run", "files": []}
    return None


def _is_temporary(name: str) -> bool:
    """A temporary sibling of :func:`transfer.rundir.atomic_write` or ``atomic_output``."""
    return name.startswith(".") and name.endswith(".tmp")


def _onnx_is_marked(path: Path) -> bool:
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001  - no onnx package, or not an ONNX model: not proved ours
        return False
    return any(p.key == "written_by" and p.value == SOFTWARE for p in model.metadata_props)


def _file_is_marked(path: Path) -> bool:
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return _onnx_is_marked(path)
    try:
        if suffix == ".png":
            from PIL import Image

            with Image.open(path) as image:
                return str(image.info.get("Software", "")).startswith(SOFTWARE)
        if suffix == ".keras":
            with zipfile.ZipFile(path) as archive:
                return KERAS_MARK in archive.namelist()
        if suffix == ".npz":
            with zipfile.ZipFile(path) as archive:
                return "written_by.npy" in archive.namelist()
        if suffix == ".json":
            data = json.loads(path.read_text())
            return isinstance(data, dict) and data.get("written_by") == SOFTWARE
        if suffix == ".tflite":
            with open(path, "rb") as f:
                return f.read(8)[4:8] == b"TFL3"
    except (OSError, ValueError, zipfile.BadZipFile):
        return False
    return False


def unowned(path: str | os.PathLike) -> Path | None:
    """The first entry at or under ``path`` that the toolkit cannot prove it wrote, or ``None``
    when all of ``path`` is the toolkit's (or it does not exist)."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return None
    if path.is_symlink() or not path.is_dir():
        parent = _read_marker(path.parent)
        if parent is not None and (path.name in parent.get("files", ())
                                   or path.name in _LAYOUTS.get(parent.get("kind"), ())
                                   or _is_temporary(path.name) or path.name == MARKER):
            return None
        return None if not path.is_symlink() and _file_is_marked(path) else path
    marker = _read_marker(path) or _unmarked_kind(path)
    if marker is None:
        return path
    known = set(marker.get("files", ())) | _LAYOUTS.get(marker.get("kind"), frozenset())
    for entry in sorted(path.iterdir()):
        if entry.name == MARKER or entry.name in known or _is_temporary(entry.name):
            continue
        found = unowned(entry)
        if found is not None:
            return found
    return None


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_output(path: str | os.PathLike, *, replace: bool = False, flag: str = "--force",
                 reads: Sequence[tuple[str | os.PathLike, str]] = (),
                 data: str | os.PathLike | None = None, what: str = "output") -> None:
    """Refuse an output that would lose something the toolkit did not write.

    Args:
        path: the file or folder the command is about to write.
        replace: the command's ``--force``/``--overwrite`` was given, so an existing ``path``
            may be replaced if it is the toolkit's.
        flag: that option's name, for the messages.
        reads: ``(path, description)`` of what the command reads: ``path`` may not be or
            contain any of them.
        data: the data source, inside which ``path`` may not lie either (the run would become
            part of the data).
        what: how the messages name ``path`` (``"output"``, ``"--plot"``...).

    Raises:
        RunDirError: one line naming the path, what it would lose and what to do.
    """
    target = Path(os.path.abspath(path))
    resolved = target.resolve()
    for source, description in ((data, "the data"), *reads) if data is not None else reads:
        if source is None:
            continue
        read = Path(source).resolve()
        if _within(read, resolved):
            same = "is" if read == resolved else "contains"
            raise RunDirError(f"{what} {str(path)!r} {same} {description} {str(source)!r}; "
                              f"choose a place outside it")
    if data is not None and _within(resolved, Path(data).resolve()):
        raise RunDirError(f"{what} {str(path)!r} lies inside the data {str(data)!r}, where it "
                          f"would be read as data; choose a place outside it")
    if not target.exists() and not target.is_symlink():
        return
    if target.is_dir() and not target.is_symlink() and not any(target.iterdir()):
        return
    if not replace:
        raise RunDirError(f"{what} {str(path)!r} already exists; choose another path, or pass "
                          f"{flag} to replace it")
    stranger = unowned(target)
    if stranger == target:
        raise RunDirError(f"{what} {str(path)!r} was not written by zoo, so {flag} does not "
                          f"replace it; move it away or choose another path")
    if stranger is not None:
        raise RunDirError(f"{what} {str(path)!r} holds {str(stranger.relative_to(target))!r}, "
                          f"which zoo did not write, so {flag} does not replace it; move that "
                          f"away or choose another path")


def check_file(path: str | os.PathLike) -> None:
    """Refuse to write over an existing file the toolkit cannot prove it wrote (for files that
    commands write into a folder, such as figures: a re-run replaces its own)."""
    path = Path(path)
    if (path.exists() or path.is_symlink()) and unowned(path) is not None:
        raise RunDirError(f"{str(path)!r} already exists and was not written by zoo; move it "
                          f"away or choose another output folder")


def remove(path: str | os.PathLike) -> None:
    """Remove ``path`` after proving it is the toolkit's (:func:`unowned`)."""
    path = Path(path)
    stranger = unowned(path)
    if stranger is not None:
        raise RunDirError(f"refusing to remove {str(path)!r}: {str(stranger)!r} was not "
                          f"written by zoo")
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def clear(folder: str | os.PathLike) -> None:
    """Empty ``folder`` after proving all of it is the toolkit's; the folder itself stays."""
    folder = Path(folder)
    stranger = unowned(folder)
    if stranger is not None:
        raise RunDirError(f"refusing to clear {str(folder)!r}: {str(stranger)!r} was not "
                          f"written by zoo")
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def unique_stem(folder: Path, stem: str, suffixes: tuple[str, ...]) -> str:
    """``stem``, or ``stem_2``, ``stem_3``... the first for which no ``stem + suffix`` is in
    ``folder`` yet: what a command writes per input never replaces a file already there (two
    inputs of one name, or an earlier run's outputs)."""
    candidate, n = stem, 1
    while any((Path(folder) / f"{candidate}{suffix}").exists() for suffix in suffixes):
        n += 1
        candidate = f"{stem}_{n}"
    return candidate
