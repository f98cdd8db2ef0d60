"""``zoo evaluate``, ``zoo export`` and ``zoo predict --csv`` through Click's CliRunner."""

import csv
import io
import json
import shutil
import sys

import pytest
from click.testing import CliRunner

from cli.main import main


@pytest.fixture()
def runner():
    return CliRunner()


@pytest.fixture(scope="module")
def run_dir(trained_run, tmp_path_factory):
    """A copy of the session's run directory: exports write MODEL_CARD.md into it."""
    return shutil.copytree(trained_run.run_dir, tmp_path_factory.mktemp("cli") / "run")


def _one_error_line(result, *fragments):
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: ") and "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in line


def test_evaluate_prints_a_report_and_writes_the_files(runner, run_dir, tmp_path):
    out = tmp_path / "eval"
    result = runner.invoke(main, ["evaluate", str(run_dir), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "top-1 accuracy" in result.stdout and "macro avg" in result.stdout
    for name in ("metrics.json", "confusion_matrix.png", "mistakes.png"):
        assert (out / name).is_file()

    result = runner.invoke(main, ["evaluate", str(run_dir), "--output", str(out), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["samples"] == 6 and metrics["class_names"] == ["blue", "green", "red"]


def test_evaluate_errors(runner, run_dir, image_folder, tmp_path):
    result = runner.invoke(main, ["evaluate", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "does not exist" in result.output
    _one_error_line(runner.invoke(main, ["evaluate", str(tmp_path)]), "not a run directory")
    data = tmp_path / "data"
    shutil.copytree(image_folder / "red", data / "cat")
    _one_error_line(runner.invoke(main, ["evaluate", str(run_dir), str(data)]),
                    "'cat'", "not classes of the model")


def test_export_tflite_then_refuse_then_force(runner, run_dir, tmp_path):
    target = tmp_path / "model.tflite"
    args = ["export", str(run_dir), "--format", "tflite", "--output", str(target)]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert f"exported tflite (float32) to {target}" in result.stdout
    size = target.stat().st_size

    _one_error_line(runner.invoke(main, args), "already exists", "--force")
    assert target.stat().st_size == size

    result = runner.invoke(main, [*args[:-2], "--quantize", "float16", "--output", str(target),
                                  "--force"])
    assert result.exit_code == 0, result.output
    assert target.stat().st_size < size
    assert "## Exports and their input contracts" in (run_dir / "MODEL_CARD.md").read_text()


def test_export_errors(runner, run_dir, tmp_path):
    result = runner.invoke(main, ["export", str(run_dir), "--format", "torchscript",
                                  "--output", str(tmp_path / "m")])
    assert result.exit_code == 2 and "Invalid value for '--format'" in result.output
    result = runner.invoke(main, ["export", str(tmp_path / "missing"), "--output", "x"])
    assert result.exit_code == 2 and "does not exist" in result.output
    result = runner.invoke(main, ["export", str(run_dir), "--format", "keras"])
    assert result.exit_code == 2 and "Missing option '--output'" in result.output
    _one_error_line(runner.invoke(main, ["export", str(run_dir), "--format", "keras",
                                         "--quantize", "int8", "--output",
                                         str(tmp_path / "m.keras")]),
                    "tflite format only")
    _one_error_line(runner.invoke(main, ["export", str(tmp_path), "--output",
                                         str(tmp_path / "sm")]),
                    "not a run directory")


def test_export_onnx_prints_its_opset_and_errors_are_one_line(runner, run_dir, tmp_path,
                                                              monkeypatch):
    pytest.importorskip("tf2onnx")
    target = tmp_path / "model.onnx"
    result = runner.invoke(main, ["export", str(run_dir), "--format", "onnx", "--opset", "17",
                                  "--output", str(target)])
    assert result.exit_code == 0, result.output
    assert f"exported onnx (opset 17) to {target}" in result.stdout
    assert "| ONNX (`zoo export --format onnx`)" in (run_dir / "MODEL_CARD.md").read_text()
    _one_error_line(runner.invoke(main, ["export", str(run_dir), "--format", "tflite",
                                         "--opset", "17", "--output", str(tmp_path / "m")]),
                    "onnx format only")
    _one_error_line(runner.invoke(main, ["export", str(run_dir), "--format", "onnx",
                                         "--opset", "9", "--output", str(tmp_path / "m.onnx")]),
                    "opset must be an integer from 14")
    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    _one_error_line(runner.invoke(main, ["export", str(run_dir), "--format", "onnx",
                                         "--output", str(tmp_path / "n.onnx")]),
                    "needs tf2onnx", 'pip install "cnn-zoo[onnx]"')


def test_predict_csv_with_progress_for_many_files(runner, trained_run, image_folder):
    result = runner.invoke(main, ["predict", str(trained_run.run_dir), str(image_folder),
                                  "--csv", "--top-k", "2"])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["path", "label_1", "score_1", "label_2", "score_2", "error"]
    assert len(rows) == 1 + 36
    assert all(row[1] in {"red", "green", "blue"} and 0 <= float(row[2]) <= 1 and row[5] == ""
               for row in rows[1:])
    assert "predicting 36 files" in result.stderr  # more than 20 files: a progress bar
    result = runner.invoke(main, ["predict", str(trained_run.run_dir), str(image_folder),
                                  "--csv", "--json"])
    assert result.exit_code == 2 and "exclusive" in result.output


def test_predict_reads_every_kind_tensorflow_decodes(runner, trained_run, image_folder, tmp_path):
    from PIL import Image

    folder = tmp_path / "mixed"
    folder.mkdir()
    source = Image.open(next(image_folder.glob("red/*.png"))).convert("RGB")
    for suffix in ("webp", "jpg", "gif", "bmp"):
        source.save(folder / f"red.{suffix}")
    (folder / "notes.txt").write_text("not an image")  # not searched for in folders
    (folder / "fake.png").write_text("not an image either")  # searched for, reported
    result = runner.invoke(main, ["predict", str(trained_run.run_dir), str(folder), "--json"])
    assert result.exit_code == 0, result.output
    rows = {json.loads(line)["path"].rsplit("/", 1)[1]: json.loads(line)
            for line in result.stdout.splitlines()}
    assert set(rows) == {"red.webp", "red.jpg", "red.gif", "red.bmp", "fake.png"}
    assert "error" in rows["fake.png"]
    assert all("predictions" in rows[f"red.{s}"] for s in ("webp", "jpg", "gif", "bmp"))
    assert "1 of 5 file(s) could not be read" in result.stderr


def test_predict_skips_a_file_that_is_no_image_with_a_warning(runner, trained_run,
                                                                image_folder, tmp_path):
    image = next(image_folder.glob("red/*.png"))
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    result = runner.invoke(main, ["predict", str(trained_run.run_dir), str(image), str(notes)])
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    assert line.startswith(f"{image}\t")
    assert result.stderr.splitlines() == [
        f"skipped {notes}: not a JPEG, PNG, GIF, BMP or WebP image",
        "1 of 2 file(s) could not be read and were skipped"]


def test_predict_with_nothing_readable_is_one_error_line(runner, trained_run, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    for extra in ([], ["--json"], ["--csv"]):
        result = runner.invoke(main, ["predict", str(trained_run.run_dir), str(notes), *extra])
        _one_error_line(result)
        assert result.output.strip() == (
            f"Error: nothing to predict: {str(notes)!r} is not a JPEG, PNG, GIF, BMP or WebP "
            f"image; pass image files in one of those formats, or folders of them")
    import transfer

    with pytest.raises(transfer.DataError, match="nothing to predict: .*notes.txt' is not a"):
        transfer.predict(trained_run.run_dir, [str(notes)])
    more = [tmp_path / f"n{i}.txt" for i in range(4)]
    for path in more:
        path.write_text("no")
    result = runner.invoke(main, ["predict", str(trained_run.run_dir), *map(str, more)])
    _one_error_line(result, "nothing to predict: none of the 4 files is a readable JPEG, "
                            f"PNG, GIF, BMP or WebP image ({str(more[0])!r}, {str(more[1])!r}, "
                            f"{str(more[2])!r} and 1 more)")


def test_predict_on_an_empty_folder_is_one_error_line(runner, trained_run, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not searched for")
    result = runner.invoke(main, ["predict", str(trained_run.run_dir), str(empty)])
    _one_error_line(result)
    assert result.output.strip() == (
        f"Error: the folder {str(empty)!r} holds no image files (searched "
        f"for .bmp, .gif, .jfif, .jpe, .jpeg, .jpg, .png, .webp)")


def test_evaluate_names_a_task_mismatch_between_run_and_data(runner, run_dir, seg_folder,
                                                             image_folder, tmp_path):
    result = runner.invoke(main, ["evaluate", str(run_dir), str(seg_folder)])
    _one_error_line(result)
    assert result.output.strip() == (
        f"Error: {str(run_dir)!r} is a classification model but {str(seg_folder)!r} is a "
        f"segmentation layout (images/ + masks/); evaluate it with a segmentation run, or pass "
        f"a folder with one sub-folder per class")

    # The converse. Evaluate reads the task from contract.json and checks the layout before
    # predicting anything, so a classifier's run relabelled as a segmenter stands in for one.
    seg_run = shutil.copytree(run_dir, tmp_path / "seg_run")
    contract = json.loads((seg_run / "contract.json").read_text())
    contract.update(task="segmentation", ignore_index=255)
    (seg_run / "contract.json").write_text(json.dumps(contract))
    result = runner.invoke(main, ["evaluate", str(seg_run), str(image_folder)])
    _one_error_line(result)
    assert result.output.strip() == (
        f"Error: {str(seg_run)!r} is a segmentation model but {str(image_folder)!r} is a "
        f"classification layout (one sub-folder per class); evaluate it with a classification "
        f"run, or pass a folder of images/ + masks/")


def test_evaluate_without_a_saved_split_describes_the_data_of_the_runs_task(runner, run_dir,
                                                                             tmp_path):
    bare = shutil.copytree(run_dir, tmp_path / "bare")
    (bare / "split.json").unlink()
    _one_error_line(runner.invoke(main, ["evaluate", str(bare)]),
                    "has no split.json to evaluate on; pass DATA_DIR, a folder with one "
                    "sub-folder per class")
    # a segmentation run (a classifier's run relabelled in contract.json) is told of the
    # images/ + masks/ it reads
    contract = json.loads((bare / "contract.json").read_text())
    contract.update(task="segmentation", ignore_index=255)
    (bare / "contract.json").write_text(json.dumps(contract))
    _one_error_line(runner.invoke(main, ["evaluate", str(bare)]),
                    "has no split.json to evaluate on; pass DATA_DIR, a folder of images/ + "
                    "masks/")
