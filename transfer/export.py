"""Exports that work outside the toolkit: SavedModel, ``.keras`` and TFLite (LiteRT).

:func:`export` writes one of three formats from a run directory, a ``.keras`` classifier, or a
registry model built with its weights (``export("keras_mobilenet", weights="imagenet", ...)``: a
serving ImageNet classifier with the same endpoints, the 1000 ImageNet names as its classes):

- ``savedmodel``: a SavedModel for plain TensorFlow and TF Serving (endpoints below).
- ``keras``: the Keras classifier, reloadable with ``keras.saving.load_model(path,
  safe_mode=True)`` by plain Keras: every layer, preprocessing included, is one of Keras's own.
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
    calibrated on up to 100 training images from ``split.json`` (or ``calibration_data``, which
    a ``.keras`` file without a run directory and a registry model need).
    Only the input cast and the final dequantisation of the probabilities run in float.

Every export is written to a temporary sibling and renamed into place (:class:`atomic_output`): a
failure leaves nothing at the target, and an existing target is replaced only with
``force=True``. Exporting from a run directory also (re)writes its ``MODEL_CARD.md``
(:func:`write_model_card`).

The SavedModel's endpoints are those of :mod:`transfer.serving`.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from transfer import outputs
from transfer.card import write_model_card
from transfer.data import ImageFolderData, Split, image_dataset
from transfer.errors import ConfigError, DataError
from transfer.predict import expand_inputs, is_model_name, load_classifier
from transfer.rundir import InputContract, RunDir, atomic_output
from transfer.serving import DEFAULT_TOP_K, export_saved_model
from transfer.tasks import DEFAULT_TASK, get_task

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("savedmodel", "keras", "tflite")
QUANTIZATIONS = ("none", "float16", "int8")
CALIBRATION_SAMPLES = 100


def export(source: str | os.PathLike, *, format: str = "savedmodel",  # noqa: A002
           quantize: str = "none", output: str | os.PathLike, force: bool = False,
           calibration_data: str | os.PathLike | Sequence[str] | np.ndarray | None = None,
           top_k: int = DEFAULT_TOP_K, weights: str | None = "imagenet",
           trust_model: bool = False) -> Path:
    """Export a classifier as a SavedModel, a ``.keras`` file or a TFLite flatbuffer.

    Args:
        source: a run directory, a ``.keras`` classifier (class names from a
            ``class_names.json`` beside it), or a registry model name (built with ``weights``;
            see :func:`transfer.predict.pretrained_classifier`).
        format: ``"savedmodel"``, ``"keras"`` or ``"tflite"`` (contracts in the module docstring).
        quantize: for TFLite only: ``"none"``, ``"float16"`` or ``"int8"``.
        output: the folder (SavedModel) or file to write; a ``.keras`` export must end in
            ``.keras``.
        force: replace an existing ``output``.
        calibration_data: images for int8 calibration: a folder, glob or list of image files,
            or a uint8 array ``[n, size, size, 3]``. Default: the training images of the run
            directory's ``split.json``. At most 100 are used (an even, seeded sample).
        top_k: classes in the SavedModel's ``top_*`` outputs.
        weights: registry models only: ``"imagenet"``, ``None`` (random) or a weights file.
        trust_model: load a ``.keras`` file with ``safe_mode=False``: code in it (a Lambda
            layer) runs. Only for files you trust.

    Returns:
        ``output`` as a :class:`~pathlib.Path`.

    Raises:
        ConfigError: an unknown format or quantisation, or one that does not fit the format.
        RunDirError: ``source`` is not a run directory or ``.keras`` file, or ``output``
            exists and ``force`` is not set.
        DataError: int8 calibration images are missing or unreadable.
        WeightsError: a registry model's weights cannot be found or do not fit.
    """
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
    reads = [(source, "the model being exported")] if Path(source).exists() else []
    outputs.check_output(output, replace=force, reads=reads)
    if quantize == "int8" and calibration_data is None and is_model_name(source):
        # Said before the model is built (and its weights maybe downloaded).
        raise DataError(f"int8 quantisation calibrates on images, and registry model "
                        f"{str(source)!r} has no training images; pass calibration_data "
                        f"(--calibration-data DIR)")
    classifier = load_classifier(source, weights=weights, trust_model=trust_model)
    run_dir = classifier.run_dir

    if format == "savedmodel":
        export_saved_model(classifier.model, output, classifier.contract, top_k=top_k,
                           force=force)
    elif format == "keras":
        with atomic_output(output, force=force) as tmp:
            classifier.model.save(tmp)
            outputs.mark_keras(tmp)
    else:
        calibration = None
        if quantize == "int8":
            calibration = calibration_images(
                calibration_data if calibration_data is not None else _training_split(run_dir,
                                                                                       source),
                classifier.image_size, fit=get_task(classifier.contract.task).fit)
        with atomic_output(output, force=force) as tmp:
            tmp.write_bytes(tflite_model(classifier.model, classifier.contract,
                                         quantize=quantize, calibration=calibration,
                                         saved_model_dir=_run_saved_model(run_dir)))
    log.info("exported %s%s to %s (%s bytes)", format,
             f" ({quantize})" if quantize != "none" else "", output, f"{_size(output):,}")
    if run_dir is not None:
        write_model_card(run_dir)
    return output



def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _run_saved_model(run_dir: Path | None) -> Path | None:
    if run_dir is not None and (RunDir(run_dir).saved_model_dir / "saved_model.pb").is_file():
        return RunDir(run_dir).saved_model_dir
    return None


def _training_split(run_dir: Path | None, source) -> Split:
    if run_dir is None or not (run_dir / "split.json").is_file():
        raise DataError(f"int8 quantisation calibrates on training images, and {str(source)!r} "
                        f"has no split.json; pass calibration_data (--calibration-data DIR)")
    return ImageFolderData.load(run_dir / "split.json").train


def calibration_images(data: Split | str | os.PathLike | Sequence[str] | np.ndarray,
                       image_size: int, *, limit: int = CALIBRATION_SAMPLES,
                       seed: int = 0, fit: str = "stretch") -> np.ndarray:
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
        items = [str(data)] if isinstance(data, (str, os.PathLike)) else [str(p) for p in data]
        paths = tuple(expand_inputs(items))
        data = Split(paths, tuple(range(len(paths))))
    if not len(data):
        raise DataError("no calibration images")
    if len(data) > limit:
        keep = np.sort(rng.choice(len(data), limit, replace=False)).tolist()
        data = data.subset(keep)
    images = [np.clip(np.round(image.numpy()), 0, 255).astype(np.uint8)
              for image, _ in image_dataset(data, image_size=image_size, fit=fit)]
    if not images:
        raise DataError(f"none of the {len(data)} calibration images could be read, e.g. "
                        f"{data.paths[0]!r}")
    return np.stack(images)


def tflite_model(model: keras.Model, contract: InputContract | Sequence[str], *,
                 quantize: str = "none",
                 calibration: np.ndarray | None = None,
                 saved_model_dir: str | os.PathLike | None = None) -> bytes:
    """The TFLite flatbuffer of a classifier (input and output contracts in the module docstring).

    The converted function is the SavedModel's ``serve_images``, loaded from ``saved_model_dir``
    (written to a temporary folder first when not given), traced at uint8 ``[1, size, size, 3]``
    and reduced to the task's :attr:`~transfer.tasks.Task.tflite_outputs` (``probabilities``):
    LiteRT has no string tensors to return the class names, and full-integer quantisation needs
    a static shape.
    """
    if quantize not in QUANTIZATIONS:
        raise ConfigError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    if quantize == "int8" and (calibration is None or not len(calibration)):
        raise DataError("int8 quantisation needs calibration images")
    size = (contract.image_size if isinstance(contract, InputContract)
            else int(model.input_shape[1]))
    task = get_task(contract.task if isinstance(contract, InputContract) else DEFAULT_TASK)
    with tempfile.TemporaryDirectory(prefix="zoo-tflite-") as scratch:
        if saved_model_dir is None:
            saved_model_dir = Path(scratch) / "saved_model"
            export_saved_model(model, saved_model_dir, contract)
        loaded = tf.saved_model.load(str(saved_model_dir))

        @tf.function(input_signature=[tf.TensorSpec((1, size, size, 3), tf.uint8,
                                                    name="images")])
        def serve(images):
            served = loaded.serve_images(images)
            return {name: served[name] for name in task.tflite_outputs}

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
