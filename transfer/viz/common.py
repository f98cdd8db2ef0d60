"""What every visualisation shares: loading a model, finding layers, tapping them, images, PNGs.

Every tool works on one kind of model: a Keras model taking raw 0-255 RGB images of a fixed
size. :func:`load_for_viz` makes one from a run directory, a ``.keras`` classifier trained by this
toolkit, or a registry name (zoo models take raw pixels; one-channel ones get a luma adapter).

Layers are named by their path through nested models, ``"backbone/c1_conv"``; a bare name such
as ``"c1_conv"`` works when it is unique. :func:`tap_model` builds a model from the image to the
outputs (or inputs) of any layers, nested ones included, plus the predictions, and tells where
each cell of a spatial tap sits on the input image (used to align Grad-CAM heatmaps exactly,
also for networks with ``valid`` padding).
"""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, NamedTuple, Sequence

import numpy as np

from transfer import outputs
from transfer.errors import ConfigError, DataError, RunDirError
from transfer.rundir import RunDir, load_keras_model
from transfer.rundir import write_json as rundir_write_json
from zoo import walk_layers as zoo_walk_layers

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

# Layers whose outputs are still the image, not features: never a "feature" layer.
_IMAGE_LAYERS = ("image", "augmentation", "preprocess", "rgb_to_gray")
RANDOM_WEIGHTS_SEED = 0


class VizModel(NamedTuple):
    """A model ready for visualisation: raw 0-255 RGB ``(size, size, 3)`` images in."""

    model: keras.Model
    class_names: list[str] | None
    image_size: int


# ---- loading ----------------------------------------------------------------------------------

def run_dir_of(source: str | os.PathLike) -> Path | None:
    """The run directory ``source`` names (itself, or the folder of its ``.keras`` file)."""
    try:
        run, _ = RunDir.source(source)
    except RunDirError:
        return None
    return run.path if run is not None else None


def load_for_viz(source: str | os.PathLike, weights: str | None = None, *,
                 image_size: int | None = None) -> VizModel:
    """Load a model for the visualisation tools.

    Args:
        source: a run directory written by ``zoo train``, a ``.keras`` classifier trained by this
            toolkit (class names from a ``class_names.json`` beside it), or a registry name.
        weights: for a registry name only: ``None`` (random initialisation, seeded with
            ``RANDOM_WEIGHTS_SEED`` through ``keras.utils.set_random_seed`` so that every call
            builds the same network), a weight-set name such as ``"imagenet"``, or a weights
            file.
        image_size: for a registry name only: build at this size instead of the spec's default
            (ignored by models with a fixed input size).

    Returns:
        A :class:`VizModel`: the model (raw 0-255 RGB in, predictions out), the class names or
        ``None`` when unknown, and the input size.

    Raises:
        RunDirError: a path that holds no loadable Keras model (a SavedModel folder cannot be
            inspected layer by layer).
        UnknownModelError: a name that is neither a path nor a registered model.
    """
    path = Path(source)
    if (path / "saved_model.pb").is_file():
        raise RunDirError(
            f"{str(path)!r} is a SavedModel folder, which cannot be inspected layer by layer; "
            f"pass the run directory or its model.keras instead")
    if RunDir.is_run_dir(path) or (path.is_file() and path.suffix == ".keras"):
        return _load_keras(path)
    if path.exists() or os.sep in str(source):
        raise RunDirError(
            f"{str(path)!r} is not a run directory (with model.keras) or a .keras file")
    return _load_registry(str(source), weights, image_size)


def _load_keras(source: Path) -> VizModel:
    run, model_path = RunDir.source(source)
    model = load_keras_model(model_path)
    shape = model.input_shape
    if isinstance(shape, list) or len(shape) != 4 or shape[1] is None or shape[3] != 3:
        raise RunDirError(f"{str(model_path)!r} does not take RGB images of a fixed size "
                          f"(input shape {shape})")
    class_names = list(run.class_names() or []) if run is not None else []
    if class_names and len(model.output_shape) == 2 and \
            len(class_names) != model.output_shape[-1]:
        log.warning("%s lists %d class names for %d outputs; using label numbers",
                    run / "class_names.json", len(class_names), model.output_shape[-1])
        class_names = []
    return VizModel(model, class_names or None, int(shape[1]))


def _load_registry(name: str, weights: str | None, image_size: int | None) -> VizModel:
    import keras

    import zoo
    from transfer.model import rgb_adapter

    spec = zoo.get_spec(name)
    input_shape = None
    if image_size and not spec.fixed_input_size:
        input_shape = (image_size, image_size, spec.channels)
    elif image_size and image_size != spec.default_input_shape[0]:
        log.info("%s has a fixed input size; image size %d ignored", name, image_size)
    if weights is None:
        # Random weights, but the same ones every time, so that an index built by one command
        # and queried by another (or two figures) describe the same network.
        keras.utils.set_random_seed(RANDOM_WEIGHTS_SEED)
    model = zoo.create_model(name, weights=weights, input_shape=input_shape)
    size = int(model.input_shape[1])
    adapter = rgb_adapter(spec.channels)
    if adapter is not None:  # the tools feed RGB images
        image = keras.Input((size, size, 3), name="image")
        model = keras.Model(image, model(adapter(image)), name=f"{name}_viz")
    class_names = (list(zoo.imagenet_class_names())
                   if weights is not None and model.output_shape[-1] == 1000 else None)
    return VizModel(model, class_names, size)


# ---- layers -----------------------------------------------------------------------------------

def walk_layers(model: keras.Model) -> Iterator[tuple[str, keras.layers.Layer]]:
    """Every layer as ``(path, layer)``; the augmentation model is not entered."""
    return zoo_walk_layers(model, skip=_IMAGE_LAYERS)


def find_layer(model: keras.Model, name: str) -> tuple[str, keras.layers.Layer]:
    """A layer by path (``"backbone/c1_conv"``) or by a bare name that is unique."""
    layers = list(walk_layers(model))
    for path, layer in layers:
        if path == name:
            return path, layer
    matches = [(p, l) for p, l in layers if p.rsplit("/", 1)[-1] == name]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ConfigError(f"layer name {name!r} is ambiguous; use one of the paths "
                          f"{', '.join(p for p, _ in matches)}")
    raise ConfigError(f"no layer named {name!r} in model {model.name!r}; its layers are: "
                      f"{_layer_summary(layers)}")


def _layer_summary(layers: Sequence[tuple[str, keras.layers.Layer]], limit: int = 40) -> str:
    names = [p for p, l in layers if type(l).__name__ != "InputLayer"]
    more = f" ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _output_rank(layer: keras.layers.Layer) -> int | None:
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError):  # a layer used more than once has no single output
        return None


def is_conv(layer: keras.layers.Layer) -> bool:
    """A 2-D convolution with a ``(kh, kw, in, out)`` kernel (depthwise ones excluded)."""
    kernel = getattr(layer, "kernel", None)
    return (kernel is not None and len(kernel.shape) == 4 and hasattr(layer, "kernel_size")
            and "depthwise" not in type(layer).__name__.lower()
            and "transpose" not in type(layer).__name__.lower())


def conv_layers(model: keras.Model) -> list[tuple[str, keras.layers.Layer]]:
    return [(p, l) for p, l in walk_layers(model) if is_conv(l)]


def first_conv_layer(model: keras.Model) -> tuple[str, keras.layers.Layer]:
    """The first 2-D convolution, nested models included."""
    convs = conv_layers(model)
    if not convs:
        raise ConfigError(f"model {model.name!r} has no 2-D convolution layer")
    return convs[0]


def spatial_layers(model: keras.Model) -> list[tuple[str, keras.layers.Layer]]:
    """Layers with a 4-D ``(batch, h, w, channels)`` output, image-space layers left out."""
    import keras

    out = []
    for path, layer in walk_layers(model):
        if (layer.name in _IMAGE_LAYERS or isinstance(layer, keras.layers.InputLayer)
                or isinstance(layer, keras.Model)):
            continue
        if _output_rank(layer) == 4:
            out.append((path, layer))
    return out


def last_spatial_layer(model: keras.Model) -> tuple[str, keras.layers.Layer]:
    """The last layer with a 4-D output larger than 1x1 (where Grad-CAM looks).

    A 1x1 map (LeNet-5's C5) carries no spatial information, so it is passed over.
    """
    candidates = [(p, l) for p, l in spatial_layers(model)
                  if (l.output.shape[1] or 0) * (l.output.shape[2] or 0) > 1]
    if not candidates:
        raise ConfigError(f"model {model.name!r} has no layer with a spatial (4-D) output")
    return candidates[-1]


def penultimate(model: keras.Model) -> tuple[str, str]:
    """The tap giving the features the classifier reads: ``(path, "input")``.

    For a classifier trained by this toolkit that is the input of ``head_dropout`` (the
    backbone's pooled features); otherwise the input of the last dense layer.
    """
    import keras

    names = [layer.name for layer in model.layers]
    if "head_dropout" in names:
        return "head_dropout", "input"
    dense = [p for p, l in walk_layers(model) if isinstance(l, keras.layers.Dense)]
    if not dense:
        raise ConfigError(f"model {model.name!r} has no dense layer whose input could serve as "
                          f"the embedding")
    return dense[-1], "input"


def final_dense(model: keras.Model) -> tuple[str, keras.layers.Layer] | None:
    """The dense layer that produces the model's output, when there is one."""
    import keras

    layer = model.layers[-1]
    path = layer.name
    while isinstance(layer, keras.Model) and not isinstance(layer, keras.Sequential):
        layer = layer.layers[-1]
        path = f"{path}/{layer.name}"
    return (path, layer) if isinstance(layer, keras.layers.Dense) else None


# ---- tapping layers (nested models included) --------------------------------------------------

def resolve_class(label: str | int | None, class_names: Sequence[str] | None,
                  num_classes: int) -> int | None:
    """A class given by name or index to its index; ``None`` stays ``None``."""
    if label is None:
        return None
    text = str(label)
    if class_names and text in class_names:
        return list(class_names).index(text)
    if re.fullmatch(r"\d+", text) and int(text) < num_classes:
        return int(text)
    known = (f"one of {', '.join(class_names)}" if class_names
             else f"a class index from 0 to {num_classes - 1}")
    raise ConfigError(f"unknown class {text!r}; expected {known}")


def label_of(index: int, class_names: Sequence[str] | None) -> str:
    return class_names[index] if class_names else f"class {index}"


def num_classes(model: keras.Model) -> int:
    shape = model.output_shape
    if isinstance(shape, list) or len(shape) != 2:
        raise ConfigError(f"model {model.name!r} is not a classifier (output shape {shape}); "
                          f"this tool needs class scores")
    return int(shape[-1])


# ---- images -----------------------------------------------------------------------------------

def load_images(paths: Sequence[str | os.PathLike], image_size: int) -> np.ndarray:
    """Image files to a float32 ``(n, size, size, 3)`` array of 0-255 pixels.

    Decoding and resizing are the ones training uses (:func:`transfer.data.load_normalized`:
    EXIF orientation applied, transparency composited on white; then the bilinear resize).
    """
    from PIL import UnidentifiedImageError

    from transfer.data import load_normalized, resize_images

    images = []
    for path in paths:
        try:
            images.append(resize_images(load_normalized(path), image_size).numpy())
        except UnidentifiedImageError as exc:
            raise DataError(f"cannot decode image {str(path)!r}: not an image file Pillow "
                            f"reads (JPEG, PNG, GIF, BMP, TIFF, WebP)") from exc
        except OSError as exc:
            raise DataError(f"cannot read image {str(path)!r}: {exc.strerror or exc}") from exc
    if not images:
        return np.zeros((0, image_size, image_size, 3), np.float32)
    return np.stack(images).astype(np.float32)


def list_images(root: str | os.PathLike) -> tuple[list[str], list[str | None]]:
    """Image files under a folder, recursively, with their class (first sub-folder) if any.

    The files are :func:`transfer.data.list_image_files`'s: sorted, hidden and system files left
    out, as training lists them.
    """
    from transfer.data import IMAGE_SUFFIXES, list_image_files

    root = Path(root)
    paths = list_image_files(root)
    labels = [rel.parts[0] if len(rel.parts) > 1 else None
              for rel in (Path(path).relative_to(root) for path in paths)]
    if not paths:
        raise DataError(f"data folder {str(root)!r} holds no images "
                        f"({', '.join(IMAGE_SUFFIXES)})")
    return paths, labels


def normalise(array: np.ndarray, axis=None) -> np.ndarray:
    """Min-max scale to [0, 1] (over ``axis``); constant slices become 0."""
    array = np.asarray(array, dtype=np.float32)
    low = array.min(axis=axis, keepdims=True)
    high = array.max(axis=axis, keepdims=True)
    span = np.where(high > low, high - low, 1.0)
    return np.where(high > low, (array - low) / span, 0.0).astype(np.float32)


def tile(tiles: np.ndarray, *, columns: int | None = None, gap: int = 1,
         fill: float = 1.0) -> np.ndarray:
    """``(n, h, w[, c])`` tiles into one grid image with ``gap`` pixels between them."""
    n, h, w = tiles.shape[:3]
    columns = columns or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / columns)
    shape = (rows * h + (rows - 1) * gap, columns * w + (columns - 1) * gap, *tiles.shape[3:])
    grid = np.full(shape, fill, dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, columns)
        grid[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = tiles[i]
    return grid


def upscale(tiles: np.ndarray, minimum: int) -> np.ndarray:
    """Nearest-neighbour upscaling of ``(n, h, w, ...)`` tiles so each is at least ``minimum``."""
    factor = max(1, math.ceil(minimum / max(tiles.shape[1], tiles.shape[2])))
    return tiles.repeat(factor, axis=1).repeat(factor, axis=2)


def as_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def safe_name(text: str) -> str:
    """A layer path or file stem made safe for a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def write_json(data: dict, path: str | os.PathLike) -> Path:
    """Write ``data`` as JSON, never over a file the toolkit did not write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    outputs.check_file(path)
    return rundir_write_json(path, {"written_by": outputs.SOFTWARE, **data})
