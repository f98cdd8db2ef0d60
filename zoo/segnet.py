"""SegNet (Badrinarayanan, Kendall and Cipolla, "SegNet: a deep convolutional encoder-decoder
architecture for image segmentation", IEEE TPAMI 2017, arXiv 2015)."""

from __future__ import annotations

import keras

from zoo._common import load_weights, model_input, resolve_input_shape, validate_args
from zoo.errors import ZooError
from zoo.layers import MaxPoolingWithArgmax2D, MaxUnpooling2D
from zoo.registry import register_model
from zoo.vgg import CFGS

_BN_EPSILON = 1e-5  # the zoo's vgg16_bn, so that its weights load into the encoder by name


def _stages(cfg: list[int | str]) -> list[list[int]]:
    """VGG's table split at its poolings: the widths of the convolutions of each block."""
    stages: list[list[int]] = [[]]
    for item in cfg:
        if item == "M":
            stages.append([])
        else:
            stages[-1].append(item)  # type: ignore[arg-type]
    return stages[:-1]


# Encoder: the 13 convolutions of VGG16 (configuration D), five blocks.
ENCODER: list[list[int]] = _stages(CFGS["vgg16"])


def _he_normal() -> keras.initializers.Initializer:
    # Section 4: encoder and decoder weights initialised as in He et al. 2015 (Caffe's "msra"
    # filler: std sqrt(2 / fan_in)); a fresh instance per layer, so unseeded values differ.
    return keras.initializers.VarianceScaling(2.0, mode="fan_in",
                                              distribution="untruncated_normal")


def _conv_bn_relu(x, filters: int, prefix: str, index: int):
    x = keras.layers.Conv2D(filters, 3, padding="same", kernel_initializer=_he_normal(),
                            name=f"{prefix}_conv{index}")(x)
    x = keras.layers.BatchNormalization(epsilon=_BN_EPSILON, name=f"{prefix}_bn{index}")(x)
    return keras.layers.ReLU(name=f"{prefix}_relu{index}")(x)


def decoder_widths(block: int) -> list[int]:
    """Output channels of decoder ``block``'s convolutions (before any classifier).

    Each decoder mirrors its encoder: as many 3x3 convolutions, the last one returning to the
    channels the encoder block received (512-512-512, 512-512-256, 256-256-128, 128-64), as in
    the authors' Caffe model. Decoder 1 keeps 64 channels ("a multi-channel feature map,
    although its encoder input has 3 channels", section 3); its last convolution is the
    classifier, so without the top it has one convolution.
    """
    widths = ENCODER[block - 1]
    if block == 1:
        return widths[:-1]
    return widths[:-1] + [ENCODER[block - 2][-1]]


@register_model(
    family="segnet",
    paper="Badrinarayanan et al. 2017, SegNet: A Deep Convolutional Encoder-Decoder "
          "Architecture for Image Segmentation",
    year=2017,
    default_input_shape=(360, 480, 3),
    min_input_size=32,
    fixed_input_size=False,
    preprocessing="torch",
    blocks=("block1", "block2", "block3", "block4", "block5",
            "dec5", "dec4", "dec3", "dec2", "dec1"),
    default_unfreeze="dec5",
    task="segmentation",
    default_classes=11,
)
def segnet(
    *,
    include_top: bool = True,
    weights: str | None = None,
    input_shape: tuple[int | None, int | None, int] | None = None,
    pooling: str | None = None,
    classes: int = 11,
    classifier_activation: str | None = "softmax",
    name: str = "segnet",
    include_preprocessing: bool = True,
) -> keras.Model:
    """SegNet: VGG16's convolutions as encoder, a mirrored decoder that unpools with the
    encoder's max-pooling indices.

    Encoder (``block1``..``block5``): the 13 convolutions of VGG16, each 3x3 followed by batch
    normalisation and ReLU, and after each block a 2x2/2 max pooling that stores the position
    of every maximum (:class:`~zoo.layers.MaxPoolingWithArgmax2D`). The fully connected layers
    are dropped, which takes the encoder from 134M to 14.7M parameters (section 3).

    Decoder (``dec5``..``dec1``): each block unpools with the indices of its encoder block
    (:class:`~zoo.layers.MaxUnpooling2D`: every value back where its maximum was, zeros
    elsewhere, no learned upsampling), then convolves the sparse map with trainable 3x3
    convolutions + batch normalisation + ReLU, mirroring the encoder (:func:`decoder_widths`).
    The classifier is the authors' ``conv1_1_D``: a 3x3 convolution to ``classes`` channels
    with a per-pixel softmax and no normalisation. Layer names: encoder ``block{b}_conv{i}``,
    ``block{b}_bn{i}``, ``block{b}_relu{i}``, ``block{b}_pool`` (those of the zoo's
    ``vgg16_bn``, so its weights load into the encoder by name, as the paper initialises the
    encoder from VGG16); decoder ``dec{b}_unpool``, ``dec{b}_conv{i}``, ``dec{b}_bn{i}``,
    ``dec{b}_relu{i}``; classifier ``predictions``.

    Poolings pad odd sizes at the bottom/right (Caffe's ceil mode) and unpooling returns to the
    encoder's exact size, so any input of at least 32x32 gives a map of its own size; the
    paper's CamVid input of 360x480 pools to 23x30 and back. Convolutions keep their biases, as
    in the authors' Caffe model. Parameters with 11 classes (CamVid): 29,449,355 trainable,
    29,465,227 with the 15,872 batch-normalisation moving statistics (the paper's 29.5M).

    Args:
        include_top: include the classifier; without it the model returns the 64-channel
            features of decoder 1.
        weights: ``None`` or a path to a weight file.
        input_shape: ``(height, width, 3)``; defaults to CamVid's 360x480. Height and width may
            be ``None`` (any size at run time).
        pooling: must be ``None``: the output is a per-pixel map.
        classes: number of classes (11 for CamVid).
        classifier_activation: per-pixel activation of the classifier.
        name: model name.
        include_preprocessing: start with the preprocessing layers (``preprocess_*``), so the
            model takes raw 0-255 pixels; ``False`` gives the bare network.

    Raises:
        ZooError: ``pooling`` is not ``None``.
        InputShapeError: an input below 32x32 or not 3 channels.
    """
    validate_args("segnet", include_top=include_top, weights=weights, classes=classes,
                  pooling=pooling)
    if pooling is not None:
        raise ZooError(f"segnet: pooling is not meaningful for a segmentation model (the output "
                       f"is a per-pixel map); pass pooling=None, got {pooling!r}.")
    shape = resolve_input_shape("segnet", input_shape, include_top)
    inputs, x = model_input("segnet", shape, include_preprocessing)
    switches = []  # per block: the map that was pooled (its size) and the pooling indices
    for block, widths in enumerate(ENCODER, start=1):
        for index, filters in enumerate(widths, start=1):
            x = _conv_bn_relu(x, filters, f"block{block}", index)
        pooled_map = x
        x, indices = MaxPoolingWithArgmax2D(2, name=f"block{block}_pool")(x)
        switches.append((pooled_map, indices))
    for block in range(len(ENCODER), 0, -1):
        pooled_map, indices = switches[block - 1]
        x = MaxUnpooling2D(2, name=f"dec{block}_unpool")([x, indices, pooled_map])
        for index, filters in enumerate(decoder_widths(block), start=1):
            x = _conv_bn_relu(x, filters, f"dec{block}", index)
    if include_top:
        x = keras.layers.Conv2D(classes, 3, padding="same", activation=classifier_activation,
                                kernel_initializer=_he_normal(), name="predictions")(x)
    model = keras.Model(inputs, x, name=name)
    return load_weights(model, weights)
