"""Nothing lost, no traceback: every command that writes refuses to lose a user's files, and
every bad input ends in one line and a non-zero exit."""

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli.main import main
from tests.conftest import make_image_folder


@pytest.fixture()
def runner():
    return CliRunner()


def _snapshot(root):
    return sorted((str(p.relative_to(root)), p.read_bytes() if p.is_file() else b"")
                  for p in root.rglob("*"))


def _one_error_line(result):
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # nothing escaped
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    return lines[-1]


TRAIN = ["--model", "lenet5", "--mode", "full-retrain", "--weights", "none", "--epochs", "1",
         "--batch-size", "8"]


def test_train_never_overwrites_its_own_data(runner, tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=4)
    before = _snapshot(data)
    result = runner.invoke(main, ["train", str(data), *TRAIN, "--output", str(data),
                                  "--overwrite"])
    assert "is the data" in _one_error_line(result)
    result = runner.invoke(main, ["train", str(data / "red"), *TRAIN, "--output",
                                  str(data / "red" / "run")])
    assert "lies inside the data" in _one_error_line(result)
    assert _snapshot(data) == before


def test_train_overwrite_never_wipes_a_folder_it_did_not_write(runner, tmp_path, image_folder):
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "thesis.tex").write_text("chapter 1")
    (folder / "notes.txt").write_text("notes")
    before = _snapshot(folder)
    result = runner.invoke(main, ["train", str(image_folder), *TRAIN, "--output", str(folder),
                                  "--overwrite"])
    line = _one_error_line(result)
    assert "was not written by zoo, so --overwrite does not replace it" in line
    assert _snapshot(folder) == before


def test_train_overwrite_keeps_a_file_the_user_put_into_a_run(runner, tmp_path, trained_run):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run.run_dir, run)
    (run / "my_notes.md").write_text("what I tried")
    result = runner.invoke(main, ["train", str(run.parent), *TRAIN, "--output", str(run),
                                  "--overwrite"])  # the data (run.parent) holds the run: refused
    assert "contains the data" in _one_error_line(result) or "lies inside" in result.output
    result = runner.invoke(main, ["train", str(trained_run.run_dir.parent), *TRAIN, "--output",
                                  str(run), "--overwrite"])
    assert "holds 'my_notes.md', which zoo did not write" in _one_error_line(result)
    assert (run / "my_notes.md").read_text() == "what I tried"


def test_export_force_never_removes_the_run_being_exported(runner, tmp_path, trained_run):
    parent = trained_run.run_dir.parent
    before = _snapshot(parent)
    result = runner.invoke(main, ["export", str(trained_run.run_dir), "--format", "savedmodel",
                                  "--output", str(parent), "--force"])
    assert "contains the model being exported" in _one_error_line(result)
    assert _snapshot(parent) == before


def test_export_force_replaces_only_its_own_export(runner, tmp_path, trained_run):
    out = tmp_path / "model.keras"
    args = ["export", str(trained_run.run_dir), "--format", "keras", "--output", str(out)]
    assert runner.invoke(main, args).exit_code == 0
    assert "cnn-zoo.json" in zipfile.ZipFile(out).namelist()
    assert "pass --force" in _one_error_line(runner.invoke(main, args))
    result = runner.invoke(main, [*args, "--force"])
    assert result.exit_code == 0, result.output

    foreign = tmp_path / "theirs.keras"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("config.json", "{}")
    before = foreign.read_bytes()
    result = runner.invoke(main, [*args[:-1], str(foreign), "--force"])
    assert "was not written by zoo, so --force does not replace it" in _one_error_line(result)
    assert foreign.read_bytes() == before


def test_lr_find_never_replaces_a_plot_without_force(runner, tmp_path, image_folder):
    plot = tmp_path / "existing.png"
    Image.fromarray(np.full((8, 8, 3), 7, np.uint8)).save(plot)
    before = plot.read_bytes()
    args = ["lr-find", str(image_folder), "--model", "lenet5", "--weights", "none", "--mode",
            "full-retrain", "--batch-size", "8", "--steps", "10", "--plot", str(plot)]
    assert "pass --force" in _one_error_line(runner.invoke(main, args))
    assert "was not written by zoo" in _one_error_line(runner.invoke(main, [*args, "--force"]))
    assert plot.read_bytes() == before

    ours = tmp_path / "lr.png"
    args[-1] = str(ours)
    assert runner.invoke(main, args).exit_code == 0
    assert runner.invoke(main, [*args, "--force"]).exit_code == 0


def test_embed_never_replaces_an_index_without_force(runner, tmp_path, trained_run, image_folder):
    index = tmp_path / "index"
    (tmp_path / "index.json").write_text(json.dumps({"mine": True}))
    args = ["embed", str(trained_run.run_dir), str(image_folder), "--output", str(index)]
    assert "pass --force" in _one_error_line(runner.invoke(main, args))
    assert "not written by zoo" in _one_error_line(runner.invoke(main, [*args, "--force"]))
    assert json.loads((tmp_path / "index.json").read_text()) == {"mine": True}


# ---- no traceback, whatever the input -----------------------------------------------------------

@pytest.fixture()
def bad(tmp_path):
    """A few bad inputs: an empty folder, a folder that is no run, a file that is no index."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "norun").mkdir()
    (tmp_path / "norun" / "notes.txt").write_text("x")
    (tmp_path / "index.json").write_text("{not json")
    (tmp_path / "index.npz").write_bytes(b"nope")
    (tmp_path / "file.txt").write_text("a file where a folder is expected")
    return tmp_path


@pytest.mark.parametrize("args", [
    ["train", "{empty}", *TRAIN, "--output", "{tmp}/run"],
    ["train", "{norun}", *TRAIN, "--output", "{tmp}/run"],
    ["data", "check", "{empty}"],
    ["predict", "{norun}", "{norun}/notes.txt"],
    ["evaluate", "{norun}", "{empty}"],
    ["export", "{norun}", "--format", "keras", "--output", "{tmp}/m.keras"],
    ["report", "{norun}"],
    ["viz", "filters", "{norun}"],
    ["similar", "{tmp}/index", "{norun}/notes.txt"],
    ["train", "--resume", "{norun}"],
    ["train", "{empty}", *TRAIN, "--output", "{tmp}/file.txt/run"],
], ids=lambda a: " ".join(a[:2]))
def test_every_command_answers_bad_input_in_one_line(runner, bad, args):
    folders = {"empty": bad / "empty", "norun": bad / "norun", "tmp": bad}
    result = runner.invoke(main, [a.format(**folders) for a in args])
    _one_error_line(result)


def test_an_unexpected_error_is_one_line_and_verbose_shows_it(runner, monkeypatch):
    import zoo.info

    def broken(*args, **kwargs):
        raise TypeError("something internal")

    monkeypatch.setattr(zoo.info, "model_info", broken)
    line = _one_error_line(runner.invoke(main, ["info", "lenet5"]))
    assert line == ("Error: unexpected TypeError: something internal. This is a bug in zoo; run "
                    "the command again with 'zoo -v ...' for the traceback, and report it")
    result = runner.invoke(main, ["-v", "info", "lenet5"])
    assert isinstance(result.exception, TypeError)


def test_a_real_process_prints_no_traceback(tmp_path):
    """The same through the console entry point, as a user runs it."""
    (tmp_path / "file.txt").write_text("x")
    done = subprocess.run([sys.executable, "-c", "from cli.main import main; main()", "train",
                           str(tmp_path / "missing"), "--output", str(tmp_path / "file.txt")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout


def test_evaluate_replaces_its_own_results_and_never_a_users(runner, tmp_path, trained_run,
                                                             image_folder):
    out = tmp_path / "evaluation"
    args = ["evaluate", str(trained_run.run_dir), str(image_folder), "--output", str(out)]
    for _ in range(2):  # a re-run replaces what the first wrote
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "metrics.json").write_text('{"mine": 1}')
    (theirs / "other.txt").write_text("x")
    result = runner.invoke(main, [*args[:-1], str(theirs)])
    assert "already exists and was not written by zoo" in _one_error_line(result)
    assert (theirs / "metrics.json").read_text() == '{"mine": 1}'
