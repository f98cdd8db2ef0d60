"""Exports that work outside the toolkit: SavedModel, ``.keras``, TFLite (LiteRT) and ONNX.

:func:`export` writes one of four formats from a run directory, a ``.keras`` classifier, or a
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
    Only the input cast and the final dequantisation of the probabilities run in float; a
    detector's box decoding and NMS, which LiteRT has no int8 kernel for, run in float too.

- ``onnx``: an ONNX model for ONNX Runtime, converted by tf2onnx from the same serving function
  (the ``onnx`` extra). Input: ``images``, **uint8** ``[batch, size, size, 3]`` (any batch) raw
  RGB pixels already resized to the model's square size, as for TFLite; outputs: the task's
  :attr:`~transfer.tasks.Task.onnx_outputs` (a detector's non-maximum suppression runs as
  ONNX's own ``NonMaxSuppression``). The class names, the task and the input size are in the
  file's metadata (``metadata_props``).

Every export is written to a temporary sibling and renamed into place (:class:`atomic_output`): a
failure leaves nothing at the target, and an existing target is replaced only with
``force=True``. Exporting from a run directory also (re)writes its ``MODEL_CARD.md``
(:func:`write_model_card`).

The SavedModel's endpoints are those of :mod:`transfer.serving`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf

from transfer import outputs
from transfer.card import write_model_card
from transfer.data import ImageFolderData, Split, image_dataset
from transfer.errors import ConfigError, DataError, ExportError
from transfer.predict import expand_inputs, is_model_name, load_classifier
from transfer.rundir import InputContract, atomic_output
from transfer.serving import DEFAULT_TOP_K, ServingFunctions, export_saved_model
from transfer.tasks import get_task

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("savedmodel", "keras", "tflite", "onnx")
QUANTIZATIONS = ("none", "float16", "int8")
CALIBRATION_SAMPLES = 100
#: the lowest ONNX opset taken: the oldest tf2onnx tests (the highest is the newest it knows)
MIN_OPSET = 14
ONNX_EXTRA = ("onnx", "tf2onnx")  # what the ``onnx`` extra installs to export (and onnxruntime)


def export(source: str | os.PathLike, *, format: str = "savedmodel",  # noqa: A002
           quantize: str = "none", output: str | os.PathLike, force: bool = False,
           calibration_data: str | os.PathLike | Sequence[str] | np.ndarray | None = None,
           top_k: int = DEFAULT_TOP_K, weights: str | None = "imagenet",
           opset: int | None = None, trust_model: bool = False) -> Path:
    """Export a classifier as a SavedModel, a ``.keras`` file, a TFLite flatbuffer or an ONNX
    model.

    Args:
        source: a run directory, a ``.keras`` classifier (class names from a
            ``class_names.json`` beside it), or a registry model name (built with ``weights``;
            see :func:`transfer.predict.pretrained_classifier`).
        format: ``"savedmodel"``, ``"keras"``, ``"tflite"`` or ``"onnx"`` (contracts in the
            module docstring).
        quantize: for TFLite only: ``"none"``, ``"float16"`` or ``"int8"``.
        output: the folder (SavedModel) or file to write; a ``.keras`` export must end in
            ``.keras``, an ONNX one in ``.onnx``.
        force: replace an existing ``output``.
        calibration_data: images for int8 calibration: a folder, glob or list of image files,
            or a uint8 array ``[n, size, size, 3]``. Default: the training images of the run
            directory's ``split.json``. At most 100 are used (an even, seeded sample).
        top_k: classes in the SavedModel's ``top_*`` outputs.
        weights: registry models only: ``"imagenet"``, ``None`` (random) or a weights file.
        opset: for ONNX only: the ONNX opset (default: the converter's, 15 with tf2onnx 1.17;
            :func:`onnx_opset` reads it back from the file).
        trust_model: load a ``.keras`` file with ``safe_mode=False``: code in it (a Lambda
            layer) runs. Only for files you trust.

    Returns:
        ``output`` as a :class:`~pathlib.Path`.

    Raises:
        ConfigError: an unknown format, quantisation or opset, or one that does not fit the
            format.
        ExportError: ONNX: the ``onnx`` extra is not installed, or the model holds an operation
            that has no ONNX counterpart.
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
    if opset is not None and format != "onnx":
        raise ConfigError(f"opset applies to the onnx format only, not to {format!r}; drop "
                          f"--opset or use --format onnx")
    if format == "onnx":
        _check_opset(opset, _onnx_modules()[1])  # before the model is loaded
    output = Path(output)
    for fmt, suffix in (("keras", ".keras"), ("onnx", ".onnx")):
        if format == fmt and output.suffix != suffix:
            raise ConfigError(f"a {fmt} export must be a file ending in {suffix}, got "
                              f"{str(output)!r}")
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
    elif format == "onnx":
        proto = onnx_model(classifier.model, classifier.contract, opset=opset)
        with atomic_output(output, force=force) as tmp:
            tmp.write_bytes(proto.SerializeToString())
    else:
        calibration = None
        if quantize == "int8":
            calibration = calibration_images(
                calibration_data if calibration_data is not None else _training_split(run_dir,
                                                                                       source),
                classifier.image_size, fit=get_task(classifier.contract.task).fit)
        with atomic_output(output, force=force) as tmp:
            tmp.write_bytes(tflite_model(classifier.model, classifier.contract,
                                         quantize=quantize, calibration=calibration))
    log.info("exported %s%s to %s (%s bytes)", format,
             f" ({quantize})" if quantize != "none" else "", output, f"{_size(output):,}")
    if run_dir is not None:
        write_model_card(run_dir)
    return output



def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


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
                 calibration: np.ndarray | None = None) -> bytes:
    """The TFLite flatbuffer of a classifier (input and output contracts in the module docstring).

    The converted function is the SavedModel's ``serve_images`` (:mod:`transfer.serving`),
    reduced to the task's :attr:`~transfer.tasks.Task.tflite_outputs` (``probabilities``: LiteRT
    has no string tensors to return the class names) and written to a scratch SavedModel traced
    at uint8 ``[1, size, size, 3]``: full-integer quantisation needs a static shape, and at a
    batch of one a detector's NMS has no loop around it (TensorFlow's int8 calibrator crashes on
    a ``While``). Where the task has ops without an int8 kernel
    (:attr:`~transfer.tasks.Task.tflite_int8_float_ops`: a detector's NMS), those stay float32.
    """
    if quantize not in QUANTIZATIONS:
        raise ConfigError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    if not isinstance(contract, InputContract):
        contract = InputContract.of_model(model, contract)
    size = contract.image_size
    task = get_task(contract.task)
    if quantize == "int8" and (calibration is None or not len(calibration)):
        raise DataError("int8 quantisation needs calibration images")
    fns = ServingFunctions(model, contract)

    def serve(images):
        served = fns.serve_images(images)
        return {name: served[name] for name in task.tflite_outputs}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serve, input_signature=[
        tf.TensorSpec((1, size, size, 3), tf.uint8, name="images")])
    with tempfile.TemporaryDirectory(prefix="zoo-tflite-") as scratch:
        archive.write_out(scratch, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(
            scratch, signature_keys=["serving_default"])
        if quantize == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([image[None]] for image in calibration)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8] + (
                [tf.lite.OpsSet.TFLITE_BUILTINS] if task.tflite_int8_float_ops else [])
            converter.inference_input_type = tf.uint8
        return converter.convert()


def _onnx_modules():
    """``onnx`` and ``tf2onnx``, or the one-line error that says how to install them."""
    missing = []
    for name in ONNX_EXTRA:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ExportError(f"the onnx format needs {' and '.join(missing)}, which are not "
                          f"installed; pip install \"cnn-zoo[onnx]\"")
    import onnx
    import tf2onnx

    return onnx, tf2onnx


def _check_opset(opset: int | None, tf2onnx) -> None:
    newest = max(tf2onnx.constants.OPSET_TO_IR_VERSION)
    if opset is not None and (isinstance(opset, bool) or not isinstance(opset, int)
                              or not MIN_OPSET <= opset <= newest):
        raise ConfigError(f"opset must be an integer from {MIN_OPSET} to {newest} (what "
                          f"tf2onnx {tf2onnx.__version__} converts to), got {opset!r}")


@contextlib.contextmanager
def _fail_fast_optimizer():
    """tf2onnx deep-copies the whole graph, weights included, before each of its ~36 graph
    optimisations so that it can skip one that fails; without the copies a conversion takes a
    third less time (measured: a MobileNet detector, 7.1 s to 4.8 s of CPU). A failure is
    converted again the careful way."""
    key, old = "TF2ONNX_CATCH_ERRORS", os.environ.get("TF2ONNX_CATCH_ERRORS")
    os.environ[key] = "FALSE"
    try:
        yield
    finally:
        if old is None:
            del os.environ[key]
        else:
            os.environ[key] = old


def _graphs(graph):
    """``graph`` and every subgraph of its nodes (a loop's body), depth first."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _graphs(attribute.g)
            for sub in attribute.graphs:
                yield from _graphs(sub)


def _unconverted(model: keras.Model, proto, onnx, version: str) -> None:
    """Raise for the first node tf2onnx left as a TensorFlow op (it converts what it can and
    keeps the rest, which no ONNX runtime then loads), naming the layer that holds it."""
    for graph in _graphs(proto.graph):
        for node in graph.node:
            if onnx.defs.has(node.op_type, node.domain):
                continue
            path = f"/{node.name}/"
            # The innermost layer on the node's name scope (TensorFlow may number a scope:
            # "my_layer_1"); a nested backbone's layer, not the backbone.
            found = [(match.start(), name) for name in _layer_names(model)
                     for match in re.finditer(rf"/{re.escape(name)}(_\d+)?/", path)]
            where = f"layer {max(found)[1]!r}" if found else f"node {node.name!r}"
            raise ExportError(f"ONNX has no counterpart for the TensorFlow operation "
                              f"{node.op_type!r} in {where} (tf2onnx {version}); export as "
                              f"savedmodel or tflite instead")


def _layer_names(model) -> Iterator[str]:
    for layer in getattr(model, "layers", ()):
        yield layer.name
        yield from _layer_names(layer)


def onnx_model(model: keras.Model, contract: InputContract | Sequence[str], *,
               opset: int | None = None):
    """The ONNX model (an ``onnx.ModelProto``) of a classifier, segmenter or detector.

    The converted function is the SavedModel's ``serve_images`` (:mod:`transfer.serving`):
    the cast, the backbone's preprocessing and the task's post-processing are inside, a
    detector's non-maximum suppression as ONNX's own ``NonMaxSuppression`` op. It is traced at
    uint8 ``[None, size, size, 3]``, images already resized to the model's square size (a
    detector's letterboxed: its boxes are in the input's pixels), and reduced to the task's
    :attr:`~transfer.tasks.Task.onnx_outputs`. ``metadata_props`` hold ``class_names`` (a JSON
    list), ``task``, ``image_size``, ``preprocessing`` and ``written_by``.

    tf2onnx converts directly rather than through ``keras.Model.export(format="onnx")``, which
    calls the same ``tf2onnx.convert.from_function`` on the model's own ``call`` alone: float
    input, no serving function around it.

    Raises:
        ExportError: the ``onnx`` extra is missing, an operation has no ONNX counterpart, or
            tf2onnx fails.
        ConfigError: an opset outside what tf2onnx converts to.
    """
    onnx, tf2onnx = _onnx_modules()
    _check_opset(opset, tf2onnx)
    if not isinstance(contract, InputContract):
        contract = InputContract.of_model(model, contract)
    task = get_task(contract.task, **contract.task_options())
    size = contract.image_size
    signature = [tf.TensorSpec((None, size, size, 3), tf.uint8, name="images")]

    @tf.function(input_signature=signature)
    def serve(images):
        # Made inside the trace, so the class names are a constant of the graph, not an eager
        # tensor captured as a second input (which tf2onnx cannot freeze).
        served = ServingFunctions(model, contract).serve_images(images)
        return {name: served[name] for name in task.onnx_outputs}

    def convert():
        return tf2onnx.convert.from_function(serve, signature, opset=opset)[0]

    serve.get_concrete_function()  # traced here: an error in the serving code is not tf2onnx's
    try:
        with _fail_fast_optimizer():
            proto = convert()
    except Exception:  # noqa: BLE001  - the careful way skips a graph optimisation that fails
        log.info("converting again with each of tf2onnx's optimisations guarded")
        try:
            proto = convert()
        except Exception as exc:  # noqa: BLE001  - the converter's failure, in one line
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise ExportError(f"tf2onnx {tf2onnx.__version__} could not convert the model "
                              f"({type(exc).__name__}: {reason}); export as savedmodel or "
                              f"tflite instead") from exc
    _unconverted(model, proto, onnx, tf2onnx.__version__)
    metadata = {"class_names": json.dumps(list(contract.class_names), ensure_ascii=False),
                "task": contract.task, "image_size": str(size),
                "preprocessing": contract.preprocessing, "written_by": outputs.SOFTWARE}
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = (f"cnn-zoo {contract.task} model: images uint8 [batch, {size}, {size}, 3]"
                        f" raw RGB, resized to {size} x {size} by the caller")
    return proto


def onnx_opset(path: str | os.PathLike) -> int:
    """The ONNX opset of the model file at ``path``."""
    onnx, _ = _onnx_modules()
    proto = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
