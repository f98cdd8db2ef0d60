"""Fully convolutional networks FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer and Darrell, "Fully
convolutional networks for semantic segmentation", CVPR 2015), on VGG16, in the layout of the
authors' reference nets (github.com/shelhamer/fcn.berkeleyvision.org, ``voc-fcn*s/net.py``)."""

from __future__ import annotations

import dataclasses
from typing import Callable

import keras

from zoo._common import load_weights, model_input, resolve_input_shape, validate_args
from zoo.errors import InputShapeError, ZooError
from zoo.layers import BilinearKernel
from zoo.registry import register_model
from zoo.vgg import CFGS

# The reference pads conv1_1 by 100 pixels, so that every input size, however small, leaves a
# map for fc6's 7x7 window and for every crop below.
INPUT_PADDING = 100


@dataclasses.dataclass(frozen=True)
class Upsampling:
    """One learned upsampling: a transposed convolution of ``kernel`` = 2 x ``stride``."""

    name: str
    stride: int

    @property
    def kernel(self) -> int:
        return 2 * self.stride


@dataclasses.dataclass(frozen=True)
class Variant:
    """The layout of one FCN: which pools are fused, and the offsets of the reference's crops.

    Offsets are those Caffe's ``coord_map.crop`` computes for the reference nets (5 for
    ``score_pool4c``, 9 for ``score_pool3c``; 19, 27 and 31 for the final ``score`` crop of
    FCN-32s, -16s and -8s): the position, in the larger map, of the smaller map's first pixel.
    """

    stride: int
    skips: tuple[str, ...]  # pools fused, deepest first
    upsamplings: tuple[Upsampling, ...]
    skip_offsets: tuple[int, ...]
    output_offset: int


VARIANTS: dict[str, Variant] = {
    "fcn32s": Variant(32, (), (Upsampling("upscore", 32),), (), 19),
    "fcn16s": Variant(16, ("pool4",), (Upsampling("upscore2", 2), Upsampling("upscore16", 16)),
                      (5,), 27),
    "fcn8s": Variant(8, ("pool4", "pool3"),
                     (Upsampling("upscore2", 2), Upsampling("upscore_pool4", 2),
                      Upsampling("upscore8", 8)), (5, 9), 31),
}


def _crop(x, height: int, width: int, offset: int, name: str):
    """Caffe's Crop layer: the ``height`` x ``width`` window of ``x`` starting at ``offset``."""
    extra_h = x.shape[1] - offset - height
    extra_w = x.shape[2] - offset - width
    if extra_h < 0 or extra_w < 0:  # cannot happen with the 100-pixel input padding
        raise InputShapeError(f"{name}: a {x.shape[1]}x{x.shape[2]} map cannot be cropped to "
                              f"{height}x{width} at offset {offset}")
    return keras.layers.Cropping2D(((offset, extra_h), (offset, extra_w)), name=name)(x)


def _upscore(x, upsampling: Upsampling, classes: int):
    return keras.layers.Conv2DTranspose(
        classes, upsampling.kernel, strides=upsampling.stride, use_bias=False,
        kernel_initializer=BilinearKernel(), name=upsampling.name)(x)


def _vgg16_features(inputs) -> tuple[keras.KerasTensor, dict[str, keras.KerasTensor]]:
    """VGG16's convolutions after the 100-pixel padding, with Caffe's ceil-mode pooling."""
    x = keras.layers.ZeroPadding2D(INPUT_PADDING, name="block1_pad")(inputs)
    pools = {}
    block, index = 1, 1
    for item in CFGS["vgg16"]:
        if item == "M":
            # padding="same" is Caffe's ceil mode for 2x2/2 windows: odd maps keep their edge.
            x = keras.layers.MaxPooling2D(2, strides=2, padding="same",
                                          name=f"block{block}_pool")(x)
            pools[f"pool{block}"] = x
            block, index = block + 1, 1
            continue
        padding = "valid" if (block, index) == (1, 1) else "same"  # conv1_1 is padded above
        x = keras.layers.Conv2D(item, 3, padding=padding, activation="relu",
                                name=f"block{block}_conv{index}")(x)
        index += 1
    return x, pools


def _make_fcn(model_name: str) -> Callable[..., keras.Model]:
    """Build and register the builder of one variant; every FCN is built by this code."""

    def builder(
        *,
        include_top: bool = True,
        weights: str | None = None,
        input_shape: tuple[int, int, int] | None = None,
        pooling: str | None = None,
        classes: int = 21,
        classifier_activation: str | None = "softmax",
        name: str = model_name,
        include_preprocessing: bool = True,
    ) -> keras.Model:
        """FCN on VGG16 (Long et al. 2015), the variant named by the builder (``VARIANTS``).

        Base: VGG16's 13 convolutions (layer names ``block{b}_conv{i}``, ``block{b}_pool``,
        those of the zoo's ``vgg16`` and of ``keras_vgg16``, so their weights load by name);
        the first is padded by 100 pixels as in the reference, and poolings use Caffe's ceil
        mode. fc6 and fc7 become convolutions (7x7 and 1x1, 4096 channels, ReLU, dropout 0.5;
        section 3.1), then ``score_fr`` scores each class with a 1x1 convolution.

        FCN-32s upsamples those scores 32x with one transposed convolution (``upscore``).
        FCN-16s upsamples them 2x (``upscore2``), adds the 1x1 scores of pool4 (``score_pool4``,
        cropped to match: ``score_pool4c``; sum ``fuse_pool4``) and upsamples 16x
        (``upscore16``). FCN-8s also upsamples that sum 2x (``upscore_pool4``), adds pool3's
        scores (``score_pool3``, ``score_pool3c``, ``fuse_pool3``) and upsamples 8x
        (``upscore8``) (section 4.2, figure 3). The last map is cropped to the input
        (``score``, at the reference's offset) and ``predictions`` applies the per-pixel
        softmax; any input size works and the output has the input's size.

        Upsampling: transposed convolutions ("backwards strided convolution", section 3.3)
        without bias, kernel twice the stride, initialised to bilinear interpolation
        (:class:`~zoo.layers.BilinearKernel`) and learnable, as the paper does for the 2x
        upsamplings (section 4.2). The paper keeps the final one fixed to bilinear, and the
        reference nets fix all of them (``lr_mult: 0``); set ``model.get_layer(name).trainable
        = False`` to do the same. Score layers start at zero, as the paper initialises its
        class scoring layers and as the reference's Caffe default filler does.

        Parameters with 21 classes (PASCAL VOC), all trainable, biases included: FCN-32s
        136,152,917; FCN-16s 134,815,994; FCN-8s 134,489,759 (the paper's Table 1: 134M).

        Args:
            include_top: include the scoring and upsampling layers; without them the model ends
                at fc7, the convolutionalised VGG16 the three variants share.
            weights: ``None`` or a path to a weight file.
            input_shape: ``(height, width, 3)`` with height and width given (the crops depend
                on them); defaults to 500x500, the largest PASCAL VOC image side.
            pooling: must be ``None``: the output is a per-pixel map.
            classes: number of classes (21 for PASCAL VOC, background included).
            classifier_activation: per-pixel activation of the output.
            name: model name.
            include_preprocessing: start with the preprocessing layers (``preprocess_*``), so
                the model takes raw 0-255 pixels; ``False`` gives the bare network.

        Raises:
            ZooError: ``pooling`` is not ``None``.
            InputShapeError: an input without a fixed height and width, or not 3 channels.
        """
        validate_args(model_name, include_top=include_top, weights=weights, classes=classes,
                      pooling=pooling)
        if pooling is not None:
            raise ZooError(f"{model_name}: pooling is not meaningful for a segmentation model "
                           f"(the output is a per-pixel map); pass pooling=None, got "
                           f"{pooling!r}.")
        shape = resolve_input_shape(model_name, input_shape, include_top)
        if None in shape[:2]:
            raise InputShapeError(
                f"{model_name}: input height and width must be given, got {shape!r}: the "
                f"skip and output crops are computed from them. Build one model per size.")
        variant = VARIANTS[model_name]
        inputs, x = model_input(model_name, shape, include_preprocessing)
        x, pools = _vgg16_features(x)
        x = keras.layers.Conv2D(4096, 7, activation="relu", name="fc6")(x)
        x = keras.layers.Dropout(0.5, name="fc6_dropout")(x)
        x = keras.layers.Conv2D(4096, 1, activation="relu", name="fc7")(x)
        if include_top:
            x = keras.layers.Dropout(0.5, name="fc7_dropout")(x)
            x = keras.layers.Conv2D(classes, 1, kernel_initializer="zeros", name="score_fr")(x)
            for skip, offset, upsampling in zip(variant.skips, variant.skip_offsets,
                                                variant.upsamplings):
                x = _upscore(x, upsampling, classes)
                score = keras.layers.Conv2D(classes, 1, kernel_initializer="zeros",
                                            name=f"score_{skip}")(pools[skip])
                score = _crop(score, x.shape[1], x.shape[2], offset, f"score_{skip}c")
                x = keras.layers.Add(name=f"fuse_{skip}")([x, score])
            x = _upscore(x, variant.upsamplings[-1], classes)
            x = _crop(x, shape[0], shape[1], variant.output_offset, "score")
            x = keras.layers.Activation(classifier_activation, name="predictions")(x)
        model = keras.Model(inputs, x, name=name)
        return load_weights(model, weights)

    builder.__name__ = builder.__qualname__ = model_name
    return register_model(
        name=model_name,
        family="fcn",
        paper="Long et al. 2015, Fully Convolutional Networks for Semantic Segmentation",
        year=2015,
        default_input_shape=(500, 500, 3),
        min_input_size=1,
        fixed_input_size=False,
        preprocessing="caffe",
        blocks=("block1", "block2", "block3", "block4", "block5", "fc6", "fc7"),
        default_unfreeze="fc6",
        task="segmentation",
        default_classes=21,
    )(builder)


fcn32s = _make_fcn("fcn32s")
fcn16s = _make_fcn("fcn16s")
fcn8s = _make_fcn("fcn8s")
