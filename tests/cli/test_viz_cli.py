"""``zoo viz ...``, ``zoo adversarial``, ``zoo embed``, ``zoo similar``, ``zoo report`` through
CliRunner, on a trained run and on a registry model (LeNet-5, random weights)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from cli.main import main


@pytest.fixture()
def runner():
    return CliRunner()


def _invoke(runner, args):
    result = runner.invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def _pngs(output: str) -> list[Path]:
    paths = [Path(line) for line in output.splitlines()
             if line.endswith(".png") and "\t" not in line]
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) >= 100, (path, image.size)
    return paths


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory, image_folder):
    """The colour folder with classes renamed 0, 1, 2: labels a registry model understands."""
    root = tmp_path_factory.mktemp("digits")
    for i, name in enumerate(("blue", "green", "red")):
        shutil.copytree(image_folder / name, root / str(i))
    return root


@pytest.mark.parametrize("kind", ["run", "registry"])
def test_viz_commands(runner, trained_run, image_folder, tmp_path, kind):
    model = trained_run.run_dir if kind == "run" else "lenet5"
    image = sorted(image_folder.glob("red/*.png"))[0]
    other = sorted(image_folder.glob("blue/*.png"))[0]
    out = tmp_path / "viz"
    label = "red" if kind == "run" else "3"

    (path,) = _pngs(_invoke(runner, ["viz", "filters", model, "-o", out]).output)
    assert path.name.startswith("filters_") and "c1_conv" in path.name
    (path,) = _pngs(_invoke(runner, ["viz", "activations", model, image, "--layer", "c3_conv",
                                     "-o", out]).output)
    prefix = "backbone" if kind == "run" else "lenet5"
    assert path.name == f"activations_red_00_{prefix}_c3_conv.png"
    paths = _pngs(_invoke(runner, ["viz", "gradcam", model, image, other, "--class", label,
                                   "-o", out]).output)
    assert [p.name for p in paths] == ["gradcam_red_00.png", "gradcam_blue_00.png"]
    (path,) = _pngs(_invoke(runner, ["viz", "maximize", model, "--layer", "c3_conv",
                                     "--channel", "2", "--steps", "8", "-o", out]).output)
    assert path.name == "maximize_c3_conv_channel2.png"
    (path,) = _pngs(_invoke(runner, ["viz", "maximize", model, "--class", label, "--steps", "8",
                                     "-o", out]).output)
    assert path.name == f"maximize_class_{'red' if kind == 'run' else '3'}.png"
    (path,) = _pngs(_invoke(runner, ["viz", "maximize", model, "--layer", "c3_conv", "--image",
                                     image, "--steps", "4", "--octaves", "2", "-o", out]).output)
    assert path.name == "dream_red_00_c3_conv.png"


@pytest.mark.parametrize("kind", ["run", "registry"])
def test_adversarial_on_an_image_and_a_folder(runner, trained_run, image_folder, digit_folder,
                                              tmp_path, kind):
    model = trained_run.run_dir if kind == "run" else "lenet5"
    data = image_folder if kind == "run" else digit_folder
    image = sorted(image_folder.glob("green/*.png"))[0]
    result = _invoke(runner, ["adversarial", model, image, "--eps", "4", "-o", tmp_path])
    (panel,) = _pngs(result.output)
    report = json.loads((tmp_path / "adversarial_green_00.json").read_text())
    assert panel.name == "adversarial_green_00.png" and report["eps"] == 4
    assert report["linf"] <= 4 + 1e-4 and len(report["before"]) == len(report["after"]) == 3
    assert "before:" in result.output and "after:" in result.output

    result = _invoke(runner, ["adversarial", model, data, "--epsilons", "0,4,16",
                              "--max-images", "12", "-o", tmp_path])
    _pngs(result.output)
    curve = json.loads((tmp_path / "robustness.json").read_text())
    assert curve["epsilons"] == [0, 4, 16] and curve["samples"] == 12
    assert all(0 <= a <= 1 for a in curve["accuracy"])


def test_adversarial_folder_needs_the_models_classes(runner, image_folder, tmp_path):
    result = runner.invoke(main, ["adversarial", "lenet5", str(image_folder), "-o",
                                  str(tmp_path)])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert "are not class indices" in line and "Traceback" not in result.output


@pytest.mark.parametrize("kind", ["run", "registry"])
def test_embed_then_similar(runner, trained_run, image_folder, tmp_path, kind):
    model = trained_run.run_dir if kind == "run" else "lenet5"
    index = tmp_path / "index"
    result = _invoke(runner, ["embed", model, image_folder, "--output", index])
    assert "36 images" in result.output
    assert (tmp_path / "index.npz").is_file() and (tmp_path / "index.json").is_file()

    query = sorted(image_folder.glob("blue/*.png"))[3]
    result = _invoke(runner, ["similar", f"{index}.npz", query, "--k", "4", "-o", tmp_path])
    rows = [line.split("\t") for line in result.output.splitlines() if "\t" in line]
    assert len(rows) == 4 and rows[0][0] == "1" and float(rows[0][1]) < 1e-4
    assert rows[0][3] == str(query.resolve()) and rows[0][2] == "blue"
    (strip,) = _pngs(result.output)
    assert strip.name == "similar_blue_03.png"
    result = _invoke(runner, ["similar", index, query, "--json", "-o", tmp_path])
    assert json.loads(result.output)["matches"][0]["distance"] < 1e-4


def test_report_and_default_output_is_the_run_dir(runner, trained_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run.run_dir, run_dir, ignore=shutil.ignore_patterns("saved_model"))
    result = _invoke(runner, ["report", run_dir])
    assert result.output.strip() == str(run_dir / "report.html")
    page = (run_dir / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') >= 4 and "http" not in page

    (path,) = _pngs(_invoke(runner, ["viz", "filters", run_dir / "model.keras"]).output)
    assert path.parent == run_dir


def test_registry_default_output_is_viz(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (path,) = _pngs(_invoke(runner, ["viz", "filters", "lenet5"]).output)
    assert path == Path("viz") / "filters_lenet5_c1_conv.png"


def test_errors_are_one_clean_line(runner, trained_run, tmp_path):
    run_dir = str(trained_run.run_dir)
    cases = [
        (["viz", "filters", run_dir, "--layer", "nope", "-o", str(tmp_path)],
         "no layer named 'nope'"),
        (["viz", "filters", run_dir, "--layer", "s2_pool", "-o", str(tmp_path)],
         "not a 2-D convolution"),
        (["viz", "gradcam", run_dir, str(tmp_path / "missing.png"), "-o", str(tmp_path)],
         "does not exist"),
        (["viz", "filters", "lenet", "-o", str(tmp_path)], "Did you mean lenet5"),
        (["viz", "maximize", run_dir, "--class", "purple", "-o", str(tmp_path)],
         "unknown class 'purple'"),
        (["similar", str(tmp_path / "none"), run_dir + "/class_names.json"],
         "written by 'zoo embed'"),
        (["report", str(tmp_path)], "has no model.keras"),
    ]
    for args, message in cases:
        result = runner.invoke(main, args)
        assert result.exit_code == 1, (args, result.output)
        (line,) = result.output.strip().splitlines()
        assert message in line and "Traceback" not in result.output, (args, result.output)

    result = runner.invoke(main, ["viz", "maximize", run_dir, "--channel", "1", "--class", "red"])
    assert result.exit_code == 2 and "not both" in result.output
    result = runner.invoke(main, ["viz", "maximize", run_dir])
    assert result.exit_code == 2 and "--layer" in result.output


def test_help_lists_the_commands(runner):
    result = _invoke(runner, ["--help"])
    for command in ("viz", "adversarial", "embed", "similar", "report"):
        assert command in result.output
    result = _invoke(runner, ["viz", "--help"])
    for command in ("filters", "activations", "gradcam", "maximize"):
        assert command in result.output
