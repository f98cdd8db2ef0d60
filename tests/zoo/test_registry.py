import keras
import numpy as np
import pytest

import zoo
from zoo.errors import InputShapeError, UnknownModelError, WeightsError, ZooError
from zoo.layers import LocalResponseNormalization, Preprocess
from zoo.macs import count_macs
from zoo.registry import ModelSpec, add_spec


def test_list_models_pattern_and_sorting():
    names = zoo.list_models()
    assert names == sorted(names)
    assert "lenet5" in names
    assert zoo.list_models("lenet*") == ["lenet5"]
    assert zoo.list_models("no-such-*") == []


def test_unknown_model_suggests_close_match():
    with pytest.raises(UnknownModelError, match=r"unknown model 'lenet'.*Did you mean lenet5"):
        zoo.get_spec("lenet")


def test_registering_a_name_twice_fails():
    spec = zoo.get_spec("lenet5")
    with pytest.raises(ValueError, match="registered twice"):
        add_spec(spec)


def test_spec_rejects_bad_metadata():
    with pytest.raises(ValueError, match="preprocessing"):
        ModelSpec(name="x", builder=lambda **k: None, family="x", paper="p", year=2000,
                  default_input_shape=(32, 32, 3), min_input_size=32, preprocessing="bgr")
    with pytest.raises(ValueError, match="task must be one of"):
        ModelSpec(name="x", builder=lambda **k: None, family="x", paper="p", year=2000,
                  default_input_shape=(32, 32, 3), min_input_size=32, task="boxes")


def test_lenet5_parameters_and_macs_exact():
    model = zoo.create_model("lenet5")  # the spec's default of 10 classes
    assert model.count_params() == 61_706
    assert model.output_shape == (None, 10)
    # C1 28*28*6*25 + C3 10*10*16*150 + C5 120*400 + F6 120*84 + out 84*10
    assert count_macs(model) == 117_600 + 240_000 + 48_000 + 10_080 + 840


def test_lenet5_backbone_and_checks():
    backbone = zoo.create_model("lenet5", include_top=False, pooling="avg")
    assert backbone.output_shape == (None, 120)
    with pytest.raises(InputShapeError, match="at least 32x32"):
        zoo.create_model("lenet5", include_top=False, input_shape=(28, 28, 1))
    with pytest.raises(InputShapeError, match="input channel"):
        zoo.create_model("lenet5", input_shape=(32, 32, 3))
    with pytest.raises(ZooError, match="pooling"):
        zoo.create_model("lenet5", include_top=False, pooling="mean")
    with pytest.raises(WeightsError, match="unknown weights 'imagenet'"):
        zoo.create_model("lenet5", weights="imagenet")


def test_weight_file_round_trip(tmp_path):
    first = zoo.create_model("lenet5", classes=4)
    path = tmp_path / "lenet.weights.h5"
    first.save_weights(path)
    second = zoo.create_model("lenet5", classes=4, weights=str(path))
    x = np.random.default_rng(0).random((2, 32, 32, 1)).astype("float32")
    np.testing.assert_array_equal(first.predict(x, verbose=0), second.predict(x, verbose=0))
    with pytest.raises(WeightsError, match="does not fit"):
        zoo.create_model("lenet5", classes=5, weights=str(path))
    with pytest.raises(WeightsError, match="does not exist"):
        zoo.create_model("lenet5", weights=str(tmp_path / "missing.weights.h5"))


@pytest.mark.parametrize("mode,family", [("caffe", "vgg16"), ("tf", "mobilenet_v2"),
                                         ("torch", "densenet")])
def test_preprocess_layer_matches_keras(mode, family):
    x = np.random.default_rng(1).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    reference = getattr(keras.applications, family).preprocess_input(x.copy())
    np.testing.assert_allclose(np.asarray(Preprocess(mode)(x)), reference, rtol=1e-5, atol=1e-4)


def test_preprocess_grayscale_and_unit():
    x = np.full((1, 2, 2, 3), 255.0, dtype="float32")
    np.testing.assert_allclose(np.asarray(Preprocess("unit", channels=1)(x)),
                               np.full((1, 2, 2, 1), 0.9999), atol=1e-3)


def test_lrn_matches_numpy_reference():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(1, 3, 3, 7)).astype("float32")
    n, alpha, beta, k = 5, 1e-2, 0.75, 2.0
    expected = np.empty_like(a)
    for c in range(7):
        lo, hi = max(0, c - n // 2), min(7, c + n // 2 + 1)
        expected[..., c] = a[..., c] / (k + alpha / n * (a[..., lo:hi] ** 2).sum(-1)) ** beta
    got = LocalResponseNormalization(size=n, alpha=alpha, beta=beta, k=k)(a)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)
