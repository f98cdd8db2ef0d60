"""Encoder-decoder segmentation models on any registry backbone (segmentation_models style).

A segmenter is three parts of one Keras model:

- ``encoder``: the backbone from the registry (``create_model(..., include_top=False)``) cut to
  a nested sub-model whose outputs are its feature taps (:mod:`zoo.taps`), shallowest first.
  It is one layer of the segmenter, so ``model.get_layer(ENCODER).trainable = False`` freezes
  it in one switch (its BatchNormalization layers then run in inference mode, as Keras 3 does
  for frozen layers).
- the decoder, layers named ``decoder_*``: U-Net (upsample, concatenate the skip of the same
  stride, two convolution-BN-ReLU) or FPN (a feature pyramid with a semantic-segmentation
  branch per level).
- the head: ``head_conv`` scores each class; ``predictions`` applies the per-pixel activation
  (in float32, also under a mixed-precision policy), at the input's resolution.

Inputs are what the backbone expects: pixels preprocessed as ``get_spec(backbone).preprocessing``
says (the transfer package adds that step in front of the model).
"""

from __future__ import annotations

import math

import keras

from zoo.errors import InputShapeError, ZooError
from zoo.registry import create_model, get_spec
from zoo.taps import Taps, get_taps

ENCODER = "encoder"  # name of the nested encoder: a public contract, like every layer name
DECODERS = ("unet", "fpn")
# segmentation_models' defaults: U-Net stage widths from stride 16 up to stride 1, and FPN's
# (pyramid, segmentation branch) widths.
DEFAULT_FILTERS = {"unet": (256, 128, 64, 32, 16), "fpn": (256, 128)}
_FPN_STRIDES = (4, 8, 16, 32)  # P2..P5 (Lin et al. 2017); FPN does not use stride 2
_FPN_DROPOUT = 0.2  # segmentation_models.pytorch's FPN default (spatial dropout)
_DEEPEST = 32


def build_segmenter(
    *,
    backbone: str,
    classes: int,
    decoder: str = "unet",
    input_shape: tuple[int, int, int] | None = None,
    encoder_weights: str | None = None,
    decoder_filters: tuple[int, ...] | None = None,
    classifier_activation: str | None = "softmax",
    name: str | None = None,
) -> keras.Model:
    """An encoder-decoder segmentation model on registry backbone ``backbone``.

    U-Net decoder (Ronneberger et al. 2015, as segmentation_models builds it on a pretrained
    encoder): from the stride-32 tap, five stages ``decoder_stage0``..``decoder_stage4``, each
    a 2x nearest upsampling, a concatenation with the tap of the new stride (strides 16, 8, 4,
    2; none at stride 1, nor where the backbone has no tap) and two 3x3 convolution-BN-ReLU
    (``decoder_stage{i}a_*``, ``decoder_stage{i}b_*``) of ``decoder_filters[i]`` channels;
    then ``head_conv``, a 3x3 convolution to ``classes`` channels.

    FPN decoder (Lin et al. 2017, with the semantic-segmentation branch of Kirillov et al.
    2019, "Panoptic feature pyramid networks", as segmentation_models builds it): 1x1 lateral
    convolutions of the stride 32..4 taps to ``decoder_filters[0]`` channels, summed top-down
    with 2x upsampling into P5..P2 (``decoder_p{5..2}_*``); each level goes through 3x3
    convolution-BN-ReLU of ``decoder_filters[1]`` channels with 2x bilinear upsampling until
    stride 4; the levels are summed, spatially dropped out (0.2), scored by a 1x1 ``head_conv``
    and upsampled 4x (bilinear).

    Taps whose maps are not exactly ``input / stride`` (backbones with unpadded strided layers,
    see :attr:`zoo.taps.Taps.approximate`) are resized bilinearly to that size
    (``encoder_resize_{stride}``) before the decoder uses them.

    Args:
        backbone: registry name of a classification backbone (``"resnet18"``,
            ``"keras_mobilenetv2"``).
        classes: number of classes (output channels).
        decoder: ``"unet"`` or ``"fpn"``.
        input_shape: ``(height, width, channels)``, height and width multiples of 32 (the
            deepest tap's stride); defaults to the backbone's default input shape.
        encoder_weights: the backbone's ``weights``: ``None`` (random), a named set such as
            ``"imagenet"``, or a weight-file path; resolved by ``create_model``.
        decoder_filters: U-Net: the five stage widths (default ``(256, 128, 64, 32, 16)``);
            FPN: ``(pyramid, segmentation)`` widths (default ``(256, 128)``).
        classifier_activation: per-pixel activation of the output.
        name: model name; defaults to ``"{decoder}_{backbone}"``.

    Returns:
        A model from raw 0-255 images ``(batch, height, width, channels)`` (the encoder holds
        its backbone's preprocessing) to per-pixel class maps ``(batch, height, width,
        classes)``.

    Raises:
        UnknownModelError: an unregistered backbone.
        ZooError: a backbone without the taps the decoder needs (a segmentation model, or one
            without a stride-32 map), or bad ``decoder``, ``classes`` or ``decoder_filters``.
        InputShapeError: a size that is not a multiple of 32, or that the backbone refuses.
        WeightsError: encoder weights that cannot be found or loaded.
    """
    if decoder not in DECODERS:
        raise ZooError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    if not isinstance(classes, int) or isinstance(classes, bool) or classes < 1:
        raise ZooError(f"classes must be a positive integer, got {classes!r}")
    filters = _check_filters(decoder, decoder_filters)
    taps = get_taps(backbone)
    strides = _FPN_STRIDES if decoder == "fpn" else taps.strides
    for stride in (_FPN_STRIDES if decoder == "fpn" else (_DEEPEST,)):
        taps.layer(stride)  # a backbone without the map says so, naming itself
    shape = _check_shape(backbone, input_shape)

    inputs, features = tapped_encoder(backbone, taps, strides, shape, encoder_weights)
    if decoder == "unet":
        x = _unet_decoder(features, filters)
        x = keras.layers.Conv2D(classes, 3, padding="same", name="head_conv")(x)
    else:
        x = _fpn_decoder(features, filters)
        x = keras.layers.Conv2D(classes, 1, name="head_conv")(x)
        x = keras.layers.UpSampling2D(4, interpolation="bilinear", name="head_upsampling")(x)
    outputs = keras.layers.Activation(classifier_activation, dtype="float32",
                                      name="predictions")(x)
    return keras.Model(inputs, outputs, name=name or f"{decoder}_{backbone}")


def _check_filters(decoder: str, filters: tuple[int, ...] | None) -> tuple[int, ...]:
    default = DEFAULT_FILTERS[decoder]
    if filters is None:
        return default
    filters = tuple(filters)
    if len(filters) != len(default) or not all(
            isinstance(f, int) and not isinstance(f, bool) and f > 0 for f in filters):
        meaning = ("the widths of its five stages" if decoder == "unet"
                   else "(pyramid, segmentation) widths")
        raise ZooError(f"decoder_filters of the {decoder} decoder are {meaning}: "
                       f"{len(default)} positive integers such as {default}, got {filters!r}")
    return filters


def _check_shape(backbone: str, input_shape) -> tuple[int, int, int]:
    spec = get_spec(backbone)
    shape = tuple(spec.default_input_shape if input_shape is None else input_shape)
    if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape[:2]) \
            or any(d % _DEEPEST for d in shape[:2]):
        raise InputShapeError(
            f"segmenter on {backbone}: input_shape must be (height, width, channels) with "
            f"height and width multiples of {_DEEPEST} (the deepest feature's stride), got "
            f"{input_shape!r}. Resize or pad the images, e.g. to "
            f"{_round_up(shape[0] if shape and isinstance(shape[0], int) else 224)}.")
    return shape  # type: ignore[return-value]


def _round_up(size: int) -> int:
    return max(_DEEPEST, math.ceil(size / _DEEPEST) * _DEEPEST)


def _encoder(backbone: str, taps: Taps, strides: tuple[int, ...], shape, weights) -> keras.Model:
    """The backbone without its top, cut to a sub-model whose outputs are the taps."""
    model = create_model(backbone, include_top=False, weights=weights, input_shape=shape)
    outputs = [model.get_layer(taps.layer(stride)).output for stride in strides]
    return keras.Model(model.inputs, outputs, name=ENCODER)


def tapped_encoder(backbone: str, taps: Taps, strides: tuple[int, ...], shape,
                   weights) -> tuple[keras.KerasTensor, dict]:
    """``(inputs, {stride: feature})``: the image input and the encoder's taps at ``strides``,
    the nested encoder named :data:`ENCODER`; a tap whose map is not exactly ``input /
    stride`` is resized bilinearly to it (``encoder_resize_{stride}``). Segmenters and the
    detector share it."""
    encoder = _encoder(backbone, taps, strides, shape, weights)
    inputs = keras.Input(shape=shape, name="input")
    features = dict(zip(strides, encoder(inputs)))
    for stride, feature in features.items():
        target = (shape[0] // stride, shape[1] // stride)
        if tuple(feature.shape[1:3]) != target:
            features[stride] = keras.layers.Resizing(
                *target, interpolation="bilinear", name=f"encoder_resize_{stride}")(feature)
    return inputs, features


def _conv_bn_relu(x, filters: int, name: str):
    # No bias: BatchNorm's beta plays that part.
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                            kernel_initializer="he_uniform", name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _unet_decoder(features: dict, filters: tuple[int, ...]):
    x = features[_DEEPEST]
    for stage, width in enumerate(filters):
        stride = _DEEPEST // 2 ** (stage + 1)
        x = keras.layers.UpSampling2D(2, name=f"decoder_stage{stage}_upsampling")(x)
        if stride in features:
            x = keras.layers.Concatenate(name=f"decoder_stage{stage}_concat")(
                [x, features[stride]])
        x = _conv_bn_relu(x, width, f"decoder_stage{stage}a")
        x = _conv_bn_relu(x, width, f"decoder_stage{stage}b")
    return x


def fpn_top_down(features: dict, strides: tuple[int, ...], width: int, prefix: str) -> dict:
    """The top-down path of a feature pyramid (Lin et al. 2017): a 1x1 lateral convolution of
    each tap to ``width`` channels, summed with the 2x upsampled level above; ``{stride: P}``.
    Layers are named ``{prefix}_p{level}_lateral|upsampling|add`` (level = log2 stride). The
    segmenters' FPN decoder and the detector's neck share it."""
    levels = {stride: int(math.log2(stride)) for stride in strides}  # stride 4 is P2
    pyramid = {}
    for stride in sorted(strides, reverse=True):
        level = levels[stride]
        x = keras.layers.Conv2D(width, 1, name=f"{prefix}_p{level}_lateral")(features[stride])
        if stride != max(strides):
            above = keras.layers.UpSampling2D(2, name=f"{prefix}_p{level}_upsampling")(
                pyramid[stride * 2])
            x = keras.layers.Add(name=f"{prefix}_p{level}_add")([above, x])
        pyramid[stride] = x
    return pyramid


def _fpn_decoder(features: dict, filters: tuple[int, ...]):
    pyramid_width, segmentation_width = filters
    levels = {stride: int(math.log2(stride)) for stride in _FPN_STRIDES}  # stride 4 is P2
    pyramid = fpn_top_down(features, _FPN_STRIDES, pyramid_width, "decoder")
    branches = []
    for stride in sorted(_FPN_STRIDES, reverse=True):
        level, x = levels[stride], pyramid[stride]
        upsamplings = levels[stride] - levels[_FPN_STRIDES[0]]
        for step in range(max(upsamplings, 1)):
            x = _conv_bn_relu(x, segmentation_width, f"decoder_p{level}_seg{step + 1}")
            if upsamplings:
                x = keras.layers.UpSampling2D(
                    2, interpolation="bilinear",
                    name=f"decoder_p{level}_seg{step + 1}_upsampling")(x)
        branches.append(x)
    x = keras.layers.Add(name="decoder_merge")(branches)
    return keras.layers.SpatialDropout2D(_FPN_DROPOUT, name="decoder_dropout")(x)
