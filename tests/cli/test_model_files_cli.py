"""``.keras`` files the toolkit did not write, or that are damaged, given to train, predict,
evaluate and export: one line saying what is wrong and what to do, never a traceback."""

import keras
import pytest
from click.testing import CliRunner

from cli.main import main
from tests.conftest import make_image_folder

COMMANDS = ["train", "predict", "evaluate", "export"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    data = make_image_folder(root / "data", per_class=3, size=(16, 16))

    @keras.saving.register_keras_serializable(package="elsewhere")
    class Twice(keras.layers.Layer):
        def call(self, x):
            return x * 2

    image = keras.Input((16, 16, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(image)
    keras.Model(image, keras.layers.Dense(2)(pooled)).save(root / "plain.keras")
    keras.Model(image, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(
        Twice()(image)))).save(root / "custom.keras")
    # the class is defined only where the model was made, as in a fresh process
    del keras.saving.get_custom_objects()["elsewhere>Twice"]
    keras.Model(image, [keras.layers.Dense(3)(pooled), keras.layers.Dense(2)(pooled)]).save(
        root / "two_outputs.keras")
    keras.Model(image, keras.layers.Conv2D(2, 1)(image)).save(root / "maps.keras")
    gray = keras.Input((16, 16, 1))
    keras.Model(gray, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(gray))).save(
        root / "gray.keras")
    keras.Sequential([keras.Input((10,)), keras.layers.Dense(3)]).save(root / "vector.keras")
    whole = (root / "plain.keras").read_bytes()
    (root / "truncated.keras").write_bytes(whole[:len(whole) // 2])
    (root / "empty.keras").write_bytes(b"")
    return root, data


def _args(command, model, root, data):
    return {"train": ["train", str(data), "--model", str(model), "--epochs", "1",
                      "--output", str(root / "run")],
            "predict": ["predict", str(model), str(next(data.glob("red/*.png")))],
            "evaluate": ["evaluate", str(model), str(data)],
            "export": ["export", str(model), "--output", str(root / "export")]}[command]


def _error_line(result):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output, result.output
    lines = [l for l in result.output.splitlines() if l.startswith("Error:")]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_custom_layer_is_named_with_what_to_do(files, command):
    root, data = files
    model = root / "custom.keras"
    line = _error_line(CliRunner().invoke(main, _args(command, model, root, data)))
    assert line == (f"Error: model file {str(model)!r} uses the layer class 'Twice' "
                    f"('elsewhere>Twice'), which is not part of Keras or this toolkit; pass "
                    f"--custom-objects MODULE naming the module that defines and registers it, "
                    f"or rebuild the model from Keras's own layers")


@pytest.mark.parametrize("name", ["truncated", "empty"])
@pytest.mark.parametrize("command", COMMANDS)
def test_a_damaged_model_file_is_called_damaged_not_missing(files, command, name):
    root, data = files
    model = root / f"{name}.keras"
    line = _error_line(CliRunner().invoke(main, _args(command, model, root, data)))
    assert line.startswith(f"Error: model file {str(model)!r} is damaged or not a .keras "
                           f"file ("), line
    assert "not found" not in line.lower()
    assert line.endswith("; export it or train it again"), line


def test_training_from_a_model_not_made_by_the_toolkit_says_what_to_pass(files):
    root, data = files
    model = root / "plain.keras"
    line = _error_line(CliRunner().invoke(main, _args("train", model, root, data)))
    assert line == (f"Error: model file {str(model)!r} was not made by 'zoo train' (it has no "
                    f"'backbone' layer), so there is no backbone to transfer from it; pass a "
                    f"registry name (see 'zoo list') or the model.keras of a 'zoo train' run")


@pytest.mark.parametrize("name,what", [
    ("two_outputs", "it has 2 outputs"),
    ("maps", "its output has shape (None, 16, 16, 2)"),
    ("gray", "it takes 1-channel images"),
    ("vector", "its input has shape (None, 10)"),
])
@pytest.mark.parametrize("command", ["predict", "evaluate", "export"])
def test_a_foreign_model_that_is_no_image_classifier_is_refused(files, command, name, what):
    root, data = files
    model = root / f"{name}.keras"
    line = _error_line(CliRunner().invoke(main, _args(command, model, root, data)))
    assert line.startswith(f"Error: model file {str(model)!r} is not an image classifier this "
                           f"toolkit can serve: {what}; "), line
    assert line.endswith("pass a run directory of 'zoo train', or a .keras classifier taking "
                         "square RGB images and giving one vector of class scores"), line


# issue 28: models with code in them load by choice (--trust-model), custom layers by importing
# the module that registers them (--custom-objects).
TRUST_WARNING = "with --trust-model (Keras safe_mode=False): arbitrary code in the file"


def _lambda_model(path):
    image = keras.Input((16, 16, 3))
    halved = keras.layers.Lambda(lambda x: x / 2.0)(image)
    keras.Model(image, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(halved))
                ).save(path)
    return path


def test_a_lambda_layer_is_refused_without_trust_model_and_runs_with_it(tmp_path):
    model = _lambda_model(tmp_path / "lambda.keras")
    image = next(make_image_folder(tmp_path / "data", per_class=1, size=(16, 16)).glob("*/*"))
    line = _error_line(CliRunner().invoke(main, ["predict", str(model), str(image)]))
    assert line == (f"Error: model file {str(model)!r} holds arbitrary code (a Lambda layer), "
                    f"which is refused in safe mode; if you trust its source, pass "
                    f"--trust-model (Python: trust_model=True) to run it")
    result = CliRunner().invoke(main, ["predict", str(model), str(image), "--trust-model"])
    assert result.exit_code == 0, result.output
    assert [line for line in result.output.splitlines() if TRUST_WARNING in line] == [
        f"loading {str(model)!r} {TRUST_WARNING}, e.g. a Lambda layer, will run; use it only "
        f"for files you trust"]
    assert f"{image}\t" in result.output


def test_a_registered_custom_layer_loads_with_custom_objects(tmp_path, monkeypatch):
    import importlib
    import sys

    (tmp_path / "zoo_issue28_layers.py").write_text(
        "import keras\n\n\n"
        "@keras.saving.register_keras_serializable(package='issue28')\n"
        "class Thrice(keras.layers.Layer):\n"
        "    def call(self, x):\n"
        "        return x * 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    layers = importlib.import_module("zoo_issue28_layers")
    image = keras.Input((16, 16, 3))
    keras.Model(image, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(
        layers.Thrice()(image)))).save(tmp_path / "thrice.keras")
    # as in a fresh process: neither the module nor its registration is there
    del keras.saving.get_custom_objects()["issue28>Thrice"]
    del sys.modules["zoo_issue28_layers"]
    picture = next(make_image_folder(tmp_path / "data", per_class=1, size=(16, 16)).glob("*/*"))
    args = ["predict", str(tmp_path / "thrice.keras"), str(picture)]
    assert "--custom-objects MODULE" in _error_line(CliRunner().invoke(main, args))
    line = _error_line(CliRunner().invoke(main, [*args, "--custom-objects", "os,no_such_mod"]))
    assert line.startswith("Error: --custom-objects module 'no_such_mod' cannot be imported "
                           "(ModuleNotFoundError: No module named 'no_such_mod'); "), line
    result = CliRunner().invoke(main, [*args, "--custom-objects", "zoo_issue28_layers"])
    assert result.exit_code == 0, result.output
    assert f"{picture}\t" in result.output
    keras.saving.get_custom_objects().pop("issue28>Thrice", None)
