"""YOLO v1's network (Redmon et al. 2016, figure 3): its layers, its exact parameter count at the
paper's setting worked out here layer by layer, the small variants the tests train, and the
registry's detection task."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import zoo
from zoo import yolov1 as yolo
from zoo.errors import InputShapeError, ZooError

# Figure 3, read off the figure independently of zoo.yolov1: (kernel, filters, stride) of the
# 24 convolutional layers in order; "M" is a 2x2/2 max pooling.
FIGURE3 = [
    (7, 64, 2), "M",
    (3, 192, 1), "M",
    (1, 128, 1), (3, 256, 1), (1, 256, 1), (3, 512, 1), "M",
    *[(1, 256, 1), (3, 512, 1)] * 4, (1, 512, 1), (3, 1024, 1), "M",
    *[(1, 512, 1), (3, 1024, 1)] * 2, (3, 1024, 1), (3, 1024, 2),
    (3, 1024, 1), (3, 1024, 1),
]

# The parameters at 448x448, S = 7, B = 2, C = 20: weights k*k*c_in*c_out plus c_out biases.
PAPER_PARAMS = (
    (7 * 7 * 3 * 64 + 64)                       # 7x7/2 64: 9,472
    + (3 * 3 * 64 * 192 + 192)                  # 3x3 192: 110,784
    + (1 * 1 * 192 * 128 + 128)                 # 1x1 128: 24,704
    + (3 * 3 * 128 * 256 + 256)                 # 3x3 256: 295,168
    + (1 * 1 * 256 * 256 + 256)                 # 1x1 256: 65,792
    + (3 * 3 * 256 * 512 + 512)                 # 3x3 512: 1,180,160
    + 4 * ((1 * 1 * 512 * 256 + 256)            # 4 x (1x1 256: 131,328
           + (3 * 3 * 256 * 512 + 512))         #      3x3 512: 1,180,160) = 5,245,952
    + (1 * 1 * 512 * 512 + 512)                 # 1x1 512: 262,656
    + (3 * 3 * 512 * 1024 + 1024)               # 3x3 1024: 4,719,616
    + 2 * ((1 * 1 * 1024 * 512 + 512)           # 2 x (1x1 512: 524,800
           + (3 * 3 * 512 * 1024 + 1024))       #      3x3 1024: 4,719,616) = 10,488,832
    + 4 * (3 * 3 * 1024 * 1024 + 1024)          # 3x3 1024, 3x3/2 1024, 3x3 1024, 3x3 1024:
                                                # 4 x 9,438,208 = 37,752,832
    + (7 * 7 * 1024 * 4096 + 4096)              # connected 4096 on the 7x7x1024 map: 205,524,992
    + (4096 * 7 * 7 * (2 * 5 + 20) + 7 * 7 * 30)  # connected 7x7x30 = 1470: 6,022,590
)


@pytest.fixture(autouse=True)
def _fresh_session():
    yield
    keras.backend.clear_session()


@pytest.fixture(scope="module")
def paper_model():
    return yolo.yolov1()


def _convs(model: keras.Model) -> list[keras.layers.Conv2D]:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def test_paper_parameter_count_is_figure3_exactly(paper_model):
    assert PAPER_PARAMS == 60_155_968 + 205_524_992 + 6_022_590 == 271_703_550
    assert paper_model.count_params() == PAPER_PARAMS
    assert zoo.get_spec("yolov1").default_classes == 20


def test_paper_layers_follow_figure3(paper_model):
    model = paper_model
    assert model.input_shape == (None, 448, 448, 3)
    assert model.output_shape == (None, 7, 7, 30)
    convs = _convs(model)
    assert len(convs) == 24
    expected = [item for item in FIGURE3 if item != "M"]
    assert [(c.kernel_size[0], c.filters, c.strides[0]) for c in convs] == expected
    # Maps: 448 -> 224 -> pool 112 -> pool 56 -> pool 28 -> pool 14 -> /2 7.
    assert model.get_layer("conv1_conv").output.shape[1:] == (224, 224, 64)
    assert [layer.output.shape[1] for layer in model.layers
            if isinstance(layer, keras.layers.MaxPooling2D)] == [112, 56, 28, 14]
    assert model.get_layer("conv6_2_leaky").output.shape[1:] == (7, 7, 1024)
    # Leaky ReLU 0.1 after every layer but the last, which is linear.
    leaky = [layer for layer in model.layers if isinstance(layer, keras.layers.LeakyReLU)]
    assert len(leaky) == 25 and {layer.negative_slope for layer in leaky} == {0.1}
    assert all(c.activation is keras.activations.linear for c in convs)
    fc1, out = model.get_layer("fc1_dense"), model.get_layer("predictions")
    assert (fc1.units, out.units) == (4096, 7 * 7 * 30)
    assert out.activation is keras.activations.linear
    assert model.get_layer("fc1_dropout").rate == 0.5
    assert [layer.name for layer in model.layers][-5:] == [
        "fc1_dense", "fc1_leaky", "fc1_dropout", "predictions", "predictions_grid"]
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)


def test_registry_entry_is_a_detector():
    spec = zoo.get_spec("yolov1")
    assert (spec.task, spec.source, spec.preprocessing) == ("detection", "classic", "unit")
    assert spec.default_input_shape == (448, 448, 3) and spec.min_input_size == 64
    assert "yolov1" in zoo.list_models(task="detection")
    assert "yolov1" not in zoo.list_models(task="classification")


def test_small_model_grid_follows_the_input_and_takes_raw_pixels():
    # The network downsamples by 64: 128 pixels give a 2x2 grid.
    model = zoo.create_model("yolov1", input_shape=(128, 128, 3), classes=3)
    assert model.output_shape == (None, 2, 2, 2 * 5 + 3)
    assert model.layers[1].name == "preprocess_rescaling"
    small = yolo.yolov1(input_shape=(128, 128, 3), classes=3, width=0.0625, boxes_per_cell=3)
    assert small.output_shape == (None, 2, 2, 3 * 5 + 3)
    assert [c.filters for c in _convs(small)] == [
        max(1, round(item[1] / 16)) for item in FIGURE3 if item != "M"]
    assert small.get_layer("fc1_dense").units == 256
    x = np.random.default_rng(0).integers(0, 256, (2, 128, 128, 3)).astype("float32")
    assert np.isfinite(keras.ops.convert_to_numpy(small(x))).all()
    assert yolo.yolov1(input_shape=(128, 128, 3), grid=3, width=0.0625).output_shape == (
        None, 3, 3, 30)


def test_backbone_and_batch_norm_variant():
    backbone = yolo.yolov1(include_top=False, input_shape=(64, 64, 3), width=0.0625)
    assert backbone.output_shape == (None, 1, 1, 64)
    pooled = yolo.yolov1(include_top=False, input_shape=(None, None, 3), pooling="avg",
                         width=0.0625)
    assert pooled.output_shape == (None, 64)
    normed = yolo.yolov1(input_shape=(128, 128, 3), width=0.0625, batch_norm=True)
    assert sum(isinstance(layer, keras.layers.BatchNormalization)
               for layer in normed.layers) == 24
    assert not any(c.use_bias for c in _convs(normed))


@pytest.mark.parametrize("kwargs,error,match", [
    ({"input_shape": (128, 192, 3)}, InputShapeError, "fixed square"),
    ({"input_shape": (None, None, 3)}, InputShapeError, "fixed square"),
    ({"input_shape": (32, 32, 3), "include_top": False}, InputShapeError, "at least 64x64"),
    ({"grid": 0}, ZooError, "grid must be a positive integer"),
    ({"boxes_per_cell": 0}, ZooError, "boxes_per_cell must be"),
    ({"width": 0.0}, ZooError, "width must be a positive number"),
    ({"classifier_activation": "sigmoid"}, ZooError, "linear"),
    ({"classes": 0}, ZooError, "classes must be a positive integer"),
])
def test_bad_arguments_are_refused_before_building(kwargs, error, match):
    with pytest.raises(error, match=match):
        yolo.yolov1(**kwargs)
