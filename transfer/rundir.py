"""The run directory and the input contract: the one owner of what a training run leaves behind.

A run directory holds::

    config.json        the TrainConfig used
    contract.json      the input contract (task, image size, channels, preprocessing, classes)
    class_names.json   class names in label order
    split.json         the exact train/val(/test) files, so evaluation reuses them
    data_report.json   files skipped and why
    model.keras        the trained model (raw 0-255 images in)
    saved_model/       the SavedModel export (see transfer.serving)
    history.json/.csv  every metric of every epoch, with the phase it belongs to
    metrics.json       the final evaluation on the validation (and test) split
    checkpoint/        the state after the last finished epoch, for ``--resume``
    features/          an on-disk backbone-feature cache (removed when the run finishes)
    logs/              TensorBoard logs

:class:`RunDir` knows these paths, decides whether a folder is a run directory, loads the model
in Keras safe mode and reads and writes the JSON files, each write atomic (:func:`atomic_write`).
:class:`InputContract` is resolved once when training starts and written into the run; export,
predict, the model card, the visualisations and the report read it from there.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import importlib
import json
import logging
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Mapping, Sequence

from transfer import outputs
from transfer.errors import ConfigError, RunDirError

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
# What --trust-model means, said once per file a process loads with it.
TRUST_WARNING = ("loading {path!r} with --trust-model (Keras safe_mode=False): arbitrary code in "
                 "the file, e.g. a Lambda layer, will run; use it only for files you trust")
_trusted: set[str] = set()

# What a run directory holds by its layout (the docstring above), as :mod:`transfer.outputs`
# recognises a run the toolkit wrote; files written later are claimed one by one.
outputs.register_layout("run", (
    "config.json", "contract.json", "class_names.json", "split.json", "data_report.json",
    MODEL_FILE, "saved_model", "history.json", "history.csv", "metrics.json", "checkpoint",
    "features", "logs", "MODEL_CARD.md", "report.html", "confusion_matrix.png", "mistakes.png"))


def atomic_write(path: str | os.PathLike, data: str | bytes | Callable[[BinaryIO], Any]) -> Path:
    """Write ``data`` to ``path`` through a temporary sibling and a rename, so a crash leaves
    either the old file or the new one, never half of one. ``data`` is text, bytes, or a
    function that writes into the open binary file (``lambda f: np.savez(f, ...)``).

    In a folder the toolkit made, the file is claimed as the toolkit's (:func:`outputs.claim`).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    outputs.claim(path)
    return path


class atomic_output:
    """Context manager yielding a temporary sibling path that is renamed to ``path`` on success.

    An existing ``path`` is replaced only with ``force`` and only when it is the toolkit's
    (:func:`outputs.check_output`).
    """

    def __init__(self, path: str | os.PathLike, *, force: bool = False):
        self.path = Path(path)
        self.force = force

    def __enter__(self) -> Path:
        outputs.check_output(self.path, replace=self.force)
        make_folder(self.path.parent)
        self.tmp_dir = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                             dir=self.path.parent))
        return self.tmp_dir / self.path.name

    def __exit__(self, exc_type, exc, tb) -> None:
        written = self.tmp_dir / self.path.name
        try:
            if exc_type is None:
                if self.path.exists():
                    backup = self.tmp_dir / "previous"
                    os.rename(self.path, backup)
                os.rename(written, self.path)
        finally:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)


def make_folder(folder: str | os.PathLike, option: str = "output",
                kind: str | None = None) -> Path:
    """Create ``folder`` (and its parents) and check that files can be written in it; with
    ``kind``, a folder that was missing or empty is marked as the toolkit's
    (:func:`outputs.mark_folder`), so that a re-run may replace what it wrote there.

    Raises:
        RunDirError: naming the folder and ``--option``, when it cannot be made (a file in its
            path, a read-only file system) or written to.
    """
    folder = Path(folder)
    new = not folder.is_dir() or not any(folder.iterdir())
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"{option} {str(folder)!r} cannot be created: "
                          f"{_why_not_created(folder, exc)}; choose another --{option}"
                          ) from None
    try:  # a read-only file system, or no write permission, would fail at the first write
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".zoo-write-check.")
    except OSError as exc:
        raise RunDirError(f"{option} {str(folder)!r} is not writable ({exc.strerror or exc}); "
                          f"choose another --{option}") from None
    os.close(fd)
    os.unlink(probe)
    if kind is not None and new:
        outputs.mark_folder(folder, kind)
    return folder


def _why_not_created(path: Path, exc: OSError) -> str:
    blocker = next((p for p in (path, *path.parents) if p.exists()), None)
    if blocker == path and not path.is_dir():
        return "a file of that name exists"
    if blocker is not None and not blocker.is_dir():
        return f"{str(blocker)!r} is a file, not a folder"
    return exc.strerror or str(exc)


def write_json(path: str | os.PathLike, data: Any, *, indent: int | None = 2) -> Path:
    return atomic_write(path, json.dumps(data, indent=indent, ensure_ascii=False) + "\n")


def import_custom_objects(modules: str | Sequence[str]) -> list[str]:
    """Import the modules that define a model's custom layers, so that the layers they register
    (``@keras.saving.register_keras_serializable``) load; ``modules`` is a sequence of dotted
    names or comma-separated text (``--custom-objects``). Returns the names imported.

    Raises:
        ConfigError: naming the first module that cannot be imported.
    """
    names = [name.strip() for item in ([modules] if isinstance(modules, str) else modules)
             for name in str(item).split(",") if name.strip()]
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001  - any failure of the user's module is theirs
            raise ConfigError(f"--custom-objects module {name!r} cannot be imported "
                              f"({_first_line(exc)}); pass a dotted module name that is on "
                              f"the Python path (PYTHONPATH)") from None
    return names


def load_keras_model(path: str | os.PathLike, *, trust_model: bool = False) -> keras.Model:
    """Load a ``.keras`` file in Keras safe mode, with the zoo's layers registered.

    Args:
        path: the ``.keras`` file.
        trust_model: load with ``safe_mode=False``, so that code in the file (a Lambda layer)
            runs; a warning saying so is logged once per file. Only for files you trust.

    Raises:
        ConfigError: the file is missing, holds arbitrary code (a Lambda layer) and
            ``trust_model`` is false, uses a layer class nobody registered, or is no Keras
            model.
    """
    import keras

    import zoo  # noqa: F401  (registers the layers older models use)

    if not Path(path).is_file():
        raise ConfigError(f"model file {str(path)!r} does not exist")
    # Keras reports a file that is no zip archive as "File not found"; it is there, damaged.
    if Path(path).suffix == ".keras" and not zipfile.is_zipfile(path):
        size = Path(path).stat().st_size
        raise ConfigError(f"model file {str(path)!r} is damaged or not a .keras file ("
                          f"{'it is empty' if not size else f'{size:,} bytes, not a zip archive'}"
                          f"); export it or train it again")
    if trust_model and str(Path(path).resolve()) not in _trusted:
        _trusted.add(str(Path(path).resolve()))
        log.warning(TRUST_WARNING.format(path=str(path)))
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=not trust_model)
    except (TypeError, ValueError) as exc:
        unknown = re.search(r"Could not locate class '([^']+)'", str(exc))
        if unknown:
            registered = re.search(
                rf"'registered_name': '([^']*>{re.escape(unknown.group(1))})'", str(exc))
            also = f" ({registered.group(1)!r})" if registered else ""
            raise ConfigError(
                f"model file {str(path)!r} uses the layer class {unknown.group(1)!r}{also}, "
                f"which is not part of Keras or this toolkit; pass --custom-objects MODULE "
                f"naming the module that defines and registers it, or rebuild the model from "
                f"Keras's own layers") from None
        if not trust_model and ("safe_mode" in str(exc) or "lambda" in str(exc).lower()):
            raise ConfigError(
                f"model file {str(path)!r} holds arbitrary code (a Lambda layer), which is "
                f"refused in safe mode; if you trust its source, pass --trust-model "
                f"(Python: trust_model=True) to run it") from None
        raise ConfigError(f"model file {str(path)!r} cannot be loaded: "
                          f"{_first_line(exc)}") from exc
    except (OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"model file {str(path)!r} is damaged or not a .keras file "
                          f"({_first_line(exc)}); export it or train it again") from None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


@dataclasses.dataclass(frozen=True)
class InputContract:
    """What a trained model takes and gives, resolved once when training starts.

    Attributes:
        task: ``"classification"`` (the task whose head, loss and outputs the model has).
        image_size: the square side the model's input is resized to.
        channels: channels the backbone consumes (1 for grayscale backbones such as LeNet-5);
            every model still takes raw 0-255 RGB images.
        preprocessing: the backbone's preprocessing mode, applied inside the model.
        class_names: class names in label order; the outputs follow it.
        options: the task's own settings that decide how its outputs are read (segmentation:
            ``ignore_index``; see :meth:`transfer.tasks.Task.contract_options`), written as
            ``task_options`` in ``contract.json``.
    """

    task: str
    image_size: int
    channels: int
    preprocessing: str
    class_names: tuple[str, ...]
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def ignore_index(self) -> int | None:  # the name callers knew before task options
        return self.options.get("ignore_index")

    def to_dict(self) -> dict[str, Any]:
        data = {**dataclasses.asdict(self), "class_names": list(self.class_names)}
        del data["options"]
        if self.options:
            data["task_options"] = dict(self.options)
        return data

    def task_options(self) -> dict[str, Any]:
        """What :func:`transfer.tasks.get_task` needs besides the task's name."""
        return dict(self.options)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputContract:
        options = dict(data.get("task_options") or {})
        if data.get("ignore_index") is not None:  # contracts written before task options
            options.setdefault("ignore_index", data["ignore_index"])
        return cls(task=data.get("task", "classification"), image_size=int(data["image_size"]),
                   channels=int(data.get("channels", 3)),
                   preprocessing=str(data.get("preprocessing", "unknown")),
                   class_names=tuple(str(n) for n in data["class_names"]), options=options)

    @classmethod
    def of_model(cls, model: keras.Model, class_names: Sequence[str] | None = None,
                 task: str = "classification", *,
                 source: str | os.PathLike | None = None) -> InputContract:
        """The contract of a loaded model (for ``.keras`` files without a ``contract.json``).

        Raises:
            RunDirError: the model is not one the toolkit can serve: one input of square RGB
                images of a fixed size, one output (class scores, or score maps for
                segmentation); ``source`` names the file in the message.
        """
        shape = model.input_shape
        if source is not None:
            _check_servable(model, source, task)
        if isinstance(shape, list) or len(shape) != 4 or shape[1] is None:
            raise RunDirError(f"model {model.name!r} does not take images of a fixed size "
                              f"(input shape {shape})")
        mode, channels = "unknown", int(shape[-1])
        names = {layer.name: layer for layer in model.layers}
        if "preprocess" in names:  # classifiers written before the zoo's models preprocessed
            pre = names["preprocess"]
            mode, channels = getattr(pre, "mode", mode), getattr(pre, "channels", channels)
        elif "rgb_to_gray" in names:
            channels = 1
        outputs = int(model.output_shape[-1])
        names = tuple(class_names) if class_names else tuple(str(i) for i in range(outputs))
        return cls(task, int(shape[1]), int(channels), str(mode), names)


def _check_servable(model: keras.Model, source: str | os.PathLike, task: str) -> None:
    """Refuse, naming the file, a model the serving functions cannot feed or read."""
    inputs, outputs = model.inputs, model.outputs
    shape = tuple(inputs[0].shape) if len(inputs) == 1 else None
    out = tuple(outputs[0].shape) if len(outputs) == 1 else None
    if len(inputs) != 1:
        what = f"it has {len(inputs)} inputs"
    elif len(shape) != 4:
        what = f"its input has shape {shape}"
    elif shape[1] is None or shape[2] is None or shape[1] != shape[2]:
        what = f"its input has shape {shape}, not a fixed square size"
    elif shape[3] != 3 and not any(layer.name in ("preprocess", "rgb_to_gray")
                                   for layer in model.layers):
        what = f"it takes {shape[3]}-channel images"
    elif len(outputs) != 1:
        what = f"it has {len(outputs)} outputs"
    elif len(out) != (4 if task == "segmentation" else 2):
        what = f"its output has shape {out}"
    else:
        return
    raise RunDirError(
        f"model file {str(source)!r} is not an image classifier this toolkit can serve: {what}; "
        f"pass a run directory of 'zoo train', or a .keras classifier taking square RGB images "
        f"and giving one vector of class scores")


class RunDir:
    """A run directory: its paths, its files, its model.

    Use :meth:`create` for a new run, :meth:`open` for an existing one (validated), and
    :meth:`source` for what commands accept as ``RUN_DIR_OR_MODEL``.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # ---- paths ------------------------------------------------------------------------------
    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def saved_model_dir(self) -> Path:
        return self.path / "saved_model"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoint"

    @property
    def features_dir(self) -> Path:
        return self.path / "features"

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    # ---- opening ----------------------------------------------------------------------------
    @staticmethod
    def is_run_dir(path: str | os.PathLike) -> bool:
        """A folder with a trained model in it."""
        return (Path(path) / MODEL_FILE).is_file()

    @staticmethod
    def check_new(path: str | os.PathLike, *, overwrite: bool = False,
                  data: str | os.PathLike | None = None,
                  reads: Sequence[tuple[str | os.PathLike, str]] = ()) -> None:
        """Refuse a run directory that would lose anything: one that is, contains or lies
        inside ``data``, is or contains what the run ``reads``, or exists and is not empty
        without ``overwrite``, or with it but holding anything the toolkit did not write."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunDirError(f"output {str(path)!r} exists and is not a folder")
        if path.is_dir() and any(path.iterdir()) and not overwrite:
            hint = (f", or continue it with: zoo train --resume {path}"
                    if RunDir(path).resumable() else "")
            raise RunDirError(
                f"run directory {str(path)!r} already exists and is not empty; choose "
                f"another --output, pass --overwrite to replace it{hint}")
        outputs.check_output(path, replace=overwrite, flag="--overwrite", data=data,
                             reads=reads, what="run directory")

    @classmethod
    def create(cls, path: str | os.PathLike, *, overwrite: bool = False,
               data: str | os.PathLike | None = None,
               reads: Sequence[tuple[str | os.PathLike, str]] = ()) -> RunDir:
        """A new, empty run directory, marked as the toolkit's (:mod:`transfer.outputs`).

        An existing non-empty one is replaced only with ``overwrite``, and only when everything
        in it is the toolkit's (:meth:`check_new`).
        """
        cls.check_new(path, overwrite=overwrite, data=data, reads=reads)
        run = cls(path)
        if run.path.is_dir() and any(run.path.iterdir()):
            try:
                outputs.clear(run.path)
            except OSError as exc:
                raise RunDirError(f"output {str(run.path)!r} cannot be replaced "
                                  f"({exc.strerror or exc}); choose another --output") from None
        make_folder(run.path)
        outputs.mark_folder(run.path, "run")
        return run

    @classmethod
    def open(cls, path: str | os.PathLike) -> RunDir:
        """An existing run directory with a trained model."""
        if not cls.is_run_dir(path):
            raise RunDirError(f"{str(path)!r} is not a run directory: it has no {MODEL_FILE}; "
                              f"pass the --output folder of 'zoo train'")
        return cls(path)

    def resumable(self) -> bool:
        """Whether ``zoo train --resume`` can continue this run: it was started (config.json and
        split.json are written) and has not finished."""
        if not ((self / "config.json").is_file() and (self / "split.json").is_file()):
            return False
        state = self.checkpoint_dir / "state.json"
        try:
            return not (state.is_file() and json.loads(state.read_text()).get("finished"))
        except (OSError, ValueError, AttributeError):
            return False

    @classmethod
    def open_for_resume(cls, path: str | os.PathLike) -> RunDir:
        run = cls(path)
        if not (run / "config.json").is_file() or not (run / "split.json").is_file():
            raise RunDirError(f"{str(path)!r} is not a run directory (no config.json/split.json)")
        return run

    @staticmethod
    def source(source: str | os.PathLike) -> tuple[RunDir | None, Path]:
        """What a ``RUN_DIR_OR_MODEL`` argument names: ``(run directory or None, model file)``.

        A ``.keras`` file whose folder holds a ``class_names.json`` is read with that folder's
        files (its class names, contract and split), as a run directory without ``model.keras``.
        """
        path = Path(source)
        if RunDir.is_run_dir(path):
            return RunDir(path), path / MODEL_FILE
        if path.is_file() and path.suffix == ".keras":
            folder = RunDir(path.parent)
            return (folder if (folder / "class_names.json").is_file() else None), path
        if (path / "saved_model.pb").is_file():
            raise RunDirError(f"{str(path)!r} is a SavedModel folder; this needs the run "
                              f"directory that holds {MODEL_FILE}, or a .keras file")
        raise RunDirError(f"{str(path)!r} is not a run directory (no {MODEL_FILE}) or a .keras "
                          f"file; pass the --output folder of 'zoo train'")

    # ---- files ------------------------------------------------------------------------------
    def read_json(self, name: str, default: Any = None) -> Any:
        path = self.path / name
        if not path.is_file():
            return default
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise RunDirError(f"{str(path)!r} is not valid JSON ({exc})") from None

    def write_json(self, name: str, data: Any, *, indent: int | None = 2) -> Path:
        return write_json(self.path / name, data, indent=indent)

    def class_names(self) -> tuple[str, ...] | None:
        names = self.read_json("class_names.json")
        return tuple(str(n) for n in names) if names is not None else None

    def write_class_names(self, names: Sequence[str]) -> Path:
        return self.write_json("class_names.json", list(names), indent=None)

    def contract(self, model: keras.Model | None = None, *,
                 trust_model: bool = False) -> InputContract:
        """The run's input contract; runs written before ``contract.json`` existed have theirs
        derived from the model (loaded if not given) and their class names."""
        data = self.read_json("contract.json")
        if data is not None:
            return InputContract.from_dict(data)
        model = model if model is not None else self.load_model(trust_model=trust_model)
        contract = InputContract.of_model(model, self.class_names())
        backbone = self.read_json("config.json", {}).get("model")
        if contract.preprocessing == "unknown" and backbone:
            import zoo

            if backbone in zoo.list_models():
                contract = dataclasses.replace(
                    contract, preprocessing=zoo.get_spec(backbone).preprocessing)
        return contract

    def write_contract(self, contract: InputContract) -> Path:
        return self.write_json("contract.json", contract.to_dict())

    def metrics(self) -> dict[str, Any]:
        return self.read_json("metrics.json", {})

    def write_metrics(self, metrics: dict[str, Any]) -> Path:
        return self.write_json("metrics.json", metrics)

    def history(self) -> list[dict[str, Any]]:
        return self.read_json("history.json", [])

    def write_history(self, history: list[dict[str, Any]]) -> None:
        self.write_json("history.json", history, indent=1)
        keys = list(dict.fromkeys(k for row in history for k in row))
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
        atomic_write(self.path / "history.csv", text.getvalue())

    def load_model(self, *, trust_model: bool = False) -> keras.Model:
        return load_keras_model(self.model_path, trust_model=trust_model)
