"""``zoo data check`` through Click's CliRunner."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli.main import main


@pytest.fixture()
def folder(tmp_path):
    """Two classes of three PNGs, a broken download, and a stray system file."""
    rng = np.random.default_rng(0)
    for name in ("cat", "sea lion"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(3):
            pixels = (rng.random((10, 12, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / name / f"{i}.png")
    (tmp_path / "data" / "cat" / "download.jpg").write_text("<html>404</html>")
    (tmp_path / "data" / "cat" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return tmp_path / "data"


def test_check_reports_a_usable_folder(folder, tmp_path):
    runner = CliRunner()
    args = ["data", "check", str(folder), "--cache-dir", str(tmp_path / "cache")]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "6 usable image(s) in 2 class(es)" in result.output
    assert "classes: cat 3, sea lion 3" in result.output
    assert "cat/download.jpg: not an image" in result.output
    assert "usable: train 4, val 2" in result.output
    result = runner.invoke(main, args + ["--json"])
    report = json.loads(result.output)
    assert report["ok"] is True and report["usable"] == 6 and report["from_cache"] == 7
    assert {s["path"].split("data/")[1]: s["reason"] for s in report["skipped"]} == {
        "cat/download.jpg": "not an image", "cat/.DS_Store": "system or hidden file"}
    assert not (tmp_path / "cache" / "images").exists()  # a dry run writes no images


def test_check_fails_with_one_line_when_unusable(folder, tmp_path):
    for path in (folder / "sea lion").iterdir():
        path.write_bytes(b"")
    runner = CliRunner()
    args = ["data", "check", str(folder), "--cache-dir", str(tmp_path / "cache")]
    result = runner.invoke(main, args)
    assert result.exit_code == 1
    (line,) = [l for l in result.output.splitlines() if l.startswith("Error:")]
    assert "'sea lion' has 0" in line and "--drop-small-classes" in line
    result = runner.invoke(main, args + ["--drop-small-classes"])
    assert result.exit_code == 1 and "at least 2 classes with usable images" in result.output
    result = runner.invoke(main, args + ["--json"])
    assert result.exit_code == 1
    report = json.loads(result.output[:result.output.rindex("}") + 1])
    assert report["ok"] is False and report["class_counts"] == {"cat": 3, "sea lion": 0}


def test_check_tfds_offline_is_a_clean_error(tmp_path):
    result = CliRunner().invoke(main, ["data", "check", "tfds:mnist", "--tfds-data-dir",
                                       str(tmp_path), "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 1
    assert result.output.startswith("Error: TFDS dataset 'mnist' is not prepared")


def test_check_reports_segmentation_pairs_and_messy_ones(seg_folder, tmp_path):
    import shutil

    messy = tmp_path / "pairs"
    shutil.copytree(seg_folder, messy)
    (messy / "masks" / "img_000.png").unlink()  # an image without its mask
    result = CliRunner().invoke(main, ["data", "check", str(messy), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and report["pairs"] == 23
    assert [Path(s["path"]).name for s in report["skipped"]] == ["img_000.png"]
    assert set(report["pixel_frequencies"]) == {"background", "square", "disc"}


@pytest.mark.parametrize("command", [["data", "check"], ["train", "--model", "lenet5",
                                                         "--weights", "none"]])
@pytest.mark.parametrize("text,message", [
    ("path,label\n", " lists no images: it has no 'path,label' rows"),
    ("path,label\ngone/a.png,cat\ngone/b.png,dog\n",
     ": none of the 2 images it lists exist (first: "),
    ("gone/a.png,cat,train\nhere.png,dog,val\n",
     ": none of the 1 images of its 'train' rows exist (first: "),
])
def test_a_csv_without_usable_rows_is_one_line_naming_it(tmp_path, command, text, message):
    """Once a KeyError: 'all' from deep in the split code."""
    Image.new("RGB", (8, 8)).save(tmp_path / "here.png")
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text(text)
    args = [*command, str(csv_file), "--cache-dir", str(tmp_path / "cache")]
    if command[0] == "train":
        args += ["--output", str(tmp_path / "run")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    (line,) = [l for l in result.output.splitlines() if l.startswith("Error:")]
    assert line.startswith(f"Error: CSV file {str(csv_file)!r}{message}"), line


@pytest.mark.parametrize("present", ["images", "masks"])
def test_check_names_the_missing_half_of_a_segmentation_layout(tmp_path, present):
    data = tmp_path / "scenes"
    (data / present).mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(data / present / f"{i}.png")
    result = CliRunner().invoke(main, ["data", "check", str(data), "--cache-dir",
                                       str(tmp_path / "cache")])
    assert result.exit_code == 1
    if present == "images":
        assert result.output.strip() == (
            f"Error: {str(data)!r} has images/ but no masks/: for segmentation add masks/, "
            f"one PNG per image with the same file name, each pixel its class index (0, 1, "
            f"...); for classification put the images in one sub-folder per class")
    else:
        assert result.output.strip() == (
            f"Error: {str(data)!r} has masks/ but no images/: for segmentation add images/, "
            f"the image of each mask with the same file name")


def test_the_advice_to_see_every_file_is_a_command_that_shows_them(folder, tmp_path):
    """A failed check prints its error line only: the advice is the --json report."""
    for path in (folder / "sea lion").iterdir():
        path.write_bytes(b"")
    runner = CliRunner()
    cache = ["--cache-dir", str(tmp_path / "cache")]
    result = runner.invoke(main, ["data", "check", str(folder), "--drop-small-classes", *cache])
    assert result.exit_code == 1
    (line,) = [l for l in result.output.splitlines() if l.startswith("Error:")]
    assert line.endswith(f"; run 'zoo data check {folder} --json' to see every file")
    result = runner.invoke(main, ["data", "check", str(folder), "--json", *cache])
    report = json.loads(result.output[:result.output.rindex("}") + 1])
    assert {Path(s["path"]).parent.name for s in report["skipped"]} == {"cat", "sea lion"}
