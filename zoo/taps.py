"""Feature taps: for every backbone in the registry, the layers an encoder-decoder takes its
skip connections from, at strides 2, 4, 8, 16 and 32.

The table is data, like segmentation_models' ``feature_layers`` (and its PyTorch sibling's
encoder descriptions), so that any backbone can feed any decoder. Layer names refer to the
model built with ``include_top=False``.

Which layer: the last one at each resolution, its output ``input / stride`` on a side (layers
that only pad or crop for the next strided operation do not count), so that the tap has seen
everything the backbone computes at that resolution: ``conv2_block3_out`` for ResNet-50,
``block_3_expand_relu`` for MobileNetV2 (the expansion that runs at stride 4 before the
strided depthwise convolution, as segmentation_models chooses). Where a resolution ends with
layers that only narrow the map before the next strided operation (a bottleneck's 1x1
reduction in ResNet v1.5 and v2, DenseNet's transition compression, a reduction module's
branch convolutions in Inception, ConvNeXt's downsampling LayerNorm) the tap is the
full-width map before them: ``conv2_block3_preact_relu`` for ResNet50V2, ``pool2_relu`` for
DenseNet, ``mixed2`` for InceptionV3. The stride-32 tap is the backbone's output.

Backbones with unpadded ("valid") strided convolutions or poolings (AlexNet, ZFNet, NIN,
LeNet-5, Inception, Xception's and NASNet's stems) have maps a few pixels smaller than
``input / stride``; those strides are listed in :attr:`Taps.approximate`, and a decoder must
resize the map (see :func:`zoo.segmentation.build_segmenter`). Some backbones have no map at a
stride: ConvNeXt's and AlexNet's stems start at stride 4, LeNet-5 ends at stride 4.
"""

from __future__ import annotations

import dataclasses

from zoo.errors import ZooError
from zoo.registry import get_spec, list_models

STRIDES = (2, 4, 8, 16, 32)


@dataclasses.dataclass(frozen=True)
class Taps:
    """The feature taps of one backbone.

    Attributes:
        model: registry name of the backbone.
        layers: layer name per stride, in :data:`STRIDES` order; ``None`` where the backbone has
            no map at that stride.
        approximate: strides whose map is a few pixels smaller than ``input / stride``
            (unpadded strided layers), so a decoder must resize it.
    """

    model: str
    layers: tuple[str | None, ...]
    approximate: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        if len(self.layers) != len(STRIDES):
            raise ValueError(f"{self.model}: one layer (or None) per stride {STRIDES} is needed, "
                             f"got {self.layers}")
        if not self.approximate <= set(self.strides):
            raise ValueError(f"{self.model}: approximate strides {sorted(self.approximate)} "
                             f"must be strides it has, {self.strides}")

    @property
    def strides(self) -> tuple[int, ...]:
        """The strides the backbone has a map at, shallowest first."""
        return tuple(s for s, layer in zip(STRIDES, self.layers) if layer is not None)

    def layer(self, stride: int) -> str:
        """The layer whose output is the backbone's map at ``stride``.

        Raises:
            ZooError: a stride the backbone has no map at (the message names the model and the
                strides it has).
        """
        if stride not in STRIDES:
            raise ZooError(f"{self.model}: stride must be one of {STRIDES}, got {stride!r}")
        name = self.layers[STRIDES.index(stride)]
        if name is None:
            raise ZooError(f"{self.model} has no feature map at stride {stride}; its taps are at "
                           f"strides {', '.join(map(str, self.strides))}.")
        return name

    def as_dict(self) -> dict[int, str]:
        """``{stride: layer name}`` for the strides the backbone has."""
        return {s: layer for s, layer in zip(STRIDES, self.layers) if layer is not None}


def _resnet(blocks: tuple[int, int, int, int], out: str = "out") -> tuple[str, ...]:
    return ("conv1_relu",) + tuple(f"conv{stage}_block{n}_{out}"
                                   for stage, n in zip((2, 3, 4, 5), blocks))


def _resnet_v2(blocks: tuple[int, int, int]) -> tuple[str, ...]:
    # Keras's v2 strides in the last block of conv2-conv4; its pre-activation is the last
    # full-width map before it.
    return ("conv1_conv",) + tuple(f"conv{stage}_block{n}_preact_relu"
                                   for stage, n in zip((2, 3, 4), blocks)) + ("post_relu",)


def _vgg(convs: tuple[int, int, int, int], bn: bool) -> tuple[str, ...]:
    kind = "relu" if bn else "conv"
    return tuple(f"block{b}_{kind}{n}" for b, n in zip((2, 3, 4, 5), convs)) + ("block5_pool",)


def _convnext(variant: str, stage2_blocks: int) -> tuple[str | None, ...]:
    stem = f"convnext_{variant}"
    return (None, f"{stem}_stage_0_block_2_identity", f"{stem}_stage_1_block_2_identity",
            f"{stem}_stage_2_block_{stage2_blocks - 1}_identity", "layer_normalization")


_EFFICIENTNET = ("block2a_expand_activation", "block3a_expand_activation",
                 "block4a_expand_activation", "block6a_expand_activation", "top_activation")
_DENSENET = ("conv1_relu", "pool2_relu", "pool3_relu", "pool4_relu")


def _efficientnet_v2(stride2: str, stride4: str) -> tuple[str, ...]:
    # Fused MBConv blocks stride in their first convolution: the last maps at strides 2 and 4
    # are the outputs of the blocks before them.
    return (stride2, stride4, "block4a_expand_activation", "block6a_expand_activation",
            "top_activation")


# Layer per stride (2, 4, 8, 16, 32), and the strides whose map is not exactly input / stride.
# Names of keras.applications layers that Keras leaves unnamed (``activation_19``) are those a
# fresh session gives, which zoo.applications makes them always be.
TABLE: dict[str, tuple[tuple[str | None, ...], tuple[int, ...]]] = {
    # --- classic builders
    "lenet5": (("c3_conv", "c5_conv", None, None, None), (2, 4)),
    "alexnet": ((None, "conv1_lrn", "conv2_lrn", "conv5_conv", "conv5_pool"), (4, 8, 16, 32)),
    "zfnet": (("conv1_conv", "conv1_lrn", "conv2_conv", "conv5_conv", "conv5_pool"),
              (2, 4, 8, 16, 32)),
    "nin": ((None, "block1_mlp2", "block2_mlp2", "block3_mlp2", "block4_mlp1"),
            (4, 8, 16, 32)),
    "googlenet": (("conv1_conv", "conv2_lrn", "inception_3b_concat", "inception_4e_concat",
                   "inception_5b_concat"), ()),
    "vgg11": (_vgg((1, 2, 2, 2), bn=False), ()),
    "vgg13": (_vgg((2, 2, 2, 2), bn=False), ()),
    "vgg16": (_vgg((2, 3, 3, 3), bn=False), ()),
    "vgg19": (_vgg((2, 4, 4, 4), bn=False), ()),
    "vgg11_bn": (_vgg((1, 2, 2, 2), bn=True), ()),
    "vgg13_bn": (_vgg((2, 2, 2, 2), bn=True), ()),
    "vgg16_bn": (_vgg((2, 3, 3, 3), bn=True), ()),
    "vgg19_bn": (_vgg((2, 4, 4, 4), bn=True), ()),
    "resnet18": (_resnet((2, 2, 2, 2)), ()),
    "resnet34": (_resnet((3, 4, 6, 3)), ()),
    "resnet50": (_resnet((3, 4, 6, 3)), ()),
    "resnet101": (_resnet((3, 4, 23, 3)), ()),
    "resnet152": (_resnet((3, 8, 36, 3)), ()),
    "densenet121": (_DENSENET + ("conv5_relu",), ()),
    "densenet169": (_DENSENET + ("conv5_relu",), ()),
    "densenet201": (_DENSENET + ("conv5_relu",), ()),
    "cspdarknet_n": (("stem_silu", "stage1_c2f_cv2_silu", "stage2_c2f_cv2_silu",
                       "stage3_c2f_cv2_silu", "stage4_sppf_cv2_silu"), ()),
    "cspdarknet_s": (("stem_silu", "stage1_c2f_cv2_silu", "stage2_c2f_cv2_silu",
                       "stage3_c2f_cv2_silu", "stage4_sppf_cv2_silu"), ()),
    # --- keras.applications
    "keras_convnexttiny": (_convnext("tiny", 9), ()),
    "keras_convnextsmall": (_convnext("small", 27), ()),
    "keras_convnextbase": (_convnext("base", 27), ()),
    "keras_convnextlarge": (_convnext("large", 27), ()),
    "keras_convnextxlarge": (_convnext("xlarge", 27), ()),
    "keras_densenet121": (_DENSENET + ("relu",), ()),
    "keras_densenet169": (_DENSENET + ("relu",), ()),
    "keras_densenet201": (_DENSENET + ("relu",), ()),
    **{f"keras_efficientnetb{i}": (_EFFICIENTNET, ()) for i in range(8)},
    "keras_efficientnetv2b0": (_efficientnet_v2("block1a_project_activation", "block2b_add"), ()),
    "keras_efficientnetv2b1": (_efficientnet_v2("block1b_add", "block2c_add"), ()),
    "keras_efficientnetv2b2": (_efficientnet_v2("block1b_add", "block2c_add"), ()),
    "keras_efficientnetv2b3": (_efficientnet_v2("block1b_add", "block2c_add"), ()),
    "keras_efficientnetv2s": (_efficientnet_v2("block1b_add", "block2d_add"), ()),
    "keras_efficientnetv2m": (_efficientnet_v2("block1c_add", "block2e_add"), ()),
    "keras_efficientnetv2l": (_efficientnet_v2("block1d_add", "block2g_add"), ()),
    "keras_inceptionv3": (("activation_2", "activation_4", "mixed2", "mixed7", "mixed10"),
                          (2, 4, 8, 16, 32)),
    "keras_inceptionresnetv2": (("activation_2", "activation_4", "block35_10_ac",
                                 "block17_20_ac", "conv_7b_ac"), (2, 4, 8, 16, 32)),
    "keras_mobilenet": (("conv_pw_1_relu", "conv_pw_3_relu", "conv_pw_5_relu",
                         "conv_pw_11_relu", "conv_pw_13_relu"), ()),
    "keras_mobilenetv2": (("block_1_expand_relu", "block_3_expand_relu", "block_6_expand_relu",
                           "block_13_expand_relu", "out_relu"), ()),
    "keras_mobilenetv3small": (("activation", "re_lu_2", "activation_1", "activation_11",
                                "activation_17"), ()),
    "keras_mobilenetv3large": (("re_lu_1", "re_lu_5", "activation_1", "activation_13",
                                "activation_19"), ()),
    "keras_nasnetmobile": (("adjust_relu_1_stem_2", "adjust_relu_1_0", "adjust_relu_1_5",
                            "adjust_relu_1_9", "activation_187"), (2,)),
    "keras_nasnetlarge": (("adjust_relu_1_stem_2", "adjust_relu_1_0", "adjust_relu_1_7",
                           "adjust_relu_1_13", "activation_259"), (2,)),
    "keras_resnet50": (_resnet((3, 4, 6, 3)), ()),
    "keras_resnet101": (_resnet((3, 4, 23, 3)), ()),
    "keras_resnet152": (_resnet((3, 8, 36, 3)), ()),
    "keras_resnet50v2": (_resnet_v2((3, 4, 6)), ()),
    "keras_resnet101v2": (_resnet_v2((3, 4, 23)), ()),
    "keras_resnet152v2": (_resnet_v2((3, 8, 36)), ()),
    "keras_vgg16": (_vgg((2, 3, 3, 3), bn=False), ()),
    "keras_vgg19": (_vgg((2, 4, 4, 4), bn=False), ()),
    "keras_xception": (("block2_sepconv2_bn", "block3_sepconv2_bn", "block4_sepconv2_bn",
                        "block13_sepconv2_bn", "block14_sepconv2_act"), (2, 4)),
}


def get_taps(name: str) -> Taps:
    """The feature taps of registered backbone ``name``.

    Raises:
        UnknownModelError: the name is not registered.
        ZooError: the model has no taps (segmentation models, or a backbone not yet in
            :data:`TABLE`); the message names it.
    """
    spec = get_spec(name)
    if name not in TABLE:
        if spec.task != "classification":
            raise ZooError(f"{name} is a {spec.task} model, not a backbone: it has no feature "
                           f"taps. Choose a classification backbone (zoo list).")
        raise ZooError(f"{name} has no feature taps yet: add its layers per stride to "
                       f"zoo.taps.TABLE to use it as an encoder.")
    layers, approximate = TABLE[name]
    return Taps(name, tuple(layers), frozenset(approximate))


def missing_taps() -> list[str]:
    """Registered backbones (classification models) without an entry in :data:`TABLE`."""
    return [name for name in list_models(task="classification") if name not in TABLE]
