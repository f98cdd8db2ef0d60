"""What every visualisation shares: loading a model, finding layers, tapping them, images, PNGs.

Every tool works on one kind of model: a Keras model taking raw 0-255 RGB images of a fixed
size. :func:`load_for_viz` makes one from a run directory, a ``.keras`` classifier trained by this
toolkit, or a registry name (the registry model wrapped behind its own ``Preprocess`` layer).

Layers are named by their path through nested models, ``"backbone/c1_conv"``; a bare name such
as ``"c1_conv"`` works when it is unique. :func:`tap_model` builds a model from the image to the
outputs (or inputs) of any layers, nested ones included, plus the predictions, and tells where
each cell of a spatial tap sits on the input image (used to align Grad-CAM heatmaps exactly,
also for networks with ``valid`` padding).
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, NamedTuple, Sequence

import numpy as np

from transfer.errors import ConfigError, DataError, RunDirError
from transfer.rundir import RunDir, load_keras_model
from zoo._common import walk_layers as zoo_walk_layers

if TYPE_CHECKING:
    import keras
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

# Layers whose outputs are still the image, not features: never a "feature" layer.
_IMAGE_LAYERS = ("image", "augmentation", "preprocess")
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
    from zoo.layers import Preprocess

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
    inner = zoo.create_model(name, weights=weights, input_shape=input_shape)
    size = int(inner.input_shape[1])
    image = keras.Input((size, size, 3), name="image")
    x = Preprocess(spec.preprocessing, channels=spec.channels, name="preprocess")(image)
    model = keras.Model(image, inner(x), name=f"{name}_viz")
    class_names = _imagenet_names() if (weights == "imagenet"
                                        and model.output_shape[-1] == 1000) else None
    return VizModel(model, class_names, size)


def _imagenet_names() -> list[str] | None:
    """ImageNet class names from Keras's cache, if a download left them there (never fetched)."""
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    path = home / "models" / "imagenet_class_index.json"
    if not path.is_file():
        return None
    index = json.loads(path.read_text())
    return [index[str(i)][1] for i in range(1000)]


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

@dataclasses.dataclass(frozen=True)
class Geometry:
    """Where the cells of a spatial tensor sit on the input image, per axis.

    Cell ``i`` of a row is centred on input pixel ``y0 + sy * i`` (pixel centres at integers).
    """

    y0: float
    sy: float
    x0: float
    sx: float

    def then(self, inner: Geometry) -> Geometry:
        """This geometry followed by ``inner`` (which is relative to this tensor)."""
        return Geometry(self.y0 + self.sy * inner.y0, self.sy * inner.sy,
                        self.x0 + self.sx * inner.x0, self.sx * inner.sx)


IDENTITY = Geometry(0.0, 1.0, 0.0, 1.0)


@dataclasses.dataclass
class TapModel:
    """A model from the image to ``[*taps, *outputs]``, and the geometry of each tap."""

    model: keras.Model
    paths: list[str]
    geometries: list[Geometry | None]

    def __call__(self, images, training: bool = False):
        return self.model(images, training=training)


def tap_model(model: keras.Model, taps: Sequence[str | tuple[str, str]]) -> TapModel:
    """A model giving the outputs (or inputs) of layers, nested ones included, then the outputs.

    Args:
        model: a functional model, possibly holding nested functional models.
        taps: layer paths or bare names (their outputs), or ``(name, "input")`` for the tensor
            going into a layer.

    Returns:
        A :class:`TapModel` whose model returns a list: one tensor per tap, then the model's
        outputs. The layers (and weights) are shared with ``model``.
    """
    import keras

    resolved = []
    for tap in taps:
        name, where = (tap, "output") if isinstance(tap, str) else tap
        if where not in ("output", "input"):
            raise ConfigError(f"a tap is a layer's 'output' or 'input', got {where!r}")
        path, _ = find_layer(model, name)
        resolved.append((tuple(path.split("/")), where))
    tapped, geometries, _ = _tap_functional(model, resolved)
    n_out = len(tapped.outputs) - len(resolved)
    reordered = keras.Model(tapped.input, [*tapped.outputs[n_out:], *tapped.outputs[:n_out]],
                            name=f"{model.name}_taps")
    return TapModel(reordered, ["/".join(p) for p, _ in resolved], geometries)


def _tap_functional(model, targets):
    """Rebuild ``model`` on new inputs, collecting the targets; recurses into nested models."""
    import keras

    refusal = (f"cannot look inside {model.name!r}: only functional models (and functional "
               f"models nested in them) can be tapped")
    try:
        if isinstance(model, keras.Sequential):
            raise ConfigError(refusal)
        structure = model.input
    except AttributeError:  # a subclassed model has no graph to walk
        raise ConfigError(refusal) from None
    inputs = keras.tree.map_structure(
        lambda t: keras.Input(batch_shape=t.shape, dtype=t.dtype, name=f"{model.name}_{t.name}"),
        structure)
    geometry = {id(t): IDENTITY for t in keras.tree.flatten(inputs)}
    stash: dict[tuple, object] = {}
    stash_geometry: dict[tuple, Geometry | None] = {}

    def call(layer, *args, **kwargs):
        first = _first_tensor(args)
        in_geo = geometry.get(id(first)) if first is not None else None
        mine = [t for t in targets if t[0][0] == layer.name]
        deeper = [(path[1:], where) for path, where in mine if len(path) > 1]
        if isinstance(layer, keras.Model) and not isinstance(layer, keras.Sequential):
            sub, sub_geos, out_geos = _tap_functional(layer, deeper)
            result = sub(*args, **kwargs)
            result = list(result) if isinstance(result, (list, tuple)) else [result]
            n_out = len(layer.outputs)
            for (path, where), tensor, geo in zip(deeper, result[n_out:], sub_geos):
                key = ((layer.name, *path), where)
                stash[key] = tensor
                stash_geometry[key] = _compose(in_geo, geo)
            out = result[0] if n_out == 1 else result[:n_out]
            out_geo = _compose(in_geo, out_geos[0])
        elif deeper:
            raise ConfigError(f"cannot look inside {layer.name!r}: only functional models "
                              f"(and functional models nested in them) can be tapped")
        else:
            out = layer(*args, **kwargs)
            out_geo = None
            if first is not None and not isinstance(out, (list, tuple, dict)):
                out_geo = _propagate(layer, in_geo, first.shape, out.shape)
        for path, where in mine:
            if len(path) == 1:
                stash[(path, where)] = first if where == "input" else out
                stash_geometry[(path, where)] = in_geo if where == "input" else out_geo
        if not isinstance(out, (list, tuple, dict)):
            geometry[id(out)] = out_geo
        return out

    try:
        clone = keras.models.clone_model(model, input_tensors=inputs,
                                         clone_function=lambda layer: layer, call_function=call)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"{refusal} ({exc})") from exc
    missing = [t for t in targets if t not in stash]
    if missing:
        raise ConfigError(f"layer(s) {', '.join('/'.join(p) for p, _ in missing)} of "
                          f"{model.name!r} are not on the path from its input to its output")
    outputs = list(clone.outputs)
    # Outputs first, then the taps: a caller one level up slices them off in that order.
    tapped = keras.Model(clone.input, [*outputs, *(stash[t] for t in targets)],
                         name=f"{model.name}_tapped")
    return tapped, [stash_geometry[t] for t in targets], [geometry.get(id(o)) for o in outputs]


def _first_tensor(args):
    import keras

    for arg in args:
        if isinstance(arg, (list, tuple)):
            arg = arg[0] if arg else None
        if isinstance(arg, keras.KerasTensor):
            return arg
    return None


def _compose(outer: Geometry | None, inner: Geometry | None) -> Geometry | None:
    if outer is None or inner is None:
        return None
    return outer.then(inner)


def _propagate(layer, geo: Geometry | None, in_shape, out_shape) -> Geometry | None:
    """Geometry of a layer's output from its input's: exact for convolutions and pooling."""
    if geo is None or len(in_shape) != 4 or len(out_shape) != 4:
        return None
    kernel = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
    strides = getattr(layer, "strides", None)
    if kernel is not None and strides is not None:
        dilation = getattr(layer, "dilation_rate", (1, 1)) or (1, 1)
        padding = getattr(layer, "padding", "valid")
        rel = []
        for axis in range(2):
            k = (kernel[axis] - 1) * dilation[axis] + 1
            s = strides[axis]
            n = in_shape[1 + axis]
            if padding == "same":
                if n is None:
                    return None
                out = math.ceil(n / s)
                before = max((out - 1) * s + k - n, 0) // 2
            else:
                before = 0
            rel.append(((k - 1) / 2 - before, float(s)))
        return geo.then(Geometry(rel[0][0], rel[0][1], rel[1][0], rel[1][1]))
    name = type(layer).__name__
    if name == "ZeroPadding2D":
        (top, _), (left, _) = layer.padding
        return geo.then(Geometry(-top, 1.0, -left, 1.0))
    if name == "Cropping2D":
        (top, _), (left, _) = layer.cropping
        return geo.then(Geometry(top, 1.0, left, 1.0))
    if tuple(in_shape[1:3]) == tuple(out_shape[1:3]):
        return geo
    return None


# ---- scores -----------------------------------------------------------------------------------

def class_scores_fn(model: keras.Model):
    """A function ``images -> (scores, probabilities)`` for gradients, and what the scores are.

    Scores are the logits when the model ends in a dense softmax layer (its input is tapped and
    the layer's kernel applied), so gradients do not vanish on confident predictions; otherwise
    they are the outputs themselves.
    """
    from keras import ops

    dense = final_dense(model)
    if dense is not None and getattr(dense[1].activation, "__name__", "") == "softmax":
        path, layer = dense
        tap = tap_model(model, [(path, "input")])

        def scores(images):
            features, probabilities = tap(images)
            logits = ops.matmul(features, layer.kernel)
            if layer.use_bias:
                logits = logits + layer.bias
            return logits, probabilities

        return scores, "logits"

    def outputs(images):
        probabilities = model(images, training=False)
        return probabilities, probabilities

    return outputs, "outputs"


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

    Decoding and resizing are the ops training and serving use (``transfer.data``).
    """
    import tensorflow as tf

    from transfer.data import decode_and_resize

    images = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
            images.append(decode_and_resize(tf.constant(data), image_size).numpy())
        except OSError as exc:
            raise DataError(f"cannot read image {str(path)!r}: {exc.strerror or exc}") from exc
        except tf.errors.InvalidArgumentError as exc:
            raise DataError(f"cannot decode image {str(path)!r}: not a JPEG, PNG, GIF or BMP "
                            f"file") from exc
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


# ---- figures ----------------------------------------------------------------------------------

def new_figure(width: float, height: float) -> Figure:
    """A matplotlib figure drawn with Agg, without pyplot's global state."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def figure_png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(figure_png(fig))
    log.debug("wrote %s", path)
    return path


def wrap_title(text: str, width_inches: float, fontsize: float = 10) -> str:
    """Wrap a title to the figure's width (about 0.55 em per character)."""
    import textwrap

    chars = max(12, int(width_inches * 72 / (0.55 * fontsize)))
    return "\n".join(textwrap.wrap(text, chars, break_on_hyphens=False, break_long_words=True))


def image_figure(image: np.ndarray, title: str | None = None, *, cmap: str | None = None,
                 min_width: int = 320) -> Figure:
    """One image shown pixel for pixel (scaled up to ``min_width``), with an optional title."""
    h, w = image.shape[:2]
    scale = max(1.0, min_width / w)
    width, height = w * scale / 100, h * scale / 100
    margin = 0.1
    title = wrap_title(title, width + 2 * margin) if title else ""
    title_h = 0.2 * (title.count("\n") + 1) + 0.15 if title else 0.0
    fig_w, fig_h = width + 2 * margin, height + 2 * margin + title_h
    fig = new_figure(fig_w, fig_h)
    ax = fig.add_axes((margin / fig_w, margin / fig_h, width / fig_w, height / fig_h))
    ax.imshow(image, cmap=cmap, interpolation="nearest", vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        fig.text(0.5, 1 - 0.08 / fig_h, title, ha="center", va="top", fontsize=10)
    return fig


def safe_name(text: str) -> str:
    """A layer path or file stem made safe for a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def write_json(data: dict, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    log.debug("wrote %s", path)
    return path
