"""The anchor-free detector: its parts, exact parameter counts, output layout and points."""

import numpy as np
import pytest

import zoo
from zoo.detection import STRIDES, anchor_points, points_per_image
from zoo.errors import InputShapeError, ZooError


@pytest.fixture(scope="module")
def detector():
    return zoo.build_detector(backbone="keras_mobilenet", classes=3, input_shape=(64, 64, 3),
                              neck_width=16)


def test_the_neck_and_head_have_the_parameters_the_design_says(detector):
    w, k, r = 16, 3, 16
    taps = (256, 512, 1024)  # MobileNet v1's stride 8, 16, 32 maps
    conv3 = 9 * w * w + 4 * w  # a 3x3 convolution without bias, and its BatchNorm
    lateral = sum(c * w + w for c in taps)
    smooth = 3 * conv3
    bottom_up = 2 * 2 * conv3  # stride 16 and 32: a strided 3x3 down, a 3x3 fuse
    heads = 3 * (4 * conv3 + (w * 4 * r + 4 * r) + (w * k + k))
    encoder = detector.get_layer("encoder").count_params()
    assert detector.count_params() - encoder == lateral + smooth + bottom_up + heads == 77_129


def test_outputs_hold_every_levels_points_with_the_class_prior(detector):
    assert detector.output_shape == (None, 8 * 8 + 4 * 4 + 2 * 2, 4 * 16 + 3)
    assert points_per_image(64) == 84
    raw = np.asarray(detector(np.zeros((1, 64, 64, 3), np.float32)))
    bias = detector.get_layer("head_p3_cls").bias.numpy()
    np.testing.assert_allclose(bias, np.log(0.01 / 0.99), rtol=1e-6)
    assert raw.dtype == np.float32
    assert [layer.name for layer in detector.layers if layer.name == "encoder"] == ["encoder"]


def test_points_are_cell_centres_stride_8_first():
    centres, strides = anchor_points(64)
    assert centres.shape == (84, 2) and strides.shape == (84,)
    np.testing.assert_array_equal(centres[:2], [[4, 4], [12, 4]])  # row-major: x first
    np.testing.assert_array_equal(centres[8], [4, 12])
    np.testing.assert_array_equal(centres[64], [8, 8])  # the first stride-16 point
    assert strides.tolist() == [8] * 64 + [16] * 16 + [32] * 4
    assert STRIDES == (8, 16, 32)


def test_bad_settings_are_refused_naming_what_to_do():
    with pytest.raises(InputShapeError, match="multiples of 32"):
        zoo.build_detector(backbone="keras_mobilenet", classes=2, input_shape=(70, 70, 3))
    with pytest.raises(ZooError, match="classes must be a positive integer"):
        zoo.build_detector(backbone="keras_mobilenet", classes=0)
    with pytest.raises(ZooError, match="lenet5"):
        zoo.build_detector(backbone="lenet5", classes=2, input_shape=(64, 64, 3))


def test_the_segmenters_fpn_is_the_shared_one():
    fpn = zoo.build_segmenter(backbone="keras_mobilenet", classes=2, decoder="fpn",
                              input_shape=(64, 64, 3), decoder_filters=(8, 8))
    names = {layer.name for layer in fpn.layers}
    assert {"decoder_p5_lateral", "decoder_p4_add", "decoder_p2_upsampling"} <= names
