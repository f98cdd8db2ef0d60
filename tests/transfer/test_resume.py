"""`--resume` after a SIGKILL mid-epoch reaches the same result as an uninterrupted run."""

import json
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

import transfer
from transfer.errors import DataError, RunDirError, TrainingInterrupted

SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import keras
    import transfer

    data_dir, out, kill_epoch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    memory_cache_mb = int(sys.argv[4])  # 0: backbone features cached on disk

    class KillMidEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
        def on_train_batch_end(self, batch, logs=None):
            if self.epoch + 1 == kill_epoch and batch == 1:
                os.kill(os.getpid(), signal.SIGKILL)

    # flips: both phases train on a cache of views (the image and its mirror), the head phase's
    # features and the fine-tune phase's outputs below block c5, reused by the resume on disk
    transfer.train(data_dir, output=out, model="lenet5", mode="fine-tune", weights=None,
                   augment="flip", epochs=3, fine_tune_epochs=3, batch_size=8, learning_rate=3e-3,
                   dropout=0.3, lr_patience=1, early_stopping_patience=2, seed=7,
                   deterministic=True, verbose=0, memory_cache_mb=memory_cache_mb,
                   callbacks=[KillMidEpoch()] if kill_epoch else [])
""")


def _run(data_dir, out, kill_epoch, memory_cache_mb=2048):
    return subprocess.run([sys.executable, "-c", SCRIPT, str(data_dir), str(out),
                           str(kill_epoch), str(memory_cache_mb)], capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def uninterrupted(image_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("resume") / "full"
    proc = _run(image_folder, out, 0)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.parametrize("kill_epoch,memory_cache_mb", [
    # in the head phase, on features cached in memory (the disk case below runs the same
    # resume path, and more of it)
    pytest.param(2, 2048, marks=pytest.mark.slow),
    (2, 0),     # in the head phase, on features cached on disk (reused by the resume)
    # in fine-tuning: the same resume path, from the second phase's checkpoint (18 s)
    pytest.param(5, 2048, marks=pytest.mark.slow),
    pytest.param(5, 0, marks=pytest.mark.slow),  # on the boundary cache, reused from disk
])
def test_resume_after_sigkill_matches_uninterrupted_run(uninterrupted, image_folder, tmp_path,
                                                        kill_epoch, memory_cache_mb, caplog):
    out = tmp_path / "killed"
    proc = _run(image_folder, out, kill_epoch, memory_cache_mb)
    assert proc.returncode == -signal.SIGKILL
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == kill_epoch - 1  # the last finished epoch
    assert not (out / "model.keras").exists()
    # What the phase cannot change is written once per phase, not every epoch: in the head
    # phase the whole LeNet-5 backbone (c1, c3, c5: kernel + bias each); in fine-tuning from c5,
    # c1 and c3.
    with np.load(out / "checkpoint" / "frozen.npz") as frozen, \
            np.load(out / "checkpoint" / "variables.npz") as per_epoch:
        frozen_keys = {k for k in frozen.files if k.startswith("model_")}
        assert len(frozen_keys) == (6 if kill_epoch == 2 else 4)
        assert str(frozen["tag"]) == state["frozen_tag"]
        assert frozen_keys.isdisjoint(per_epoch.files)

    caplog.set_level("INFO", logger="transfer")  # the feature cache logs as transfer.features
    result = transfer.resume(out, verbose=0)
    reused = "reusing the " + ("backbone features" if kill_epoch <= 3 else "outputs below")
    assert (reused in caplog.text) == (memory_cache_mb == 0)

    expected = json.loads((uninterrupted / "history.json").read_text())
    assert [r["epoch"] for r in result.history] == [r["epoch"] for r in expected]
    assert [r["phase"] for r in result.history] == [r["phase"] for r in expected]
    for got, want in zip(result.history, expected):
        for key in ("loss", "val_loss", "accuracy", "learning_rate"):
            assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6), (got, want)
    want_metrics = json.loads((uninterrupted / "metrics.json").read_text())["val"]
    assert result.metrics["val"]["loss"] == pytest.approx(want_metrics["loss"], rel=1e-5)
    assert result.metrics["val"]["confusion_matrix"] == want_metrics["confusion_matrix"]

    with pytest.raises(RunDirError, match="already finished"):
        transfer.resume(out)


def test_resume_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(RunDirError, match="not a run directory"):
        transfer.resume(tmp_path)


@pytest.mark.slow  # 7 s: a run, then its data changed and resumed
def test_resume_after_the_data_changed_warns_with_counts_and_an_example(image_folder, tmp_path,
                                                                         caplog):
    import shutil

    import keras
    from PIL import Image

    data = Path(shutil.copytree(image_folder, tmp_path / "data"))

    class StopAtSecondEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    out = tmp_path / "run"
    with pytest.raises(transfer.TrainingInterrupted):
        transfer.train(data, output=out, model="lenet5", mode="full-retrain", weights=None,
                       epochs=2, batch_size=8, verbose=0, callbacks=[StopAtSecondEpoch()])
    split = json.loads((out / "split.json").read_text())
    gone = sorted(split["train"]["paths"])[:2]
    for path in gone:
        Path(path).unlink()
    added = data / "red" / "new_photo.png"
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(added)
    with caplog.at_level("WARNING", logger="transfer"):
        with pytest.raises(DataError, match="2 image"):  # the missing files cannot train
            transfer.resume(out, verbose=0)
    changed = [r.getMessage() for r in caplog.records if "changed" in r.getMessage()]
    assert changed == [
        f"the data changed since this run started: 2 file(s) of split.json are missing "
        f"(e.g. {gone[0]}), 1 file(s) not in it were added (e.g. {added}); resuming with the "
        f"split as recorded (added files are not used)"]
    for path in gone:
        shutil.copy(image_folder / Path(path).relative_to(data), path)
    caplog.clear()
    with caplog.at_level("WARNING", logger="transfer"):
        result = transfer.resume(out, verbose=0)
    assert len(result.history) == 2
    assert [r.getMessage() for r in caplog.records if "changed" in r.getMessage()] == [
        f"the data changed since this run started: 1 file(s) not in it were added (e.g. "
        f"{added}); resuming with the split as recorded (added files are not used)"]


# ---- damaged checkpoints and feature caches -------------------------------------------------

class _StopAtSecondEpoch(keras.callbacks.Callback):
    """Ctrl-C as the second epoch begins: the first is checkpointed."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def interrupted(image_folder, tmp_path_factory):
    """A feature-extractor LeNet-5 run stopped after epoch 1 of 2, its backbone features cached
    on disk (memory_cache_mb=0)."""
    out = tmp_path_factory.mktemp("interrupted") / "run"
    with pytest.raises(TrainingInterrupted):
        transfer.train(image_folder, output=out, model="lenet5", mode="feature-extractor",
                       weights=None, augment="none", epochs=2, batch_size=8, seed=7,
                       memory_cache_mb=0, verbose=0, callbacks=[_StopAtSecondEpoch()])
    assert json.loads((out / "checkpoint" / "state.json").read_text())["epoch"] == 1
    assert (out / "features" / "complete.json").is_file()
    return out


def _copy(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


@pytest.mark.parametrize("name,damage", [
    ("variables.npz", _truncate),
    ("variables.npz", lambda p: p.write_bytes(b"")),
    ("variables.npz", lambda p: p.unlink()),
    ("frozen.npz", _truncate),
    ("state.json", _truncate),
    ("state.json", lambda p: p.write_text("")),
    ("state.json", lambda p: p.write_text('{"epochs": 1}\n')),  # wrong keys
    ("state.json", lambda p: p.write_text("[1, 2]\n")),
])
def test_a_damaged_checkpoint_is_one_line_saying_to_start_again(interrupted, tmp_path, name,
                                                                damage):
    from click.testing import CliRunner

    from cli.main import main

    run = _copy(interrupted, tmp_path)
    damage(run / "checkpoint" / name)
    result = CliRunner().invoke(main, ["train", "--resume", str(run)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    (line,) = [l for l in result.output.splitlines() if l.startswith("Error:")]
    assert line.startswith(f"Error: the checkpoint in {str(run)!r} is damaged ("), line
    assert line.endswith("; start the run again with --overwrite"), line


@pytest.mark.parametrize("damage", [
    lambda f: _truncate(f / "train_0.npy"),
    # the truncation runs in the fast suite; the other damages take the same rebuild path
    pytest.param(lambda f: (f / "val_0.npy").write_bytes(b""), marks=pytest.mark.slow),
    pytest.param(lambda f: (f / "train_0.npy").unlink(), marks=pytest.mark.slow),
    pytest.param(lambda f: np.save(f / "val_0.npy", np.zeros((2, 3), np.float32)),  # wrong shape
                 marks=pytest.mark.slow),
])
def test_a_damaged_feature_cache_is_rebuilt_with_a_warning(interrupted, tmp_path, caplog,
                                                           damage):
    run = _copy(interrupted, tmp_path)
    damage(run / "features")
    caplog.set_level("INFO", logger="transfer")
    result = transfer.resume(run, verbose=0)
    assert "are damaged or stale" in caplog.text and "computing them again" in caplog.text
    assert "reusing the backbone features" not in caplog.text
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert (run / "model.keras").is_file()


class _CtrlCInFirstEpoch(keras.callbacks.Callback):
    """Ctrl-C on the first training batch, before any epoch is checkpointed."""

    def on_train_batch_end(self, batch, logs=None):
        raise KeyboardInterrupt


@pytest.mark.slow  # 10 s: trains twice (make test-all runs it)
def test_ctrl_c_before_the_first_checkpoint_says_so_and_resume_starts_over(image_folder,
                                                                           tmp_path):
    out = tmp_path / "early"
    settings = {"model": "lenet5", "mode": "full-retrain", "weights": None, "epochs": 1,
                "batch_size": 8, "seed": 3, "verbose": 0}
    with pytest.raises(transfer.TrainingInterrupted) as info:
        transfer.train(image_folder, output=out, callbacks=[_CtrlCInFirstEpoch()], **settings)
    assert str(info.value) == (
        f"stopped before the first epoch finished, so nothing is checkpointed; start it over "
        f"with: zoo train --resume {out} (or the same command with --overwrite)")
    assert not (out / "checkpoint" / "state.json").exists()

    result = transfer.resume(out, verbose=0)  # starts the run over from its config and split
    assert [row["epoch"] for row in result.history] == [1]
    assert (out / "model.keras").is_file()
    expected = transfer.train(image_folder, output=tmp_path / "straight", **settings)
    assert result.history[0]["loss"] == pytest.approx(expected.history[0]["loss"], rel=1e-5)
