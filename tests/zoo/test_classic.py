"""The classic builders: shapes, exact parameter counts, MACs, input-size limits, GoogLeNet's
auxiliary heads, U-Net's layouts and the LRN layer.

Parametrized over the registry, so a newly registered classic model is tested the day it lands
(and fails ``test_every_classic_model_has_a_reference`` until its published count is added).
Big models are only built at their default size, never run there.
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np
import pytest

import zoo
from zoo import googlenet as googlenet_module
from zoo import registry
from zoo.errors import InputShapeError, ZooError
from zoo.layers import LocalResponseNormalization
from zoo.macs import count_macs
from zoo.unet import valid_output_size

CLASSIC = zoo.list_models(source="classic")
CLASSIFIERS = zoo.list_models(source="classic", task="classification")
SMALL = 32  # CIFAR-size input, used wherever the architecture allows it


def conv(kernel: int, c_in: int, c_out: int, groups: int = 1) -> int:
    return kernel * kernel * c_in // groups * c_out + c_out


def dense(c_in: int, c_out: int) -> int:
    return c_in * c_out + c_out


# Table 1 of Szegedy et al. 2014, written out independently of zoo.googlenet:
# #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj, input channels, map size, ops (M).
GOOGLENET_TABLE1 = {
    "3a": (64, 96, 128, 16, 32, 32, 192, 28, 128),
    "3b": (128, 128, 192, 32, 96, 64, 256, 28, 304),
    "4a": (192, 96, 208, 16, 48, 64, 480, 14, 73),
    "4b": (160, 112, 224, 24, 64, 64, 512, 14, 88),
    "4c": (128, 128, 256, 24, 64, 64, 512, 14, 100),
    "4d": (112, 144, 288, 32, 64, 64, 512, 14, 119),
    "4e": (256, 160, 320, 32, 128, 128, 528, 14, 170),
    "5a": (256, 160, 320, 32, 128, 128, 832, 7, 54),
    "5b": (384, 192, 384, 48, 128, 128, 832, 7, 71),
}


def _inception_params(n1, r3, n3, r5, n5, proj, c_in, *_):
    return (conv(1, c_in, n1) + conv(1, c_in, r3) + conv(3, r3, n3) + conv(1, c_in, r5)
            + conv(5, r5, n5) + conv(1, c_in, proj))


def upconv(kernel: int, channels: int) -> int:
    """A bias-free transposed convolution from ``channels`` to ``channels`` (FCN's upscore)."""
    return kernel * kernel * channels * channels


def _unet_params(channels: int) -> int:
    """Ronneberger et al. 2015, figure 1: 23 convolutional layers, 2 classes."""
    return (conv(3, channels, 64) + conv(3, 64, 64) + conv(3, 64, 128) + conv(3, 128, 128)
            + conv(3, 128, 256) + conv(3, 256, 256) + conv(3, 256, 512) + conv(3, 512, 512)
            + conv(3, 512, 1024) + conv(3, 1024, 1024)
            + conv(2, 1024, 512) + conv(3, 1024, 512) + conv(3, 512, 512)
            + conv(2, 512, 256) + conv(3, 512, 256) + conv(3, 256, 256)
            + conv(2, 256, 128) + conv(3, 256, 128) + conv(3, 128, 128)
            + conv(2, 128, 64) + conv(3, 128, 64) + conv(3, 64, 64) + conv(1, 64, 2))


# VGG16's 13 convolutions (input, output channels), written out independently of zoo.vgg.
VGG16_CONVS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
               (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
# SegNet: the encoder, then the decoder of the authors' prototxt (conv5_3_D .. conv1_2_D).
SEGNET_CONVS = VGG16_CONVS + [
    (512, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 256),
    (256, 256), (256, 256), (256, 128), (128, 128), (128, 64), (64, 64)]
# FCN-VGG16 up to score_fr (21 classes).
_FCN_BASE = (sum(conv(3, c_in, c_out) for c_in, c_out in VGG16_CONVS) + conv(7, 512, 4096)
             + conv(1, 4096, 4096) + conv(1, 4096, 21))


# Parameters of each builder with its default arguments (1000 classes; segmentation models: their
# spec's default classes and input channels). For BatchNorm models this is the *trainable*
# count, which is what PyTorch reports (gamma/beta are parameters, running statistics are
# buffers).
REFERENCE_PARAMS = {
    "lenet5": 61_706,  # zoo.lenet docstring (C3 fully connected variant)
    # Caffe bvlc_alexnet, the paper's two-tower layout (groups=2 on conv2, conv4, conv5)
    "alexnet": 60_965_224,
    # Zeiler & Fergus 2014, figure 3
    "zfnet": (conv(7, 3, 96) + conv(5, 96, 256) + conv(3, 256, 384) + conv(3, 384, 384)
              + conv(3, 384, 256) + dense(6 * 6 * 256, 4096) + dense(4096, 4096)
              + dense(4096, 1000)),
    # torchvision num_params (vgg16/vgg19 also Keras applications)
    "vgg11": 132_863_336,
    "vgg13": 133_047_848,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "vgg11_bn": 132_868_840,
    "vgg13_bn": 133_053_736,
    "vgg16_bn": 138_365_992,
    "vgg19_bn": 143_678_248,
    # Caffe model zoo NIN-Imagenet: mlpconv blocks of a spatial conv and two 1x1 convs
    "nin": (conv(11, 3, 96) + 2 * conv(1, 96, 96) + conv(5, 96, 256) + 2 * conv(1, 256, 256)
            + conv(3, 256, 384) + 2 * conv(1, 384, 384) + conv(3, 384, 1024)
            + conv(1, 1024, 1024) + conv(1, 1024, 1000)),
    # Table 1 with biases (its params column, weights only, has known typos: conv1, 5a)
    "googlenet": (conv(7, 3, 64) + conv(1, 64, 64) + conv(3, 64, 192)
                  + sum(_inception_params(*row) for row in GOOGLENET_TABLE1.values())
                  + dense(1024, 1000)),
    # torchvision num_params
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "densenet121": 7_978_856,
    "densenet169": 14_149_480,
    "densenet201": 20_013_928,
    # Ultralytics YOLOv8n's and YOLOv8s's first ten layers (the backbone, tests/zoo/
    # test_cspdarknet.py), then the registry's pooled dense top
    "cspdarknet_n": 1_272_656 + dense(256, 1000),
    "cspdarknet_s": 5_079_712 + dense(512, 1000),
    # Ronneberger et al. 2015, figure 1: 23 convolutional layers, 1 input channel, 2 classes
    "unet": _unet_params(channels=1),  # 31,030,658
    "unet_same": _unet_params(channels=3),  # padding changes no parameter
    # Badrinarayanan et al. 2017 as the authors' Caffe model (SegNet-Tutorial,
    # Models/segnet_train.prototxt, CamVid, 11 classes): 25 conv+BN, classifier conv1_1_D without
    # BN. Trainable: weights, biases, BN gamma/beta; the paper's 29.5M.
    "segnet": (sum(conv(3, c_in, c_out) + 2 * c_out for c_in, c_out in SEGNET_CONVS)
               + conv(3, 64, 11)),  # 29,449,355
    # Long et al. 2015, reference nets voc-fcn{32,16,8}s (21 classes): VGG16 convolutions, fc6
    # 7x7 and fc7 1x1 convolutions of 4096, 1x1 score layers, bias-free transposed convolutions
    # of kernel 2 x stride. The paper's Table 1: 134M for FCN-VGG16.
    "fcn32s": _FCN_BASE + upconv(64, 21),  # 136,152,917
    "fcn16s": _FCN_BASE + upconv(4, 21) + conv(1, 512, 21) + upconv(32, 21),  # 134,815,994
    "fcn8s": (_FCN_BASE + upconv(4, 21) + conv(1, 512, 21) + upconv(4, 21) + conv(1, 256, 21)
              + upconv(16, 21)),  # 134,489,759
    # Redmon et al. 2016, figure 3 (448x448, S=7, B=2, C=20), derived layer by layer in
    # tests/zoo/test_yolov1.py
    "yolov1": 271_703_550,
}

# Published multiply-accumulates at the default input size.
#   torchvision: the "GFLOPS" field of each model's weights in the torchvision model docs
#     (pytorch.org/vision/stable/models), which counts multiply-adds of convs and linears.
#   Sze et al. 2017, "Efficient Processing of Deep Neural Networks: A Tutorial and Survey",
#     Proc. IEEE, Table 3: AlexNet (two-tower, 227x227) 724M MACs, VGG-16 15.5G.
#   Szegedy et al. 2014, Table 1: sum of the "ops" column (the text rounds it to 1.5G).
#   He et al. 2015, Table 1 gives ResNet v1 (1.8/3.6/3.8/7.6/11.3 G); the v1.5 stride move makes
#     the bottleneck models ~0.3-0.5G heavier, hence torchvision's figures for them.
PUBLISHED_MACS = {
    "alexnet": 724e6,  # Sze et al. 2017
    "vgg11": 7.61e9,  # torchvision
    "vgg13": 11.31e9,  # torchvision
    "vgg16": 15.47e9,  # torchvision (Sze et al. 2017: 15.5G)
    "vgg19": 19.63e9,  # torchvision
    "googlenet": 1586e6,  # Szegedy et al. 2014, Table 1
    "resnet18": 1.81e9,  # torchvision (He et al.: 1.8G)
    "resnet34": 3.66e9,  # torchvision (He et al.: 3.6G)
    "resnet50": 4.09e9,  # torchvision, v1.5
    "resnet101": 7.80e9,  # torchvision, v1.5
    "resnet152": 11.51e9,  # torchvision, v1.5
    "densenet121": 2.83e9,  # torchvision
    "densenet169": 3.36e9,  # torchvision
    "densenet201": 4.29e9,  # torchvision
}


def _trainable_params(model: keras.Model) -> int:
    return sum(math.prod(w.shape) for w in model.trainable_weights)


def _small_shape(name: str) -> tuple[int, int, int]:
    spec = zoo.get_spec(name)
    size = max(spec.min_input_size, SMALL)
    return (size, size, spec.channels)


def _batch(shape, n: int = 2) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 1, (n, *shape)).astype("float32")


@pytest.fixture(scope="module")
def default_model(request):
    """A model built once with its builder's defaults, shared by the tests that ask for it."""
    name = request.param
    return name, zoo.get_spec(name).builder()


# --- shapes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_output_shape(name):
    spec = zoo.get_spec(name)
    if spec.fixed_input_size:
        # A flatten top pins the input to the default size: check the graph, run nothing big.
        model = zoo.create_model(name, classes=7)
        assert model.input_shape == (None, *spec.default_input_shape)
        assert model.output_shape == (None, 7)
        return
    shape = _small_shape(name)
    model = zoo.create_model(name, classes=7, input_shape=shape)
    probabilities = keras.ops.convert_to_numpy(model(_batch(shape), training=False))
    assert probabilities.shape == (2, 7)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_backbone_avg_pooling_and_block_names(name):
    shape = _small_shape(name)
    model = zoo.create_model(name, include_top=False, pooling="avg", input_shape=shape)
    channels = model.get_layer("avg_pool").input.shape[-1]
    assert model.output_shape == (None, channels)
    if zoo.get_spec(name).fixed_input_size:  # the others ran in test_classifier_output_shape
        assert keras.ops.convert_to_numpy(model(_batch(shape))).shape == (2, channels)
    _check_blocks(name, model)


def _check_blocks(name: str, model: keras.Model) -> None:
    """``blocks`` are ordered layer-name prefixes and every layer with weights belongs to one
    (what "unfreeze from block N" relies on)."""
    blocks = zoo.get_spec(name).blocks
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    first = [next(i for i, layer in enumerate(layers) if layer.name.startswith(f"{block}_"))
             for block in blocks]
    assert first == sorted(first), f"{name}: blocks are not in layer order"
    strays = [layer.name for layer in layers if layer.weights
              and not any(layer.name.startswith(f"{block}_") for block in blocks)]
    assert not strays, f"{name}: layers outside every block: {strays}"


# --- parameters and MACs at the default size ---------------------------------------------------


def test_every_classic_model_has_a_reference():
    assert sorted(REFERENCE_PARAMS) == CLASSIC


@pytest.mark.parametrize("default_model", sorted(REFERENCE_PARAMS), indirect=True)
def test_parameter_count_matches_reference(default_model):
    name, model = default_model
    assert _trainable_params(model) == REFERENCE_PARAMS[name]


@pytest.mark.parametrize("default_model", sorted(PUBLISHED_MACS), indirect=True)
def test_macs_match_published(default_model):
    name, model = default_model
    assert count_macs(model) == pytest.approx(PUBLISHED_MACS[name], rel=0.02)


def test_googlenet_modules_follow_table1():
    assert googlenet_module.INCEPTION_CFG == {
        module: row[:6] for module, row in GOOGLENET_TABLE1.items()}
    for module, row in GOOGLENET_TABLE1.items():
        *cfg, c_in, size, table_ops = row
        inputs = keras.Input((size, size, c_in))
        block = keras.Model(inputs, googlenet_module.inception_module(inputs, "m", tuple(cfg)))
        assert block.output_shape[-1] == cfg[0] + cfg[2] + cfg[4] + cfg[5]
        if module == "5a":
            # Table 1 says 54M (and 1072K params), inconsistent with its own filter counts,
            # which give 51.1M; every other row matches to the rounding.
            assert count_macs(block) == 51_079_168
            continue
        assert abs(count_macs(block) / 1e6 - table_ops) < 1.0, module


@pytest.mark.parametrize("default_model", ["googlenet"], indirect=True)
def test_googlenet_5x5_reduction_saves_twentyfold(default_model):
    """The 1x1 reductions are the point: inception 4a's 5x5 branch, 112.9M vs 5.3M MACs."""
    _, model = default_model
    reduce_layer = model.get_layer("inception_4a_5x5_reduce")
    assert reduce_layer.input.shape[1:] == (14, 14, 480)
    reduction, filters = reduce_layer.filters, model.get_layer("inception_4a_5x5").filters
    assert (reduction, filters) == (16, 48)

    inputs = keras.Input((14, 14, 480))
    direct = keras.Model(inputs, keras.layers.Conv2D(filters, 5, padding="same")(inputs))
    reduced = keras.layers.Conv2D(reduction, 1)(inputs)
    reduced = keras.Model(inputs, keras.layers.Conv2D(filters, 5, padding="same")(reduced))
    assert count_macs(direct) == 14 * 14 * 5 * 5 * 480 * 48 == 112_896_000
    assert count_macs(reduced) == 14 * 14 * 480 * 16 + 14 * 14 * 5 * 5 * 16 * 48 == 5_268_480
    assert round(count_macs(direct) / 1e6, 1) == 112.9
    assert round(count_macs(reduced) / 1e6, 1) == 5.3


# --- input sizes -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CLASSIC)
def test_below_min_input_size_is_refused(name):
    spec = zoo.get_spec(name)
    below = spec.min_input_size - 1
    with pytest.raises(InputShapeError, match="input size"):
        zoo.create_model(name, include_top=False, input_shape=(below, below, spec.channels))


def _one_per_family_and_min(names: list[str]) -> list[str]:
    """The shortest name of each (family, minimum): resnet18 for the ResNets, vgg11, ..."""
    first: dict[tuple[str, int], str] = {}
    for name in sorted(names, key=lambda n: (len(n), n)):
        spec = zoo.get_spec(name)
        first.setdefault((spec.family, spec.min_input_size), name)
    return sorted(first.values())


@pytest.mark.parametrize("name", _one_per_family_and_min(CLASSIFIERS))
def test_min_input_size_is_real(name, monkeypatch):
    """The minimum builds (with max pooling) and ends on a 1x1 map; one pixel less breaks the
    architecture itself once the registry's check is switched off.

    One model per family and minimum: the minimum comes from the stem and the downsampling,
    which the depths of a family share (and their builders share the pooling code).
    """
    spec = zoo.get_spec(name)
    size, channels = spec.min_input_size, spec.channels
    model = zoo.create_model(name, include_top=False, pooling="max",
                             input_shape=(size, size, channels))
    assert model.get_layer("max_pool").input.shape[1:3] == (1, 1)
    assert model.output_shape == (None, model.get_layer("max_pool").input.shape[-1])
    if size == 1:
        return  # every stride is padded: any input builds
    monkeypatch.setitem(registry._REGISTRY, name, dataclasses.replace(spec, min_input_size=1))
    with pytest.raises(ValueError) as error:
        spec.builder(include_top=False, input_shape=(size - 1, size - 1, channels))
    assert not isinstance(error.value, InputShapeError)


@pytest.mark.parametrize("name", [n for n in CLASSIFIERS if zoo.get_spec(n).fixed_input_size])
def test_flatten_top_needs_the_default_size(name):
    spec = zoo.get_spec(name)
    height, width, channels = spec.default_input_shape
    with pytest.raises(InputShapeError, match="include_top=False"):
        zoo.create_model(name, input_shape=(height + 1, width, channels))


# --- GoogLeNet auxiliary classifiers ----------------------------------------------------------


def test_googlenet_aux_classifiers_and_inference_model():
    shape = (96, 96, 3)
    model = googlenet_module.googlenet(classes=7, input_shape=shape, aux_classifiers=True)
    assert [t.shape for t in model.outputs] == [(None, 7)] * 3
    assert model.output_names == ["predictions", "aux1_predictions", "aux2_predictions"]
    assert googlenet_module.AUX_LOSS_WEIGHT == 0.3
    for aux, after in (("aux1", "inception_4a"), ("aux2", "inception_4d")):
        pool = model.get_layer(f"{aux}_pool")
        assert pool.input is model.get_layer(f"{after}_concat").output
        assert (pool.pool_size, pool.strides) == ((5, 5), (3, 3))
        assert model.get_layer(f"{aux}_conv").filters == 128
        assert model.get_layer(f"{aux}_fc").units == 1024
        assert model.get_layer(f"{aux}_dropout").rate == 0.7

    single = googlenet_module.inference_model(model)
    assert single.output_shape == (None, 7)
    assert {id(v) for v in single.weights} <= {id(v) for v in model.weights}
    assert not any(layer.name.startswith("aux") for layer in single.layers)
    images = _batch(shape)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(single(images)),
                               keras.ops.convert_to_numpy(model(images)[0]), rtol=1e-5)

    plain = zoo.create_model("googlenet", classes=7, input_shape=shape)
    assert _trainable_params(single) == _trainable_params(plain)


def test_googlenet_aux_classifiers_reject_bad_arguments():
    with pytest.raises(InputShapeError, match="65x65"):
        googlenet_module.googlenet(input_shape=(64, 64, 3), aux_classifiers=True)
    with pytest.raises(ZooError, match="include_top=True"):
        googlenet_module.googlenet(include_top=False, aux_classifiers=True)
    with pytest.raises(ZooError, match="include_top=True"):
        googlenet_module.inference_model(zoo.create_model("googlenet", include_top=False,
                                                          input_shape=(32, 32, 3)))


# --- U-Net ---------------------------------------------------------------------------------------


def test_unet_paper_layout_572_to_388():
    model = zoo.get_spec("unet").builder()  # valid padding, 572x572x1, 2 classes
    assert model.input_shape == (None, 572, 572, 1)
    assert model.output_shape == (None, 388, 388, 2)
    assert valid_output_size(572) == 388


def test_unet_valid_sizes():
    assert valid_output_size(188) == 4
    assert valid_output_size(187) is None and valid_output_size(190) is None
    model = zoo.create_model("unet", classes=3, input_shape=(188, 188, 1))
    assert model.output_shape == (None, 4, 4, 3)
    small = zoo.get_spec("unet").builder(classes=3, input_shape=(188, 188, 1), base_filters=2)
    assert keras.ops.convert_to_numpy(small(_batch((188, 188, 1)))).shape == (2, 4, 4, 3)
    with pytest.raises(InputShapeError, match="572 gives the paper's 388"):
        zoo.create_model("unet", input_shape=(256, 256, 1))


@pytest.mark.parametrize("batch_norm", [False, True])
def test_unet_same_padding_keeps_the_size(batch_norm):
    builder = zoo.get_spec("unet").builder
    model = builder(classes=5, input_shape=(32, 48, 1), padding="same", base_filters=4,
                    batch_norm=batch_norm)
    assert model.output_shape == (None, 32, 48, 5)
    assert keras.ops.convert_to_numpy(model(_batch((32, 48, 1)))).shape == (2, 32, 48, 5)
    assert any(isinstance(layer, keras.layers.BatchNormalization)
               for layer in model.layers) == batch_norm
    features = builder(include_top=False, input_shape=(32, 32, 1), padding="same",
                       base_filters=4)
    assert features.output_shape == (None, 32, 32, 4)
    assert builder(padding="same", base_filters=4).input_shape == (None, 576, 576, 1)
    with pytest.raises(InputShapeError, match="multiples of 16"):
        builder(input_shape=(40, 40, 1), padding="same")


def test_unet_rejects_bad_options():
    builder = zoo.get_spec("unet").builder
    with pytest.raises(ZooError, match="pooling=None"):
        builder(include_top=False, pooling="avg")
    with pytest.raises(ZooError, match="padding"):
        builder(padding="full")
    with pytest.raises(ZooError, match="depth"):
        builder(depth=0)


# --- LRN -----------------------------------------------------------------------------------------


def _lrn_reference(a, size, alpha, beta, k):
    """Krizhevsky et al. 2012, section 3.3, with alpha divided by n (Caffe/PyTorch), a loop."""
    out = np.empty_like(a)
    channels = a.shape[-1]
    for c in range(channels):
        lo, hi = max(0, c - size // 2), min(channels - 1, c + size // 2)
        total = (a[..., lo:hi + 1] ** 2).sum(axis=-1)
        out[..., c] = a[..., c] / (k + alpha / size * total) ** beta
    return out


@pytest.mark.parametrize("k, alpha", [(2.0, 1e-4), (1.0, 0.5)])
def test_lrn_matches_numpy_reference(k, alpha):
    a = np.random.default_rng(1).normal(0, 3, (2, 3, 4, 7)).astype("float32")
    layer = LocalResponseNormalization(size=5, alpha=alpha, beta=0.75, k=k)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(a)),
                               _lrn_reference(a.astype("float64"), 5, alpha, 0.75, k),
                               rtol=1e-5)
