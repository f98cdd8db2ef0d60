"""Registry classifiers served like run directories, ImageNet class folders, and model files that
load outside the package: a run's model.keras in plain Keras, and a run written before the zoo's
models preprocessed (a ``zoo.layers.Preprocess`` layer, no contract.json)."""

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
import tensorflow as tf
from PIL import Image

import zoo
from transfer.data import decode_and_resize
from transfer.errors import ConfigError, DataError
from transfer.tasks.classification.imagenet import imagenet_labels, present_classes
from transfer.tasks.classification.sources import folder_split, is_imagenet
from transfer.export import export
from transfer.predict import (
    Predictor,
    is_model_name,
    load_classifier,
    pretrained_classifier,
)
from transfer.rundir import InputContract
from transfer.serving import ServingFunctions
from transfer.tasks.classification.metrics import classification_metrics
from zoo._common import leaf_layers
from zoo.errors import UnknownModelError

# Put in front of sys.meta_path in a fresh interpreter: the package cannot be imported there
# even though the virtualenv's editable install would find it.
BLOCK_PACKAGE = textwrap.dedent("""
    import sys

    class BlockPackage:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("zoo", "transfer", "cli"):
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, BlockPackage())
    try:
        import zoo
    except ImportError:
        pass
    else:
        raise SystemExit("zoo is importable")
""")


def run_without_package(script: str, cwd: Path) -> subprocess.CompletedProcess:
    """``script`` in ``python -I`` (no PYTHONPATH, no user site) with the package blocked; it
    must end with the package still absent from ``sys.modules``."""
    check = textwrap.dedent("""
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("zoo", "transfer", "cli"))
        assert not leaked, leaked
        print("PACKAGE-FREE")
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-I", "-c", BLOCK_PACKAGE + script + check],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("PACKAGE-FREE")
    return proc


def _png_bytes(image: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


# ---- registry names as sources -------------------------------------------------------------

def test_is_model_name_prefers_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_model_name("keras_mobilenet") and is_model_name("lenet")
    assert not is_model_name("runs/flowers") and not is_model_name("model.keras")
    (tmp_path / "lenet5").mkdir()  # a folder of that name wins over the registry
    assert not is_model_name("lenet5")


def test_lenet_gets_the_luma_adapter_and_label_numbers():
    classifier = pretrained_classifier("lenet5", weights=None)
    assert classifier.run_dir is None
    assert classifier.contract == InputContract("classification", 32, 1, "tf",
                                                tuple(str(i) for i in range(10)))
    model = classifier.model
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 10)
    assert [layer.name for layer in model.layers] == ["image", "rgb_to_gray", "lenet5"]
    assert not any(isinstance(layer, zoo.layers.Preprocess) for layer in leaf_layers(model))

    # The served probabilities are the bare LeNet-5 on tf.image.rgb_to_grayscale of the image.
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 40, 48, 3), dtype=np.uint8)
    served = ServingFunctions(model, classifier.contract).serve_images(tf.constant(images))
    lenet = next(layer for layer in model.layers if layer.name == "lenet5")
    resized = tf.image.resize(tf.cast(images, tf.float32), (32, 32))
    expected = lenet(tf.image.rgb_to_grayscale(resized))
    np.testing.assert_allclose(served["probabilities"].numpy(), expected.numpy(), atol=1e-5)
    assert served["top_classes"].shape == (4, 5)


def test_a_1000_class_model_is_named_with_the_imagenet_classes():
    classifier = pretrained_classifier("keras_mobilenet", weights=None)
    contract = classifier.contract
    assert (contract.task, contract.image_size, contract.channels, contract.preprocessing) == \
        ("classification", 224, 3, "tf")
    assert list(contract.class_names) == zoo.imagenet_class_names()
    assert contract.class_names[285] == "Egyptian cat" and contract.class_names[967] == "espresso"
    assert classifier.model.count_params() == 4_253_864  # MobileNet v1 1.0, with its top


def test_registry_errors_before_anything_is_built(tmp_path):
    with pytest.raises(UnknownModelError, match=r"unknown model 'lenet'\. Did you mean lenet5.*"
                                                r"No file or folder 'lenet' exists either"):
        load_classifier("lenet")
    with pytest.raises(ConfigError, match="'unet' is a segmentation model.*zoo train"):
        load_classifier("unet", weights=None)
    with pytest.raises(zoo.WeightsError, match="lenet5: unknown weights 'imagenet'"):
        Predictor("lenet5")  # the default weights; LeNet-5 has no named set
    with pytest.raises(DataError, match="registry model 'lenet5' has no saved split"):
        from transfer.evaluate import evaluate

        evaluate("lenet5", weights=None)
    with pytest.raises(DataError, match="registry model 'lenet5' has no training images"):
        export("lenet5", weights=None, format="tflite", quantize="int8",
               output=tmp_path / "m.tflite")
    assert not (tmp_path / "m.tflite").exists()


# ---- ImageNet class folders and metrics ----------------------------------------------------

def _imagenet_folder(root: Path, folders: dict[str, int]) -> Path:
    rng = np.random.default_rng(1)
    for name, count in folders.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_imagenet_folders_by_name_synonym_wordnet_id_or_index(tmp_path):
    names = zoo.imagenet_class_names()
    assert is_imagenet(names) and not is_imagenet(names[:999] + ["x"])
    root = _imagenet_folder(tmp_path / "data", {"Egyptian cat": 2, "Egyptian_cat": 1,
                                                "n07920052": 1, "tabby cat": 1, "999": 1})
    split, skipped = folder_split(root, names)
    labels = sorted(zip((Path(p).parent.name for p in split.paths), split.labels))
    assert skipped == []
    assert labels == [("999", 999), ("Egyptian cat", 285), ("Egyptian cat", 285),
                      ("Egyptian_cat", 285), ("n07920052", 967), ("tabby cat", 281)]

    _imagenet_folder(root, {"kitty": 1})
    with pytest.raises(DataError, match=r"class folder\(s\) 'kitty' in .* do not name one "
                                        r"ImageNet class .*Did you mean 'kite'"):
        folder_split(root, names)
    shutil.rmtree(root / "kitty")
    _imagenet_folder(root, {"crane": 1})  # a bird and a machine
    with pytest.raises(DataError, match="'crane'.*ambiguous: 134 n02012849.*517 n03126707"):
        folder_split(root, names)


def test_imagenet_metrics_keep_top_k_over_1000_and_rows_for_the_classes_present():
    labels = np.array([285, 285, 967, 281])
    # A background falling with the class index, so ranks have no ties: after the two classes
    # set here come classes 0, 1, 2.
    probabilities = np.tile(np.linspace(1e-4, 1e-5, 1000), (4, 1))
    for row, (top, second) in enumerate([(285, 281), (281, 285), (967, 504), (285, 282)]):
        probabilities[row, [top, second]] = 0.3, 0.2
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    names = zoo.imagenet_class_names()
    metrics = present_classes(classification_metrics(probabilities, labels, names))

    assert metrics["samples"] == 4 and metrics["top1_accuracy"] == 0.5
    assert metrics["top5_accuracy"] == 0.75  # 281 is not in the fourth image's top 5
    assert list(metrics["per_class"]) == ["tabby", "Egyptian cat", "espresso"]
    assert metrics["per_class"]["Egyptian cat"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert metrics["per_class"]["tabby"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                             "support": 1}
    assert metrics["macro"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5})
    assert metrics["weighted"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5})
    assert metrics["confusion_classes"] == ["tabby", "Egyptian cat", "espresso"]
    assert metrics["confusion_matrix"] == [[0, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert len(metrics["class_names"]) == 1000

    labels_ = imagenet_labels()
    assert labels_[134] == "crane (n02012849)" and labels_[517] == "crane (n03126707)"
    assert len(set(labels_)) == 1000


# ---- model files outside the package -------------------------------------------------------

def test_run_model_keras_loads_in_plain_keras_without_the_package(trained_run, tmp_path):
    """A run's model.keras and a pretrained export load with keras.saving.load_model alone;
    a file holding the zoo's old Preprocess layer (the control) does not."""
    exported = export("lenet5", weights=None, format="keras", output=tmp_path / "lenet5.keras")
    legacy = tmp_path / "legacy.keras"
    _legacy_lenet_classifier(["a", "b"]).save(legacy)
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (5, 32, 32, 3)).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    models = {"run": Path(trained_run.run_dir) / "model.keras", "export": exported}
    for name, path in models.items():
        np.save(tmp_path / f"expected_{name}.npy",
                np.asarray(keras.saving.load_model(path, compile=False)(images)))

    script = "import keras, numpy as np\n" + "\n".join(
        f"np.save({str(tmp_path / f'got_{name}.npy')!r}, np.asarray(keras.saving.load_model("
        f"{str(path)!r})(np.load({str(tmp_path / 'images.npy')!r}))))"
        for name, path in models.items()) + textwrap.dedent(f"""
        try:
            keras.saving.load_model({str(legacy)!r})
        except Exception as exc:
            print("control refused, naming Preprocess:", "Preprocess" in str(exc))
        else:
            raise SystemExit("a model holding zoo>Preprocess loaded without the package")
    """)
    proc = run_without_package(script, tmp_path)
    assert "control refused, naming Preprocess: True" in proc.stdout
    for name in models:
        expected = np.load(tmp_path / f"expected_{name}.npy")
        assert expected.shape == (5, 3 if name == "run" else 10)
        np.testing.assert_allclose(np.load(tmp_path / f"got_{name}.npy"), expected, atol=1e-5)


def _legacy_lenet_classifier(class_names: list[str]) -> keras.Model:
    """A classifier as transfer built them before the zoo's models preprocessed: image ->
    zoo.layers.Preprocess -> nested backbone "backbone" -> head_dropout -> classifier."""
    from zoo.layers import Preprocess

    spec = zoo.get_spec("lenet5")
    keras.utils.set_random_seed(3)
    backbone = zoo.create_model("lenet5", include_top=False, pooling="avg", weights=None,
                                include_preprocessing=False)
    backbone.name = "backbone"
    image = keras.Input((32, 32, 3), name="image")
    x = Preprocess(spec.preprocessing, channels=spec.channels, name="preprocess")(image)
    x = backbone(x, training=False)
    x = keras.layers.Dropout(0.2, name="head_dropout")(x)
    outputs = keras.layers.Dense(len(class_names), activation="softmax", name="classifier")(x)
    return keras.Model(image, outputs, name="lenet5_classifier")


def test_a_run_directory_written_before_the_pixel_contract_predicts_and_exports(tmp_path):
    names = ["ant", "bee", "cat", "dog"]
    model = _legacy_lenet_classifier(names)
    run = tmp_path / "legacy_run"
    run.mkdir()
    model.save(run / "model.keras")
    (run / "class_names.json").write_text(json.dumps(names))

    loaded = load_classifier(run)
    assert loaded.contract == InputContract("classification", 32, 1, "tf", tuple(names))
    assert loaded.run_dir == run

    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (3, 37, 45, 3), dtype=np.uint8)
    paths = []
    for i, image in enumerate(images):
        paths.append(str(tmp_path / f"img{i}.png"))
        Path(paths[-1]).write_bytes(_png_bytes(image))
    resized = tf.stack([decode_and_resize(tf.io.read_file(p), 32) for p in paths])
    expected = np.asarray(model(resized, training=False))

    predictions = list(Predictor(run, top_k=4).predict_files(paths))
    for p, row in zip(predictions, expected):
        order = np.argsort(-row)
        assert p.labels == tuple(names[i] for i in order)
        np.testing.assert_allclose(p.scores, row[order], atol=1e-6)

    target = export(run, format="savedmodel", output=tmp_path / "legacy_sm")
    saved = tf.saved_model.load(str(target))
    out = saved.signatures["serving_default"](images=tf.constant(images))
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
    assert [n.decode() for n in saved.class_names().numpy()] == names
