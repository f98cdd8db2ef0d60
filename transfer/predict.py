"""Predictions from a run directory, a ``.keras`` classifier or a SavedModel folder."""

from __future__ import annotations

import dataclasses
import glob
import json
import logging
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from transfer.data import IMAGE_SUFFIXES
from transfer.errors import DataError, RunDirError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Top-k classes of one image, or the reason it could not be read."""

    path: str
    labels: tuple[str, ...] = ()
    scores: tuple[float, ...] = ()
    error: str | None = None

    def to_dict(self) -> dict:
        if self.error:
            return {"path": self.path, "error": self.error}
        return {"path": self.path,
                "predictions": [{"label": l, "score": s} for l, s in zip(self.labels, self.scores)]}


class Predictor:
    """Loads a trained classifier once and predicts on encoded image files.

    ``source`` is a run directory (``model.keras`` + ``class_names.json``), a ``.keras`` file
    (class names from a ``class_names.json`` beside it, else the label numbers), or a SavedModel
    folder exported by this toolkit.
    """

    def __init__(self, source: str | os.PathLike, *, top_k: int = 5):
        import tensorflow as tf

        path = Path(source)
        self._tf = tf
        if (path / "model.keras").is_file():
            self._load_keras(path / "model.keras", path / "class_names.json", top_k)
        elif path.is_file() and path.suffix == ".keras":
            self._load_keras(path, path.parent / "class_names.json", top_k)
        elif (path / "saved_model.pb").is_file():
            loaded = tf.saved_model.load(str(path))
            self.class_names = [n.decode() for n in loaded.class_names().numpy()]
            self._serve_bytes = lambda b: loaded.serve_bytes(b)
            self.top_k = min(top_k, len(self.class_names))
        else:
            raise RunDirError(
                f"{str(path)!r} is not a run directory, a .keras file or a SavedModel folder")

    def _load_keras(self, model_path: Path, names_path: Path, top_k: int) -> None:
        import keras

        import zoo  # noqa: F401  (registers the layers the model uses)
        from transfer.export import ServingFunctions

        model = keras.saving.load_model(model_path, compile=False, safe_mode=True)
        if names_path.is_file():
            class_names = json.loads(names_path.read_text())
        else:
            class_names = [str(i) for i in range(model.output_shape[-1])]
        fns = ServingFunctions(model, class_names, top_k)
        self.class_names = fns.class_names
        self.top_k = fns.top_k
        self._serve_bytes = fns.serve_bytes

    def predict_files(self, paths: Sequence[str], *, batch_size: int = 32,
                      progress: Callable[[int], None] | None = None) -> Iterator[Prediction]:
        """Yield one :class:`Prediction` per path, in order; unreadable files carry an error."""
        tf = self._tf
        for start in range(0, len(paths), batch_size):
            chunk = paths[start:start + batch_size]
            readable, contents, results = [], [], {}
            for path in chunk:
                try:
                    data = Path(path).read_bytes()
                    tf.io.decode_image(data, channels=3, expand_animations=False)
                except Exception as exc:  # noqa: BLE001  - any decoder failure is reported
                    results[path] = Prediction(path, error=_reason(exc))
                    continue
                readable.append(path)
                contents.append(data)
            if readable:
                out = self._serve_bytes(tf.constant(contents))
                scores = out["top_scores"].numpy()[:, : self.top_k]
                labels = out["top_classes"].numpy()[:, : self.top_k]
                for i, path in enumerate(readable):
                    results[path] = Prediction(
                        path, tuple(l.decode() for l in labels[i]),
                        tuple(float(s) for s in scores[i]))
            for path in chunk:
                yield results[path]
            if progress:
                progress(len(chunk))


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[-1] if text else type(exc).__name__)[:200]


def expand_inputs(inputs: Iterable[str]) -> list[str]:
    """Files, folders (searched recursively for images) and glob patterns, in a stable order."""
    paths: list[str] = []
    for item in inputs:
        if any(ch in item for ch in "*?[") and not Path(item).exists():
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise DataError(f"no file matches {item!r}")
            paths.extend(m for m in matches if Path(m).is_file())
        elif Path(item).is_dir():
            paths.extend(sorted(str(p) for p in Path(item).rglob("*")
                                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                                and not p.name.startswith(".")))
        elif Path(item).is_file():
            paths.append(item)
        else:
            raise DataError(f"image path {item!r} does not exist")
    return paths


def predict(source: str | os.PathLike, images: Iterable[str], *, top_k: int = 5,
            batch_size: int = 32) -> list[Prediction]:
    """Top-k predictions for image files, folders or globs (see :class:`Predictor`)."""
    predictor = Predictor(source, top_k=top_k)
    return list(predictor.predict_files(expand_inputs(images), batch_size=batch_size))

