"""The feature-tap table: every registered backbone has taps, and each tap is the layer the
table's rule names, checked on the built model.

Parametrized over the registry, so a backbone registered without taps fails here the day it
lands. Only cheap backbones build in the fast suite; the others are marked slow.
"""

from __future__ import annotations

import dataclasses
import math

import keras
import pytest

import zoo
from zoo import registry, taps
from zoo.errors import UnknownModelError, ZooError

BACKBONES = zoo.list_models(task="classification")
SEGMENTATION = zoo.list_models(task="segmentation")
SIZE = 64
# Measured: each builds (twice where strides are approximate) in about a second or less.
FAST = {"alexnet", "googlenet", "keras_mobilenet", "keras_mobilenetv2",
        "keras_mobilenetv3small", "keras_vgg16", "lenet5", "nin", "resnet18", "vgg11",
        "vgg16_bn", "zfnet"}
# Layers that only re-frame a map for the next strided operation.
_FRAMING = (keras.layers.ZeroPadding2D, keras.layers.Cropping2D)
_NORMALIZATION = (keras.layers.BatchNormalization, keras.layers.LayerNormalization)


def _params(names):
    return [n if n in FAST else pytest.param(n, marks=pytest.mark.slow(
        reason="builds in more than a second on 2 CPU cores")) for n in names]


@pytest.fixture(autouse=True)
def _fresh_session():
    yield
    keras.backend.clear_session()


@dataclasses.dataclass
class _Map:
    layer: keras.layers.Layer
    size: tuple[int, int]
    channels: int
    stride: int | None  # the stride measured from two input sizes (None if not measured)


def _maps(name: str) -> tuple[int, list[_Map]]:
    """Every spatial map of backbone ``name`` built at ``size`` (layer order), with its stride.

    Where the table lists approximate strides the backbone is built a second time, 128 pixels
    larger: a map at stride s then grows by 128 / s pixels (give or take one for unpadded
    layers), which measures s without relying on exact sizes.
    """
    spec = zoo.get_spec(name)
    size = max(SIZE, math.ceil(spec.min_input_size / 32) * 32)
    model = zoo.create_model(name, include_top=False, input_shape=(size, size, spec.channels))
    layers = [layer for layer in model.layers if len(layer.output.shape) == 4]
    strides: list[int | None] = [None] * len(layers)
    if zoo.get_taps(name).approximate:
        keras.backend.clear_session()
        bigger = zoo.create_model(name, include_top=False,
                                  input_shape=(size + 128, size + 128, spec.channels))
        big = {layer.name: layer.output.shape[1] for layer in bigger.layers}
        for i, layer in enumerate(layers):
            growth = big[layer.name] - layer.output.shape[1]
            strides[i] = 2 ** round(math.log2(128 / growth)) if growth > 0 else None
    assert layers[-1] is model.layers[-1]
    return size, [_Map(layer, tuple(layer.output.shape[1:3]), layer.output.shape[-1], stride)
                  for layer, stride in zip(layers, strides)]


def _at_stride(maps: list[_Map], size: int, stride: int, approximate: bool) -> list[_Map]:
    if approximate:
        return [m for m in maps if m.stride == stride and not isinstance(m.layer, _FRAMING)]
    return [m for m in maps if m.size == (size // stride, size // stride)
            and not isinstance(m.layer, _FRAMING)]


@pytest.mark.parametrize("name", _params(BACKBONES))
def test_taps_are_the_last_full_width_map_at_each_stride(name):
    """Each tap exists, sits at its stride (``input / stride`` exactly unless listed as
    approximate), and ends its resolution: no later map there is as wide, normalisation
    layers aside. Strides without a tap have no map; the stride-32 tap is the output."""
    table = zoo.get_taps(name)
    size, maps = _maps(name)
    position = {m.layer.name: i for i, m in enumerate(maps)}
    for stride in taps.STRIDES:
        approximate = stride in table.approximate
        group = _at_stride(maps, size, stride, approximate)
        if stride not in table.strides:
            assert not group, f"{name} has maps at stride {stride}: {group[-1].layer.name}"
            with pytest.raises(ZooError, match=f"{name} has no feature map at stride {stride}"):
                table.layer(stride)
            continue
        assert table.layer(stride) in position, f"{name}: no map layer {table.layer(stride)!r}"
        tap = maps[position[table.layer(stride)]]
        assert tap in group, f"{name}: {tap.layer.name} is not at stride {stride} ({tap.size})"
        exact = tap.size == (size // stride, size // stride)
        assert exact != approximate, f"{name}: stride {stride} approximate={approximate}"
        later = [m for m in group[group.index(tap) + 1:]
                 if m.channels >= tap.channels and not isinstance(m.layer, _NORMALIZATION)]
        assert not later, f"{name}: {later[-1].layer.name} ends stride {stride}, not {tap}"
    if 32 in table.strides:
        assert table.layer(32) == maps[-1].layer.name


def test_every_backbone_has_taps():
    assert taps.missing_taps() == []
    assert sorted(taps.TABLE) == BACKBONES


def test_a_backbone_registered_without_taps_is_reported(monkeypatch):
    """The coverage check reads the registry, not a hand list: a new backbone fails it."""
    spec = dataclasses.replace(zoo.get_spec("resnet18"), name="resnet18_new")
    monkeypatch.setitem(registry._REGISTRY, "resnet18_new", spec)
    assert taps.missing_taps() == ["resnet18_new"]
    with pytest.raises(ZooError, match="resnet18_new has no feature taps yet"):
        zoo.get_taps("resnet18_new")


@pytest.mark.parametrize("name", SEGMENTATION)
def test_segmentation_models_have_no_taps(name):
    with pytest.raises(ZooError, match=f"{name} is a segmentation model, not a backbone"):
        zoo.get_taps(name)


def test_taps_api():
    resnet = zoo.get_taps("resnet18")
    assert resnet.as_dict() == {2: "conv1_relu", 4: "conv2_block2_out", 8: "conv3_block2_out",
                                16: "conv4_block2_out", 32: "conv5_block2_out"}
    assert resnet.strides == taps.STRIDES and not resnet.approximate
    convnext = zoo.get_taps("keras_convnexttiny")
    assert convnext.strides == (4, 8, 16, 32)
    with pytest.raises(ZooError, match="keras_convnexttiny has no feature map at stride 2; "
                                       "its taps are at strides 4, 8, 16, 32"):
        convnext.layer(2)
    with pytest.raises(ZooError, match="stride must be one of"):
        resnet.layer(3)
    with pytest.raises(UnknownModelError):
        zoo.get_taps("resnet19")
    with pytest.raises(dataclasses.FrozenInstanceError):
        resnet.model = "x"  # type: ignore[misc]


def test_model_info_lists_the_taps():
    from zoo.info import model_info

    assert model_info("keras_xception", with_stats=False)["feature_taps"][:2] == [
        "2: block2_sepconv2_bn (approximate)", "4: block3_sepconv2_bn (approximate)"]
    assert model_info("resnet18", with_stats=False)["feature_taps"][0] == "2: conv1_relu"
    assert model_info("segnet", with_stats=False)["feature_taps"] == []
