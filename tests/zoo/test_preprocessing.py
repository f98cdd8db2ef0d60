"""The raw-pixel contract: every registry model takes 0-255 pixels and preprocesses inside.

With ``include_preprocessing=True`` (the default) a model equals its bare network
(``include_preprocessing=False``, same weights) applied to Keras's own preprocessing of the same
pixels; its preprocessing layers are Keras's built-in, weightless layers, so weight files move
between the two and a saved ``.keras`` file loads where only Keras is installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

import zoo
from zoo._common import PREPROCESS_PREFIX
from zoo.layers import Preprocess

ALL = zoo.list_models()
# ../shared/weights next to the repository; ZOO_TEST_WEIGHTS points elsewhere (a worktree).
WEIGHTS_DIR = Path(os.environ.get(
    "ZOO_TEST_WEIGHTS", Path(__file__).resolve().parents[2].parent / "shared" / "weights"))

# Families whose keras.applications preprocess_input is a pass-through, because Keras builds the
# preprocessing into the network; the registry's mode is that of those built-in layers.
KERAS_BUILT_IN = {"convnext", "efficientnet", "efficientnet_v2", "mobilenet_v3"}
# Big models (more than ~10 s to build twice on two CPU cores); the larger members of a family
# whose smallest runs fast (the same code) are conftest.FAMILY_SIBLINGS.
SLOW = {"fcn8s", "fcn16s", "fcn32s",  # fc6 alone is 103M weights
        "keras_convnextlarge", "keras_convnextxlarge", "keras_efficientnetb6",
        "keras_efficientnetb7", "keras_efficientnetv2m", "keras_efficientnetv2l",
        "keras_inceptionresnetv2", "keras_nasnetlarge",
        "keras_nasnetmobile"}  # 9 s: NASNet's cells; nasnetlarge's are slow too
LRN_MODELS = {"alexnet", "zfnet", "googlenet"}  # a zoo layer of their own, not preprocessing


def _params(names):
    return [pytest.param(n, marks=pytest.mark.slow(reason="builds in > 10 s on 2 CPU cores"))
            if n in SLOW else n for n in names]


@pytest.fixture(autouse=True)
def _fresh_session():
    yield
    keras.backend.clear_session()


def reference(mode: str, x: np.ndarray) -> np.ndarray:
    """The preprocessing of ``mode``, written independently of the zoo: Keras's functions."""
    x = x.copy()
    if mode in ("caffe", "tf", "torch"):
        return np.asarray(keras.applications.imagenet_utils.preprocess_input(x, mode=mode))
    return {"tf128": lambda: x / 128 - 1, "unit": lambda: x / 255, "none": lambda: x}[mode]()


def keras_reference(name: str, x: np.ndarray) -> np.ndarray:
    """What the bare network of ``name`` is fed: keras.applications.<family>.preprocess_input for
    Keras models (their own mode where Keras builds it in), the documented mode otherwise."""
    spec = zoo.get_spec(name)
    if spec.source == "keras" and spec.family not in KERAS_BUILT_IN:
        return np.asarray(getattr(keras.applications, spec.family).preprocess_input(x.copy()))
    return reference(spec.preprocessing, x)


def build(name: str, include_preprocessing: bool = True, **kwargs) -> keras.Model:
    """A small model of ``name``: a pooled backbone (U-Net: a narrow 'same' U-Net) at 32x32 or
    the model's minimum."""
    spec = zoo.get_spec(name)
    if name == "unet":
        return spec.builder(input_shape=(32, 32, 1), padding="same", base_filters=2,
                            include_preprocessing=include_preprocessing, **kwargs)
    size = max(spec.min_input_size, 32)
    if spec.task == "segmentation":  # a per-pixel map: no pooling
        return zoo.create_model(name, include_top=False, input_shape=(size, size, spec.channels),
                                include_preprocessing=include_preprocessing, **kwargs)
    return zoo.create_model(name, include_top=False, pooling="avg",
                            input_shape=(size, size, spec.channels),
                            include_preprocessing=include_preprocessing, **kwargs)


def pixels(model: keras.Model, n: int = 2, seed: int = 0) -> np.ndarray:
    """Raw pixels: whole numbers in 0-255, stored as float32 like a decoded image batch."""
    return np.random.default_rng(seed).integers(0, 256, (n, *model.input_shape[1:])).astype(
        "float32")


def run(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(x, training=False))


def assert_close(actual: np.ndarray, expected: np.ndarray, tolerance: float = 1e-4) -> None:
    """Equal to ``tolerance`` relative to the output's scale (deep random networks amplify
    float32 rounding in absolute terms)."""
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance * scale)


def preprocessing_layers(model: keras.Model) -> list:
    return [layer for layer in model.layers if layer.name.startswith(PREPROCESS_PREFIX)]


# --- the contract, over the whole registry -----------------------------------------------------


@pytest.mark.parametrize("name", _params(ALL))
def test_raw_pixels_equal_bare_network_on_keras_preprocessing(name):
    spec = zoo.get_spec(name)
    model = build(name)
    bare = build(name, include_preprocessing=False)
    bare.set_weights(model.get_weights())

    x = pixels(model)
    assert_close(run(model, x), run(bare, keras_reference(name, x)))

    # Preprocessing: right after the input, weightless, built-in layers named preprocess_*.
    pre = preprocessing_layers(model)
    assert not preprocessing_layers(bare)
    assert model.layers[1:1 + len(pre)] == pre
    assert bool(pre) == (spec.preprocessing != "none")
    assert all(not layer.weights for layer in pre)
    assert model.count_params() == bare.count_params()
    assert [w.shape for w in model.weights] == [w.shape for w in bare.weights]
    foreign = {type(layer).__name__ for layer in model.layers
               if not type(layer).__module__.startswith("keras.")}
    # Layers Keras lacks: LRN (AlexNet, ZFNet, GoogLeNet) and SegNet's index pooling.
    expected = ({"LocalResponseNormalization"} if name in LRN_MODELS
                else {"MaxPoolingWithArgmax2D", "MaxUnpooling2D"} if name == "segnet" else set())
    assert foreign == expected


@pytest.mark.parametrize("name", _params(
    [n for n in zoo.list_models(source="keras") if zoo.get_spec(n).family in KERAS_BUILT_IN]))
def test_same_function_as_keras_built_in_preprocessing(name):
    """Where Keras builds the preprocessing in, the zoo's layers compute what Keras's do."""
    ours = build(name)
    constructor = getattr(keras.applications, zoo.applications.application(name).constructor)
    theirs = constructor(include_top=False, pooling="avg", weights=None,
                         input_shape=ours.input_shape[1:])  # include_preprocessing by default
    theirs.set_weights(ours.get_weights())
    x = pixels(ours)
    assert_close(run(ours, x), run(theirs, x))


@pytest.mark.parametrize("family", sorted({zoo.get_spec(n).family
                                           for n in zoo.list_models(source="keras")}))
def test_family_mode_is_what_keras_preprocess_input_does(family):
    modes = {zoo.get_spec(n).preprocessing for n in zoo.list_models(source="keras")
             if zoo.get_spec(n).family == family}
    x = np.random.default_rng(2).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    keras_function = np.asarray(getattr(keras.applications, family).preprocess_input(x.copy()))
    if family in KERAS_BUILT_IN:
        np.testing.assert_array_equal(keras_function, x)  # a pass-through
        expected = {"convnext": {"torch"}, "efficientnet": {"none"},
                    "efficientnet_v2": {"torch", "tf128"}, "mobilenet_v3": {"tf"}}
        assert modes == expected[family]
        return
    (mode,) = modes
    np.testing.assert_allclose(reference(mode, x), keras_function, rtol=1e-6, atol=1e-5)


def test_efficientnet_v2_modes_follow_the_variant():
    for name in zoo.list_models("keras_efficientnetv2*"):
        b_variant = name.removeprefix("keras_efficientnetv2").startswith("b")
        assert zoo.get_spec(name).preprocessing == ("torch" if b_variant else "tf128"), name


def test_grayscale_models_take_raw_single_channel_pixels():
    lenet = zoo.create_model("lenet5")
    assert lenet.input_shape == (None, 32, 32, 1)
    (layer,) = preprocessing_layers(lenet)
    assert isinstance(layer, keras.layers.Rescaling)
    white = np.full((1, 32, 32, 1), 255.0, dtype="float32")
    inner = keras.Model(lenet.input, layer.output)
    np.testing.assert_allclose(run(inner, white), 1.0, rtol=1e-6)  # tf: 255 -> 1
    unet = build("unet")
    inner = keras.Model(unet.input, preprocessing_layers(unet)[-1].output)
    np.testing.assert_allclose(run(inner, white), 1.0, rtol=1e-6)  # unit: 255 -> 1


def test_preprocessing_computes_in_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = zoo.create_model("resnet18", include_top=False, input_shape=(32, 32, 3))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    (layer,) = preprocessing_layers(model)
    assert layer.compute_dtype == "float32"
    assert model.get_layer("conv1_conv").compute_dtype == "bfloat16"


# --- weight files of the bare network ----------------------------------------------------------

# Classic, caffe (the most layers), Keras's own preprocessing replaced (twice). EfficientNet v1
# is left out: it has no preprocessing layers to add.
WEIGHT_FILE_MODELS = ["lenet5", "resnet18", "keras_resnet50", "keras_mobilenetv3small",
                      pytest.param("keras_efficientnetv2b0", marks=pytest.mark.slow)]


def _save(model: keras.Model, path: Path) -> None:
    if path.name.endswith(".weights.h5"):
        model.save_weights(path)
    else:  # .keras, or Keras's legacy HDF5 (what the keras.applications files are)
        model.save(path)


def _weight_file_cases():
    """Every model in every format; the slow models, keras_resnet50 in the two formats besides
    Keras's legacy HDF5 (the one keras.applications ships) and keras_mobilenetv3small's
    .keras (8 s) run in the slow suite (each format is covered fast by the other models)."""
    for model in WEIGHT_FILE_MODELS:
        for suffix in (".weights.h5", ".h5", ".keras"):
            marks = list(getattr(model, "marks", ()))
            name = model.values[0] if hasattr(model, "values") else model
            if (name == "keras_resnet50" and suffix != ".h5") or (
                    name == "keras_mobilenetv3small" and suffix == ".keras"):
                marks.append(pytest.mark.slow)
            yield pytest.param(name, suffix, marks=marks, id=f"{name}-{suffix}")


@pytest.mark.parametrize("name, suffix", list(_weight_file_cases()))
def test_bare_network_weight_files_load_into_the_default_model(tmp_path, name, suffix):
    bare = build(name, include_preprocessing=False)
    path = tmp_path / f"bare{suffix}"
    _save(bare, path)
    model = build(name, weights=str(path))
    assert preprocessing_layers(model)
    x = pixels(model, seed=1)
    assert_close(run(model, x), run(bare, keras_reference(name, x)))
    # And back: the default model's file fits the bare network.
    back_path = tmp_path / f"back{suffix}"
    _save(model, back_path)
    again = build(name, include_preprocessing=False, weights=str(back_path))
    np.testing.assert_array_equal(run(again, keras_reference(name, x)),
                                  run(bare, keras_reference(name, x)))


def test_old_keras_files_with_the_preprocess_layer_still_load(tmp_path):
    inputs = keras.Input((8, 8, 3))
    x = Preprocess("caffe", name="preprocess")(inputs)
    outputs = keras.layers.Conv2D(2, 3, name="conv")(x)
    old = keras.Model(inputs, outputs)
    old.save(tmp_path / "old.keras")
    loaded = keras.saving.load_model(tmp_path / "old.keras", safe_mode=True)
    assert isinstance(loaded.get_layer("preprocess"), Preprocess)
    x = np.random.default_rng(3).uniform(0, 255, (1, 8, 8, 3)).astype("float32")
    np.testing.assert_array_equal(run(loaded, x), run(old, x))


# --- .keras files need Keras only --------------------------------------------------------------

# One model per preprocessing mode and kind: classic (1 and 3 channels) and Keras wrappers (Keras's
# own include_preprocessing replaced, and EfficientNet v1's built-in layers).
ISOLATED = ["lenet5", "unet", "keras_vgg16", "keras_mobilenetv3small",
            "keras_efficientnetv2b0", "keras_efficientnetb0"]

_LOADER = textwrap.dedent("""
    import importlib.abc, json, sys
    from pathlib import Path

    class Refuse(importlib.abc.MetaPathFinder):
        # The package is installed (editable) in this environment: refuse it outright.
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("zoo", "transfer", "cli"):
                raise ImportError(f"{name} is hidden from this process")

    sys.meta_path.insert(0, Refuse())
    try:
        import zoo
    except ImportError:
        pass
    else:
        raise SystemExit("zoo is importable")
    import keras, numpy as np

    folder = Path(sys.argv[1])
    results = {}
    for path in sorted(folder.glob("*.keras")):
        model = keras.saving.load_model(path, safe_mode=True)
        x = np.load(folder / f"{path.stem}.x.npy")
        expected = np.load(folder / f"{path.stem}.y.npy")
        got = keras.ops.convert_to_numpy(model(x, training=False))
        results[path.stem] = float(np.abs(got - expected).max())
    assert not [m for m in sys.modules if m.split(".")[0] in ("zoo", "transfer", "cli")]
    print(json.dumps(results))
""")


def test_keras_files_load_with_keras_alone(tmp_path):
    for name in ISOLATED:
        model = build(name)
        x = pixels(model, n=1, seed=4)
        model.save(tmp_path / f"{name}.keras")
        np.save(tmp_path / f"{name}.x.npy", x)
        np.save(tmp_path / f"{name}.y.npy", run(model, x))
    script = tmp_path / "load.py"
    script.write_text(_LOADER)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # -I: no PYTHONPATH, no user site, not even the script's folder on sys.path.
    done = subprocess.run([sys.executable, "-I", str(script), str(tmp_path)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    errors = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(errors) == sorted(ISOLATED)
    assert max(errors.values()) < 1e-5, errors


# --- real ImageNet weights on raw pixels -------------------------------------------------------


@pytest.fixture
def imagenet_home(tmp_path, monkeypatch):
    """A Keras cache holding the shared MobileNet v1 files under the names Keras asks for."""
    if not (WEIGHTS_DIR / "mobilenet_1_0_224_tf.h5").is_file():
        pytest.skip(f"real ImageNet weights not found in {WEIGHTS_DIR}")
    models = tmp_path / "models"
    models.mkdir()
    for file in WEIGHTS_DIR.glob("mobilenet_*.h5"):
        shutil.copy(file, models / file.name)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    return tmp_path


def photo(name: str, size: int = 224) -> np.ndarray:
    """A scikit-image sample photo, resized (bilinear) to ``size``, as raw 0-255 float pixels."""
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    image = Image.fromarray(getattr(data, name)()).resize((size, size), Image.BILINEAR)
    return np.asarray(image, dtype="float32")[None]


def top5(probabilities: np.ndarray) -> list[tuple[int, str, float]]:
    names = zoo.imagenet_class_names()
    order = np.argsort(probabilities[0])[::-1][:5]
    return [(int(i), names[i], float(probabilities[0, i])) for i in order]


def test_mobilenet_imagenet_weights_classify_raw_pixels(imagenet_home):
    model = zoo.create_model("keras_mobilenet", weights="imagenet")
    chelsea, coffee = photo("chelsea"), photo("coffee")
    cat = top5(run(model, chelsea))
    cup = top5(run(model, coffee))
    print("chelsea", cat, "\ncoffee", cup)
    assert cat[0][0] == 285 or any(281 <= index <= 285 for index, _, _ in cat[:3]), cat
    assert cat[0][1] == "Egyptian cat"
    assert cup[0][:2] == (967, "espresso"), cup
    # The bare network on Keras's preprocessing gives the same probabilities.
    bare = zoo.create_model("keras_mobilenet", weights="imagenet", include_preprocessing=False)
    preprocess_input = keras.applications.mobilenet.preprocess_input
    assert_close(run(bare, preprocess_input(chelsea.copy())), run(model, chelsea), 1e-5)

