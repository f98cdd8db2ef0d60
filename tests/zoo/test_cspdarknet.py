"""CSP-Darknet (YOLOv8's backbone): its trainable weights per stage against the PyTorch model's,
the C2f block's split and shortcut on hand-set weights, and a ``.keras`` file plain Keras opens."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

import zoo
from zoo import cspdarknet


def conv_bn(kernel: int, c_in: int, c_out: int) -> int:
    """A bias-free convolution and its BatchNorm's gamma and beta."""
    return kernel * kernel * c_in * c_out + 2 * c_out


def c2f(c_in: int, c_out: int, n: int) -> int:
    half = c_out // 2
    return (conv_bn(1, c_in, 2 * half) + n * 2 * conv_bn(3, half, half)
            + conv_bn(1, (2 + n) * half, c_out))


def sppf(c_in: int, c_out: int) -> int:
    return conv_bn(1, c_in, c_in // 2) + conv_bn(1, 2 * c_in, c_out)


# Written out from YOLOv8's model file (widths 64..1024 and depths 3, 6, 6, 3 scaled), apart from
# zoo.cspdarknet. The totals are what Ultralytics 8.4 reports for the first ten layers of
# yolov8n.yaml and yolov8s.yaml (sum of p.numel() over layers 0-9): 1,272,656 and 5,079,712.
def _stages(w: tuple[int, ...], d: tuple[int, ...]) -> dict[str, int]:
    return {
        "stem": conv_bn(3, 3, w[0]),
        "stage1": conv_bn(3, w[0], w[1]) + c2f(w[1], w[1], d[0]),
        "stage2": conv_bn(3, w[1], w[2]) + c2f(w[2], w[2], d[1]),
        "stage3": conv_bn(3, w[2], w[3]) + c2f(w[3], w[3], d[2]),
        "stage4": conv_bn(3, w[3], w[4]) + c2f(w[4], w[4], d[3]) + sppf(w[4], w[4]),
    }


PYTORCH_STAGES = {
    "n": _stages((16, 32, 64, 128, 256), (1, 2, 2, 1)),
    "s": _stages((32, 64, 128, 256, 512), (1, 2, 2, 1)),
}
PYTORCH_TOTALS = {"n": 1_272_656, "s": 5_079_712}


def _trainable_by_block(model: keras.Model, blocks: tuple[str, ...]) -> dict[str, int]:
    counts = dict.fromkeys(blocks, 0)
    for layer in model.layers:
        for weight in layer.trainable_weights:
            block = next(b for b in blocks if layer.name.startswith(f"{b}_"))
            counts[block] += math.prod(weight.shape)
    return counts


@pytest.mark.parametrize("scale", sorted(cspdarknet.SCALES))
def test_each_stage_has_the_pytorch_models_weights(scale):
    name = f"cspdarknet_{scale}"
    model = zoo.create_model(name, include_top=False, input_shape=(64, 64, 3))
    counts = _trainable_by_block(model, zoo.get_spec(name).blocks)
    assert counts == PYTORCH_STAGES[scale]
    assert sum(counts.values()) == PYTORCH_TOTALS[scale]


def test_stage_shape_scales_yolov8s_widths_and_depths():
    assert cspdarknet.stage_shape("n") == ((16, 32, 64, 128, 256), (1, 2, 2, 1))
    assert cspdarknet.stage_shape("s") == ((32, 64, 128, 256, 512), (1, 2, 2, 1))


def test_every_stride_halves_the_map_as_the_pytorch_model_does():
    model = zoo.create_model("cspdarknet_n", include_top=False, input_shape=(96, 96, 3))
    taps = zoo.get_taps("cspdarknet_n")
    for stride in (2, 4, 8, 16, 32):
        assert model.get_layer(taps.layer(stride)).output.shape[1:3] == (96 // stride,) * 2
    # symmetric padding: a one-pixel image lights the stem's centre, as PyTorch's padding=1
    stem = keras.Model(model.input, model.get_layer("stem_conv").output)
    kernel = np.zeros((3, 3, 3, 16), "float32")
    kernel[1, 1, :, :] = 1.0
    stem.get_layer("stem_conv").set_weights([kernel])
    image = np.zeros((1, 96, 96, 3), "float32")
    image[0, 2, 2] = 255.0  # even pixel: stride-2 sample 1 sits on it only with padding 1 each side
    out = keras.ops.convert_to_numpy(stem(image))
    assert out[0, 1, 1, 0] == pytest.approx(3.0)
    assert np.count_nonzero(out[0, ..., 0]) == 1


def test_c2f_splits_the_first_convolution_and_adds_each_bottleneck_to_its_input():
    inputs = keras.Input((4, 4, 8))
    outputs = cspdarknet._c2f(inputs, 8, 2, "b")
    model = keras.Model(inputs, outputs)
    halves = keras.Model(inputs, [model.get_layer("b_half0").output,
                                  model.get_layer("b_half1").output,
                                  model.get_layer("b_concat").output])
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 8)).astype("float32")
    cv1 = keras.ops.convert_to_numpy(
        keras.Model(inputs, model.get_layer("b_cv1_silu").output)(x))
    first, second, concat = (keras.ops.convert_to_numpy(t) for t in halves(x))
    np.testing.assert_array_equal(first, cv1[..., :4])
    np.testing.assert_array_equal(second, cv1[..., 4:])
    # with the bottlenecks' last convolutions zeroed (BN beta 0, SiLU(0) = 0), each adds nothing:
    # the concatenation is both halves then the second half twice more
    for index in (0, 1):
        layer = model.get_layer(f"b_m{index}_cv2_conv")
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    concat = keras.ops.convert_to_numpy(halves(x)[2])
    assert concat.shape == (2, 4, 4, 16)
    np.testing.assert_allclose(concat, np.concatenate([cv1, cv1[..., 4:], cv1[..., 4:]], -1),
                               atol=1e-6)


def test_keras_file_opens_in_plain_keras_with_the_same_outputs(tmp_path):
    model = zoo.create_model("cspdarknet_n", classes=3, input_shape=(64, 64, 3))
    path = tmp_path / "csp.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # safe mode: no Lambda, no custom layer
    x = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)),
                               keras.ops.convert_to_numpy(model(x)), rtol=1e-5, atol=1e-6)


def test_the_detector_taps_its_three_last_stages_and_keeps_the_whole_backbone():
    detector = zoo.build_detector(backbone="cspdarknet_n", classes=3, input_shape=(64, 64, 3),
                                  neck_width=16)
    encoder = detector.get_layer("encoder")
    assert [tuple(output.shape[1:]) for output in encoder.outputs] == [
        (8, 8, 64), (4, 4, 128), (2, 2, 256)]
    assert sum(math.prod(w.shape) for w in encoder.trainable_weights) == PYTORCH_TOTALS["n"]
    assert detector.output_shape == (None, 8 * 8 + 4 * 4 + 2 * 2, 4 * 16 + 3)


def test_it_converts_to_tflite_builtins_and_litert_gives_keras_outputs(tmp_path):
    """The C2f halves (Cropping2D over channels) and SPPF's poolings are TFLite builtins: no
    Flex op, so a detector on this backbone exports to LiteRT (the way transfer.export does:
    a Keras export archive, then the SavedModel converter)."""
    pytest.importorskip("ai_edge_litert")
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    model = zoo.create_model("cspdarknet_n", include_top=False, input_shape=(64, 64, 3))
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", lambda x: model(x, training=False),
                         input_signature=[tf.TensorSpec((1, 64, 64, 3), tf.float32, name="x")])
    archive.write_out(str(tmp_path / "saved"), verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "saved"))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interpreter = Interpreter(model_content=converter.convert())
    assert not [op for op in interpreter._get_ops_details() if op["op_name"].startswith("Flex")]
    x = np.random.default_rng(2).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    (got,) = interpreter.get_signature_runner()(x=x).values()
    want = keras.ops.convert_to_numpy(model(x))
    assert got.shape == want.shape == (1, 2, 2, 256)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
