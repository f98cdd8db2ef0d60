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
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Sequence

from transfer.errors import ConfigError, RunDirError

if TYPE_CHECKING:
    import keras

MODEL_FILE = "model.keras"


def atomic_write(path: str | os.PathLike, data: str | bytes | Callable[[BinaryIO], Any]) -> Path:
    """Write ``data`` to ``path`` through a temporary sibling and a rename, so a crash leaves
    either the old file or the new one, never half of one. ``data`` is text, bytes, or a
    function that writes into the open binary file (``lambda f: np.savez(f, ...)``)."""
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
    return path


class atomic_output:
    """Context manager yielding a temporary sibling path that is renamed to ``path`` on success."""

    def __init__(self, path: str | os.PathLike, *, force: bool = False):
        self.path = Path(path)
        self.force = force

    def __enter__(self) -> Path:
        if self.path.exists() and not self.force:
            raise RunDirError(f"{str(self.path)!r} already exists; pass --force to replace it")
        self.path.parent.mkdir(parents=True, exist_ok=True)
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


def write_json(path: str | os.PathLike, data: Any, *, indent: int | None = 2) -> Path:
    return atomic_write(path, json.dumps(data, indent=indent, ensure_ascii=False) + "\n")


def load_keras_model(path: str | os.PathLike) -> keras.Model:
    """Load a ``.keras`` file in Keras safe mode, with the zoo's layers registered.

    Raises:
        ConfigError: the file is missing, holds arbitrary code (a Lambda layer), or is no Keras
            model.
    """
    import keras

    import zoo  # noqa: F401  (registers the layers older models use)

    if not Path(path).is_file():
        raise ConfigError(f"model file {str(path)!r} does not exist")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except ValueError as exc:
        if "safe_mode" in str(exc) or "lambda" in str(exc).lower():
            raise ConfigError(
                f"model file {str(path)!r} holds arbitrary code (a Lambda layer); it is refused "
                f"in safe mode. Load it only if you trust its source.") from exc
        raise ConfigError(f"model file {str(path)!r} cannot be loaded: {exc}") from exc


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
        ignore_index: segmentation: the mask value of unlabelled pixels (``None`` otherwise).
    """

    task: str
    image_size: int
    channels: int
    preprocessing: str
    class_names: tuple[str, ...]
    ignore_index: int | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        data = {**dataclasses.asdict(self), "class_names": list(self.class_names)}
        if self.ignore_index is None:
            del data["ignore_index"]
        return data

    def task_options(self) -> dict[str, Any]:
        """What :func:`transfer.tasks.get_task` needs besides the task's name."""
        return {} if self.ignore_index is None else {"ignore_index": self.ignore_index}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputContract:
        return cls(task=data.get("task", "classification"), image_size=int(data["image_size"]),
                   channels=int(data.get("channels", 3)),
                   preprocessing=str(data.get("preprocessing", "unknown")),
                   class_names=tuple(str(n) for n in data["class_names"]),
                   ignore_index=data.get("ignore_index"))

    @classmethod
    def of_model(cls, model: keras.Model, class_names: Sequence[str] | None = None,
                 task: str = "classification") -> InputContract:
        """The contract of a loaded model (for ``.keras`` files without a ``contract.json``)."""
        shape = model.input_shape
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

    @classmethod
    def create(cls, path: str | os.PathLike, *, overwrite: bool = False) -> RunDir:
        """A new, empty run directory; an existing non-empty one is replaced only with
        ``overwrite``."""
        run = cls(path)
        if run.path.exists() and not run.path.is_dir():
            raise RunDirError(f"output {str(run.path)!r} exists and is not a folder")
        if run.path.is_dir() and any(run.path.iterdir()):
            if not overwrite:
                hint = (f", or continue it with: zoo train --resume {run.path}"
                        if run.resumable() else "")
                raise RunDirError(
                    f"run directory {str(run.path)!r} already exists and is not empty; choose "
                    f"another --output, pass --overwrite to replace it{hint}")
            shutil.rmtree(run.path)
        run.path.mkdir(parents=True, exist_ok=True)
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

    def contract(self, model: keras.Model | None = None) -> InputContract:
        """The run's input contract; runs written before ``contract.json`` existed have theirs
        derived from the model (loaded if not given) and their class names."""
        data = self.read_json("contract.json")
        if data is not None:
            return InputContract.from_dict(data)
        model = model if model is not None else self.load_model()
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

    def load_model(self) -> keras.Model:
        return load_keras_model(self.model_path)
