"""`--resume` after a SIGKILL mid-epoch reaches the same result as an uninterrupted run."""

import json
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import transfer
from transfer.errors import RunDirError

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

    # augment="none": fine-tune's default flips would keep the head phase off cached features,
    # whose reuse by the resume is checked below
    transfer.train(data_dir, output=out, model="lenet5", mode="fine-tune", weights=None,
                   augment="none", epochs=3, fine_tune_epochs=3, batch_size=8, learning_rate=3e-3,
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
    (5, 2048),  # in fine-tuning
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
    assert ("reusing the backbone features" in caplog.text) == (memory_cache_mb == 0)

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


class _CtrlCInFirstEpoch(keras.callbacks.Callback):
    """Ctrl-C on the first training batch, before any epoch is checkpointed."""

    def on_train_batch_end(self, batch, logs=None):
        raise KeyboardInterrupt


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
