"""U-Net (Ronneberger, Fischer and Brox, "U-Net: convolutional networks for biomedical image
segmentation", MICCAI 2015)."""

from __future__ import annotations

import keras

from zoo._common import load_weights, model_input, validate_args
from zoo.errors import InputShapeError, ZooError
from zoo.registry import get_spec, register_model

PADDINGS = ("valid", "same")
# The paper's input tile; without an input shape the builder uses the nearest size >= this one
# that the chosen padding and depth accept (572 itself for the paper's layout).
_PAPER_TILE = 572


def _he_normal() -> keras.initializers.Initializer:
    # Section 3: Gaussian with std sqrt(2/N), N the number of incoming nodes (fan-in); a fresh
    # instance per layer, so that unseeded initialisers do not repeat the same values.
    return keras.initializers.VarianceScaling(2.0, mode="fan_in",
                                              distribution="untruncated_normal")


def valid_output_size(size: int, depth: int = 4) -> int | None:
    """Output height/width of a ``padding="valid"`` U-Net for an input size, ``None`` if unfit.

    Each level loses 4 pixels to its two unpadded 3x3 convolutions; every 2x2 pooling must see an
    even size (section 2 of the paper) and every map must keep at least one pixel.
    """
    for _ in range(depth):
        size -= 4
        if size < 2 or size % 2:
            return None
        size //= 2
    size -= 4
    for _ in range(depth):
        if size < 1:
            return None
        size = 2 * size - 4
    return size if size >= 1 else None


def _accepts(size: int, padding: str, depth: int) -> bool:
    if padding == "valid":
        return valid_output_size(size, depth) is not None
    return size >= 2**depth and size % 2**depth == 0


def _resolve_input_shape(model_name: str, input_shape, padding: str,
                         depth: int) -> tuple[int, int, int]:
    """The input shape to build with; sizes depend on the padding and depth, not on one minimum.

    ``"valid"`` needs fixed sizes that :func:`valid_output_size` accepts (572, 188, 204, ...,
    every 16 pixels from 188 at depth 4); ``"same"`` needs multiples of ``2**depth``, or
    ``None`` for any such size at run time. Any number of channels is accepted: nothing (no
    pretrained weights) ties U-Net to the paper's one grey channel.
    """
    spec = get_spec(model_name)
    if input_shape is None:
        if all(_accepts(size, padding, depth) for size in spec.default_input_shape[:2]):
            return spec.default_input_shape
        size = next(s for s in range(_PAPER_TILE, 2 * _PAPER_TILE + 2**depth * 8)
                    if _accepts(s, padding, depth))
        return (size, size, spec.channels)
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise InputShapeError(
            f"{model_name}: input_shape must be (height, width, channels), got {input_shape!r}")
    if not isinstance(shape[-1], int) or shape[-1] < 1:
        raise InputShapeError(
            f"{model_name}: the number of input channels must be a positive integer, got "
            f"input_shape {shape!r}")
    for size in shape[:2]:
        if size is None and padding == "same":
            continue
        if size is None or not _accepts(size, padding, depth):
            raise InputShapeError(
                f"{model_name}: padding={padding!r} with depth={depth} cannot take input size "
                f"{shape[:2]}; {_size_hint(size, padding, depth)}")
    return shape  # type: ignore[return-value]


def _size_hint(size: int | None, padding: str, depth: int) -> str:
    if padding == "same":
        return f"use multiples of {2**depth} (or None for any such size at run time)."
    accepted = [s for s in range(1, (size or _PAPER_TILE) + 2**depth * 2)
                if _accepts(s, padding, depth)]
    nearby = ", ".join(str(s) for s in accepted[-3:])
    return (f"unpadded convolutions need a fixed size from {accepted[0]} in steps of "
            f"{2**depth} (e.g. {nearby}; 572 gives the paper's 388x388 output), or use "
            f"padding='same'.")


def _double_conv(x, filters: int, name: str, padding: str, batch_norm: bool):
    """Two 3x3 convolutions, each followed by ReLU (and BatchNorm before it if requested)."""
    for index in (1, 2):
        x = keras.layers.Conv2D(filters, 3, padding=padding, use_bias=not batch_norm,
                                kernel_initializer=_he_normal(), name=f"{name}_conv{index}")(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"{name}_bn{index}")(x)
        x = keras.layers.ReLU(name=f"{name}_relu{index}")(x)
    return x


def _center_crop(skip, target, name: str):
    """Crop the skip connection to the upsampled map ("cropping is necessary due to the loss of
    border pixels in every convolution")."""
    crops = []
    for axis in (1, 2):
        extra = skip.shape[axis] - target.shape[axis]
        crops.append((extra // 2, extra - extra // 2))
    if not any(sum(crop) for crop in crops):
        return skip
    return keras.layers.Cropping2D(tuple(crops), name=name)(skip)


def _build(model_name: str, *, include_top: bool, weights: str | None, input_shape,
           pooling: str | None, classes: int, classifier_activation: str | None, name: str,
           padding: str, batch_norm: bool, base_filters: int, depth: int,
           include_preprocessing: bool) -> keras.Model:
    validate_args(model_name, include_top=include_top, weights=weights, classes=classes,
                  pooling=pooling)
    if pooling is not None:
        raise ZooError(f"{model_name}: pooling is not meaningful for a segmentation model (the "
                       f"output is a per-pixel map); pass pooling=None, got {pooling!r}.")
    if padding not in PADDINGS:
        raise ZooError(f"{model_name}: padding must be one of {PADDINGS}, got {padding!r}")
    for option, value in (("base_filters", base_filters), ("depth", depth)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ZooError(f"{model_name}: {option} must be a positive integer, got {value!r}")
    shape = _resolve_input_shape(model_name, input_shape, padding, depth)
    inputs, x = model_input(model_name, shape, include_preprocessing)
    skips = []
    for level in range(1, depth + 1):
        x = _double_conv(x, base_filters * 2 ** (level - 1), f"enc{level}", padding, batch_norm)
        if level == depth:
            x = keras.layers.Dropout(0.5, name=f"enc{level}_dropout")(x)
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, strides=2, name=f"enc{level}_pool")(x)
    x = _double_conv(x, base_filters * 2**depth, "center", padding, batch_norm)
    x = keras.layers.Dropout(0.5, name="center_dropout")(x)
    for level in range(depth, 0, -1):
        filters = base_filters * 2 ** (level - 1)
        x = keras.layers.Conv2DTranspose(filters, 2, strides=2, kernel_initializer=_he_normal(),
                                         name=f"dec{level}_upconv")(x)
        skip = skips[level - 1]
        if padding == "valid":
            skip = _center_crop(skip, x, f"dec{level}_crop")
        x = keras.layers.Concatenate(name=f"dec{level}_concat")([skip, x])
        x = _double_conv(x, filters, f"dec{level}", padding, batch_norm)
    if include_top:
        x = keras.layers.Conv2D(classes, 1, activation=classifier_activation,
                                kernel_initializer=_he_normal(), name="predictions")(x)
    model = keras.Model(inputs, x, name=name)
    return load_weights(model, weights)


_PAPER = "Ronneberger et al. 2015, U-Net: Convolutional Networks for Biomedical Image Segmentation"
_BLOCKS = ("enc1", "enc2", "enc3", "enc4", "center", "dec4", "dec3", "dec2", "dec1")


@register_model(
    family="unet",
    paper=_PAPER,
    year=2015,
    default_input_shape=(572, 572, 1),
    min_input_size=188,
    fixed_input_size=False,
    preprocessing="unit",
    blocks=_BLOCKS,
    default_unfreeze="dec4",
    task="segmentation",
    default_classes=2,
)
def unet(
    *,
    include_top: bool = True,
    weights: str | None = None,
    input_shape: tuple[int, int, int] | None = None,
    pooling: str | None = None,
    classes: int = 2,
    classifier_activation: str | None = "softmax",
    name: str = "unet",
    include_preprocessing: bool = True,
    padding: str = "valid",
    batch_norm: bool = False,
    base_filters: int = 64,
    depth: int = 4,
) -> keras.Model:
    """U-Net: a contracting path and a symmetric expanding path joined by skip connections.

    Contracting path (``enc1``..``enc4``): two 3x3 convolutions with ReLU, then 2x2/2 max pooling,
    the number of filters doubling at each level (64-128-256-512), and the lowest level
    (``center``, 1024). Expanding path (``dec4``..``dec1``): 2x2 up-convolution halving the
    channels, concatenation with the (cropped) skip connection of the same level, two 3x3
    convolutions with ReLU. A final 1x1 convolution maps to ``classes`` channels with a per-pixel
    softmax (figure 1). Dropout 0.5 at the end of the contracting path (after the convolutions
    of ``enc4`` and ``center``), as the paper describes in section 3.1.

    With the paper's ``padding="valid"`` every convolution loses border pixels and skips are
    center-cropped: a 572x572 tile gives a 388x388 output (sizes must follow
    :func:`valid_output_size`; the smallest is 188, giving 4). With ``padding="same"`` the output
    has the size of the input, which must be a multiple of ``2**depth``; that layout is also
    registered on its own as :func:`unet_same`, so that ``create_model`` and the CLI reach it.
    ``blocks`` in the registry name the default depth of 4; ``default_unfreeze`` is the whole
    expanding path. 31,030,658 parameters with the defaults (1 channel, 2 classes).

    The model takes raw 0-255 one-channel pixels, scaled to [0, 1] by its first layer (mode
    ``"unit"``; no weights).

    Initialisation: He-normal, std sqrt(2/N) with N the fan-in (section 3), zero biases.

    Args:
        include_top: include the final 1x1 convolution; without it the model returns the
            ``base_filters``-channel decoder features.
        weights: ``None`` or a path to a weight file.
        input_shape: ``(height, width, channels)``; defaults to 572x572x1 for ``"valid"`` and
            to 576x576x1 (the nearest multiple of 16) for ``"same"``. Any number of channels
            works (the paper's images are grey).
        pooling: must be ``None``: the output is a per-pixel map.
        classes: number of output channels (segmentation classes).
        classifier_activation: per-pixel activation of the output layer.
        name: model name.
        include_preprocessing: start with the preprocessing layers (``preprocess_*``, the
            registry's mode), so the model takes raw 0-255 pixels; ``False`` gives the bare
            network.
        padding: ``"valid"`` (the paper) or ``"same"``.
        batch_norm: add BatchNormalization after each convolution (not in the paper; the
            convolution then has no bias).
        base_filters: filters of the first level (64 in the paper); level ``i`` has
            ``base_filters * 2**i``.
        depth: number of poolings (4 in the paper).

    Raises:
        ZooError: ``pooling`` is not ``None``, or ``padding``, ``base_filters`` or ``depth`` are
            invalid.
        InputShapeError: an input size the padding and depth cannot take.
    """
    return _build("unet", include_top=include_top, weights=weights, input_shape=input_shape,
                  pooling=pooling, classes=classes, classifier_activation=classifier_activation,
                  name=name, padding=padding, batch_norm=batch_norm, base_filters=base_filters,
                  depth=depth, include_preprocessing=include_preprocessing)


@register_model(
    family="unet",
    paper=_PAPER + " (padded convolutions)",
    year=2015,
    default_input_shape=(256, 256, 3),
    min_input_size=16,
    fixed_input_size=False,
    preprocessing="unit",
    blocks=_BLOCKS,
    default_unfreeze="dec4",
    task="segmentation",
    default_classes=2,
)
def unet_same(
    *,
    include_top: bool = True,
    weights: str | None = None,
    input_shape: tuple[int | None, int | None, int] | None = None,
    pooling: str | None = None,
    classes: int = 2,
    classifier_activation: str | None = "softmax",
    name: str = "unet_same",
    include_preprocessing: bool = True,
    batch_norm: bool = False,
    base_filters: int = 64,
    depth: int = 4,
) -> keras.Model:
    """U-Net with ``padding="same"``: the output has the input's height and width.

    The layers, names and parameters of :func:`unet` (same blocks, same skips, no cropping);
    only the 3x3 convolutions are zero-padded, so any input whose sides are multiples of
    ``2**depth`` (16 by default), or ``None`` for such sizes at run time, gives a mask of its own
    size, which is what training on image/mask pairs needs. Registered under its own name
    because ``create_model`` passes only the Keras arguments. Defaults to 256x256 RGB images
    (any channel count works): 31,031,810 parameters with 3 channels and 2 classes.

    Args:
        include_top: include the final 1x1 convolution.
        weights: ``None`` or a path to a weight file.
        input_shape: ``(height, width, channels)``, sides multiples of ``2**depth`` or ``None``.
        pooling: must be ``None``.
        classes: number of output channels (segmentation classes).
        classifier_activation: per-pixel activation of the output layer.
        name: model name.
        include_preprocessing: start with the preprocessing layers (``preprocess_*``), so the
            model takes raw 0-255 pixels; ``False`` gives the bare network.
        batch_norm: add BatchNormalization after each convolution (not in the paper).
        base_filters: filters of the first level (64 in the paper).
        depth: number of poolings (4 in the paper).

    Raises:
        ZooError: ``pooling`` is not ``None``, or ``base_filters`` or ``depth`` are invalid.
        InputShapeError: a side that is not a multiple of ``2**depth``.
    """
    return _build("unet_same", include_top=include_top, weights=weights,
                  input_shape=input_shape, pooling=pooling, classes=classes,
                  classifier_activation=classifier_activation, name=name, padding="same",
                  batch_norm=batch_norm, base_filters=base_filters, depth=depth,
                  include_preprocessing=include_preprocessing)
