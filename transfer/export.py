"""Exports that work outside the toolkit: SavedModel, ``.keras`` and TFLite (LiteRT).

:func:`export` writes one of three formats from a run directory (or a ``.keras`` classifier):

- ``savedmodel``: a SavedModel for plain TensorFlow and TF Serving (endpoints below).
- ``keras``: the Keras classifier, reloadable with ``keras.saving.load_model(path,
  safe_mode=True)`` once ``zoo`` is imported (its preprocessing layer is a registered zoo layer).
  Input: float ``[batch, size, size, 3]`` raw 0-255 RGB pixels already resized to the model's
  size; output: ``[batch, classes]`` probabilities.
- ``tflite``: a LiteRT flatbuffer converted from the SavedModel's ``serve_images`` function
  traced at the fixed shape LiteRT needs (full-integer quantisation takes static shapes only).
  Input: ``images``, **uint8** ``[1, size, size, 3]`` raw RGB pixels already resized (bilinear)
  to the model's square size; output: ``probabilities``, float32 ``[1, classes]``, in the order
  of ``class_names.json``. uint8 keeps the raw-pixel contract of ``serve_images``: the cast and
  the backbone's preprocessing are inside, and the same input works for every variant:

  - ``quantize="none"``: float32 weights and activations;
  - ``"float16"``: float16 weights, dequantised to float32 at load (half the size);
  - ``"int8"``: post-training full-integer quantisation; weights and activations are int8,
    calibrated on up to 100 training images from ``split.json`` (or ``calibration_data``).
    Only the input cast and the final dequantisation of the probabilities run in float.

Every export is written to a temporary sibling and renamed into place (:class:`atomic_output`): a
failure leaves nothing at the target, and an existing target is replaced only with
``force=True``. Exporting from a run directory also (re)writes its ``MODEL_CARD.md``
(:func:`write_model_card`).

The SavedModel's endpoints:

- ``serving_default`` (alias of ``serve_images``): ``images``, uint8 ``[batch, height, width, 3]``
  of any size. Resizing and the backbone's preprocessing happen inside.
- ``serve_bytes``: ``image_bytes``, a string vector of encoded JPEG/PNG/GIF/BMP files (what TF
  Serving's REST users send as base64).
- ``class_names``: no input; the class names in label order.

Both serving endpoints return ``probabilities`` ``[batch, classes]``, ``top_scores``,
``top_indices`` and ``top_classes`` (strings) for the top ``k`` classes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from transfer.data import (
    ImageFolderData,
    Split,
    decode_and_resize,
    image_dataset,
    resize_images,
)
from transfer.errors import ConfigError, DataError, RunDirError

log = logging.getLogger(__name__)

DEFAULT_TOP_K = 5
EXPORT_FORMATS = ("savedmodel", "keras", "tflite")
QUANTIZATIONS = ("none", "float16", "int8")
CALIBRATION_SAMPLES = 100


class ServingFunctions:
    """The raw-image and encoded-bytes entry points, shared by export and ``predict``.

    ``predict`` in this process and the exported SavedModel run the same code, so they cannot
    disagree on resizing or preprocessing.
    """

    def __init__(self, model: keras.Model, class_names: Sequence[str], top_k: int = DEFAULT_TOP_K):
        self.model = model
        self.image_size = int(model.input_shape[1])
        self.class_names = list(class_names)
        self.top_k = max(1, min(top_k, len(self.class_names)))
        self._names = tf.constant(self.class_names)

    def _outputs(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = self.model(images, training=False)
        scores, indices = tf.math.top_k(probabilities, k=self.top_k)
        return {
            "probabilities": probabilities,
            "top_scores": scores,
            "top_indices": indices,
            "top_classes": tf.gather(self._names, indices),
        }

    def serve_images(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._outputs(resize_images(images, self.image_size))

    def serve_bytes(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        images = tf.map_fn(lambda b: decode_and_resize(b, self.image_size), image_bytes,
                           fn_output_signature=tf.TensorSpec((self.image_size, self.image_size, 3),
                                                             tf.float32))
        return self._outputs(images)

    def get_class_names(self) -> tf.Tensor:
        return self._names


def export_saved_model(model: keras.Model, path: str | os.PathLike, class_names: Sequence[str],
                       *, top_k: int = DEFAULT_TOP_K, force: bool = False) -> Path:
    """Write a SavedModel for plain TensorFlow and TF Serving, atomically.

    The model is written to a temporary sibling folder and renamed into place, so a failure leaves
    nothing half-written at ``path``. An existing ``path`` is replaced only with ``force=True``.
    """
    fns = ServingFunctions(model, class_names, top_k)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serve_images", fns.serve_images,
        input_signature=[tf.TensorSpec((None, None, None, 3), tf.uint8, name="images")])
    archive.add_endpoint(
        "serve_bytes", fns.serve_bytes,
        input_signature=[tf.TensorSpec((None,), tf.string, name="image_bytes")])
    archive.add_endpoint("class_names", fns.get_class_names, input_signature=[])
    with atomic_output(path, force=force) as tmp:
        archive.write_out(str(tmp), verbose=False)
    return Path(path)


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


def export(source: str | os.PathLike, *, format: str = "savedmodel",  # noqa: A002
           quantize: str = "none", output: str | os.PathLike, force: bool = False,
           calibration_data: str | os.PathLike | Sequence[str] | np.ndarray | None = None,
           top_k: int = DEFAULT_TOP_K) -> Path:
    """Export a trained classifier as a SavedModel, a ``.keras`` file or a TFLite flatbuffer.

    Args:
        source: a run directory or a ``.keras`` classifier (class names from a
            ``class_names.json`` beside it).
        format: ``"savedmodel"``, ``"keras"`` or ``"tflite"`` (contracts in the module docstring).
        quantize: for TFLite only: ``"none"``, ``"float16"`` or ``"int8"``.
        output: the folder (SavedModel) or file to write; a ``.keras`` export must end in
            ``.keras``.
        force: replace an existing ``output``.
        calibration_data: images for int8 calibration: a folder, glob or list of image files,
            or a uint8 array ``[n, size, size, 3]``. Default: the training images of the run
            directory's ``split.json``. At most 100 are used (an even, seeded sample).
        top_k: classes in the SavedModel's ``top_*`` outputs.

    Returns:
        ``output`` as a :class:`~pathlib.Path`.

    Raises:
        ConfigError: an unknown format or quantisation, or one that does not fit the format.
        RunDirError: ``source`` is not a run directory or ``.keras`` file, or ``output``
            exists and ``force`` is not set.
        DataError: int8 calibration images are missing or unreadable.
    """
    from transfer.predict import load_classifier

    if format not in EXPORT_FORMATS:
        raise ConfigError(f"export format must be one of {EXPORT_FORMATS}, got {format!r}")
    if quantize not in QUANTIZATIONS:
        raise ConfigError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    if quantize != "none" and format != "tflite":
        raise ConfigError(f"quantize={quantize!r} applies to the tflite format only, not to "
                          f"{format!r}; drop --quantize or use --format tflite")
    output = Path(output)
    if format == "keras" and output.suffix != ".keras":
        raise ConfigError(f"a keras export must be a file ending in .keras, got {str(output)!r}")
    _refuse_existing(output, force)
    classifier = load_classifier(source)
    run_dir = classifier.run_dir
    if run_dir is not None and output.resolve() == run_dir.resolve():
        raise RunDirError(f"output {str(output)!r} is the run directory itself; choose a path "
                          f"inside or beside it")

    if format == "savedmodel":
        export_saved_model(classifier.model, output, classifier.class_names, top_k=top_k,
                           force=force)
    elif format == "keras":
        with atomic_output(output, force=force) as tmp:
            classifier.model.save(tmp)
    else:
        calibration = None
        if quantize == "int8":
            calibration = calibration_images(
                calibration_data if calibration_data is not None else _training_split(run_dir,
                                                                                       source),
                classifier.image_size)
        with atomic_output(output, force=force) as tmp:
            tmp.write_bytes(tflite_model(classifier.model, classifier.class_names,
                                         quantize=quantize, calibration=calibration,
                                         saved_model_dir=_run_saved_model(run_dir)))
    log.info("exported %s%s to %s (%s bytes)", format,
             f" ({quantize})" if quantize != "none" else "", output, f"{_size(output):,}")
    if run_dir is not None:
        write_model_card(run_dir)
    return output


def _refuse_existing(path: Path, force: bool) -> None:
    if (path.exists() or path.is_symlink()) and not force:
        raise RunDirError(f"{str(path)!r} already exists; pass --force to replace it")


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _run_saved_model(run_dir: Path | None) -> Path | None:
    if run_dir is not None and (run_dir / "saved_model" / "saved_model.pb").is_file():
        return run_dir / "saved_model"
    return None


def _training_split(run_dir: Path | None, source) -> Split:
    if run_dir is None or not (run_dir / "split.json").is_file():
        raise DataError(f"int8 quantisation calibrates on training images, and {str(source)!r} "
                        f"has no split.json; pass calibration_data (--calibration-data DIR)")
    return ImageFolderData.load(run_dir / "split.json").train


def calibration_images(data: Split | str | os.PathLike | Sequence[str] | np.ndarray,
                       image_size: int, *, limit: int = CALIBRATION_SAMPLES,
                       seed: int = 0) -> np.ndarray:
    """Up to ``limit`` images as uint8 ``[n, size, size, 3]``, resized as in training.

    ``data`` is a :class:`~transfer.data.Split` (read by the training pipeline), a uint8 array
    already at that size, or image files: a folder, a glob, or a list. Larger sets are sampled
    without replacement with a fixed seed; unreadable files are skipped.
    """
    rng = np.random.default_rng(seed)
    if isinstance(data, np.ndarray):
        if data.ndim != 4 or data.shape[1:] != (image_size, image_size, 3):
            raise DataError(f"calibration array must be [n, {image_size}, {image_size}, 3], "
                            f"got {list(data.shape)}")
        if len(data) > limit:
            data = data[np.sort(rng.choice(len(data), limit, replace=False))]
        return np.clip(data, 0, 255).astype(np.uint8)
    if not isinstance(data, Split):
        from transfer.predict import expand_inputs

        items = [str(data)] if isinstance(data, (str, os.PathLike)) else [str(p) for p in data]
        paths = tuple(expand_inputs(items))
        data = Split(paths, tuple(range(len(paths))))
    if not len(data):
        raise DataError("no calibration images")
    if len(data) > limit:
        keep = np.sort(rng.choice(len(data), limit, replace=False)).tolist()
        data = Split(*(tuple(column[i] for i in keep) if column else ()
                       for column in (data.paths, data.labels, data.sources, data.orientations)))
    images = [np.clip(np.round(image.numpy()), 0, 255).astype(np.uint8)
              for image, _ in image_dataset(data, image_size=image_size)]
    if not images:
        raise DataError(f"none of the {len(data)} calibration images could be read, e.g. "
                        f"{data.paths[0]!r}")
    return np.stack(images)


def tflite_model(model: keras.Model, class_names: Sequence[str], *, quantize: str = "none",
                 calibration: np.ndarray | None = None,
                 saved_model_dir: str | os.PathLike | None = None) -> bytes:
    """The TFLite flatbuffer of a classifier (input and output contracts in the module docstring).

    The converted function is the SavedModel's ``serve_images``, loaded from ``saved_model_dir``
    (written to a temporary folder first when not given), traced at uint8 ``[1, size, size, 3]``
    and reduced to its ``probabilities`` output: LiteRT has no string tensors to return the class
    names, and full-integer quantisation needs a static shape.
    """
    if quantize not in QUANTIZATIONS:
        raise ConfigError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    if quantize == "int8" and (calibration is None or not len(calibration)):
        raise DataError("int8 quantisation needs calibration images")
    size = int(model.input_shape[1])
    with tempfile.TemporaryDirectory(prefix="zoo-tflite-") as scratch:
        if saved_model_dir is None:
            saved_model_dir = Path(scratch) / "saved_model"
            export_saved_model(model, saved_model_dir, class_names)
        loaded = tf.saved_model.load(str(saved_model_dir))

        @tf.function(input_signature=[tf.TensorSpec((1, size, size, 3), tf.uint8,
                                                    name="images")])
        def serve(images):
            return {"probabilities": loaded.serve_images(images)["probabilities"]}

        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [serve.get_concrete_function()], loaded)
        if quantize == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([image[None]] for image in calibration)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
        return converter.convert()


def write_model_card(run_dir: str | os.PathLike) -> Path:
    """Write ``MODEL_CARD.md`` into a run directory: data, training, metrics and export contracts.

    Everything comes from the run directory's own files (``config.json``, ``split.json``,
    ``class_names.json``, ``metrics.json`` and the ``model.keras`` archive's configuration), so
    the card can be rewritten at any time without loading the model.
    """
    run = Path(run_dir)
    if not (run / "model.keras").is_file():
        raise RunDirError(f"{str(run)!r} is not a run directory (no model.keras)")

    def read(name: str) -> dict | list | None:
        path = run / name
        return json.loads(path.read_text()) if path.is_file() else None

    config = read("config.json") or {}
    split = read("split.json") or {}
    metrics = read("metrics.json") or {}
    names = read("class_names.json") or split.get("class_names") or []
    model_config = _keras_archive_config(run / "model.keras")
    size, preprocessing = _input_size_and_preprocessing(model_config)
    size = size or config.get("image_size")
    k = len(names)
    top_k = min(DEFAULT_TOP_K, k) if k else DEFAULT_TOP_K

    lines = [f"# Model card: {config.get('model', 'classifier')} on "
             f"{Path(split.get('root', '?')).name}", "",
             f"Run directory `{run}`, written by cnn-zoo.", "", "## Data", "",
             f"- data root: `{split.get('root', 'unknown')}`",
             f"- {k} classes, in label order (index: name); the outputs follow this order", ""]
    splits = [s for s in ("train", "val", "test") if s in split]
    lines += ["| index | class | " + " | ".join(splits) + " |",
              "|---:|---|" + "---:|" * len(splits)]
    for i, name in enumerate(names):
        counts = [str(split[s]["labels"].count(i)) for s in splits]
        lines.append(f"| {i} | {name} | " + " | ".join(counts) + " |")
    lines.append("| | **total** | " + " | ".join(str(len(split[s]["labels"])) for s in splits)
                 + " |")

    lines += ["", "## Training", "",
              f"- backbone: `{config.get('model', 'unknown')}`, weights: "
              f"`{config.get('weights')}`",
              f"- transfer mode: `{config.get('mode', 'unknown')}`; epochs "
              f"{config.get('epochs')}"
              + (f" + {config.get('fine_tune_epochs')} fine-tune epochs"
                 if config.get("mode") == "fine-tune" else "")
              + f", optimizer `{config.get('optimizer')}`, learning rate "
              f"{config.get('learning_rate')}, batch size {config.get('batch_size')}, "
              f"augmentation {'on' if config.get('augment') else 'off'}, seed "
              f"{config.get('seed')}",
              f"- input size: {size} x {size} RGB",
              f"- preprocessing mode: `{preprocessing}`, applied inside the model: every export "
              f"takes raw 0-255 RGB pixels"]

    val = metrics.get("val")
    lines += ["", "## Validation metrics", ""]
    if val:
        lines += [f"- {val['samples']} images: top-1 accuracy {val['top1_accuracy']:.4f}, "
                  f"top-{val['top_k']} accuracy {val['top5_accuracy']:.4f}, loss "
                  + (f"{val['loss']:.4f}" if val.get("loss") is not None else "n/a"),
                  f"- macro precision / recall / F1: {_prf(val['macro'])}",
                  f"- weighted precision / recall / F1: {_prf(val['weighted'])}", "",
                  "| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
        for name, row in val["per_class"].items():
            lines.append(f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | "
                         f"{row['f1']:.3f} | {row['support']} |")
    else:
        lines.append("No metrics.json in the run directory.")

    s = f"{size}" if size else "size"
    lines += ["", "## Exports and their input contracts", "",
              "Class names are in label order above and in `class_names.json`.", "",
              "| export | signature | inputs | outputs |", "|---|---|---|---|",
              f"| SavedModel (`saved_model/`, `zoo export --format savedmodel`) | "
              f"`serving_default` = `serve_images` | `images`: uint8 `[batch, height, width, 3]`"
              f" RGB, any size (resized inside to {s} x {s}) | `probabilities` float32 "
              f"`[batch, {k}]`; `top_scores` float32, `top_indices` int32, `top_classes` string,"
              f" each `[batch, {top_k}]` |",
              "| | `serve_bytes` | `image_bytes`: string `[batch]` of encoded JPEG / PNG / GIF / "
              "BMP / WebP files | as `serve_images` |",
              f"| | `class_names` | none | string `[{k}]` |",
              f"| Keras (`model.keras`, `zoo export --format keras`) | `model(x)` | float32 "
              f"`[batch, {s}, {s}, 3]` raw 0-255 RGB, already resized | probabilities "
              f"`[batch, {k}]` |",
              f"| TFLite / LiteRT (`zoo export --format tflite`, float32, float16 or int8) | "
              f"`serving_default` | `images`: uint8 `[1, {s}, {s}, 3]` raw RGB, resized "
              f"(bilinear) to {s} x {s} by the caller | `probabilities` float32 `[1, {k}]` |",
              "", "Loading:", "", "```python",
              "import tensorflow as tf",
              f'model = tf.saved_model.load("{run / "saved_model"}")',
              'out = model.signatures["serving_default"](images=tf.constant(uint8_batch))',
              "", "from ai_edge_litert.interpreter import Interpreter",
              'interpreter = Interpreter(model_path="model.tflite")',
              "", "import keras, zoo  # zoo registers the preprocessing layer",
              'model = keras.saving.load_model("model.keras", safe_mode=True)', "```",
              "", "The `.keras` file needs `zoo` installed (its preprocessing layer is a zoo "
              "layer); the SavedModel and TFLite files need only TensorFlow or LiteRT.", ""]
    path = run / "MODEL_CARD.md"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines))
    os.replace(tmp, path)
    return path


def _prf(row: dict) -> str:
    return f"{row['precision']:.3f} / {row['recall']:.3f} / {row['f1']:.3f}"


def _keras_archive_config(path: Path) -> dict:
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return {}


def _input_size_and_preprocessing(model_config: dict) -> tuple[int | None, str]:
    size, mode = None, "unknown"
    for layer in model_config.get("config", {}).get("layers", []):
        layer_config = layer.get("config", {})
        if layer.get("class_name") == "InputLayer":
            shape = layer_config.get("batch_shape") or layer_config.get("batch_input_shape")
            if shape and len(shape) == 4:
                size = shape[1]
        if layer_config.get("name") == "preprocess":
            mode = layer_config.get("mode", mode)
    return size, mode
