"""Segmentation architectures: SegNet's index pooling and unpooling, FCN's geometry, U-Net with
padded convolutions, and encoder-decoders on registry backbones.

Parameter counts of the registered models at their defaults are in test_classic.py
(REFERENCE_PARAMS); this file checks what makes each architecture what its paper says.
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo import fcn as fcn_module
from zoo import segnet as segnet_module
from zoo.errors import InputShapeError, UnknownModelError, WeightsError, ZooError
from zoo.layers import BilinearKernel, MaxPoolingWithArgmax2D, MaxUnpooling2D
from zoo.macs import count_macs
from zoo.segmentation import ENCODER, build_segmenter


def _trainable(model_or_layer) -> int:
    return sum(math.prod(w.shape) for w in model_or_layer.trainable_weights)


def _numpy(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


@pytest.fixture(autouse=True)
def _fresh_session():
    yield
    keras.backend.clear_session()


@pytest.mark.parametrize("name", zoo.list_models(task="segmentation"))
def test_segmentation_blocks_are_in_layer_order(name):
    """Unfreezing from block N trains the layers from block N's first one on: the registry's
    blocks must begin in layer order, and the default must leave the encoder frozen."""
    spec = zoo.get_spec(name)
    size = {"unet": 188, "unet_same": 32, "segnet": 32}.get(name, 1)
    model = zoo.create_model(name, input_shape=(size, size, spec.channels))
    names = [layer.name for layer in model.layers]
    first = [next(i for i, n in enumerate(names) if n.startswith(f"{block}_"))
             for block in spec.blocks]
    assert first == sorted(first)
    unfrozen = names[first[spec.blocks.index(spec.default_unfreeze)]:]
    assert not any(n.startswith(("enc", "block")) for n in unfrozen)
    assert "predictions" in unfrozen


# --- argmax pooling and unpooling ---------------------------------------------------------------


def test_unpooling_puts_each_maximum_back_where_it_was():
    x = np.array([[1, 9, 2, 0],
                  [3, 4, 8, 5],
                  [7, 0, 1, 1],
                  [2, 6, 0, 3]], dtype="float32").reshape(1, 4, 4, 1)
    pooled, indices = MaxPoolingWithArgmax2D()(x)
    np.testing.assert_array_equal(_numpy(pooled)[0, :, :, 0], [[9, 8], [7, 3]])
    np.testing.assert_array_equal(_numpy(indices)[0, :, :, 0], [[1, 6], [8, 15]])  # y * 4 + x
    unpooled = _numpy(MaxUnpooling2D()([pooled, indices]))[0, :, :, 0]
    np.testing.assert_array_equal(unpooled, [[0, 9, 0, 0],
                                             [0, 0, 8, 0],
                                             [7, 0, 0, 0],
                                             [0, 0, 0, 3]])
    # Unpooling other values puts them at the stored positions too (SegNet's decoder input).
    updates = np.array([10, 20, 30, 40], dtype="float32").reshape(1, 2, 2, 1)
    np.testing.assert_array_equal(_numpy(MaxUnpooling2D()([updates, indices]))[0, :, :, 0],
                                  [[0, 10, 0, 0], [0, 0, 20, 0], [30, 0, 0, 0], [0, 0, 0, 40]])


@pytest.mark.parametrize("shape, pool", [((2, 6, 8, 3), 2), ((2, 45, 61, 4), 2),
                                         ((1, 1, 1, 2), 2), ((2, 9, 7, 3), 3)])
def test_pooling_matches_tf_max_pool_with_argmax_and_unpooling_a_scatter(shape, pool):
    """Values and indices equal TensorFlow's op (odd sizes pad as its "SAME"); unpooling equals
    scattering the pooled values to the indices into zeros."""
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    pooled, indices = MaxPoolingWithArgmax2D(pool)(x)
    expected, expected_indices = tf.nn.max_pool_with_argmax(
        x, pool, pool, "SAME", include_batch_in_index=False)
    np.testing.assert_array_equal(_numpy(pooled), expected.numpy())
    np.testing.assert_array_equal(_numpy(indices), expected_indices.numpy())
    assert indices.dtype == "int32"

    unpooled = _numpy(MaxUnpooling2D(pool)([pooled, indices, x]))
    scattered = np.zeros((shape[0], math.prod(shape[1:])), dtype="float32")
    for image in range(shape[0]):
        scattered[image, expected_indices.numpy()[image].ravel()] = \
            expected.numpy()[image].ravel()
    np.testing.assert_array_equal(unpooled, scattered.reshape(shape))


def test_ties_go_to_the_first_position_as_in_tensorflow():
    x = np.random.default_rng(11).integers(0, 2, size=(2, 7, 8, 3)).astype("float32")
    _, expected = tf.nn.max_pool_with_argmax(x, 2, 2, "SAME", include_batch_in_index=False)
    np.testing.assert_array_equal(_numpy(MaxPoolingWithArgmax2D()(x)[1]), expected.numpy())


def test_pooling_gradient_reaches_the_maxima_only():
    x = tf.constant(np.random.default_rng(1).normal(size=(2, 5, 6, 3)).astype("float32"))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours = MaxPoolingWithArgmax2D()(x)[0]
        reference = tf.nn.max_pool2d(x, 2, 2, "SAME")
    np.testing.assert_array_equal(tape.gradient(ours, x).numpy(),
                                  tape.gradient(reference, x).numpy())


def _pool_unpool_model(shape) -> keras.Model:
    inputs = keras.Input(shape, name="input")
    x = keras.layers.Conv2D(3, 3, padding="same", name="conv")(inputs)
    pooled, indices = MaxPoolingWithArgmax2D(name="pool")(x)
    outputs = MaxUnpooling2D(name="unpool")([pooled, indices, x])
    return keras.Model(inputs, outputs)


def test_pooling_layers_with_unknown_sizes_and_xla():
    model = _pool_unpool_model((None, None, 2))
    assert model.get_layer("pool").output[1].dtype == "int32"
    x = np.random.default_rng(2).normal(size=(2, 9, 10, 2)).astype("float32")
    eager = _numpy(model(x))
    assert eager.shape == (2, 9, 10, 3)
    # tf.nn.max_pool_with_argmax has no XLA kernel; these layers compile.
    compiled = tf.function(model, jit_compile=True)
    np.testing.assert_array_equal(compiled(x).numpy(), eager)


def test_pooling_layers_serialise_to_keras_and_saved_model(tmp_path):
    model = _pool_unpool_model((8, 12, 2))
    x = np.random.default_rng(3).normal(size=(2, 8, 12, 2)).astype("float32")
    expected = _numpy(model(x))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert isinstance(loaded.get_layer("unpool"), MaxUnpooling2D)
    np.testing.assert_array_equal(_numpy(loaded(x)), expected)
    model.export(str(tmp_path / "saved"), format="tf_saved_model", verbose=False)
    served = tf.saved_model.load(str(tmp_path / "saved"))
    np.testing.assert_array_equal(served.serve(tf.constant(x)).numpy(), expected)


def test_pooling_layers_reject_bad_sizes():
    for layer in (MaxPoolingWithArgmax2D, MaxUnpooling2D):
        with pytest.raises(ValueError, match="pool_size"):
            layer(0)


# --- SegNet --------------------------------------------------------------------------------------


def test_segnet_unpools_with_its_encoders_indices():
    model = zoo.create_model("segnet", input_shape=(64, 96, 3))
    assert model.output_shape == (None, 64, 96, 11)
    for block in range(1, 6):
        unpool = model.get_layer(f"dec{block}_unpool")
        assert isinstance(unpool, MaxUnpooling2D)
        pool = model.get_layer(f"block{block}_pool")
        assert isinstance(pool, MaxPoolingWithArgmax2D)
        _, indices, like = unpool.input
        assert indices is pool.output[1]  # the stored indices, not learned upsampling
        assert like is pool.input
    # Decoders mirror the encoder (authors' prototxt): widths, 3x3, BN + ReLU each.
    widths = {b: [model.get_layer(f"dec{b}_conv{i}").filters
                  for i in range(1, len(segnet_module.decoder_widths(b)) + 1)]
              for b in range(1, 6)}
    assert widths == {5: [512, 512, 512], 4: [512, 512, 256], 3: [256, 256, 128],
                      2: [128, 64], 1: [64]}
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 26 and all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers) == 25
    head = model.get_layer("predictions")
    assert (head.filters, head.kernel_size, head.activation.__name__) == (11, (3, 3), "softmax")
    # 15,872 BN moving statistics on top of the 29,449,355 trainable parameters.
    assert _trainable(model) == 29_449_355 and model.count_params() == 29_465_227
    features = zoo.create_model("segnet", include_top=False, input_shape=(32, 32, 3))
    assert features.output_shape == (None, 32, 32, 64)


def test_segnet_odd_sizes_pool_with_ceil_and_return_to_size():
    """The paper's 360x480 CamVid input pools to 23x30 at block 5 (Caffe's ceil mode)."""
    model = zoo.get_spec("segnet").builder()
    assert model.get_layer("block4_pool").input.shape[1:3] == (45, 60)
    assert model.get_layer("block5_pool").output[0].shape[1:3] == (12, 15)
    assert model.get_layer("dec4_unpool").output.shape[1:3] == (45, 60)
    assert model.output_shape == (None, 360, 480, 11)
    small = zoo.create_model("segnet", classes=3, input_shape=(None, None, 3))
    x = np.random.default_rng(4).uniform(size=(1, 45, 61, 3)).astype("float32")
    probabilities = _numpy(small(x))
    assert probabilities.shape == (1, 45, 61, 3)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)


def test_segnet_encoder_takes_vgg16_bn_weights_by_name(tmp_path):
    """The paper initialises the encoder from VGG16: the encoder has vgg16_bn's layer names."""
    vgg = zoo.create_model("vgg16_bn", include_top=False, input_shape=(32, 32, 3))
    segnet = zoo.create_model("segnet", input_shape=(32, 32, 3))
    vgg_weights = {layer.name: [w.shape for w in layer.weights]
                   for layer in vgg.layers if layer.weights}
    segnet_weights = {layer.name: [w.shape for w in layer.weights]
                      for layer in segnet.layers if layer.name.startswith("block")}
    assert {k: v for k, v in segnet_weights.items() if v} == vgg_weights
    with pytest.raises(ZooError, match="pooling=None"):
        zoo.create_model("segnet", include_top=False, pooling="avg")


# --- FCN -----------------------------------------------------------------------------------------


def _coordinate_maps(model: keras.Model) -> dict[int, tuple]:
    """For every tensor, ``(scale, offset)`` per axis such that output pixel ``i`` is centred on
    input pixel ``scale * i + offset`` (Caffe's coord_map, from the layers' own settings)."""
    maps = {id(model.inputs[0]): ((1.0, 0.0), (1.0, 0.0))}
    for layer in model.layers[1:]:
        inputs = layer.input if isinstance(layer.input, list) else [layer.input]
        source = [maps[id(t)] for t in inputs]
        if layer.name.startswith("preprocess_"):  # per pixel (its crops cut channels, not space)
            result = source[0]
        elif isinstance(layer, keras.layers.Add):
            assert all(s == source[0] for s in source), f"{layer.name} adds misaligned maps"
            result = source[0]
        elif isinstance(layer, keras.layers.ZeroPadding2D):
            result = tuple((a, b - a * pad[0]) for (a, b), pad in zip(source[0], layer.padding))
        elif isinstance(layer, keras.layers.Cropping2D):
            result = tuple((a, b + a * crop[0]) for (a, b), crop in zip(source[0],
                                                                         layer.cropping))
        elif isinstance(layer, keras.layers.Conv2DTranspose):
            assert layer.padding == "valid"
            result = tuple((a / s, b - a * (k - 1) / 2 / s) for (a, b), k, s in
                           zip(source[0], layer.kernel_size, layer.strides))
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.MaxPooling2D)):
            kernel = getattr(layer, "kernel_size", None) or layer.pool_size
            result = []
            for axis, ((a, b), k, s) in enumerate(zip(source[0], kernel, layer.strides)):
                size_in, size_out = inputs[0].shape[axis + 1], layer.output.shape[axis + 1]
                total = max((size_out - 1) * s + k - size_in, 0) if layer.padding == "same" else 0
                result.append((a * s, b + a * ((k - 1) / 2 - total // 2)))
            result = tuple(result)
        else:  # activations, dropout: element-wise
            result = source[0]
        maps[id(layer.output)] = result
    return maps


@pytest.mark.parametrize("name, shape", [("fcn32s", (64, 50, 3)), ("fcn16s", (33, 40, 3)),
                                         ("fcn8s", (17, 96, 3))])
def test_fcn_output_is_the_input_size_and_aligned(name, shape):
    """Any size works (the reference's 100-pixel padding) and every fusion and the final crop
    line up pixel for pixel: the crop offsets of the reference nets (5, 9; 19, 27, 31)."""
    model = zoo.create_model(name, classes=5, input_shape=shape)
    assert model.output_shape == (None, *shape[:2], 5)
    maps = _coordinate_maps(model)  # asserts that each fuse_* adds aligned maps
    assert maps[id(model.output)] == ((1.0, 0.0), (1.0, 0.0))
    variant = fcn_module.VARIANTS[name]
    score_crop = model.get_layer("score").cropping
    assert [crop[0] for crop in score_crop] == [variant.output_offset] * 2
    for skip, offset in zip(variant.skips, variant.skip_offsets):
        assert model.get_layer(f"score_{skip}c").cropping[0][0] == offset
    upsamplings = [layer for layer in model.layers
                   if isinstance(layer, keras.layers.Conv2DTranspose)]
    assert [(u.name, u.strides[0], u.kernel_size[0]) for u in upsamplings] == [
        (u.name, u.stride, u.kernel) for u in variant.upsamplings]
    # Together they undo fc7's stride of 32; the last one upsamples from the variant's stride.
    assert math.prod(u.strides[0] for u in upsamplings) == 32
    assert upsamplings[-1].strides[0] == variant.stride


def test_fcn_alignment_check_catches_a_wrong_offset(monkeypatch):
    variant = fcn_module.VARIANTS["fcn16s"]
    monkeypatch.setitem(fcn_module.VARIANTS, "fcn16s",
                        dataclasses.replace(variant, skip_offsets=(4,)))
    with pytest.raises(AssertionError, match="fuse_pool4 adds misaligned maps"):
        _coordinate_maps(zoo.create_model("fcn16s", classes=2, input_shape=(32, 32, 3)))
    monkeypatch.setitem(fcn_module.VARIANTS, "fcn16s",
                        dataclasses.replace(variant, output_offset=26))
    model = zoo.create_model("fcn16s", classes=2, input_shape=(32, 32, 3))
    assert _coordinate_maps(model)[id(model.output)] == ((1.0, -1.0), (1.0, -1.0))


def test_fcn_initialisation_and_layers():
    model = zoo.create_model("fcn8s", classes=3, input_shape=(32, 32, 3))
    for name in ("upscore2", "upscore_pool4", "upscore8"):
        layer = model.get_layer(name)
        assert layer.trainable and not layer.use_bias
        np.testing.assert_array_equal(_numpy(layer.kernel),
                                      _numpy(BilinearKernel()(layer.kernel.shape)))
    for name in ("score_fr", "score_pool4", "score_pool3"):
        assert not np.any(_numpy(model.get_layer(name).kernel))  # section 4.1: zero-initialised
    assert model.get_layer("fc6").kernel.shape == (7, 7, 512, 4096)
    assert model.get_layer("fc7").kernel.shape == (1, 1, 4096, 4096)
    assert model.get_layer("block1_pad").padding == ((100, 100), (100, 100))
    x = np.random.default_rng(5).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(_numpy(model(x)), 1 / 3, rtol=1e-6)  # zero scores: uniform
    base = zoo.create_model("fcn32s", include_top=False, input_shape=(32, 32, 3))
    assert base.layers[-1].name == "fc7" and base.output_shape[-1] == 4096
    with pytest.raises(InputShapeError, match="must be given"):
        zoo.create_model("fcn8s", include_top=False, input_shape=(None, None, 3))


def test_bilinear_kernel_is_the_reference_filter_and_interpolates():
    # fcn.berkeleyvision.org surgery.upsample_filt(4): factor 2, centre 1.5
    profile = np.array([0.25, 0.75, 0.75, 0.25])
    kernel = _numpy(BilinearKernel()((4, 4, 2, 2)))
    np.testing.assert_array_equal(kernel[:, :, 0, 0], np.outer(profile, profile))
    np.testing.assert_array_equal(kernel[:, :, 0, 1], 0)  # class i maps to class i only
    # A 2x transposed convolution with it interpolates a ramp linearly away from the borders.
    ramp = np.tile(np.arange(6, dtype="float32"), (6, 1)).reshape(1, 6, 6, 1)
    up = keras.layers.Conv2DTranspose(1, 4, strides=2, use_bias=False,
                                      kernel_initializer=BilinearKernel())
    out = _numpy(up(ramp))[0, 2:-2, 2:-2, 0]  # output j is centred on input (j - 1.5) / 2
    expected = (np.arange(2, 12) - 1.5) / 2
    np.testing.assert_allclose(out, np.tile(expected, (10, 1)), rtol=1e-6)
    with pytest.raises(ValueError, match="channels differ"):
        BilinearKernel()((4, 4, 2, 3))


def test_transposed_convolutions_are_counted_in_macs():
    inputs = keras.Input((5, 7, 21))
    model = keras.Model(inputs, keras.layers.Conv2DTranspose(21, 4, strides=2,
                                                             use_bias=False)(inputs))
    assert count_macs(model) == 5 * 7 * 4 * 4 * 21 * 21


# --- U-Net with padded convolutions --------------------------------------------------------------


def test_unet_same_is_unet_with_padding():
    same = zoo.create_model("unet_same", classes=4, input_shape=(32, 48, 3))
    assert same.output_shape == (None, 32, 48, 4)
    keyword = zoo.get_spec("unet").builder(classes=4, input_shape=(32, 48, 3), padding="same")
    assert [(layer.name, [w.shape for w in layer.weights]) for layer in same.layers] == [
        (layer.name, [w.shape for w in layer.weights]) for layer in keyword.layers]
    assert same.input_shape == (None, 32, 48, 3)
    assert zoo.create_model("unet_same").input_shape == (None, 256, 256, 3)
    anysize = zoo.get_spec("unet_same").builder(input_shape=(None, None, 1), base_filters=2)
    x = np.random.default_rng(6).uniform(size=(1, 48, 80, 1)).astype("float32")
    assert _numpy(anysize(x)).shape == (1, 48, 80, 2)
    with pytest.raises(InputShapeError, match="multiples of 16"):
        zoo.create_model("unet_same", input_shape=(40, 48, 3))


def test_unet_same_macs():
    """Counted MACs equal the convolutions of figure 1 at 256x256 (no cropping, full maps)."""
    model = zoo.create_model("unet_same")  # 256x256x3, 2 classes
    widths = [64, 128, 256, 512, 1024]
    expected = 0
    for level, width in enumerate(widths):
        pixels = (256 >> level) ** 2
        c_in = 3 if level == 0 else widths[level - 1]
        expected += pixels * 9 * (c_in * width + width * width)  # encoder / centre
        if level < 4:  # decoder: up-convolution from below, then two 3x3 on the concatenation
            expected += (pixels // 4) * 4 * widths[level + 1] * width
            expected += pixels * 9 * (2 * width * width + width * width)
    expected += 256 * 256 * 64 * 2
    assert count_macs(model) == expected


# --- encoder-decoders on registry backbones ------------------------------------------------------


def _smp_unet_decoder(encoder_channels: list[int], filters=(256, 128, 64, 32, 16)) -> int:
    """Parameters of segmentation_models' U-Net decoder: per stage two bias-free 3x3
    convolutions with BN (gamma, beta), the first on [upsampled, skip]."""
    head, *skips = encoder_channels[::-1]  # stride 32 first, then 16, 8, 4, 2
    skips += [0]
    total, c_in = 0, head
    for width, skip in zip(filters, skips):
        total += 9 * (c_in + skip) * width + 2 * width + 9 * width * width + 2 * width
        c_in = width
    return total


@pytest.mark.parametrize("backbone", ["resnet18", "keras_mobilenet", "keras_mobilenetv2"])
def test_unet_on_a_backbone(backbone):
    model = build_segmenter(backbone=backbone, classes=3, input_shape=(64, 64, 3))
    assert model.name == f"unet_{backbone}"
    assert model.output_shape == (None, 64, 64, 3)
    x = np.random.default_rng(7).uniform(size=(2, 64, 64, 3)).astype("float32")
    probabilities = _numpy(model(x))
    assert probabilities.shape == (2, 64, 64, 3)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)

    encoder = model.get_layer(ENCODER)
    assert isinstance(encoder, keras.Model) and model.layers[1] is encoder
    taps = zoo.get_taps(backbone)
    assert len(encoder.outputs) == len(taps.strides)
    for output, stride in zip(encoder.outputs, taps.strides):
        assert output is encoder.get_layer(taps.layer(stride)).output
    channels = [t.shape[-1] for t in encoder.outputs]
    backbone_model = zoo.create_model(backbone, include_top=False, input_shape=(64, 64, 3))
    assert _trainable(encoder) == _trainable(backbone_model)
    decoder = _smp_unet_decoder(channels)
    assert _trainable(model) == _trainable(encoder) + decoder + 9 * 16 * 3 + 3
    if backbone == "resnet18":  # segmentation_models.pytorch Unet("resnet18", classes=3)
        assert _trainable(model) == 14_328_499

    encoder.trainable = False  # one switch freezes the whole encoder
    assert _trainable(model) == decoder + 9 * 16 * 3 + 3
    assert all(not w.trainable for w in encoder.weights)


def test_frozen_encoder_keeps_batchnorm_statistics():
    model = build_segmenter(backbone="resnet18", classes=2, input_shape=(64, 64, 3))
    bn = model.get_layer(ENCODER).get_layer("conv1_bn")
    x = np.random.default_rng(8).normal(3, 2, (2, 64, 64, 3)).astype("float32")
    before = _numpy(bn.moving_mean).copy()
    model.get_layer(ENCODER).trainable = False
    model(x, training=True)
    np.testing.assert_array_equal(_numpy(bn.moving_mean), before)
    model.get_layer(ENCODER).trainable = True
    model(x, training=True)
    assert not np.array_equal(_numpy(bn.moving_mean), before)


def test_fpn_on_a_backbone():
    model = build_segmenter(backbone="keras_mobilenetv2", decoder="fpn", classes=4,
                            input_shape=(64, 96, 3), decoder_filters=(32, 16))
    assert model.output_shape == (None, 64, 96, 4)
    encoder = model.get_layer(ENCODER)
    assert [t.shape[1:3] for t in encoder.outputs] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    assert [model.get_layer(f"decoder_p{level}_lateral").filters for level in (5, 4, 3, 2)] == [
        32] * 4
    assert model.get_layer("decoder_merge").output.shape[1:] == (16, 24, 16)
    x = np.random.default_rng(9).uniform(size=(1, 64, 96, 3)).astype("float32")
    assert _numpy(model(x)).shape == (1, 64, 96, 4)


def test_approximate_taps_are_resized():
    """AlexNet's unpadded convolutions leave maps smaller than input / stride: resized."""
    model = build_segmenter(backbone="alexnet", classes=2, input_shape=(96, 96, 3),
                            decoder_filters=(8, 8, 8, 8, 8))
    assert model.output_shape == (None, 96, 96, 2)
    for stride in (4, 8, 16, 32):
        assert model.get_layer(f"encoder_resize_{stride}").output.shape[1:3] == (
            96 // stride, 96 // stride)


def test_segmenter_round_trips_through_a_keras_file(tmp_path):
    model = build_segmenter(backbone="keras_mobilenet", decoder="fpn", classes=2,
                            input_shape=(32, 32, 3), decoder_filters=(8, 8))
    x = np.random.default_rng(10).uniform(size=(1, 32, 32, 3)).astype("float32")
    model.save(tmp_path / "seg.keras")
    loaded = keras.saving.load_model(tmp_path / "seg.keras", safe_mode=True)
    assert isinstance(loaded.get_layer(ENCODER), keras.Model)
    np.testing.assert_allclose(_numpy(loaded(x)), _numpy(model(x)), rtol=1e-6)


def test_segmenter_rejects_what_it_cannot_build():
    with pytest.raises(ZooError, match="lenet5 has no feature map at stride 32"):
        build_segmenter(backbone="lenet5", classes=2, input_shape=(64, 64, 1))
    with pytest.raises(ZooError, match="keras_convnexttiny has no feature map at stride 2"):
        zoo.get_taps("keras_convnexttiny").layer(2)
    with pytest.raises(ZooError, match="unet is a segmentation model, not a backbone"):
        build_segmenter(backbone="unet", classes=2)
    with pytest.raises(UnknownModelError):
        build_segmenter(backbone="resnet19", classes=2)
    with pytest.raises(InputShapeError, match="multiples of 32"):
        build_segmenter(backbone="resnet18", classes=2, input_shape=(64, 80, 3))
    with pytest.raises(ZooError, match="decoder must be one of"):
        build_segmenter(backbone="resnet18", classes=2, decoder="pspnet")
    with pytest.raises(ZooError, match="five stages"):
        build_segmenter(backbone="resnet18", classes=2, decoder_filters=(64, 32))
    with pytest.raises(ZooError, match="classes"):
        build_segmenter(backbone="resnet18", classes=0)
    with pytest.raises(WeightsError, match="unknown weights 'imagenet'"):
        build_segmenter(backbone="resnet18", classes=2, input_shape=(64, 64, 3),
                        encoder_weights="imagenet")
