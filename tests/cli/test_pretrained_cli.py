"""``zoo predict/evaluate/export NAME``: pretrained registry classifiers through the CLI.

The real-weights tests use the ImageNet MobileNet-v1 file of ``../shared/weights`` (or
``$ZOO_TEST_WEIGHTS``) and skip without it. Nothing here touches the network: the offline tests
use an empty ``KERAS_HOME`` and a download that cannot reach its host.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import main
from cli.weights import NONE_WORDS, parse_weights

WEIGHTS_DIR = Path(os.environ.get("ZOO_TEST_WEIGHTS")
                   or Path(__file__).resolve().parents[2].parent / "shared" / "weights")
MOBILENET = WEIGHTS_DIR / "mobilenet_1_0_224_tf.h5"
needs_weights = pytest.mark.skipif(
    not MOBILENET.is_file(),
    reason=f"real ImageNet MobileNet-v1 weights not found at {MOBILENET} (../shared/weights next "
           f"to the repository, or set ZOO_TEST_WEIGHTS)")
CAT_CLASSES = {"Egyptian cat", "tabby", "tiger cat"}


@pytest.fixture()
def runner():
    return CliRunner()


def _one_error_line(result, *fragments):
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: ") and "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in line


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    """scikit-image's cat and espresso photos as JPEG files."""
    data = pytest.importorskip("skimage.data", reason="scikit-image provides the test photos")
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    paths = {"chelsea": folder / "chelsea.jpg", "coffee": folder / "coffee.jpg"}
    Image.fromarray(data.chelsea()).save(paths["chelsea"], quality=95)
    Image.fromarray(data.coffee()).save(paths["coffee"], quality=95)
    return paths


@pytest.fixture(scope="module")
def mobilenet(photos, tmp_path_factory) -> dict:
    """MobileNet-v1 with the real weights file, through the CLI once: ``zoo predict --json`` on
    both photos, and ``zoo export --format savedmodel``."""
    if not MOBILENET.is_file():
        pytest.skip(needs_weights.kwargs["reason"])
    runner = CliRunner()
    result = runner.invoke(main, ["predict", "keras_mobilenet", str(photos["chelsea"]),
                                  str(photos["coffee"]), "--weights", str(MOBILENET), "--json"])
    assert result.exit_code == 0, result.output
    rows = {Path(row["path"]).stem: row["predictions"]
            for row in map(json.loads, result.stdout.splitlines())}
    target = tmp_path_factory.mktemp("export") / "mobilenet_sm"
    exported = runner.invoke(main, ["export", "keras_mobilenet", "--weights", str(MOBILENET),
                                    "--format", "savedmodel", "--output", str(target)])
    assert exported.exit_code == 0, exported.output
    return {"predictions": rows, "saved_model": target, "export_output": exported.stdout}


# ---- real weights ----------------------------------------------------------------------------

@needs_weights
def test_predict_names_the_cat_and_the_espresso(mobilenet):
    chelsea, coffee = mobilenet["predictions"]["chelsea"], mobilenet["predictions"]["coffee"]
    assert len(chelsea) == len(coffee) == 5  # --top-k defaults to 5
    assert chelsea[0]["label"] == "Egyptian cat" and chelsea[0]["score"] > 0.5
    assert {p["label"] for p in chelsea[:3]} == CAT_CLASSES
    assert coffee[0]["label"] == "espresso" and coffee[0]["score"] > 0.5
    scores = [p["score"] for p in chelsea]
    assert scores == sorted(scores, reverse=True) and sum(scores) <= 1 + 1e-6


@needs_weights
def test_predict_prints_imagenet_names_as_text(runner, mobilenet, photos):
    result = runner.invoke(main, ["predict", "keras_mobilenet", str(photos["chelsea"]),
                                  "--weights", str(MOBILENET), "--top-k", "3"])
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    path, top = line.split("\t")
    expected = "  ".join(f"{p['label']} {p['score']:.3f}"
                         for p in mobilenet["predictions"]["chelsea"][:3])
    assert path == str(photos["chelsea"]) and top == expected
    assert top.startswith("Egyptian cat 0.")


@needs_weights
def test_imagenet_weights_from_a_copied_keras_cache(runner, mobilenet, photos, tmp_path,
                                                   monkeypatch):
    """The offline recipe: the file copied into KERAS_HOME/models makes the default work."""
    from zoo import applications

    (tmp_path / "models").mkdir()
    shutil.copy(MOBILENET, tmp_path / "models" / MOBILENET.name)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(applications, "_reachable", _no_network)
    result = runner.invoke(main, ["predict", "keras_mobilenet", str(photos["chelsea"]),
                                  "--json"])
    assert result.exit_code == 0, result.output
    cached = json.loads(result.stdout)["predictions"]
    from_file = mobilenet["predictions"]["chelsea"]
    assert [p["label"] for p in cached] == [p["label"] for p in from_file]
    np.testing.assert_allclose([p["score"] for p in cached], [p["score"] for p in from_file],
                               atol=1e-5)


@needs_weights
def test_exported_savedmodel_serves_the_same_in_tensorflow_alone(mobilenet, photos, tmp_path):
    target = mobilenet["saved_model"]
    assert mobilenet["export_output"].startswith(f"exported savedmodel to {target} (")
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        import tensorflow as tf

        model = tf.saved_model.load({str(target)!r})
        assert set(model.signatures) >= {{"serving_default", "serve_images", "serve_bytes",
                                          "class_names"}}, list(model.signatures)
        paths = {[str(photos["chelsea"]), str(photos["coffee"])]!r}
        by_bytes = model.signatures["serve_bytes"](
            image_bytes=tf.constant([open(p, "rb").read() for p in paths]))
        chelsea = tf.io.decode_jpeg(open(paths[0], "rb").read(), channels=3,
                                    dct_method="INTEGER_ACCURATE")[None]
        by_images = model.signatures["serving_default"](images=chelsea)
        names = [n.decode() for n in model.class_names().numpy()]
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("zoo", "transfer", "cli"))
        print(json.dumps({{
            "classes": by_bytes["top_classes"].numpy().astype(str).tolist(),
            "scores": by_bytes["top_scores"].numpy().tolist(),
            "images_scores": by_images["top_scores"].numpy().tolist(),
            "probabilities_shape": list(by_bytes["probabilities"].shape),
            "names": [len(names), names[285], names[967]], "leaked": leaked}}))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    served = json.loads(proc.stdout.strip().splitlines()[-1])
    assert served["leaked"] == []  # TensorFlow alone: no zoo, transfer or cli module
    assert served["names"] == [1000, "Egyptian cat", "espresso"]
    assert served["probabilities_shape"] == [2, 1000]
    for row, stem in enumerate(("chelsea", "coffee")):
        cli = mobilenet["predictions"][stem]
        assert served["classes"][row] == [p["label"] for p in cli]
        np.testing.assert_allclose(served["scores"][row], [p["score"] for p in cli], atol=1e-5)
    # The uint8 endpoint resizes inside; decoded as serve_bytes decodes (the accurate DCT, as
    # Pillow), the same pixels give the same scores.
    np.testing.assert_allclose(served["images_scores"][0], served["scores"][0], atol=1e-5)


@needs_weights
def test_evaluate_on_imagenet_class_folders(runner, photos, tmp_path):
    data = tmp_path / "imagenet"
    for folder, photo in (("Egyptian cat", "chelsea"), ("n07920052", "coffee"),
                          ("tabby", "chelsea")):
        (data / folder).mkdir(parents=True)
        shutil.copy(photos[photo], data / folder)
    out = tmp_path / "eval"
    result = runner.invoke(main, ["evaluate", "keras_mobilenet", str(data), "--weights",
                                  str(MOBILENET), "--output", str(out), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["samples"] == 3 and metrics["top_k"] == 5
    assert metrics["top1_accuracy"] == pytest.approx(2 / 3)  # the tabby folder's cat: Egyptian
    assert metrics["top5_accuracy"] == 1.0
    assert list(metrics["per_class"]) == ["tabby", "Egyptian cat", "espresso"]
    assert metrics["per_class"]["Egyptian cat"] == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert metrics["confusion_classes"] == ["tabby", "Egyptian cat", "espresso"]
    assert metrics["confusion_matrix"] == [[0, 1, 0], [0, 1, 0], [0, 0, 1]]
    for name in ("metrics.json", "confusion_matrix.png", "mistakes.png"):
        assert (out / name).is_file()


# ---- offline -------------------------------------------------------------------------------

def _no_network(url, timeout=0):
    return False


@pytest.fixture()
def offline(monkeypatch, tmp_path):
    """An empty Keras cache and no route to the weights server (a download attempt fails)."""
    import keras

    from zoo import applications

    home = tmp_path / "keras_home"
    home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.setattr(applications, "_reachable", _no_network)

    def no_download(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(keras.utils, "get_file", no_download)
    return home


@pytest.mark.parametrize("command", [
    ["predict", "keras_mobilenet", "{image}"],
    ["predict", "keras_mobilenet", "{image}", "--weights", "imagenet"],
    ["evaluate", "keras_mobilenet", "{data}", "--output", "{tmp}/eval"],
    ["export", "keras_mobilenet", "--output", "{tmp}/sm"],
    ["export", "keras_mobilenet", "--format", "tflite", "--output", "{tmp}/m.tflite"],
    ["viz", "filters", "keras_mobilenet", "--weights", "imagenet", "--output", "{tmp}/viz"],
    ["embed", "keras_mobilenet", "{data}", "--weights", "imagenet", "--output", "{tmp}/index"],
    ["train", "{data}", "--model", "keras_mobilenet", "--mode", "feature-extractor",
     "--epochs", "1", "--output", "{tmp}/run"],
], ids=["predict", "predict-imagenet", "evaluate", "export", "export-tflite", "viz", "embed",
        "train"])
def test_offline_imagenet_is_one_clear_line(runner, offline, image_folder, tmp_path, command):
    data = tmp_path / "data"  # ImageNet class folders, and two classes for zoo train
    shutil.copytree(image_folder / "red", data / "Egyptian cat")
    shutil.copytree(image_folder / "green", data / "tabby")
    image = next(data.glob("Egyptian cat/*.png"))
    args = [a.format(image=image, data=data, tmp=tmp_path) for a in command]
    result = runner.invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("Error: keras_mobilenet: the ImageNet weights file 'mobilenet_1_0_")
    assert f"is not in the Keras cache ({offline / 'models'})" in line
    assert "cannot be reached" in line
    if command[0] in ("predict", "evaluate", "export"):  # nothing else is printed
        _one_error_line(result)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "keras_home"]


# ---- options and errors without weights -----------------------------------------------------

def test_weights_are_spelt_alike_in_every_command(runner):
    from transfer.config import TrainConfig

    phrase = "'imagenet', 'none' (random init) or a weights file"
    for command in (["predict"], ["evaluate"], ["export"], ["viz", "filters"], ["viz", "gradcam"],
                    ["embed"], ["train"]):
        result = runner.invoke(main, [*command, "--help"])
        assert result.exit_code == 0, result.output
        assert phrase in " ".join(result.output.split()), command
    for word in NONE_WORDS:
        assert parse_weights(word, "imagenet") is None
        assert TrainConfig(weights=word).weights is None
    assert parse_weights(None, "imagenet") == "imagenet" and parse_weights(None) is None
    assert parse_weights("w/x.h5") == "w/x.h5"


def test_weights_with_a_trained_model_is_a_usage_error(runner, trained_run, tmp_path):
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (40, 40), (200, 30, 30)).save(image)
    for args in (["predict", str(trained_run.run_dir), str(image)],
                 ["evaluate", str(trained_run.run_dir)],
                 ["export", str(trained_run.run_dir), "--output", str(tmp_path / "sm")]):
        result = runner.invoke(main, [*args, "--weights", "imagenet"])
        assert result.exit_code == 2, result.output
        assert "--weights applies to registry model names only" in result.output
        assert str(trained_run.run_dir) in result.output


def test_registry_name_errors_are_one_line(runner, tmp_path):
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (40, 40), (200, 30, 30)).save(image)
    _one_error_line(runner.invoke(main, ["predict", "lenet", str(image)]),
                    "unknown model 'lenet'. Did you mean lenet5", "No file or folder 'lenet'")
    _one_error_line(runner.invoke(main, ["predict", "lenet5", str(image)]),
                    "lenet5: unknown weights 'imagenet'")
    _one_error_line(runner.invoke(main, ["evaluate", "keras_mobilenet"]),
                    "registry model 'keras_mobilenet' has no saved split", "DATA_DIR")
    _one_error_line(runner.invoke(main, ["export", "keras_mobilenet", "--format", "tflite",
                                         "--quantize", "int8", "--output",
                                         str(tmp_path / "m.tflite")]),
                    "has no training images", "--calibration-data")
    result = runner.invoke(main, ["predict", "runs/missing", str(image)])
    assert result.exit_code == 2 and "'runs/missing' does not exist" in result.output


def test_predict_and_int8_export_of_a_random_lenet(runner, image_folder, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    image = next(image_folder.glob("red/*.png"))
    result = runner.invoke(main, ["predict", "lenet5", str(image), "--weights", "none",
                                  "--json", "--top-k", "10"])
    assert result.exit_code == 0, result.output
    predictions = json.loads(result.stdout)["predictions"]
    assert sorted(p["label"] for p in predictions) == [str(i) for i in range(10)]
    assert sum(p["score"] for p in predictions) == pytest.approx(1.0, abs=1e-5)

    target = tmp_path / "lenet5.tflite"
    result = runner.invoke(main, ["export", "lenet5", "--weights", "none", "--format", "tflite",
                                  "--quantize", "int8", "--calibration-data",
                                  str(image_folder / "red"), "--output", str(target)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"exported tflite (int8) to {target}")
    interpreter = Interpreter(model_path=str(target))
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert inp["dtype"] == np.uint8 and list(inp["shape"]) == [1, 32, 32, 3]
    assert list(out["shape"]) == [1, 10]
