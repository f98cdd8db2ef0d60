"""Backbones for every task, and the one function that decides what is trainable.

A task's model takes raw 0-255 RGB pixels at a fixed size. Inside it: optional augmentation
(:func:`augmentation`, active only in training), luma for one-channel backbones
(:func:`rgb_adapter`), the backbone without its top (:func:`build_backbone`; every zoo model
holds its own preprocessing, so the user never has to know it), then the task's head or decoder
(classification's is in :mod:`transfer.tasks.classification.model`). Every layer is one of
Keras's own, so the ``.keras`` file loads where this package is not installed. The backbone's
layer is named ``"backbone"`` (``"encoder"`` in a segmenter) so that :func:`set_trainable` and
the feature cache find it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
from pathlib import Path

import keras

import zoo
from transfer.errors import ConfigError
from transfer.rundir import load_keras_model
from zoo import leaf_layers, walk_layers

log = logging.getLogger(__name__)

BACKBONE = "backbone"
RGB_ADAPTER = "rgb_to_gray"
FROZEN_PARTS = (BACKBONE, "encoder")  # zoo.segmentation.ENCODER
LEGACY_PREPROCESS = "preprocess"  # the layer classifiers held before the zoo's models did


@dataclasses.dataclass(frozen=True)
class BackboneInfo:
    """What the transfer package needs to know about a backbone, from the registry or a file."""

    name: str
    preprocessing: str
    channels: int
    default_size: int
    min_size: int
    blocks: tuple[str, ...]
    default_unfreeze: str | None


def backbone_info(model: str, *, trust_model: bool = False) -> BackboneInfo:
    """Metadata of a registry model, or of a ``.keras`` classifier trained by this toolkit
    (loaded with ``safe_mode=False`` when ``trust_model``)."""
    if _is_model_file(model):
        path = Path(model)
        stamp = path.stat().st_mtime_ns if path.is_file() else 0
        return _model_file_info(str(path.resolve()), stamp, trust_model)
    spec = zoo.get_spec(model)
    return BackboneInfo(name=spec.name, preprocessing=spec.preprocessing, channels=spec.channels,
                        default_size=spec.default_input_shape[0], min_size=spec.min_input_size,
                        blocks=spec.blocks, default_unfreeze=spec.default_unfreeze)


@functools.lru_cache(maxsize=8)
def _model_file_info(path: str, mtime_ns: int, trust_model: bool) -> BackboneInfo:
    """Read once per file version: a run asks for the info several times."""
    previous = load_keras_model(path, trust_model=trust_model)
    backbone = _file_backbone(previous, path)
    size = previous.input_shape[1]
    contract = Path(path).with_name("contract.json")
    mode = (json.loads(contract.read_text()).get("preprocessing", "unknown")
            if contract.is_file() else _legacy_mode(previous))
    return BackboneInfo(name=backbone.name, preprocessing=mode,
                        channels=int(backbone.input_shape[-1]), default_size=size,
                        min_size=size, blocks=(), default_unfreeze=None)


def _legacy_mode(model: keras.Model) -> str:
    try:
        return model.get_layer(LEGACY_PREPROCESS).mode
    except ValueError:
        return "unknown"


def _file_backbone(previous: keras.Model, path: str | os.PathLike) -> keras.Model:
    """The backbone of a classifier trained by this toolkit, taking raw pixels.

    Classifiers written before the zoo's models held their own preprocessing kept it in a
    ``preprocess`` layer in front of the backbone; the two are joined into one backbone.

    Raises:
        ConfigError: the model has no ``backbone`` layer (it was not made by ``zoo train``).
    """
    if BACKBONE not in {layer.name for layer in previous.layers}:
        raise ConfigError(
            f"model file {str(path)!r} was not made by 'zoo train' (it has no {BACKBONE!r} "
            f"layer), so there is no backbone to transfer from it; pass a registry name (see "
            f"'zoo list') or the model.keras of a 'zoo train' run")
    backbone = previous.get_layer(BACKBONE)
    try:
        legacy = previous.get_layer(LEGACY_PREPROCESS)
    except ValueError:
        return backbone
    image = keras.Input(previous.input_shape[1:], name="raw")
    return keras.Model(image, backbone(legacy(image)), name=BACKBONE)


def rgb_adapter(channels: int) -> keras.Model | None:
    """What turns raw RGB images into the backbone's input: ``None`` for RGB backbones; for
    one-channel backbones (LeNet-5) luma, ITU-R BT.601 weights as ``tf.image.rgb_to_grayscale``,
    from Keras's own weightless layers, so the model loads in plain Keras."""
    if channels == 3:
        return None
    if channels != 1:
        raise ConfigError(f"backbones take 1 or 3 channels, not {channels}")
    layers = keras.layers
    image = keras.Input((None, None, 3), name="rgb")
    weighted = layers.Rescaling([0.2989, 0.5870, 0.1140], name="luma_weights")(image)
    # channels_first Cropping2D crops the last two axes: on channels-last data, one channel.
    parts = [layers.Cropping2D(((0, 0), (i, 2 - i)), data_format="channels_first",
                               name=f"luma_channel{i}")(weighted) for i in range(3)]
    return keras.Model(image, layers.Add(name="luma")(parts), name=RGB_ADAPTER)


def _is_model_file(model: str) -> bool:
    return str(model).endswith(".keras") or os.sep in str(model)


def build_backbone(model: str, *, image_size: int, weights: str | None,
                   trust_model: bool = False) -> keras.Model:
    """The backbone without its top, ending in global average pooling; from a ``.keras`` file,
    loaded with ``safe_mode=False`` when ``trust_model``."""
    if _is_model_file(model):
        backbone = _file_backbone(load_keras_model(model, trust_model=trust_model), model)
        if weights not in (None, "imagenet"):
            log.info("weights=%r ignored: the backbone of %s keeps its trained weights",
                     weights, model)
        return backbone
    spec = zoo.get_spec(model)
    return zoo.create_model(model, include_top=False, pooling="avg", weights=weights,
                            input_shape=(image_size, image_size, spec.channels))


def augmentation(seed: int, ops: str = "flip,crop,rotate,colour") -> keras.Sequential | None:
    """The training-only augmentation layers of ``ops`` (see ``TrainConfig.augment``), or
    ``None``: horizontal / vertical flips, crops (zoom in + translation), scale (zoom in and
    out), small rotations and colour changes (brightness, contrast)."""
    layers, chosen = keras.layers, set(filter(None, ops.split(",")))
    steps = [
        ("flip", lambda: layers.RandomFlip("horizontal", seed=seed)),
        ("vflip", lambda: layers.RandomFlip("vertical", seed=seed + 6)),
        ("rotate", lambda: layers.RandomRotation(0.05, fill_mode="reflect", seed=seed + 1)),
        ("crop", lambda: layers.RandomZoom((-0.15, 0.0), fill_mode="reflect", seed=seed + 2)),
        ("scale", lambda: layers.RandomZoom((-0.1, 0.1), fill_mode="reflect", seed=seed + 7)),
        ("crop", lambda: layers.RandomTranslation(0.1, 0.1, fill_mode="reflect",
                                                  seed=seed + 3)),
        ("colour", lambda: layers.RandomBrightness(0.15, value_range=(0, 255), seed=seed + 4)),
        ("colour", lambda: layers.RandomContrast(0.15, value_range=(0, 255), seed=seed + 5)),
    ]
    built = [make() for op, make in steps if op in chosen]
    return keras.Sequential(built, name="augmentation") if built else None


@dataclasses.dataclass(frozen=True)
class TrainableSummary:
    """What trains in one phase."""

    phase: str
    trainable_weights: int
    trainable_params: int
    frozen_params: int
    unfreeze_from: str | None = None
    batchnorm: str | None = None  # fine-tune: the unfrozen BatchNorm layers "frozen" or "train"

    def __str__(self) -> str:
        where = f" from block {self.unfreeze_from!r}" if self.unfreeze_from else ""
        bn = f", BatchNorm {self.batchnorm}" if self.batchnorm else ""
        return (f"phase {self.phase}{where}: {self.trainable_weights} trainable weight tensors, "
                f"{self.trainable_params:,} trainable / {self.frozen_params:,} frozen "
                f"parameters{bn}")


def frozen_part(model: keras.Model) -> keras.Model | None:
    """The nested model that the feature-extractor and fine-tune modes freeze: a classifier's
    ``backbone`` or a segmenter's ``encoder``; ``None`` for a model that trains whole."""
    for layer in model.layers:
        if layer.name in FROZEN_PARTS and isinstance(layer, keras.Model):
            return layer
    return None


def encoder_split(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """``(features, head)`` of a model built on a nested encoder (a segmenter, a detector):
    raw images to the encoder's taps, and the taps to the model's outputs, sharing its layers;
    the feature cache computes the first once and trains the second."""
    encoder = frozen_part(model)
    if encoder is None:
        raise ConfigError(f"model {model.name!r} has no encoder whose features could be "
                          f"cached")
    taps = list(encoder._inbound_nodes[0].output_tensors)
    return (keras.Model(model.inputs, taps, name="features"),
            keras.Model(taps, model.outputs, name="head"))


def set_trainable(classifier: keras.Model, phase: str, *, blocks: tuple[str, ...] = (),
                  unfreeze_from: str | None = None,
                  train_batchnorm: bool = False) -> TrainableSummary:
    """The one function that decides what trains. Recompile the model after calling it.

    Phases:
        ``"head"``: backbone frozen, head trainable (feature-extractor, first phase of fine-tune).
        ``"fine-tune"``: backbone layers from block ``unfreeze_from`` on are trainable, except
            BatchNormalization layers, which stay frozen (and in inference mode) unless
            ``train_batchnorm``; earlier layers stay frozen. Without ``unfreeze_from`` the whole
            backbone is unfrozen.
        ``"full"``: everything trains, BatchNormalization included.
    """
    backbone = frozen_part(classifier)
    classifier.trainable = True
    if phase == "full":
        for _, layer in walk_layers(classifier):
            layer.trainable = True
    elif backbone is None:
        raise ConfigError(f"model {classifier.name!r} has no backbone or encoder to freeze; "
                          f"it trains whole (mode full-retrain)")
    elif phase == "head":
        backbone.trainable = False
    elif phase == "fine-tune":
        backbone.trainable = True
        for _, layer in walk_layers(backbone):  # nested models too, before their layers
            layer.trainable = True
        layers = list(leaf_layers(backbone))
        start = 0
        if unfreeze_from is not None:
            if blocks and unfreeze_from not in blocks:
                raise ConfigError(
                    f"unknown block {unfreeze_from!r} for --unfreeze-from; this backbone's "
                    f"blocks are: {', '.join(blocks)}")
            matches = [i for i, layer in enumerate(layers) if layer.name.startswith(unfreeze_from)]
            if not matches:
                raise ConfigError(f"no backbone layer is named after block {unfreeze_from!r}")
            start = matches[0]
        for i, layer in enumerate(layers):
            is_bn = isinstance(layer, keras.layers.BatchNormalization)
            layer.trainable = i >= start and (train_batchnorm or not is_bn)
    else:
        raise ConfigError(f"unknown phase {phase!r}; expected 'head', 'fine-tune' or 'full'")
    for layer in classifier.layers:  # the head (or decoder): everything but the backbone
        if layer is not backbone:
            layer.trainable = True
    trainable = sum(math.prod(w.shape) for w in classifier.trainable_weights)
    frozen = sum(math.prod(w.shape) for w in classifier.non_trainable_weights)
    fine = phase == "fine-tune"
    return TrainableSummary(phase, len(classifier.trainable_weights), trainable, frozen,
                            unfreeze_from if fine else None,
                            ("train" if train_batchnorm else "frozen") if fine else None)


def resolve_unfreeze(info: BackboneInfo, *, unfreeze_from: str | None = None,
                     unfreeze_top: int | None = None) -> str | None:
    """The block fine-tuning unfreezes from: ``unfreeze_from`` by name, or the first of the top
    ``unfreeze_top`` blocks, or the backbone's default (``None``: the whole backbone)."""
    if unfreeze_from is not None and unfreeze_top is not None:
        raise ConfigError("give --unfreeze-from BLOCK or --unfreeze-top N, not both")
    if unfreeze_from is not None and info.blocks and unfreeze_from not in info.blocks:
        raise ConfigError(f"unknown block {unfreeze_from!r} for --unfreeze-from; the blocks of "
                          f"{info.name!r} are: {', '.join(info.blocks)}")
    if unfreeze_top is None:
        return unfreeze_from or info.default_unfreeze
    if not info.blocks:
        raise ConfigError(f"--unfreeze-top needs a backbone with named blocks; "
                          f"{info.name!r} has none, so use --unfreeze-from or unfreeze it whole")
    if not 1 <= unfreeze_top <= len(info.blocks):
        raise ConfigError(f"--unfreeze-top must be between 1 and {len(info.blocks)} (the blocks "
                          f"of {info.name!r}: {', '.join(info.blocks)}); got {unfreeze_top}")
    return info.blocks[-unfreeze_top]


def layer_lr_multipliers(classifier: keras.Model, *, blocks: tuple[str, ...],
                         unfreeze_from: str | None, ratio: float
                         ) -> tuple[dict[str, float], dict[str, float]]:
    """Discriminative learning rates for the fine-tune phase, spaced geometrically by block.

    The unfrozen blocks (from ``unfreeze_from``, or all of them) and the head form groups in
    order; the earliest block trains at ``1 / ratio`` of the learning rate and each later group
    ``ratio ** (1 / groups)`` times faster, up to the full rate for the head. A backbone without
    named blocks is one group at ``1 / ratio``.

    Returns:
        ``(by_variable, by_block)``: learning-rate multipliers by trainable-variable path (for
        :func:`transfer.optimizers.make_optimizer`), and by block name (for the run log).
    """
    if ratio < 1:
        raise ConfigError(f"discriminative learning-rate ratio must be >= 1, got {ratio}")
    layers = list(leaf_layers(frozen_part(classifier)))
    starts = []
    for block in blocks:
        index = next((i for i, layer in enumerate(layers) if layer.name.startswith(block)), None)
        if index is not None:
            starts.append((index, block))
    first = blocks.index(unfreeze_from) if unfreeze_from in blocks else 0
    groups = [block for _, block in starts if blocks.index(block) >= first] or ["backbone"]
    steps = len(groups)
    by_block = {name: ratio ** (-(steps - g) / steps) for g, name in enumerate(groups)}
    by_variable: dict[str, float] = {}
    for i, layer in enumerate(layers):
        owner = [block for start, block in starts if start <= i]
        group = owner[-1] if owner and owner[-1] in by_block else groups[0]
        for variable in layer.trainable_weights:
            by_variable[variable.path] = by_block[group]
    by_block["head"] = 1.0
    return by_variable, by_block
