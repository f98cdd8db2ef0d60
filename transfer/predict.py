"""Predictions from a run directory, a ``.keras`` classifier, a SavedModel folder or a registry
model (pretrained classifiers: ``zoo predict keras_mobilenet cat.jpg``).

Every source becomes a :class:`LoadedClassifier` (a Keras model and its
:class:`~transfer.rundir.InputContract`), served by :class:`~transfer.serving.ServingFunctions`:
the code the SavedModel export runs too. Files are read by the decoder training uses
(:func:`transfer.data.load_normalized`: EXIF orientation applied, transparency composited on
white), so a photo is the same input at training and at prediction time.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

import numpy as np

from transfer.data import IMAGE_SUFFIXES, list_image_files, load_normalized
from transfer.errors import ConfigError, DataError, RunDirError
from transfer.rundir import InputContract, RunDir, load_keras_model, make_folder
from transfer.serving import ServingFunctions
from transfer.tasks import Prediction, get_task, served_task

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

# Image suffixes Pillow reads (WebP included); folders are searched for these. Files named
# explicitly are always tried, whatever their suffix.
DECODABLE_SUFFIXES = (*IMAGE_SUFFIXES, ".webp", ".jpe", ".jfif")
DECODABLE_FORMATS = "JPEG, PNG, GIF, BMP or WebP"
NOT_AN_IMAGE = f"not a {DECODABLE_FORMATS} image"


@dataclasses.dataclass(frozen=True)
class LoadedClassifier:
    """A Keras model with its input contract and, when it came from one, its run directory."""

    model: keras.Model
    contract: InputContract
    run_dir: Path | None

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.contract.class_names

    @property
    def image_size(self) -> int:
        return self.contract.image_size


def is_model_name(source: str | os.PathLike) -> bool:
    """Whether ``source`` names a registry model rather than a file or folder.

    A path that exists wins over a model of the same name; so does anything that looks like a
    path (a separator, a ``.keras`` suffix), so a mistyped run directory is reported as missing.
    """
    text = os.fspath(source)
    looks_like_path = any(sep in text for sep in (os.sep, os.altsep) if sep)
    return not (looks_like_path or text.endswith(".keras") or Path(text).exists())


def load_classifier(source: str | os.PathLike, *, weights: str | None = "imagenet",
                    trust_model: bool = False) -> LoadedClassifier:
    """Load a run directory's ``model.keras``, a ``.keras`` file, or a registry classifier.

    For a run directory or ``.keras`` file the model is loaded in Keras safe mode and the input
    contract comes from the run directory (or the folder of the ``.keras`` file); class names
    without a ``class_names.json`` are the label numbers. A registry name is built with
    ``weights`` (:func:`pretrained_classifier`).

    Args:
        source: a run directory, a ``.keras`` file or a registry model name.
        weights: registry names only (a trained model keeps its weights): ``"imagenet"``,
            ``None`` for random initialisation, or a ``.h5``/``.weights.h5``/``.keras`` file.
        trust_model: load the ``.keras`` file with ``safe_mode=False``
            (:func:`~transfer.rundir.load_keras_model`): code in it runs.

    Raises:
        RunDirError: ``source`` is a path to neither, or its class names do not fit the model.
        UnknownModelError: ``source`` is neither a path nor a registered model.
        WeightsError: the weights cannot be found (offline, not cached) or do not fit.
    """
    if is_model_name(source):
        return pretrained_classifier(os.fspath(source), weights=weights)
    run, model_path = RunDir.source(source)
    model = load_keras_model(model_path, trust_model=trust_model)
    contract = (run.contract(model) if run is not None
                else InputContract.of_model(model, source=model_path))
    classes = get_task(contract.task, **contract.task_options()).output_classes(model)
    if classes is not None and contract.num_classes != classes:
        raise RunDirError(f"{str(run / 'class_names.json')!r} lists {contract.num_classes} "
                          f"classes but the model {str(model_path)!r} has {classes} outputs")
    return LoadedClassifier(model, contract, run.path if run is not None and
                            run.model_path == model_path else None)


def pretrained_classifier(name: str, *, weights: str | None = "imagenet") -> LoadedClassifier:
    """A registry classifier with its top, as a :class:`LoadedClassifier` (``run_dir=None``).

    The model is ``zoo.create_model(name, weights=weights)`` at the spec's default input size;
    it takes raw 0-255 pixels (its preprocessing is inside). One-channel models (LeNet-5) get
    :func:`transfer.model.rgb_adapter` in front, so that every classifier takes RGB images. The
    contract's class names are the ImageNet names (:func:`zoo.imagenet_class_names`) for a
    1000-class model, else the label numbers.

    Raises:
        UnknownModelError: ``name`` is not registered (close names are suggested).
        ConfigError: the model is not a classifier.
        WeightsError: the weights cannot be found (offline, not cached) or do not fit.
    """
    import keras

    import zoo
    from transfer.model import rgb_adapter
    from zoo.errors import UnknownModelError

    try:
        spec = zoo.get_spec(name)
    except UnknownModelError as exc:
        raise UnknownModelError(f"{exc} No file or folder {name!r} exists either.") from None
    if spec.task != "classification":
        raise ConfigError(f"{name!r} is a {spec.task} model; registry models are predicted, "
                          f"evaluated and exported as classifiers only. Train it on your data "
                          f"first ('zoo train DATA_DIR --model {name}') and use its run "
                          f"directory")
    model = zoo.create_model(name, weights=weights)
    size = int(model.input_shape[1])
    adapter = rgb_adapter(spec.channels)
    if adapter is not None:  # served images are RGB, whatever the network consumes
        image = keras.Input((size, size, 3), name="image")
        model = keras.Model(image, model(adapter(image)), name=f"{name}_rgb")
    width = int(model.output_shape[-1])
    names = (zoo.imagenet_class_names() if width == len(zoo.imagenet_classes())
             else [str(i) for i in range(width)])
    contract = InputContract("classification", size, spec.channels, spec.preprocessing,
                             tuple(names))
    return LoadedClassifier(model, contract, run_dir=None)


class Predictor:
    """Loads a model once and predicts on encoded image files.

    ``source`` is a run directory (``model.keras`` + ``class_names.json``), a ``.keras`` file
    (class names from a ``class_names.json`` beside it, else the label numbers), a SavedModel
    folder exported by this toolkit, or a registry model built with ``weights``
    (:func:`pretrained_classifier`). A segmentation model writes, per image, a palette PNG of
    class ids (``<stem>_mask.png``) and an overlay (``<stem>_overlay.png``) into ``output_dir``;
    a detector, the image with its boxes drawn (``<stem>_boxes.png``). ``options`` replace the
    task's own settings of the run (a detector's ``conf`` and ``iou`` thresholds);
    ``trust_model`` loads a ``.keras`` file with code in it (:func:`load_classifier`). With
    ``per_image_files`` false (video frames, :mod:`transfer.video`) nothing is written per image:
    :meth:`predict_arrays` returns what the task draws.
    """

    def __init__(self, source: str | os.PathLike, *, top_k: int = 5,
                 output_dir: str | os.PathLike | None = None,
                 weights: str | None = "imagenet", options: dict | None = None,
                 trust_model: bool = False, per_image_files: bool = True):
        import tensorflow as tf

        path = Path(source)
        self._tf = tf
        self.output_dir = Path(output_dir) if output_dir is not None else None
        if not is_model_name(source) and (path / "saved_model.pb").is_file():
            loaded = tf.saved_model.load(str(path))
            self.class_names = [n.decode() for n in loaded.class_names().numpy()]
            self._serve_images = lambda images: loaded.serve_images(images)
            served = loaded.signatures["serve_images"].structured_outputs
            self.task = get_task(served_task(served))
            self.top_k = min(top_k, len(self.class_names))
            if options:
                raise ConfigError(f"a SavedModel keeps the thresholds it was exported with; "
                                  f"drop {_flags(options)}, or predict from the run directory")
        else:
            classifier = load_classifier(source, weights=weights, trust_model=trust_model)
            contract = classifier.contract
            if options:
                known = get_task(contract.task).contract_options()
                unknown = sorted(set(options) - set(known))
                if unknown:
                    raise ConfigError(f"{_flags(unknown)} do(es) not apply to a "
                                      f"{contract.task} model")
                contract = dataclasses.replace(contract, options={**contract.options,
                                                                  **options})
            classifier = dataclasses.replace(classifier, contract=contract)
            fns = ServingFunctions(classifier.model, classifier.contract, top_k)
            self.class_names = fns.class_names
            self.top_k = fns.top_k
            self._serve_images = fns.serve_images
            self.task = get_task(classifier.contract.task,
                                 **classifier.contract.task_options())
        if self.task.prediction_files is not None and per_image_files:
            if self.output_dir is None:
                raise ConfigError(f"a {self.task.name} model writes {self.task.prediction_files}"
                                  f" per image; pass --output FOLDER for them")
            make_folder(self.output_dir, kind="predictions")

    def predict_files(self, paths: Sequence[str], *, batch_size: int = 32,
                      progress: Callable[[int], None] | None = None) -> Iterator[Prediction]:
        """Yield one :class:`Prediction` per path, in order; unreadable files carry an error."""
        for start in range(0, len(paths), batch_size):
            chunk = paths[start:start + batch_size]
            results, by_shape = {}, {}
            for path in chunk:
                try:
                    with open(path, "rb"):
                        pass
                except OSError as exc:
                    results[path] = Prediction(
                        path, error=f"cannot be read ({exc.strerror or _reason(exc)})")
                    continue
                try:
                    image = load_normalized(path)
                except Exception:  # noqa: BLE001  - any decoder failure: not an image it reads
                    results[path] = Prediction(path, error=NOT_AN_IMAGE)
                    continue
                by_shape.setdefault(image.shape, []).append((path, image))
            # Images of one size go through the model together; each keeps its own size
            # (a segmentation mask comes back at it).
            for group in by_shape.values():
                results.update(self._predict_images([p for p, _ in group],
                                                    np.stack([i for _, i in group])))
            for path in chunk:
                yield results[path]
            if progress:
                progress(len(chunk))

    def _predict_images(self, paths: list[str], images: np.ndarray) -> dict[str, Prediction]:
        if self.task.prediction_files is not None:
            folder = self.output_dir.resolve()
            inside = next((p for p in paths if folder in Path(p).resolve().parents), None)
            if inside is not None:  # what it writes would be read as images by the next run
                raise ConfigError(f"--output {str(self.output_dir)!r} holds the image "
                                  f"{inside!r} being predicted; choose an --output folder "
                                  f"outside the images")
        served = {key: value.numpy() for key, value in
                  self._serve_images(self._tf.constant(images)).items()}
        return self.task.predictions(paths, images, served, class_names=self.class_names,
                                     top_k=self.top_k, output_dir=self.output_dir)


    def predict_arrays(self, names: Sequence[str], images: np.ndarray) -> list[Prediction]:
        """A :class:`Prediction` (with the task's ``arrays``, nothing written) for each of
        ``images`` (float 0-255 ``[n, height, width, 3]``, one size), named by ``names``."""
        served = {key: value.numpy() for key, value in
                  self._serve_images(self._tf.constant(images, self._tf.float32)).items()}
        results = self.task.predictions(list(names), images, served,
                                        class_names=self.class_names, top_k=self.top_k,
                                        output_dir=None)
        return [results[name] for name in names]


def _flags(names) -> str:
    return ", ".join("--" + name.replace("_", "-") for name in sorted(names))


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[-1] if text else type(exc).__name__)[:200]


def nothing_predicted(failed: Sequence[Prediction]) -> DataError:
    """The error for a prediction in which every file failed (``failed``, in order)."""
    advice = "pass image files in one of those formats, or folders of them"
    if len(failed) == 1:
        (p,) = failed
        if p.error != NOT_AN_IMAGE:
            return DataError(f"nothing to predict: {p.path!r} {p.error}")
        return DataError(f"nothing to predict: {p.path!r} is {p.error}; {advice}")
    names = ", ".join(repr(p.path) for p in failed[:3])
    if len(failed) > 3:
        names += f" and {len(failed) - 3} more"
    return DataError(f"nothing to predict: none of the {len(failed)} files is a readable "
                     f"{DECODABLE_FORMATS} image ({names}); {advice}")


def expand_inputs(inputs: Iterable[str]) -> list[str]:
    """Files, folders (searched recursively for images) and glob patterns, in a stable order.

    Folders are listed as training lists them (:func:`transfer.data.list_image_files`: hidden
    and system files left out), keeping files with a :data:`DECODABLE_SUFFIXES` suffix.
    """
    paths: list[str] = []
    for item in inputs:
        if any(ch in item for ch in "*?[") and not Path(item).exists():
            matches = [m for m in sorted(glob.glob(item, recursive=True)) if Path(m).is_file()]
            if not matches:
                raise DataError(f"no file matches {item!r}")
            paths.extend(matches)
        elif Path(item).is_dir():
            found = list_image_files(item, suffixes=DECODABLE_SUFFIXES)
            if not found:
                raise DataError(f"the folder {item!r} holds no image files "
                                f"(searched for {', '.join(sorted(DECODABLE_SUFFIXES))})")
            paths.extend(found)
        elif Path(item).is_file():
            paths.append(item)
        else:
            raise DataError(f"image path {item!r} does not exist")
    return paths


def predict(source: str | os.PathLike, images: Iterable[str], *, top_k: int = 5,
            batch_size: int = 32, output_dir: str | os.PathLike | None = None,
            progress: Callable[[int], None] | None = None,
            weights: str | None = "imagenet", options: dict | None = None,
            trust_model: bool = False) -> list[Prediction]:
    """Top-k predictions for image files, folders or globs (see :class:`Predictor`); for a
    segmentation model, masks and overlays written into ``output_dir``.

    ``progress`` is called with the number of files done after each batch; ``weights`` applies
    to a registry model name only.

    Raises:
        DataError: a folder holds no image files, or no file could be read as an image.
    """
    predictor = Predictor(source, top_k=top_k, output_dir=output_dir, weights=weights,
                          options=options, trust_model=trust_model)
    results = list(predictor.predict_files(expand_inputs(images), batch_size=batch_size,
                                           progress=progress))
    if results and all(p.error for p in results):
        raise nothing_predicted(results)
    return results

