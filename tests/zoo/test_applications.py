"""keras.applications wrappers: every registered one builds, and weights resolve as documented.

Nothing here needs the network: ImageNet files are made locally, and the offline path is forced
through an HTTPS proxy on a closed local port.
"""

import time

import keras
import numpy as np
import pytest

import zoo
from zoo import applications
from zoo.errors import InputShapeError, WeightsError, ZooError
from zoo.macs import count_macs

KERAS_MODELS = zoo.list_models(source="keras")

# Pooled feature size of each backbone (the channels of its last feature map).
FEATURES = {
    "keras_convnextbase": 1024, "keras_convnextlarge": 1536, "keras_convnextsmall": 768,
    "keras_convnexttiny": 768, "keras_convnextxlarge": 2048,
    "keras_densenet121": 1024, "keras_densenet169": 1664, "keras_densenet201": 1920,
    "keras_efficientnetb0": 1280, "keras_efficientnetb1": 1280, "keras_efficientnetb2": 1408,
    "keras_efficientnetb3": 1536, "keras_efficientnetb4": 1792, "keras_efficientnetb5": 2048,
    "keras_efficientnetb6": 2304, "keras_efficientnetb7": 2560,
    "keras_efficientnetv2b0": 1280, "keras_efficientnetv2b1": 1280,
    "keras_efficientnetv2b2": 1408, "keras_efficientnetv2b3": 1536,
    "keras_efficientnetv2s": 1280, "keras_efficientnetv2m": 1280, "keras_efficientnetv2l": 1280,
    "keras_inceptionresnetv2": 1536, "keras_inceptionv3": 2048,
    "keras_mobilenet": 1024, "keras_mobilenetv2": 1280,
    "keras_mobilenetv3large": 960, "keras_mobilenetv3small": 576,
    "keras_nasnetlarge": 4032, "keras_nasnetmobile": 1056,
    "keras_resnet50": 2048, "keras_resnet101": 2048, "keras_resnet152": 2048,
    "keras_resnet50v2": 2048, "keras_resnet101v2": 2048, "keras_resnet152v2": 2048,
    "keras_vgg16": 512, "keras_vgg19": 512, "keras_xception": 2048,
}

# Measured: a build test of each takes more than ~5 s of CPU time on two cores (the larger
# members of a family whose smallest runs fast are conftest.FAMILY_SIBLINGS).
SLOW = {"keras_convnextlarge", "keras_convnextxlarge", "keras_efficientnetb6",
        "keras_efficientnetb7", "keras_efficientnetv2l", "keras_efficientnetv2m",
        "keras_inceptionresnetv2", "keras_nasnetlarge", "keras_nasnetmobile"}


def _models(names):
    return [pytest.param(n, marks=pytest.mark.slow(reason="builds in > 5 s on 2 CPU cores"))
            if n in SLOW else n for n in names]


@pytest.fixture(autouse=True)
def _fresh_session():
    yield
    keras.backend.clear_session()  # the large models hold GBs; free them between tests


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty Keras cache in ``tmp_path`` and an HTTPS proxy nobody listens on."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    for var in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def _leaf_names(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_names(layer)
        else:
            yield layer.name


def test_table_is_every_keras_application():
    constructors = {n for n in dir(keras.applications) if n[0].isupper()}
    assert len(constructors) == 40
    assert {app.constructor for app in applications.APPLICATIONS} == constructors
    assert KERAS_MODELS == sorted("keras_" + c.lower() for c in constructors)
    assert set(FEATURES) == set(KERAS_MODELS)
    for name in KERAS_MODELS:
        spec = zoo.get_spec(name)
        assert spec.source == "keras" and spec.pretrained == ("imagenet",)
        assert spec.default_unfreeze in spec.blocks
        assert hasattr(keras.applications, spec.family), spec.family


@pytest.mark.parametrize("name", _models(KERAS_MODELS))
def test_backbone_at_minimum_size(name):
    spec = zoo.get_spec(name)
    size = spec.min_input_size
    model = zoo.create_model(name, include_top=False, pooling="avg",
                             input_shape=(size, size, 3))
    assert model.name == name
    x = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype("float32")
    features = model(x, training=False)
    assert features.shape == (1, FEATURES[name])
    assert np.isfinite(np.asarray(features)).all()
    # Every block names a layer, in order: "unfreeze from block N" relies on it.
    names = list(_leaf_names(model))
    starts = [next((i for i, n in enumerate(names) if n.startswith(block)), None)
              for block in spec.blocks]
    assert None not in starts, dict(zip(spec.blocks, starts))
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    with pytest.raises(InputShapeError, match=f"at least {size}x{size}"):
        zoo.create_model(name, include_top=False, input_shape=(size - 1, size, 3))


@pytest.mark.parametrize("name", _models(KERAS_MODELS))
def test_classifier_with_own_classes(name):
    size = zoo.get_spec(name).min_input_size
    model = zoo.create_model(name, classes=7, input_shape=(size, size, 3))
    assert model.output_shape == (None, 7)


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_weight_file_round_trip(tmp_path, suffix):
    kwargs = dict(include_top=False, pooling="avg", input_shape=(32, 32, 3))
    first = zoo.create_model("keras_mobilenetv2", **kwargs)
    path = tmp_path / f"x{suffix}"
    if suffix == ".keras":
        first.save(path)
    else:
        first.save_weights(path)
    second = zoo.create_model("keras_mobilenetv2", weights=str(path), **kwargs)
    x = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(first.predict(x, verbose=0), second.predict(x, verbose=0))


@pytest.mark.slow  # 9 s; the round trips of the named layers stay fast
def test_keras_file_with_generated_layer_names_loads_by_position(tmp_path):
    # Keras leaves Xception's shortcut convolutions unnamed, so a second build names them
    # differently; the weights must still land, here from a model with a top into a backbone.
    classifier = zoo.create_model("keras_xception", classes=3, input_shape=(71, 71, 3))
    path = tmp_path / "xception.keras"
    classifier.save(path)
    backbone = zoo.create_model("keras_xception", include_top=False, pooling="avg",
                                input_shape=(71, 71, 3), weights=str(path))
    features = keras.Model(classifier.input, classifier.get_layer("avg_pool").output)
    x = np.random.default_rng(4).uniform(-1, 1, (2, 71, 71, 3)).astype("float32")
    np.testing.assert_allclose(backbone.predict(x, verbose=0), features.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(WeightsError, match="does not fit"):
        zoo.create_model("keras_resnet50", include_top=False, input_shape=(71, 71, 3),
                         weights=str(path))


def test_imagenet_offline_fails_fast_with_instructions(offline):
    start = time.monotonic()
    with pytest.raises(WeightsError, match="KERAS_HOME") as error:
        zoo.create_model("keras_mobilenetv2", weights="imagenet")
    assert time.monotonic() - start < 15
    message = str(error.value)
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5" in message
    assert "https://storage.googleapis.com/" in message and "weights=PATH" in message
    # A cached file whose hash is wrong is not used: the download is needed again.
    bad = applications.imagenet_file("keras_resnet50", include_top=False)
    (offline / "models").mkdir()
    (offline / "models" / bad.name).write_bytes(b"not weights")
    with pytest.raises(WeightsError, match="cannot be reached"):
        zoo.create_model("keras_resnet50", weights="imagenet", include_top=False)


def test_imagenet_loads_a_cached_file_without_network(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def no_network(url, timeout=0):
        raise AssertionError(f"tried to reach {url}")

    monkeypatch.setattr(applications, "_reachable", no_network)
    kwargs = dict(include_top=False, input_shape=(32, 32, 3))
    file = applications.imagenet_file("keras_mobilenetv2", **kwargs)
    # Not one of MobileNetV2's weight sizes, so Keras would load its 224 file.
    assert file.name == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    assert file.file_hash is None  # Keras publishes no hash for MobileNet files
    reference = zoo.create_model("keras_mobilenetv2", **kwargs)
    (tmp_path / "models").mkdir()
    reference.save(tmp_path / "models" / file.name)  # Keras's legacy HDF5, like the real file
    loaded = zoo.create_model("keras_mobilenetv2", weights="imagenet", **kwargs)
    x = np.random.default_rng(5).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(reference.predict(x, verbose=0), loaded.predict(x, verbose=0))


@pytest.mark.slow  # 9 s: two EfficientNets built and compared
def test_efficientnet_imagenet_scaling_matches_keras(monkeypatch, tmp_path):
    # Keras adds a Rescaling layer to EfficientNet only with weights="imagenet"; the zoo folds
    # it into the Normalization variance. Both must compute the same function.
    kwargs = dict(include_top=False, input_shape=(32, 32, 3))
    source = keras.applications.EfficientNetB0(weights=None, **kwargs)
    norm = next(layer for layer in source.layers
                if isinstance(layer, keras.layers.Normalization))
    norm.adapt_mean.assign([0.485, 0.456, 0.406])
    norm.adapt_variance.assign([0.229, 0.224, 0.225])  # the std, as Keras's file stores it
    norm.finalize_state()
    file = applications.imagenet_file("keras_efficientnetb0", include_top=False)
    (tmp_path / "models").mkdir()
    path = tmp_path / "models" / file.name
    source.save(path)

    from keras.src.utils import file_utils

    monkeypatch.setattr(file_utils, "get_file", lambda *args, **kw: str(path))
    reference = keras.applications.EfficientNetB0(weights="imagenet", **kwargs)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(applications, "_hash_matches", lambda path, expected: True)
    ours = zoo.create_model("keras_efficientnetb0", weights="imagenet", **kwargs)
    x = np.random.default_rng(6).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(ours.predict(x, verbose=0), reference.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-4)


def test_argument_errors_come_before_any_work(offline):
    with pytest.raises(ZooError, match="1000 classes, got classes=7"):
        zoo.create_model("keras_resnet50", weights="imagenet", classes=7)
    with pytest.raises(ZooError, match="classifier_activation"):
        zoo.create_model("keras_resnet50", weights="imagenet", classifier_activation="sigmoid")
    with pytest.raises(InputShapeError, match=r"\(224, 224, 3\)"):
        zoo.create_model("keras_resnet50", weights="imagenet", input_shape=(160, 160, 3))
    with pytest.raises(InputShapeError, match=r"\(96, 96, 3\) or \(128, 128, 3\)"):
        zoo.create_model("keras_mobilenetv2", weights="imagenet", input_shape=(100, 100, 3))
    with pytest.raises(WeightsError, match="unknown weights 'imagenet21k'"):
        zoo.create_model("keras_resnet50", weights="imagenet21k")
    with pytest.raises(InputShapeError, match="at least 75x75"):
        zoo.create_model("keras_inceptionv3", include_top=False, input_shape=(74, 80, 3))
    with pytest.raises(InputShapeError, match="at least 32x32"):
        zoo.create_model("keras_mobilenetv3small", include_top=False, input_shape=(31, 31, 3))
    with pytest.raises(InputShapeError, match="input channel"):
        zoo.create_model("keras_vgg16", include_top=False, input_shape=(64, 64, 1))
    with pytest.raises(InputShapeError, match="must be given"):
        zoo.create_model("keras_nasnetmobile", include_top=False, input_shape=(None, None, 3))
    with pytest.raises(InputShapeError, match="must be given"):
        zoo.create_model("keras_resnet50", input_shape=(None, None, 3))


def test_model_name_does_not_change_layer_names():
    builder = zoo.get_spec("keras_convnexttiny").builder
    model = builder(include_top=False, input_shape=(32, 32, 3), name="backbone")
    assert model.name == "backbone"
    assert "convnext_tiny_stage_3_block_0_depthwise_conv" in set(_leaf_names(model))


@pytest.mark.parametrize("name,size,low,high", [
    ("keras_resnet50", 224, 3.8e9, 4.1e9),        # He et al.: 3.8 GFLOPs (multiply-adds)
    ("keras_mobilenetv2", 224, 290e6, 310e6),     # Sandler et al.: 300M
    ("keras_efficientnetb0", 224, 380e6, 400e6),  # Tan and Le: 0.39B FLOPs
])
def test_macs_match_published_figures(name, size, low, high):
    assert low <= count_macs(zoo.create_model(name, input_shape=(size, size, 3))) <= high
