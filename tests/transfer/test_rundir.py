"""The run directory's one owner, the input contract, and the task registry."""

import json
import os

import numpy as np
import pytest

from transfer.config import TASK_NAMES, TrainConfig
from transfer.errors import ConfigError, RunDirError
from transfer.rundir import InputContract, RunDir, atomic_output, atomic_write
from transfer.tasks import TASKS, get_task


def test_atomic_write_replaces_whole_files_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "a.json"
    atomic_write(target, "old")
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(os.listdir(tmp_path)) == ["a.json"]


def test_create_refuses_a_non_empty_folder_and_replaces_it_when_told(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine")
    with pytest.raises(RunDirError, match="already exists and is not empty.*--overwrite"):
        RunDir.create(tmp_path / "run")
    assert (tmp_path / "run" / "keep.txt").read_text() == "mine"
    with pytest.raises(RunDirError, match="was not written by zoo"):  # not the toolkit's
        RunDir.create(tmp_path / "run", overwrite=True)
    assert (tmp_path / "run" / "keep.txt").read_text() == "mine"
    made = RunDir.create(tmp_path / "made")
    made.write_json("metrics.json", {})
    run = RunDir.create(tmp_path / "made", overwrite=True)
    assert [p.name for p in run.path.iterdir()] == [".cnn-zoo.json"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="is not a folder"):
        RunDir.create(tmp_path / "file")


@pytest.mark.parametrize("files,resumable", [
    ({"keep.txt": "mine"}, False),
    ({"config.json": "{}", "split.json": "{}"}, True),  # stopped before the first checkpoint
    ({"config.json": "{}", "split.json": "{}", "checkpoint/state.json": '{"epoch": 1}'}, True),
    ({"config.json": "{}", "split.json": "{}", "checkpoint/state.json": '{"finished": true}'},
     False),  # 'zoo train --resume' would refuse a finished run
])
def test_create_advises_resume_only_for_a_run_it_can_continue(tmp_path, files, resumable):
    run = tmp_path / "run"
    for name, text in files.items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(text)
    with pytest.raises(RunDirError) as info:
        RunDir.create(run)
    message = (f"run directory {str(run)!r} already exists and is not empty; choose another "
               f"--output, pass --overwrite to replace it")
    if resumable:
        message += f", or continue it with: zoo train --resume {run}"
    assert str(info.value) == message


def test_source_names_run_dirs_keras_files_and_refuses_the_rest(trained_run, tmp_path):
    run, model = RunDir.source(trained_run.run_dir)
    assert run.path == trained_run.run_dir and model == trained_run.model_path
    run, model = RunDir.source(trained_run.model_path)
    assert run.path == trained_run.run_dir
    with pytest.raises(RunDirError, match="is a SavedModel folder"):
        RunDir.source(trained_run.saved_model_dir)
    with pytest.raises(RunDirError, match="is not a run directory"):
        RunDir.source(tmp_path)
    with pytest.raises(RunDirError, match="is not a run directory"):
        RunDir.open(tmp_path)


def test_training_writes_the_contract_once_and_readers_use_it(trained_run):
    run = RunDir(trained_run.run_dir)
    saved = json.loads((run / "contract.json").read_text())
    assert saved == {"task": "classification", "image_size": 32, "channels": 1,
                     "preprocessing": "tf", "class_names": ["blue", "green", "red"]}
    contract = run.contract()
    assert contract == InputContract("classification", 32, 1, "tf", ("blue", "green", "red"))
    assert contract.num_classes == trained_run.model.output_shape[-1] == 3
    # The model card states what the contract says.
    card = (run / "MODEL_CARD.md").read_text()
    assert "input size: 32 x 32 RGB (the backbone sees 1 channel)" in card
    assert "preprocessing mode: `tf`" in card


def test_runs_without_contract_json_derive_it_from_the_model(trained_run, tmp_path):
    import shutil

    old = tmp_path / "old_run"
    shutil.copytree(trained_run.run_dir, old)
    (old / "contract.json").unlink()  # as written before the contract existed
    assert RunDir(old).contract() == RunDir(trained_run.run_dir).contract()


def test_history_csv_and_json_hold_the_same_rows(tmp_path):
    run = RunDir.create(tmp_path / "r")
    rows = [{"epoch": 1, "phase": "head", "loss": 0.5},
            {"epoch": 2, "phase": "head", "loss": 0.25, "val_loss": 0.3}]
    run.write_history(rows)
    assert run.history() == rows
    lines = (run / "history.csv").read_text().splitlines()
    assert lines == ["epoch,phase,loss,val_loss", "1,head,0.5,", "2,head,0.25,0.3"]


def test_every_config_task_is_registered_and_unknown_ones_are_refused():
    assert set(TASK_NAMES) == set(TASKS)
    assert get_task("classification").name == "classification"
    with pytest.raises(ConfigError, match="unknown task 'keypoints'"):
        get_task("keypoints")
    with pytest.raises(ConfigError, match="task must be one of"):
        TrainConfig(task="keypoints")


def test_no_samples_is_a_data_error_not_a_value_error():
    from transfer.errors import DataError
    from transfer.tasks.classification.metrics import classification_metrics

    with pytest.raises(DataError, match="no samples to evaluate"):
        classification_metrics(np.zeros((0, 3)), np.zeros(0, np.int64), ["a", "b", "c"])


def test_create_names_an_output_that_cannot_be_written(tmp_path, monkeypatch):
    """Tests run as root, whom chmod does not stop: a folder under a regular file cannot be
    made by anyone, and a read-only file system is simulated where mkdir fails."""
    import errno
    from pathlib import Path

    (tmp_path / "notes.txt").write_text("a file, not a folder")
    with pytest.raises(RunDirError) as caught:
        RunDir.create(tmp_path / "notes.txt" / "run")
    message = str(caught.value)
    assert message.startswith(f"output {str(tmp_path / 'notes.txt' / 'run')!r} cannot be "
                              f"created:"), message
    assert "choose another --output" in message and "\n" not in message

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(RunDirError, match=r"cannot be created: Read-only file system; choose "):
        RunDir.create(tmp_path / "run")


def test_create_names_an_existing_folder_that_is_not_writable(tmp_path, monkeypatch):
    import tempfile

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(RunDirError) as caught:
        RunDir.create(tmp_path)
    assert str(caught.value) == (f"output {str(tmp_path)!r} is not writable (Permission "
                                 f"denied); choose another --output")


def test_exports_and_evaluations_name_an_output_that_cannot_be_made(trained_run, tmp_path):
    from click.testing import CliRunner

    from cli.main import main

    (tmp_path / "notes.txt").write_text("a file")
    with pytest.raises(RunDirError,
                       match=r"output '.*notes.txt' cannot be created: a file of that name "), \
            atomic_output(tmp_path / "notes.txt" / "model.tflite"):
        pass
    out = tmp_path / "notes.txt" / "eval"
    result = CliRunner().invoke(main, ["evaluate", str(trained_run.run_dir), "--output",
                                       str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert f"Error: output {str(out)!r} cannot be created: " in result.output
