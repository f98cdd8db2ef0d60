"""Every keras.applications model (Keras 3: 40 of them) in the zoo's registry, from one table.

Naming rule: the registry name is ``"keras_"`` followed by the keras.applications constructor's
name in lower case: ``ResNet50`` is ``keras_resnet50``, ``MobileNetV2`` is ``keras_mobilenetv2``,
``EfficientNetV2B0`` is ``keras_efficientnetv2b0``, ``ConvNeXtTiny`` is ``keras_convnexttiny``.
The prefix keeps them apart from the classic builders (``resnet50``, ``vgg16``, ``densenet121``).

Each row of :data:`APPLICATIONS` is data; one generic builder, :func:`build`, serves them all
and gives them the classic builders' keyword-only signature. Arguments are checked with the
zoo's own errors before Keras builds anything; the model is always built with ``weights=None``
and the weights are then loaded by the zoo, in this order:

1. ``weights=None``: random initialisation.
2. ``weights=PATH`` (``.weights.h5``, ``.h5`` or ``.keras``): that file.
3. ``weights="imagenet"``: the file Keras itself would use, from the Keras cache
   (``$KERAS_HOME/models``, else ``~/.keras/models``), read when the builder is called. A file
   that is not cached is downloaded with ``keras.utils.get_file`` (hash checked) after a
   three-second reachability check, so an offline machine gets one clear
   :class:`~zoo.errors.WeightsError` saying what to do instead of a hang.

Every model takes raw 0-255 RGB pixels: with ``include_preprocessing=True`` (the default) its first
layers, named ``preprocess_*``, do what ``keras.applications.<module>.preprocess_input`` does (the
family's mode in :data:`FAMILIES`). Where Keras itself offers ``include_preprocessing`` (ConvNeXt,
EfficientNetV2, MobileNetV3) the zoo turns it off and adds its own layers of the same function, so
that every model's preprocessing is named and built alike. EfficientNet (v1) is the exception:
Keras builds its rescaling and an adapted ``Normalization`` (whose statistics are in the ImageNet
file) into the network itself, so it takes raw pixels with or without ``include_preprocessing``
(mode ``"none"``).

Block names ("unfreeze from block N") are layer-name prefixes in layer order: the first layer
whose name starts with a block name begins that block. Where Keras leaves the layers inside a
module unnamed (Inception), the names are those of the modules' outputs, so unfreezing from
``mixed8`` trains the modules after ``mixed8``.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import logging
import os
import socket
import tempfile
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import keras

from zoo._common import (
    PREPROCESS_PREFIX, load_weights, model_input, resolve_input_shape, validate_args)
from zoo.errors import InputShapeError, WeightsError, ZooError
from zoo.registry import ModelSpec, add_spec

log = logging.getLogger(__name__)

PREFIX = "keras_"
# Where keras.src.utils.naming keeps the per-prefix counters of auto-generated layer names.
_NAME_COUNTERS = "object_name_uids"
REACHABILITY_TIMEOUT_S = 3.0
# EfficientNet (v1) ImageNet models divide by the standard deviation twice (tensorflow#49930).
_IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class WeightFile:
    """One ImageNet weight file: its name in the Keras cache, where Keras downloads it, its hash.

    ``{rows}`` in ``name`` and ``url`` stands for the input size (MobileNet v1/v2 have one file
    per size).
    """

    name: str
    url: str
    file_hash: str | None  # md5 (32 hex digits) or sha256 (64), as in keras.utils.get_file

    def for_rows(self, rows: int) -> WeightFile:
        return dataclasses.replace(self, name=self.name.format(rows=rows),
                                   url=self.url.format(rows=rows))


@dataclasses.dataclass(frozen=True)
class Family:
    """What a keras.applications module shares: the paper and the input preprocessing.

    Attributes:
        paper: reference of the paper.
        year: its year.
        preprocessing: the registry mode: what ``keras.applications.<module>.preprocess_input``
            does, or for modules where that is a pass-through, what the layers Keras adds with
            ``include_preprocessing=True`` do.
        keras_preprocessing: the constructors take ``include_preprocessing`` (the zoo always
            passes ``False`` and adds its own layers).
    """

    paper: str
    year: int
    preprocessing: str
    keras_preprocessing: bool = False


@dataclasses.dataclass(frozen=True)
class Application:
    """One row of the table: a keras.applications constructor and its metadata.

    Attributes:
        constructor: attribute of ``keras.applications`` (``"ResNet50"``).
        module: keras.applications sub-module, used as the registry family (``"resnet"``).
        size: default input height and width.
        blocks: ordered layer-name prefixes of the blocks that can be unfrozen.
        default_unfreeze: the block fine-tuning starts from: the stage at the final resolution
            (MobileNet v1: the stride-16 stage, chosen by measurement).
        imagenet: ImageNet weight files, with and without the top.
        min_size: smallest height/width Keras accepts (and builds) with ``include_top=False``.
        top_sizes: square sizes at which ImageNet weights load with the top: ``()`` means the
            default size only, ``None`` any size (a fully convolutional head).
        static_size: height and width must be given (NASNet builds a different network, whose
            weights do not fit, when they are ``None``).
        preprocessing: the registry mode when it differs from the family's (EfficientNetV2-S/M/L
            scale by 1/128 where B0-B3 normalise with the ImageNet statistics).
    """

    constructor: str
    module: str
    size: int
    blocks: tuple[str, ...]
    default_unfreeze: str
    imagenet: tuple[WeightFile, WeightFile]
    min_size: int = 32
    top_sizes: tuple[int, ...] | None = ()
    static_size: bool = False
    preprocessing: str | None = None

    @property
    def name(self) -> str:
        return PREFIX + self.constructor.lower()

    @property
    def family(self) -> Family:
        return FAMILIES[self.module]

    @property
    def mode(self) -> str:
        """The registry's preprocessing mode of this model."""
        return self.preprocessing or self.family.preprocessing


FAMILIES: dict[str, Family] = {
    # Keras's ConvNeXt normalises 0-255 pixels with the ImageNet statistics ("PreStem").
    "convnext": Family("Liu et al. 2022, A ConvNet for the 2020s", 2022, "torch",
                       keras_preprocessing=True),
    "densenet": Family("Huang et al. 2017, Densely connected convolutional networks", 2017,
                       "torch"),
    "efficientnet": Family("Tan and Le 2019, EfficientNet: rethinking model scaling for "
                           "convolutional neural networks", 2019, "none"),
    # B0-B3 as EfficientNet v1 (ImageNet mean and std); S, M and L override it ("tf128").
    "efficientnet_v2": Family("Tan and Le 2021, EfficientNetV2: smaller models and faster "
                              "training", 2021, "torch", keras_preprocessing=True),
    "inception_resnet_v2": Family("Szegedy et al. 2017, Inception-v4, Inception-ResNet and the "
                                  "impact of residual connections on learning", 2017, "tf"),
    "inception_v3": Family("Szegedy et al. 2016, Rethinking the Inception architecture for "
                           "computer vision", 2016, "tf"),
    "mobilenet": Family("Howard et al. 2017, MobileNets: efficient convolutional neural "
                        "networks for mobile vision applications", 2017, "tf"),
    "mobilenet_v2": Family("Sandler et al. 2018, MobileNetV2: inverted residuals and linear "
                           "bottlenecks", 2018, "tf"),
    "mobilenet_v3": Family("Howard et al. 2019, Searching for MobileNetV3", 2019, "tf",
                           keras_preprocessing=True),
    "nasnet": Family("Zoph et al. 2018, Learning transferable architectures for scalable image "
                     "recognition", 2018, "tf"),
    "resnet": Family("He et al. 2016, Deep residual learning for image recognition", 2016,
                     "caffe"),
    "resnet_v2": Family("He et al. 2016, Identity mappings in deep residual networks", 2016,
                        "tf"),
    "vgg16": Family("Simonyan and Zisserman 2015, Very deep convolutional networks for "
                    "large-scale image recognition", 2015, "caffe"),
    "vgg19": Family("Simonyan and Zisserman 2015, Very deep convolutional networks for "
                    "large-scale image recognition", 2015, "caffe"),
    "xception": Family("Chollet 2017, Xception: deep learning with depthwise separable "
                       "convolutions", 2017, "tf"),
}

# Where keras/src/applications/*.py download from, and the cache names and hashes they use.
_KA = "https://storage.googleapis.com/tensorflow/keras-applications/"
_EFFICIENTNET = "https://storage.googleapis.com/keras-applications/"


def _tf_kernels(folder: str, stem: str, top: str, notop: str) -> tuple[WeightFile, WeightFile]:
    names = (f"{stem}_weights_tf_dim_ordering_tf_kernels.h5",
             f"{stem}_weights_tf_dim_ordering_tf_kernels_notop.h5")
    return tuple(WeightFile(n, f"{_KA}{folder}/{n}", h)  # type: ignore[return-value]
                 for n, h in zip(names, (top, notop)))


def _suffixed(base: str, stem: str, top: str | None, notop: str | None,
              notop_suffix: str = "_notop") -> tuple[WeightFile, WeightFile]:
    return (WeightFile(f"{stem}.h5", f"{base}{stem}.h5", top),
            WeightFile(f"{stem}{notop_suffix}.h5", f"{base}{stem}{notop_suffix}.h5", notop))


def _nasnet(kind: str, top: str, notop: str) -> tuple[WeightFile, WeightFile]:
    return (WeightFile(f"nasnet_{kind}.h5", f"{_KA}nasnet/NASNet-{kind}.h5", top),
            WeightFile(f"nasnet_{kind}_no_top.h5", f"{_KA}nasnet/NASNet-{kind}-no-top.h5", notop))


def _numbered(prefix: str, first: int, last: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(first, last + 1))


def _nasnet_blocks(cells: int) -> tuple[str, ...]:
    """Stem reductions, then per stage ``cells`` normal cells, with a reduction cell between."""
    blocks = ["reduction_conv_1_stem_1", "reduction_conv_1_stem_2"]
    for stage in range(3):
        if stage:  # Keras's ids: reduce_{stage * cells}, then normal cells from there + 1
            blocks.append(f"reduction_conv_1_reduce_{stage * cells}")
        first = stage * cells + min(stage, 1)
        blocks += [f"normal_conv_1_{i}" for i in range(first, first + cells)]
    return tuple(blocks)


def _resnet(constructor: str, module: str, stem: str, top: str, notop: str) -> Application:
    return Application(constructor, module, 224, _numbered("conv", 2, 5), "conv5",
                       _tf_kernels("resnet", stem, top, notop))


def _densenet(depth: int, top: str, notop: str) -> Application:
    return Application(f"DenseNet{depth}", "densenet", 224, _numbered("conv", 2, 5), "conv5",
                       _tf_kernels("densenet", f"densenet{depth}", top, notop))


def _efficientnet(variant: str, size: int, top: str, notop: str) -> Application:
    return Application(f"EfficientNet{variant.upper()}", "efficientnet", size,
                       _numbered("block", 1, 7) + ("top",), "block6",
                       _suffixed(_EFFICIENTNET, f"efficientnet{variant}", top, notop))


def _efficientnet_v2(variant: str, size: int, stages: int, top: str,
                     notop: str) -> Application:
    # Keras's include_preprocessing: B variants use v1's ImageNet normalisation, the others
    # Rescaling(1 / 128, offset=-1).
    return Application(f"EfficientNetV2{variant.upper()}", "efficientnet_v2", size,
                       _numbered("block", 1, stages) + ("top",), "block6",
                       _suffixed(f"{_KA}efficientnet_v2/", f"efficientnetv2-{variant}", top,
                                 notop),
                       preprocessing=None if variant.startswith("b") else "tf128")


def _convnext(variant: str, top: str, notop: str) -> Application:
    # Keras prefixes ConvNeXt layer names with the model's default name, which build() keeps.
    stem = f"convnext_{variant.lower()}"
    return Application(f"ConvNeXt{variant}", "convnext", 224, _numbered(f"{stem}_stage_", 0, 3),
                       f"{stem}_stage_3", _suffixed(f"{_KA}convnext/", stem, top, notop))


def _mobilenet_v3(kind: str, last_block: int, default_unfreeze: str, top: str,
                  notop: str) -> Application:
    stem = f"weights_mobilenet_v3_{kind}_224_1.0_float"
    return Application(f"MobileNetV3{kind.title()}", "mobilenet_v3", 224,
                       ("expanded_conv",) + _numbered("expanded_conv_", 1, last_block)
                       + ("conv_1",), default_unfreeze,
                       _suffixed(f"{_KA}mobilenet_v3/", stem, top, notop,
                                 notop_suffix="_no_top_v2"),
                       top_sizes=None)


APPLICATIONS: tuple[Application, ...] = (
    Application("Xception", "xception", 299, _numbered("block", 1, 14), "block13",
                _tf_kernels("xception", "xception", "0a58e3b7378bc2990ea3b43d5981f1f6",
                            "b0042744bf5b25fce3cb969f33bebb97"), min_size=71),
    Application("VGG16", "vgg16", 224, _numbered("block", 1, 5), "block5",
                _tf_kernels("vgg16", "vgg16", "64373286793e3c8b2b4e3219cbf3544b",
                            "6d6bbae143d832006294945121d1f1fc")),
    Application("VGG19", "vgg19", 224, _numbered("block", 1, 5), "block5",
                _tf_kernels("vgg19", "vgg19", "cbe5617147190e668d6c5d5026f83318",
                            "253f8cb515780f3b799900260a226db6")),
    _resnet("ResNet50", "resnet", "resnet50", "2cb95161c43110f7111970584f804107",
            "4d473c1dd8becc155b73f8504c6f6626"),
    _resnet("ResNet101", "resnet", "resnet101", "f1aeb4b969a6efcfb50fad2f0c20cfc5",
            "88cf7a10940856eca736dc7b7e228a21"),
    _resnet("ResNet152", "resnet", "resnet152", "100835be76be38e30d865e96f2aaae62",
            "ee4c566cf9a93f14d82f913c2dc6dd0c"),
    _resnet("ResNet50V2", "resnet_v2", "resnet50v2", "3ef43a0b657b3be2300d5770ece849e0",
            "fac2f116257151a9d068a22e544a4917"),
    _resnet("ResNet101V2", "resnet_v2", "resnet101v2", "6343647c601c52e1368623803854d971",
            "c0ed64b8031c3730f411d2eb4eea35b5"),
    _resnet("ResNet152V2", "resnet_v2", "resnet152v2", "a49b44d1979771252814e80f8ec446f9",
            "ed17cf2e0169df9d443503ef94b23b33"),
    # mixed9 is left out: its prefix also names an inner concatenation of module 9.
    Application("InceptionV3", "inception_v3", 299, _numbered("mixed", 0, 8), "mixed8",
                _tf_kernels("inception_v3", "inception_v3", "9a0d58056eeedaa3f26cb7ebd46da564",
                            "bcbd6486424b2319ff4ef7d526e38f63"), min_size=75),
    Application("InceptionResNetV2", "inception_resnet_v2", 299,
                ("mixed_5b", "mixed_6a", "mixed_7a", "conv_7b"), "mixed_7a",
                _tf_kernels("inception_resnet_v2", "inception_resnet_v2",
                            "e693bd0210a403b3192acc6073ad2e96",
                            "d19885ff4a710c122648d3b5c3b684e4"), min_size=75),
    # MobileNet v1/v2 have one (unhashed) file per square input size; others load the 224 one.
    # MobileNet v1 fine-tunes from the stride-16 stage (conv_dw_7) on: measured with its real
    # ImageNet weights by benchmarks/bench_policy.py (+2.8/+5.0 points over the frozen backbone
    # on two datasets, against +1.1/+2.0 from the final stage, conv_dw_12).
    Application("MobileNet", "mobilenet", 224, _numbered("conv_dw_", 1, 13), "conv_dw_7",
                _suffixed(f"{_KA}mobilenet/", "mobilenet_1_0_{rows}_tf", None, None,
                          notop_suffix="_no_top"), top_sizes=(128, 160, 192, 224)),
    Application("MobileNetV2", "mobilenet_v2", 224, _numbered("block_", 1, 16) + ("Conv_1",),
                "block_13",
                _suffixed(f"{_KA}mobilenet_v2/",
                          "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}", None,
                          None, notop_suffix="_no_top"), top_sizes=(96, 128, 160, 192, 224)),
    _mobilenet_v3("small", 10, "expanded_conv_8", "8768d4c2e7dee89b9d02b2d03d65d862",
                  "d3e8ec802a04aa4fc771ee12a9a9b836"),
    _mobilenet_v3("large", 14, "expanded_conv_12", "59e551e166be033d707958cf9e29a6a7",
                  "07fb09a5933dd0c8eaafa16978110389"),
    _densenet(121, "9d60b8095a5708f2dcce2bca79d332c7", "30ee3e1110167f948a6b9946edeeb738"),
    _densenet(169, "d699b8f76981ab1b30698df4c175e90b", "b8c4d4c20dd625c148057b9ff1c1176b"),
    _densenet(201, "1ceb130c1ea1b78c3bf6114dbdfd8807", "c13680b51ded0fb44dff2d8f86ac8bb1"),
    Application("NASNetMobile", "nasnet", 224, _nasnet_blocks(4), "reduction_conv_1_reduce_8",
                _nasnet("mobile", "020fb642bf7360b370c678b08e0adf61",
                        "1ed92395b5b598bdda52abe5c0dbfd63"), static_size=True),
    Application("NASNetLarge", "nasnet", 331, _nasnet_blocks(6), "reduction_conv_1_reduce_12",
                _nasnet("large", "11577c9a518f0070763c2b964a382f17",
                        "d81d89dc07e6e56530c4e77faddd61b5"), static_size=True),
    _efficientnet("b0", 224, "902e53a9f72be733fc0bcb005b3ebbac",
                  "50bc09e76180e00e4465e1a485ddc09d"),
    _efficientnet("b1", 240, "1d254153d4ab51201f1646940f018540",
                  "74c4e6b3e1f6a1eea24c589628592432"),
    _efficientnet("b2", 260, "b15cce36ff4dcbd00b6dd88e7857a6ad",
                  "111f8e2ac8aa800a7a99e3239f7bfb39"),
    _efficientnet("b3", 300, "ffd1fdc53d0ce67064dc6a9c7960ede0",
                  "af6d107764bb5b1abb91932881670226"),
    _efficientnet("b4", 380, "18c95ad55216b8f92d7e70b3a046e2fc",
                  "ebc24e6d6c33eaebbd558eafbeedf1ba"),
    _efficientnet("b5", 456, "ace28f2a6363774853a83a0b21b9421a",
                  "38879255a25d3c92d5e44e04ae6cec6f"),
    _efficientnet("b6", 528, "165f6e37dce68623721b423839de8be5",
                  "9ecce42647a20130c1f39a5d4cb75743"),
    _efficientnet("b7", 600, "8c03f828fec3ef71311cd463b6759d99",
                  "cbcfe4450ddf6f3ad90b1b398090fe4a"),
    _efficientnet_v2("b0", 224, 6, "21ecbf6da12460d5c40bb2f29ceb2188",
                     "893217f2bb855e2983157299931e43ff"),
    _efficientnet_v2("b1", 240, 6, "069f0534ff22adf035c89e2d9547a9dc",
                     "0e80663031ca32d657f9caa404b6ec37"),
    _efficientnet_v2("b2", 260, 6, "424e49f28180edbde1e94797771950a7",
                     "1dfe2e7a5d45b6632553a8961ea609eb"),
    _efficientnet_v2("b3", 300, 6, "1f1fc43bd98a6e4fd8fdfd551e02c7a0",
                     "f6abf7b5849ac99a89b50dd3fd532856"),
    _efficientnet_v2("s", 384, 6, "e1d88a8495beba45748fedd0cecbe016",
                     "af0682fb74e8c54910f2d4393339c070"),
    _efficientnet_v2("m", 480, 7, "a3bf6aa3276309f4fc6a34aa114c95cd",
                     "1b8dc055df72dde80d614482840fe342"),
    _efficientnet_v2("l", 480, 7, "27e6d408b53c7ebc868fefa357689935",
                     "b0b66b5c863aef5b46e8608fe1711615"),
    _convnext("Tiny", "8ae6e78ce2933352b1ef4008e6dd2f17bc40771563877d156bc6426c7cf503ff",
              "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1"),
    _convnext("Small", "ce1277d8f1ee5a0ef0e171469089c18f5233860ceaf9b168049cb9263fd7483c",
              "6fc8009faa2f00c1c1dfce59feea9b0745eb260a7dd11bee65c8e20843da6eab"),
    _convnext("Base", "52cbb006d3dadd03f6e095a8ca1aca47aecdd75acb4bc74bce1f5c695d0086e6",
              "40a20c5548a5e9202f69735ecc06c990e6b7c9d2de39f0361e27baeb24cb7c45"),
    _convnext("Large", "070c5ed9ed289581e477741d3b34beffa920db8cf590899d6d2c67fba2a198a6",
              "96f02b6f0753d4f543261bc9d09bed650f24dd6bc02ddde3066135b63d23a1cd"),
    _convnext("XLarge", "c1f5ccab661354fc3a79a10fa99af82f0fbf10ec65cb894a3ae0815f17a889ee",
              "de3f8a54174130e0cecdc71583354753d557fcf1f4487331558e2a16ba0cfe05"),
)

_BY_NAME: dict[str, Application] = {app.name: app for app in APPLICATIONS}


def application(name: str) -> Application:
    """The table row of a registered keras.applications wrapper (``"keras_resnet50"``)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ZooError(f"{name!r} is not a keras.applications wrapper; their names start with "
                       f"{PREFIX!r} (see zoo.list_models(source='keras'))") from None


# --------------------------------------------------------------------------------------------
# Building


def build(
    name: str,
    *,
    include_top: bool = True,
    weights: str | os.PathLike | None = None,
    input_shape: tuple[int | None, int | None, int] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    model_name: str | None = None,
    include_preprocessing: bool = True,
) -> keras.Model:
    """Build the keras.applications model registered as ``name``.

    Args:
        name: registry name (``"keras_resnet50"``).
        include_top: include the ImageNet-style classifier.
        weights: ``None`` (random), ``"imagenet"``, or a ``.weights.h5``/``.h5``/``.keras`` path.
        input_shape: ``(height, width, 3)``; defaults to the model's default size. ``None``
            height/width are allowed without the top (except for NASNet).
        pooling: ``None``, ``"avg"`` or ``"max"`` when ``include_top=False``.
        classes: classifier outputs; 1000 with ImageNet weights and the top.
        classifier_activation: activation of the classifier.
        model_name: the model's name; defaults to the registry name. Layer names are Keras's
            own whatever the model is called (they are the "blocks" contract).
        include_preprocessing: start with the ``preprocess_*`` layers, so the model takes raw
            0-255 pixels; ``False`` gives the bare Keras network (the same weights), which
            expects input preprocessed in the registry's mode.

    Raises:
        ZooError: an argument that does not fit the model or its weights.
        InputShapeError: an input shape the model cannot take.
        WeightsError: weights that cannot be found, downloaded or loaded.
    """
    app = application(name)
    validate_args(name, include_top=include_top, weights=weights, classes=classes,
                  pooling=pooling)
    shape = resolve_input_shape(name, input_shape, include_top)
    _check_shape(app, shape, include_top)
    imagenet_path = None
    if weights == "imagenet":
        _check_imagenet(app, shape, include_top, classes, classifier_activation)
        imagenet_path = _imagenet_path(app, imagenet_file(name, include_top=include_top,
                                                          input_shape=shape))
    constructor = getattr(keras.applications, app.constructor)
    options = {"include_preprocessing": False} if app.family.keras_preprocessing else {}
    inputs = None
    if include_preprocessing and app.mode != "none":
        # Keras builds the network on the preprocessed tensor, so the model stays flat: the
        # preprocessing layers come first in model.layers, like a classic builder's.
        inputs, options["input_tensor"] = model_input(name, shape, True, input_name=None)
    try:
        with _session_independent_layer_names():
            model = constructor(include_top=include_top, weights=None, input_shape=shape,
                                pooling=pooling, classes=classes,
                                classifier_activation=classifier_activation, **options)
    except ValueError as exc:  # a rule Keras has and the checks above do not
        raise ZooError(f"{name}: keras.applications.{app.constructor} refused the arguments: "
                       f"{exc}") from exc
    if inputs is not None:
        # Keras keeps input_tensor's source inputs as a list; one tensor in, like every model.
        model = keras.Model(inputs, model.output)
    model.name = model_name or name
    if imagenet_path is not None:
        return _load_imagenet(model, app, imagenet_path)
    if weights is not None and str(weights).endswith(".keras"):
        return _load_keras_file(model, Path(weights))
    return load_weights(model, weights)


@contextlib.contextmanager
def _session_independent_layer_names():
    """Name Keras's unnamed layers as a fresh session would (``activation``, ``activation_1``..).

    keras.applications leaves many layers unnamed (MobileNetV3's activations, Inception's,
    NASNet's), and Keras numbers unnamed layers with counters global to the session, so the
    same layer of a model built second would be called ``activation_39`` instead of
    ``activation_19``. The counters are swapped for fresh ones while the model is built, then
    restored, so these names are a stable contract (the feature taps of :mod:`zoo.taps` name
    some of them). Layer names only need to be unique within a model.
    """
    try:
        from keras.src.backend.common import global_state
    except ImportError:  # a Keras without this module: keep its own naming
        yield
        return
    saved = global_state.get_global_attribute(_NAME_COUNTERS)
    global_state.set_global_attribute(_NAME_COUNTERS, collections.defaultdict(int))
    try:
        yield
    finally:
        global_state.set_global_attribute(_NAME_COUNTERS, saved)


def _check_shape(app: Application, shape: tuple, include_top: bool) -> None:
    if None not in shape[:2]:
        return
    if app.static_size:
        raise InputShapeError(
            f"{app.name}: input height and width must be given, got {shape!r}; Keras builds a "
            f"different NASNet, which no weight file fits, when they are None.")
    if include_top and app.top_sizes is not None:
        raise InputShapeError(
            f"{app.name}: with include_top=True the input size must be given, got {shape!r}. "
            f"Use include_top=False for a backbone that takes any size.")


def _check_imagenet(app: Application, shape: tuple, include_top: bool, classes: int,
                    classifier_activation: str | None) -> None:
    if not include_top:
        return
    if classes != 1000:
        raise ZooError(
            f"{app.name}: the ImageNet classifier has 1000 classes, got classes={classes}. "
            f"Use include_top=False (and add your own head) to classify {classes} classes.")
    if classifier_activation not in ("softmax", None):
        raise ZooError(
            f"{app.name}: with the ImageNet classifier, classifier_activation must be "
            f"'softmax' or None, got {classifier_activation!r}")
    sizes = (app.size,) if app.top_sizes == () else app.top_sizes
    if sizes is not None and (shape[0] != shape[1] or shape[0] not in sizes):
        allowed = " or ".join(f"({s}, {s}, 3)" for s in sizes)
        raise InputShapeError(
            f"{app.name}: ImageNet weights with include_top=True need input_shape {allowed}, "
            f"got {shape!r}. Use include_top=False for other sizes.")


# --------------------------------------------------------------------------------------------
# ImageNet weights: the Keras cache, then a download


def imagenet_file(name: str, *, include_top: bool = True,
                  input_shape: tuple[int | None, int | None, int] | None = None) -> WeightFile:
    """The ImageNet weight file Keras uses for this model, top and input size.

    Useful to pre-download weights for an offline machine: fetch ``url`` and store it as
    ``$KERAS_HOME/models/<name>``.
    """
    app = application(name)
    top_file, notop_file = app.imagenet
    file = top_file if include_top else notop_file
    rows = app.size
    if input_shape is not None and app.top_sizes:
        height, width = input_shape[:2]
        if height == width and height in app.top_sizes:
            rows = height
    return file.for_rows(rows)


def keras_cache_dir() -> Path:
    """The folder ``keras.utils.get_file`` caches models in, resolved now (Keras itself reads
    ``KERAS_HOME`` once, at import)."""
    if "KERAS_HOME" in os.environ:
        home = Path(os.environ["KERAS_HOME"])
    else:
        base = os.path.expanduser("~")
        home = Path(base if os.access(base, os.W_OK) else "/tmp") / ".keras"
    if not os.access(home, os.W_OK):  # get_file's own fallback
        home = Path("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()) / ".keras"
    return home / "models"


def _imagenet_path(app: Application, file: WeightFile) -> Path:
    folder = keras_cache_dir()
    cached = folder / file.name
    if cached.is_file():
        if _hash_matches(cached, file.file_hash):
            return cached
        log.warning("%s: cached %s does not match its hash; downloading it again", app.name,
                    cached)
    host = urllib.parse.urlsplit(file.url).hostname or ""
    if not _reachable(file.url):
        raise WeightsError(
            f"{app.name}: the ImageNet weights file {file.name!r} is not in the Keras cache "
            f"({folder}) and {host} cannot be reached. Either download {file.url} on a machine "
            f"with internet access and put it in a folder's 'models' sub-folder, then set "
            f"KERAS_HOME to that folder (or put it in {folder}); or pass weights=PATH to a "
            f".weights.h5/.h5/.keras file; or weights=None for random initialisation.")
    log.info("%s: downloading ImageNet weights %s", app.name, file.url)
    try:
        path = keras.utils.get_file(file.name, file.url, cache_subdir="models",
                                    cache_dir=str(folder.parent), file_hash=file.file_hash)
    except Exception as exc:  # URL errors, a failed hash check, an interrupted transfer
        raise WeightsError(
            f"{app.name}: downloading {file.url} failed ({exc}). Retry, or download it "
            f"elsewhere and put it in {folder} (see KERAS_HOME), or pass weights=PATH.") from exc
    return Path(path)


def _hash_matches(path: Path, expected: str | None) -> bool:
    if expected is None:
        return True
    digest = hashlib.sha256() if len(expected) == 64 else hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest() == expected


def _reachable(url: str, timeout: float = REACHABILITY_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the URL's host (or its HTTPS proxy) opens within
    ``timeout`` seconds. Name resolution runs inside the deadline too."""
    split = urllib.parse.urlsplit(url)
    host, port = split.hostname or "", split.port or 443
    proxy = urllib.request.getproxies().get(split.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_split = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxy_split.hostname or "", proxy_split.port or 80
    opened: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            opened.append(True)
        except OSError:
            pass

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(opened)


def _load_imagenet(model: keras.Model, app: Application, path: Path) -> keras.Model:
    try:
        model.load_weights(path)
    except Exception as exc:
        raise WeightsError(
            f"{app.name}: the cached ImageNet weights {str(path)!r} cannot be loaded "
            f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); delete the "
            f"file so that it is downloaded again.") from exc
    if app.module == "efficientnet":
        _fold_stddev_into_normalization(model)
    return model


def _fold_stddev_into_normalization(model: keras.Model) -> None:
    """Give EfficientNet its ImageNet input scaling without the layer Keras adds for it.

    Keras stores the ImageNet std as the Normalization *variance* and, only when built with
    ``weights="imagenet"``, adds ``Rescaling(1 / sqrt(std))`` after it. Multiplying the variance
    by the std gives the same function, so a model has one architecture whatever its weights
    and weight files move between them.
    """
    norm = next(layer for layer in model.layers
                if isinstance(layer, keras.layers.Normalization)
                and not layer.name.startswith(PREPROCESS_PREFIX))
    norm.adapt_variance.assign(norm.adapt_variance * keras.ops.convert_to_tensor(
        _IMAGENET_STDDEV_RGB, dtype=norm.adapt_variance.dtype))
    norm.finalize_state()


# --------------------------------------------------------------------------------------------
# .keras files


def _load_keras_file(model: keras.Model, path: Path) -> keras.Model:
    """Copy the weights of a ``.keras`` file layer by layer, in order.

    Keras leaves many layers of these models unnamed, and the names it generates depend on what
    was built before, so weights are matched by position and checked by layer type and weight
    shapes. The file may hold the same model with or without its top, or a classifier with this
    model nested inside.
    """
    if not path.is_file():
        raise WeightsError(f"weights file {str(path)!r} does not exist")
    try:
        source = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        raise WeightsError(f"weights file {str(path)!r} cannot be read: "
                           f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                           ) from exc
    target = _weighted_leaves(model)
    signature = [_signature(layer) for layer in target]
    for candidate in _models(source):
        layers = _weighted_leaves(candidate)[:len(target)]
        if [_signature(layer) for layer in layers] == signature:
            for src, dst in zip(layers, target):
                dst.set_weights(src.get_weights())
                if hasattr(dst, "finalize_state"):  # Normalization caches its statistics
                    dst.finalize_state()
            return model
    raise WeightsError(
        f"weights file {str(path)!r} does not fit model {model.name!r}: it holds no model with "
        f"the same layers (types and weight shapes, in order), with or without a top")


def _models(model: keras.Model):
    yield model
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _models(layer)


def _weighted_leaves(model: keras.Model) -> list:
    leaves = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            leaves += _weighted_leaves(layer)
        elif layer.weights:
            leaves.append(layer)
    return leaves


def _signature(layer) -> tuple:
    return type(layer).__name__, tuple(tuple(w.shape) for w in layer.weights)


# --------------------------------------------------------------------------------------------
# Registration: one builder per row, with the classic builders' signature


def _make_builder(app: Application):
    def builder(
        *,
        include_top: bool = True,
        weights: str | None = None,
        input_shape: tuple[int, int, int] | None = None,
        pooling: str | None = None,
        classes: int = 1000,
        classifier_activation: str | None = "softmax",
        name: str | None = None,
        include_preprocessing: bool = True,
    ) -> keras.Model:
        return build(app.name, include_top=include_top, weights=weights,
                     input_shape=input_shape, pooling=pooling, classes=classes,
                     classifier_activation=classifier_activation, model_name=name,
                     include_preprocessing=include_preprocessing)

    builder.__name__ = builder.__qualname__ = app.name
    builder.__doc__ = (
        f"keras.applications.{app.constructor}: {app.family.paper}.\n\n"
        f"Default input {app.size}x{app.size}, at least {app.min_size}x{app.min_size}; takes "
        f"raw 0-255 pixels, preprocessing {app.mode!r} inside the model unless "
        f"include_preprocessing=False. Arguments, weights and errors as in "
        f":func:`zoo.applications.build`; ``name`` defaults to {app.name!r}.")
    return builder


for _app in APPLICATIONS:
    add_spec(ModelSpec(
        name=_app.name,
        builder=_make_builder(_app),
        family=_app.module,
        paper=_app.family.paper,
        year=_app.family.year,
        default_input_shape=(_app.size, _app.size, 3),
        min_input_size=_app.min_size,
        preprocessing=_app.mode,
        pretrained=("imagenet",),
        blocks=_app.blocks,
        default_unfreeze=_app.default_unfreeze,
        source="keras",
    ))
del _app

__all__ = ["APPLICATIONS", "Application", "WeightFile", "application", "build",
           "imagenet_file", "keras_cache_dir"]
