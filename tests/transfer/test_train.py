"""End to end: image folder in, run directory and SavedModel out."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import transfer
from transfer import TrainConfig, TransferMode
from transfer.errors import ConfigError, DataError, RunDirError
from transfer.schedules import cosine_with_warmup

RUN_FILES = {"config.json", "class_names.json", "split.json", "model.keras", "saved_model",
             "history.json", "history.csv", "metrics.json", "logs"}


def test_full_retrain_writes_a_complete_run_dir(trained_run, image_folder):
    run = trained_run
    assert RUN_FILES <= {p.name for p in run.run_dir.iterdir()}
    assert run.class_names == ("blue", "green", "red")
    assert [row["epoch"] for row in run.history] == [1, 2, 3, 4]
    assert run.phases[0].phase == "full" and run.phases[0].frozen_params == 0
    val = run.metrics["val"]
    assert val["samples"] == 3 * 2  # 12 per class, val_split 0.2 -> round(2.4) = 2 per class
    assert val["top1_accuracy"] > 1 / 3  # better than chance after 4 epochs on an easy task
    saved = TrainConfig.load(run.run_dir / "config.json")
    assert saved.mode is TransferMode.FULL_RETRAIN and saved.image_size == 32
    split = json.loads((run.run_dir / "split.json").read_text())
    assert set(split["train"]["paths"]).isdisjoint(split["val"]["paths"])
    assert len(split["train"]["paths"]) + len(split["val"]["paths"]) == 36


def test_feature_extractor_caches_features_and_trains_only_the_head(image_folder, tmp_path):
    result = transfer.train(image_folder, output=tmp_path / "fe", model="lenet5",
                            mode="feature-extractor", weights=None, epochs=3, batch_size=8,
                            verbose=0)
    (phase,) = result.phases
    assert phase.phase == "head" and phase.trainable_weights == 2
    assert phase.trainable_params == 120 * 3 + 3
    assert len(result.history) == 3 and result.history[0]["phase"] == "head"
    # The final metrics come from the cached features; a full forward pass agrees.
    from transfer.evaluate import predict_split

    split = transfer.data.ImageFolderData.load(result.run_dir / "split.json").val
    predictions = predict_split(result.model, split, batch_size=8)
    full = result.task.summarise(predictions.outputs, predictions.labels, result.class_names)
    assert result.metrics["val"]["loss"] == pytest.approx(full["loss"], rel=1e-5)
    assert result.metrics["val"]["confusion_matrix"] == full["confusion_matrix"]


def test_features_over_the_memory_budget_are_cached_on_disk_with_the_same_result(
        image_folder, tmp_path):
    common = dict(model="lenet5", mode="feature-extractor", weights=None, epochs=3,
                  batch_size=8, verbose=0)
    in_memory = transfer.train(image_folder, output=tmp_path / "mem", **common)
    on_disk = transfer.train(image_folder, output=tmp_path / "disk", memory_cache_mb=0,
                             **common)
    assert [r["loss"] for r in on_disk.history] == [r["loss"] for r in in_memory.history]
    assert on_disk.metrics["val"]["confusion_matrix"] == \
        in_memory.metrics["val"]["confusion_matrix"]
    assert not (on_disk.run_dir / "features").exists()  # removed once the run finished


def test_fine_tune_runs_two_phases_with_a_lower_learning_rate(image_folder, tmp_path):
    result = transfer.train(image_folder, output=tmp_path / "ft", model="lenet5",
                            mode="fine-tune", weights=None, epochs=2, fine_tune_epochs=2,
                            batch_size=8, learning_rate=1e-3, early_stopping_patience=0,
                            schedule="constant", verbose=0)
    assert [p.phase for p in result.phases] == ["head", "fine-tune"]
    assert result.phases[1].unfreeze_from == "c5"
    assert result.phases[1].trainable_weights == 4
    assert [r["phase"] for r in result.history] == ["head"] * 2 + ["fine-tune"] * 2
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert result.history[-1]["learning_rate"] == pytest.approx(1e-4)


def test_existing_run_dir_is_not_overwritten(image_folder, trained_run):
    with pytest.raises(RunDirError, match="--overwrite"):
        transfer.train(image_folder, output=trained_run.run_dir, model="lenet5",
                       weights=None, epochs=1)


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        transfer.train(tmp_path / "nope", output=tmp_path / "run", model="lenet5", weights=None)
    (tmp_path / "one" / "only").mkdir(parents=True)
    with pytest.raises(DataError, match="at least 2 class"):
        transfer.train(tmp_path / "one", output=tmp_path / "run", model="lenet5", weights=None)
    with pytest.raises(ConfigError, match="mode must be one of"):
        TrainConfig(mode="half-retrain")
    with pytest.raises(ConfigError, match="val_split"):
        TrainConfig(val_split=1.5)


def test_savedmodel_in_a_tensorflow_only_process_matches_predict(trained_run, image_folder):
    paths = sorted(str(p) for p in image_folder.rglob("*.png"))[::5]
    ours = transfer.predict(trained_run.run_dir, paths, top_k=3)
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        import tensorflow as tf
        from PIL import Image
        model = tf.saved_model.load({str(trained_run.saved_model_dir)!r})
        serve = model.signatures["serving_default"]
        out = []
        for path in {paths!r}:
            image = np.asarray(Image.open(path).convert("RGB"))[None]
            result = serve(images=tf.constant(image))
            out.append({{"labels": [b.decode() for b in result["top_classes"].numpy()[0]],
                         "scores": result["top_scores"].numpy()[0].tolist()}})
        raw = [tf.io.read_file(p) for p in {paths!r}]
        by_bytes = model.signatures["serve_bytes"](image_bytes=tf.stack(raw))
        names = [b.decode() for b in model.class_names().numpy()]
        assert not any(m == "zoo" or m.startswith(("zoo.", "transfer")) for m in sys.modules)
        print(json.dumps({{"images": out, "names": names,
                          "bytes": by_bytes["top_scores"].numpy().tolist()}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fresh = json.loads(proc.stdout.strip().splitlines()[-1])
    assert fresh["names"] == ["blue", "green", "red"]
    for mine, theirs, by_bytes in zip(ours, fresh["images"], fresh["bytes"]):
        assert list(mine.labels) == theirs["labels"]
        np.testing.assert_allclose(mine.scores, theirs["scores"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(mine.scores, by_bytes, rtol=1e-5, atol=1e-6)


def test_a_trained_run_is_the_backbone_of_a_second_run(trained_run, image_folder, tmp_path):
    """Train on one dataset, then transfer from that model file to another run."""
    result = transfer.train(image_folder, output=tmp_path / "second",
                            model=str(trained_run.model_path), mode="feature-extractor",
                            epochs=2, batch_size=8, verbose=0)
    (phase,) = result.phases
    assert phase.trainable_params == 120 * 3 + 3 and phase.frozen_params == 50_692
    first = trained_run.model.get_layer("backbone").get_layer("c1_conv").get_weights()[0]
    second = result.model.get_layer("backbone").get_layer("c1_conv").get_weights()[0]
    np.testing.assert_array_equal(first, second)  # the frozen backbone came along unchanged


def test_default_fine_tune_warms_up_each_phase_then_decays(image_folder, tmp_path):
    result = transfer.train(image_folder, output=tmp_path / "ft", model="lenet5",
                            mode="fine-tune", weights=None, epochs=4, fine_tune_epochs=4,
                            batch_size=8, learning_rate=1e-3, early_stopping_patience=0,
                            verbose=0)
    # 30 training images, batch 8: 4 steps an epoch, 16 a phase, 2 warm-up epochs = 8 steps.
    # The rate logged at an epoch's end is the one its last step ran at.
    expected = [cosine_with_warmup(4 * epoch - 1, peak=peak, total=16, warmup=8)
                for peak in (1e-3, 1e-4) for epoch in (1, 2, 3, 4)]
    assert [r["learning_rate"] for r in result.history] == pytest.approx(expected, rel=1e-5)
    assert expected[1] == pytest.approx(1e-3) and expected[5] == pytest.approx(1e-4)
    # classification's fine-tune defaults (bench_peer): flips and label smoothing 0.1, recorded
    saved = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert (saved["augment"], saved["label_smoothing"]) == ("flip", 0.1)
    flips = result.model.get_layer("augmentation").layers
    assert [type(layer).__name__ for layer in flips] == ["RandomFlip"]
