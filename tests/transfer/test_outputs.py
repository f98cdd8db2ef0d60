"""transfer.outputs: the toolkit writes over and removes only what it can prove it wrote."""

import json

import numpy as np
import pytest
from PIL import Image

from transfer import outputs, plots
from transfer.errors import RunDirError
from transfer.rundir import RunDir, atomic_write


def _user_folder(root):
    root.mkdir(parents=True)
    (root / "thesis.tex").write_text("chapter 1")
    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("finish")
    return root


def _contents(root):
    return sorted((str(p.relative_to(root)), p.read_bytes() if p.is_file() else b"")
                  for p in root.rglob("*"))


def test_a_marked_folder_is_owned_until_a_foreign_file_lands_in_it(tmp_path):
    run = RunDir.create(tmp_path / "run")
    atomic_write(run / "notes.json", "{}")  # claimed as it is written
    (run.path / "logs").mkdir()  # part of a run's layout
    assert outputs.unowned(run.path) is None
    (run.path / "mine.txt").write_text("user")
    assert outputs.unowned(run.path) == run.path / "mine.txt"
    with pytest.raises(RunDirError, match=r"holds 'mine.txt', which zoo did not write, so "
                                          r"--overwrite does not replace it"):
        RunDir.create(run.path, overwrite=True)
    assert (run.path / "mine.txt").read_text() == "user"
    assert (run / "notes.json").is_file()


def test_overwrite_replaces_a_run_the_toolkit_wrote(tmp_path):
    run = RunDir.create(tmp_path / "run")
    run.write_json("metrics.json", {"a": 1})
    again = RunDir.create(tmp_path / "run", overwrite=True)
    assert [p.name for p in again.path.iterdir()] == [outputs.MARKER]


def test_a_folder_without_a_marker_is_never_replaced(tmp_path):
    folder = _user_folder(tmp_path / "thesis")
    before = _contents(folder)
    with pytest.raises(RunDirError, match=r"'.*thesis' was not written by zoo, so --overwrite"):
        RunDir.create(folder, overwrite=True)
    with pytest.raises(RunDirError):
        outputs.remove(folder)
    with pytest.raises(RunDirError):
        outputs.clear(folder)
    assert _contents(folder) == before


def test_an_empty_folder_is_used_and_a_missing_one_made(tmp_path):
    (tmp_path / "empty").mkdir()
    outputs.check_output(tmp_path / "empty")
    outputs.check_output(tmp_path / "new" / "deeper")


@pytest.mark.parametrize("output, words", [
    (".", "is the data"), ("..", "contains the data"), ("./run", "lies inside the data")])
def test_an_output_never_is_holds_or_lies_inside_the_data(tmp_path, output, words):
    data = _user_folder(tmp_path / "data")
    with pytest.raises(RunDirError, match=words):
        RunDir.check_new(data / output, overwrite=True, data=data)


def test_an_output_never_is_or_holds_what_the_command_reads(tmp_path):
    run = RunDir.create(tmp_path / "runs" / "big")
    model = run.path / "model.keras"
    model.write_bytes(b"model")
    reads = [(model, "the model being read")]
    with pytest.raises(RunDirError, match=r"contains the model being read"):
        outputs.check_output(tmp_path / "runs", replace=True, reads=reads)
    with pytest.raises(RunDirError, match=r"is the model being read"):
        outputs.check_output(model, replace=True, reads=reads)
    outputs.check_output(run.path / "export.tflite", reads=reads)


def test_an_existing_file_needs_force_and_must_be_the_toolkits(tmp_path):
    foreign = tmp_path / "plot.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(foreign)
    before = foreign.read_bytes()
    with pytest.raises(RunDirError, match=r"already exists; choose another path, or pass --force"):
        outputs.check_output(foreign)
    with pytest.raises(RunDirError, match=r"was not written by zoo, so --force does not"):
        outputs.check_output(foreign, replace=True)
    with pytest.raises(RunDirError, match=r"not written by zoo"):
        plots.save_figure(plots.new_figure(1, 1), foreign)  # figures never replace a stranger's
    assert foreign.read_bytes() == before

    ours = plots.save_figure(plots.new_figure(1, 1), tmp_path / "ours.png")
    assert Image.open(ours).info["Software"] == outputs.SOFTWARE
    outputs.check_output(ours, replace=True)
    plots.save_figure(plots.new_figure(2, 1), ours)  # a re-run replaces its own figure


@pytest.mark.parametrize("name, content, owned", [
    ("index.json", json.dumps({"written_by": "cnn-zoo"}), True),
    ("index.json", json.dumps({"paths": []}), False),
    ("model.tflite", b"\x1c\x00\x00\x00TFL3" + bytes(8), True),
    ("model.tflite", b"not a flatbuffer", False),
    ("model.keras", b"not a zip", False),
])
def test_file_marks(tmp_path, name, content, owned):
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    assert (outputs.unowned(path) is None) == owned


def test_a_run_written_before_markers_is_recognised_by_its_layout(tmp_path):
    old = tmp_path / "old"
    (old / "checkpoint").mkdir(parents=True)
    (old / "config.json").write_text(json.dumps({"model": "lenet5", "mode": "full-retrain"}))
    (old / "model.keras").write_bytes(b"zip")
    assert outputs.unowned(old) is None
    (old / "draft.docx").write_bytes(b"user")
    assert outputs.unowned(old) == old / "draft.docx"


def test_a_config_error_before_the_first_checkpoint_leaves_nothing(image_folder, tmp_path,
                                                                    monkeypatch):
    import importlib

    import transfer
    from transfer.errors import ConfigError

    train_module = importlib.import_module("transfer.train")

    def fail(self, state):
        raise ConfigError("found late")

    monkeypatch.setattr(train_module.Trainer, "run", fail)
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="found late"):
        transfer.train(image_folder, output=out, model="lenet5", mode="full-retrain",
                       weights=None, epochs=1)
    assert not out.exists()
    (tmp_path / "kept").mkdir()  # a folder the user made stays, emptied of what was written
    with pytest.raises(ConfigError):
        transfer.train(image_folder, output=tmp_path / "kept", model="lenet5",
                       mode="full-retrain", weights=None, epochs=1)
    assert list((tmp_path / "kept").iterdir()) == []


def test_a_finished_run_is_all_the_toolkits(trained_run):
    assert outputs.unowned(trained_run.run_dir) is None


def test_unique_stem_never_names_a_file_already_there(tmp_path):
    from transfer.outputs import unique_stem

    assert unique_stem(tmp_path, "cat", ("_mask.png", "_overlay.png")) == "cat"
    (tmp_path / "cat_overlay.png").write_bytes(b"the user's")
    assert unique_stem(tmp_path, "cat", ("_mask.png", "_overlay.png")) == "cat_2"
    (tmp_path / "cat_2_boxes.png").write_bytes(b"")
    assert unique_stem(tmp_path, "cat", ("_boxes.png",)) == "cat"
    (tmp_path / "cat_boxes.png").write_bytes(b"")
    assert unique_stem(tmp_path, "cat", ("_boxes.png",)) == "cat_3"
