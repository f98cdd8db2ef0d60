import json

import keras
import pytest

import transfer
from transfer.batch_size import probe_batch_size
from transfer.tasks import get_task


def ONE_HOT(batch, rng):  # noqa: N802  - the classification task's targets for 3 classes
    return get_task("classification").probe_targets(batch, 3, 16, rng)


def _tiny_model():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    model.compile("sgd", "categorical_crossentropy")
    return model


def test_probe_doubles_up_to_the_maximum_when_memory_allows():
    probe = probe_batch_size(_tiny_model(), ONE_HOT, start=8, maximum=64)
    assert probe.tried == (8, 16, 32, 64) and probe.batch_size == 64
    assert "maximum" in probe.reason


def test_probe_backs_off_on_out_of_memory(monkeypatch):
    import tensorflow as tf

    model = _tiny_model()
    real = model.train_on_batch

    def fake_oom_above_32(x, y):  # an accelerator raising ResourceExhaustedError past 32
        if len(x) > 32:
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
        return real(x, y)

    monkeypatch.setattr(model, "train_on_batch", fake_oom_above_32)
    probe = probe_batch_size(model, ONE_HOT, start=8, maximum=1024, on_accelerator=True)
    assert probe.batch_size == 32 and probe.tried == (8, 16, 32, 64)
    assert probe.reason == "out of memory at 64"


def test_probe_on_cpu_stops_before_the_memory_budget(monkeypatch):
    from transfer import batch_size as module

    monkeypatch.setattr(module, "_available_bytes", lambda: 1)  # nothing left to grow into
    probe = probe_batch_size(_tiny_model(), ONE_HOT, start=8, maximum=1024, on_accelerator=False)
    assert probe.batch_size == 8 and "budget" in probe.reason


def test_train_with_auto_batch_size_saves_the_size_found(image_folder, tmp_path):
    result = transfer.train(image_folder, output=tmp_path / "auto", model="lenet5",
                            mode="full-retrain", weights=None, epochs=1, batch_size="auto",
                            verbose=0)
    found = json.loads((tmp_path / "auto" / "config.json").read_text())["batch_size"]
    assert isinstance(found, int) and 8 <= found <= 32  # capped by the 30 training images
    assert result.config.batch_size == found


def test_nothing_fits_reaches_the_cli_user_as_one_clean_line(image_folder, tmp_path,
                                                            monkeypatch):
    import keras
    import tensorflow as tf
    from click.testing import CliRunner

    from cli.main import main

    def always_oom(self, x, y, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")

    monkeypatch.setattr(keras.Model, "train_on_batch", always_oom)
    result = CliRunner().invoke(main, ["train", str(image_folder), "--model", "lenet5",
                                       "--mode", "full-retrain", "--weights", "none",
                                       "--epochs", "1", "--batch-size", "auto",
                                       "--output", str(tmp_path / "run")])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()[-1:]
    assert line == ("Error: batch_size=auto: even a batch of 8 does not fit in memory (out of "
                    "memory at 8); use a smaller --image-size or model")
    assert "Traceback" not in result.output


@pytest.mark.slow  # 25 s: a whole segmentation run; the probe itself is tested fast below
def test_auto_batch_size_probes_a_segmenter_with_class_maps(seg_folder, tmp_path):
    """The probe trains on the task's own targets: a segmenter gets per-pixel class maps,
    not the one-hot class vectors of a classifier (which its loss cannot take)."""
    result = transfer.train(seg_folder, output=tmp_path / "seg", model="unet",
                            backbone="keras_mobilenet", weights=None, mode="feature-extractor",
                            image_size=32, epochs=1, batch_size="auto", verbose=0)
    found = json.loads((tmp_path / "seg" / "config.json").read_text())["batch_size"]
    assert isinstance(found, int) and 8 <= found <= 16  # capped by the 16 training pairs
    assert result.config.batch_size == found


def test_the_probe_trains_a_segmenter_on_the_tasks_class_maps():
    """The probe's targets come from the task: a segmenter's loss takes class maps (with
    one-hot class vectors it raised a shape error)."""
    from transfer.tasks import get_task

    task = get_task("segmentation")
    inputs = keras.Input((16, 16, 3))
    outputs = keras.layers.Conv2D(3, 1, activation="softmax")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile("sgd", task.loss(transfer.TrainConfig(task="segmentation")))
    probe = probe_batch_size(model, lambda n, rng: task.probe_targets(n, 3, 16, rng),
                             start=8, maximum=16)
    assert probe.tried == (8, 16) and probe.batch_size == 16
