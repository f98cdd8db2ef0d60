"""Pieces every builder shares: argument checks, input shapes, preprocessing, heads and weights.

Builders call these in the body order the house style asks for: validate arguments, resolve the
input shape, input and preprocessing, stem, blocks, head, ``keras.Model``, load weights.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import keras

from zoo.errors import InputShapeError, WeightsError, ZooError
from zoo.registry import get_spec

WEIGHT_SUFFIXES = (".weights.h5", ".h5", ".keras")

# Name prefix of the preprocessing layers: part of the layer-name contract.
PREPROCESS_PREFIX = "preprocess_"
# ImageNet statistics on the 0-255 scale, as in keras.applications.imagenet_utils.
IMAGENET_MEAN_RGB = (123.675, 116.28, 103.53)
IMAGENET_STD_RGB = (58.395, 57.12, 57.375)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def validate_args(name: str, *, include_top: bool, weights: str | None, classes: int,
                  pooling: str | None) -> None:
    """Check builder arguments before anything is built; messages quote the bad value."""
    spec = get_spec(name)
    if pooling not in (None, "avg", "max"):
        raise ZooError(f"{name}: pooling must be None, 'avg' or 'max', got {pooling!r}")
    if not isinstance(classes, int) or classes < 1:
        raise ZooError(f"{name}: classes must be a positive integer, got {classes!r}")
    if weights is None or is_weights_path(weights):
        return
    if weights not in spec.pretrained:
        offered = ", ".join(repr(w) for w in spec.pretrained) or "no named weight sets"
        raise WeightsError(
            f"{name}: unknown weights {weights!r}; this model offers {offered}. Pass None for "
            f"random initialisation or a path to a {'/'.join(WEIGHT_SUFFIXES)} file."
        )


def is_weights_path(weights: str | os.PathLike | None) -> bool:
    if weights is None:
        return False
    text = os.fspath(weights)
    return text.endswith(WEIGHT_SUFFIXES) or os.sep in text or Path(text).exists()


def resolve_input_shape(name: str, input_shape: tuple[int, ...] | None,
                        include_top: bool = True) -> tuple[int, int, int]:
    """The input shape to build with: the spec's default, or a checked user shape.

    Height and width may be ``None`` (any size) for fully-convolutional backbones built with
    ``include_top=False``; they must otherwise be at least the spec's minimum, and equal to the
    default for models with a fixed input size and a top.
    """
    spec = get_spec(name)
    if input_shape is None:
        return spec.default_input_shape
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise InputShapeError(
            f"{name}: input_shape must be (height, width, channels), got {input_shape!r}")
    height, width, channels = shape
    if channels != spec.channels:
        raise InputShapeError(
            f"{name}: expects {spec.channels} input channel(s), got input_shape {shape!r}")
    for size in (height, width):
        if size is None:
            if include_top and spec.fixed_input_size:
                raise InputShapeError(
                    f"{name}: with include_top=True the input size must be fixed to "
                    f"{spec.default_input_shape[:2]}, got {shape!r}")
            continue
        if size < spec.min_input_size:
            raise InputShapeError(
                f"{name}: input size must be at least {spec.min_input_size}x"
                f"{spec.min_input_size}, got {shape[:2]}. Resize the images or choose a model "
                f"that accepts smaller inputs.")
    if include_top and spec.fixed_input_size and shape[:2] != spec.default_input_shape[:2]:
        raise InputShapeError(
            f"{name}: with include_top=True the input must be {spec.default_input_shape[:2]}, "
            f"got {shape[:2]}. Use include_top=False to build a backbone for other sizes.")
    return shape  # type: ignore[return-value]


def model_input(name: str, shape: tuple, include_preprocessing: bool, *,
                input_name: str | None = "input"):
    """The input of raw 0-255 pixels, and the tensor the network starts from.

    With ``include_preprocessing`` the second is the input after the registry's preprocessing
    mode for ``name`` (see :func:`preprocess`); without, it is the input itself. Every builder,
    classic or keras.applications wrapper, gets its preprocessing here.

    Returns:
        ``(inputs, x)``: the ``keras.Input`` and the tensor to build the network on.
    """
    inputs = keras.Input(shape=shape, name=input_name)
    if not include_preprocessing:
        return inputs, inputs
    return inputs, preprocess(inputs, get_spec(name).preprocessing, channels=shape[-1])


def preprocess(x, mode: str, *, channels: int):
    """Apply a preprocessing mode to raw 0-255 pixels with Keras's own layers, none with weights.

    Only built-in layers are used, so a saved ``.keras`` model loads where Keras is installed
    and this package is not. None of them has a weight: parameter and MAC counts stay those of
    the network, and weight files, which Keras matches by position (legacy ``.h5``) or by layer
    class and order (``.weights.h5``), fit the model with or without its preprocessing. Every
    layer computes in float32 whatever the global dtype policy: subtracting a mean of ~120 from
    0-255 values in bfloat16 would keep less than three significant digits.

    Modes (as ``keras.applications.imagenet_utils.preprocess_input`` and Keras's
    ``include_preprocessing`` layers): ``"tf"`` ``x / 127.5 - 1``; ``"tf128"`` ``x / 128 - 1``;
    ``"unit"`` ``x / 255``; ``"torch"`` ``(x - mean) / std`` with the ImageNet statistics;
    ``"caffe"`` RGB to BGR, then the ImageNet mean (in BGR order) subtracted; ``"none"`` nothing.
    One-channel inputs use the mean of the three channels' statistics and are not reordered.
    """
    layers = keras.layers
    if mode == "none":
        return x
    if mode in _SCALES:
        scale, offset = _SCALES[mode]
        return layers.Rescaling(scale, offset, dtype="float32",
                                name=f"{PREPROCESS_PREFIX}rescaling")(x)
    if mode == "torch":
        mean, std = IMAGENET_MEAN_RGB, IMAGENET_STD_RGB
    elif mode == "caffe":
        mean, std = CAFFE_MEAN_BGR, (1.0, 1.0, 1.0)
        if channels == 3:
            x = _rgb_to_bgr(x)
    else:
        raise ZooError(f"unknown preprocessing mode {mode!r}")
    if channels == 1:
        mean, std = (sum(mean) / 3,), (sum(std) / 3,)
    # Given mean and variance, Normalization holds them as constants (config), not weights.
    return layers.Normalization(mean=list(mean), variance=[s * s for s in std], dtype="float32",
                                name=f"{PREPROCESS_PREFIX}normalization")(x)


_SCALES = {"tf": (1 / 127.5, -1.0), "tf128": (1 / 128, -1.0), "unit": (1 / 255, 0.0)}


def _rgb_to_bgr(x):
    """Reverse the channel order without weights: the three channels (:func:`channel_slice`)
    concatenated in reverse order. Keras has no channel-permutation layer, and a fixed 1x1
    convolution would add a weighted layer in front of the network, shifting every positional
    weight match."""
    channels = [channel_slice(x, index, index + 1, name=f"{PREPROCESS_PREFIX}{colour}",
                              dtype="float32")
                for index, colour in ((2, "blue"), (1, "green"), (0, "red"))]
    return keras.layers.Concatenate(axis=-1, dtype="float32", name=f"{PREPROCESS_PREFIX}bgr")(
        channels)


def channel_slice(x, start: int, stop: int, *, name: str, dtype: str | None = None):
    """Channels ``start .. stop - 1`` of a channels-last map, cut by a layer without weights.

    ``Cropping2D`` in ``channels_first`` format crops the last two axes, so on a channels-last
    tensor it crops the channels. A built-in layer, unlike a ``Lambda``, keeps ``.keras`` files
    loadable in plain Keras's safe mode, and converts to TFLite builtins.
    """
    return keras.layers.Cropping2D(((0, 0), (start, x.shape[-1] - stop)),
                                   data_format="channels_first", dtype=dtype, name=name)(x)


def classifier_head(x, *, include_top: bool, pooling: str | None, classes: int,
                    classifier_activation: str | None, name: str = "predictions",
                    kernel_initializer: str = "glorot_uniform"):
    """Global pooling + dense classifier, or the bare/pooled features for a backbone."""
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        return keras.layers.Dense(classes, activation=classifier_activation,
                                  kernel_initializer=kernel_initializer, name=name)(x)
    return pool_features(x, pooling)


def pool_features(x, pooling: str | None):
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x


def load_weights(model: keras.Model, weights: str | os.PathLike | None) -> keras.Model:
    """Load a weight file into ``model``; named weight sets are handled by each wrapper.

    A ``.keras`` file is read as a whole model and its weights are copied layer by layer, so a
    model saved with or without its top loads into a backbone of the same architecture.
    """
    if weights is None or not is_weights_path(weights):
        return model
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(f"weights file {str(path)!r} does not exist")
    try:
        if path.name.endswith(".keras"):
            source = keras.saving.load_model(path, compile=False, safe_mode=True)
            _copy_weights_by_name(source, model, path)
        else:
            model.load_weights(path)
    except WeightsError:
        raise
    except Exception as exc:  # Keras raises ValueError/KeyError/OSError on mismatches
        raise WeightsError(
            f"weights file {str(path)!r} does not fit model {model.name!r}: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from exc
    return model


def _copy_weights_by_name(source: keras.Model, target: keras.Model, path: Path) -> None:
    by_name = {layer.name: layer for layer in leaf_layers(source)}
    copied = 0
    for layer in leaf_layers(target):
        if not layer.weights or layer.name not in by_name:
            continue
        layer.set_weights(by_name[layer.name].get_weights())
        copied += 1
    if copied == 0:
        raise WeightsError(
            f"weights file {str(path)!r} shares no layer names with model {target.name!r}")


def walk_layers(model: keras.Model, prefix: str = "", *,
                skip: tuple[str, ...] = ()) -> Iterator[tuple[str, keras.layers.Layer]]:
    """Every layer as ``(path, layer)`` in order, a nested model listed and then entered (unless
    its name is in ``skip``); paths join names with ``/``, as in ``"backbone/conv1"``."""
    for layer in model.layers:
        path = f"{prefix}{layer.name}"
        yield path, layer
        if isinstance(layer, keras.Model) and layer.name not in skip:
            yield from walk_layers(layer, f"{path}/", skip=skip)


def leaf_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    """The layers of ``model`` in order, nested models flattened."""
    return (layer for _, layer in walk_layers(model) if not isinstance(layer, keras.Model))
