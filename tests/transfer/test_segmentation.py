"""Segmentation end to end: train through the CLI on generated shapes, then evaluate, predict
and export, and check the SavedModel in a process that imports only TensorFlow."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import transfer
from cli.main import main
from transfer import checkpoint as ckpt
from transfer.config import TrainConfig, TransferMode
from transfer.errors import ConfigError
from transfer.model import frozen_part, set_trainable
from transfer.tasks import get_task

SIZE = 64
ARGS = ["--model", "unet", "--backbone", "keras_mobilenet", "--weights", "none",
        "--image-size", str(SIZE), "--batch-size", "8", "--seed", "3"]


@pytest.fixture(scope="module")
def seg_run(seg_folder, tmp_path_factory):
    """Feature-extractor U-Net on MobileNet, trained through the CLI; the task is inferred."""
    out = tmp_path_factory.mktemp("seg") / "run"
    result = CliRunner().invoke(main, ["train", str(seg_folder), *ARGS, "--mode",
                                       "feature-extractor", "--epochs", "2", "--output",
                                       str(out)])
    assert result.exit_code == 0, result.output
    assert "validation mean IoU" in result.output
    return out


def test_the_run_directory_describes_a_segmenter(seg_run):
    contract = json.loads((seg_run / "contract.json").read_text())
    assert contract == {"task": "segmentation", "image_size": SIZE, "channels": 3,
                        "preprocessing": "tf", "class_names": ["background", "square", "disc"],
                        "task_options": {"ignore_index": 255}}
    config = json.loads((seg_run / "config.json").read_text())
    assert config["task"] == "segmentation"
    # config.json records the fine-tune policy the task decided, not "task's default"
    assert (config["fine_tune_lr_factor"], config["unfreeze_from"], config["fine_tune_batchnorm"],
            config["augment"]) == (1.0, "conv_dw_1", "train", "")  # "": feature-extractor
    val = json.loads((seg_run / "metrics.json").read_text())["val"]
    assert set(val["per_class_iou"]) == {"background", "square", "disc"}
    assert 0 <= val["mean_iou"] <= 1 and 0 <= val["pixel_accuracy"] <= 1
    assert np.asarray(val["confusion_matrix"]).sum() == val["pixels"]
    # The decoder trained on cached encoder features, and the validation metrics came from
    # them: they are what the full model computes on the images (the loss is compared, as
    # argmax ties of a barely trained model may flip a pixel).
    from transfer.data import ImageFolderData
    from transfer.evaluate import predict_split
    from transfer.rundir import RunDir

    split = ImageFolderData.load(seg_run / "split.json").val
    task = get_task("segmentation")
    full = predict_split(RunDir(seg_run).load_model(), split, truth=task.labels(split, SIZE))
    again = task.summarise(full.outputs, full.labels, ["background", "square", "disc"])
    assert again["loss"] == pytest.approx(val["loss"], rel=1e-4)
    assert again["pixels"] == val["pixels"]
    for name in ("worst.png", "confusion_matrix.png", "report.html", "MODEL_CARD.md"):
        assert (seg_run / name).is_file(), name
    assert "IoU per class" in (seg_run / "report.html").read_text()
    # BatchNorm that trains (the decoder's) follows the run's length: 19 images in batches
    # of 8 are 3 steps an epoch, so momentum 1 - 1/3; the frozen encoder's keeps Keras's.
    model = keras.saving.load_model(seg_run / "model.keras")
    assert model.get_layer("decoder_stage0a_bn").momentum == pytest.approx(2 / 3)
    assert model.get_layer("encoder").get_layer("conv1_bn").momentum == pytest.approx(0.99)
    assert "| disc |" in (seg_run / "MODEL_CARD.md").read_text()


def test_the_three_modes_train_what_they_should(seg_run):
    """Feature-extractor: the decoder alone; fine-tune: the decoder and the encoder from a
    block, its BatchNorm frozen or training; full: everything."""
    config = TrainConfig(task="segmentation", model="unet", backbone="keras_mobilenet",
                         weights=None, image_size=SIZE, mode="fine-tune")
    model = get_task("segmentation").build_model(config, num_classes=3, weights=None)
    encoder = frozen_part(model)
    assert encoder.name == "encoder"
    encoder_ids = {id(w) for w in encoder.weights}
    decoder = [w for w in model.trainable_weights if id(w) not in encoder_ids]

    head = set_trainable(model, "head")
    assert head.trainable_weights == len(decoder) == 32
    assert {id(w) for w in model.trainable_weights}.isdisjoint(encoder_ids)

    fine = set_trainable(model, "fine-tune", blocks=("conv_dw_12",), unfreeze_from="conv_dw_12")
    unfrozen = [w for w in model.trainable_weights if id(w) in encoder_ids]
    assert fine.trainable_weights == 32 + len(unfrozen) == 36  # conv_dw_12..13: 4 conv kernels
    assert not any(isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
                   for layer in encoder.layers)
    assert fine.batchnorm == "frozen" and str(fine).endswith("BatchNorm frozen")

    # BatchNorm training: conv_dw_12..13's 4 BN layers add gamma and beta each, and their
    # moving statistics are no longer constant for the checkpoint.
    fine = set_trainable(model, "fine-tune", blocks=("conv_dw_12",), unfreeze_from="conv_dw_12",
                         train_batchnorm=True)
    assert fine.trainable_weights == 36 + 8 and fine.batchnorm == "train"
    bn = [layer for layer in encoder.layers
          if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
    assert [layer.name for layer in bn] == ["conv_dw_12_bn", "conv_pw_12_bn", "conv_dw_13_bn",
                                            "conv_pw_13_bn"]
    constant = ckpt.constant_variables(model, encoder, full=False)
    moving = {id(v) for layer in bn for v in layer.non_trainable_variables}
    assert len(moving) == 8
    assert not any(id(model.variables[i]) in moving for i in constant)
    # ...and in a training step they move, while an earlier block's stay put.
    x = np.random.default_rng(0).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype("float32")
    before = [np.array(v) for v in bn[0].non_trainable_variables]
    early = np.array(encoder.get_layer("conv_pw_11_bn").moving_mean)
    model(x, training=True)
    assert not np.array_equal(np.array(bn[0].moving_variance), before[1])
    np.testing.assert_array_equal(np.array(encoder.get_layer("conv_pw_11_bn").moving_mean),
                                  early)

    full = set_trainable(model, "full")
    assert full.trainable_weights == 113 and full.frozen_params == sum(
        int(np.prod(w.shape)) for w in model.non_trainable_weights)


@pytest.mark.parametrize("given, expected", [
    ({}, {"segmentation": (1.0, "conv_dw_1", None, "train", "flip", 0.0),
          "classification": (0.1, None, None, "frozen", "flip", 0.1)}),
    ({"fine_tune_lr_factor": 0.3, "unfreeze_from": "conv_dw_7", "fine_tune_batchnorm": "frozen",
      "augment": "none", "label_smoothing": 0.0},
     {"segmentation": (0.3, "conv_dw_7", None, "frozen", "", 0.0),
      "classification": (0.3, "conv_dw_7", None, "frozen", "", 0.0)}),
    ({"unfreeze_top": 2, "fine_tune_batchnorm": "train", "augment": "scale,flip",
      "label_smoothing": 0.2},
     {"segmentation": (1.0, None, 2, "train", "flip,scale", 0.2),
      "classification": (0.1, None, 2, "train", "flip,scale", 0.2)}),
    # feature-extractor: no augmentation unless asked, so the features can be cached
    ({"mode": "feature-extractor"},
     {"segmentation": (1.0, "conv_dw_1", None, "train", "", 0.0),
      "classification": (0.1, None, None, "frozen", "", 0.0)}),
    # full-retrain from scratch keeps the measured classification recipes (bench_bn, bench_mnist)
    ({"mode": "full-retrain"}, {"segmentation": (1.0, "conv_dw_1", None, "train", "flip", 0.0),
                                "classification": (0.1, None, None, "frozen", "", 0.0)}),
])
def test_each_task_fills_in_its_own_training_policy(given, expected):
    """Unset fields get the task's policy (segmentation: the whole encoder at the decoder's
    rate with BatchNorm training, and flips, bench_segmentation's best; classification's
    fine-tune: flips and label smoothing 0.1, bench_peer's best); what the user set is kept."""
    blocks = tuple(f"conv_dw_{i}" for i in range(1, 14))
    for task, want in expected.items():
        config = get_task(task).fill_defaults(TrainConfig(**given), blocks)
        assert (config.fine_tune_lr_factor, config.unfreeze_from, config.unfreeze_top,
                config.fine_tune_batchnorm, config.augment, config.label_smoothing) == want, task
    # A backbone without named blocks unfreezes whole anyway (unfreeze_from None).
    assert get_task("segmentation").fill_defaults(TrainConfig(), ()).unfreeze_from is None


@pytest.mark.slow  # 28 s: a whole run (build, train, evaluate, export); unit tests cover the parts
def test_fine_tune_defaults_run_end_to_end(seg_folder, tmp_path, caplog):
    """Segmentation fine-tune with nothing set: flips, then the whole encoder with its
    BatchNorm training; a batch under 8 images gets a warning about batch statistics."""
    caplog.set_level("INFO", logger="transfer")
    result = transfer.train(seg_folder, output=tmp_path / "run", model="unet",
                            backbone="keras_mobilenet", weights=None, mode="fine-tune",
                            image_size=32, batch_size=4, epochs=0, fine_tune_epochs=1, seed=3,
                            verbose=0)  # epochs=0: straight to the second phase
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["augment"], config["fine_tune_batchnorm"], config["unfreeze_from"]) == (
        "flip", "train", "conv_dw_1")
    [fine] = result.metrics["phases"]
    # decoder 32 tensors; encoder from conv_dw_1 (all but the stem conv1): 26 conv kernels,
    # 26 BN layers' gamma and beta
    assert (fine["batchnorm"], fine["trainable_weights"]) == ("train", 32 + 26 + 2 * 26)
    assert "too few to be reliable" in caplog.text
    assert "augmentation: flip" in caplog.text
    encoder = result.model.get_layer("encoder")
    # random init: moving variances start at 1; the second phase moved the first block's,
    # while the frozen stem's stayed
    assert not np.allclose(np.array(encoder.get_layer("conv_dw_1_bn").moving_variance), 1.0)
    np.testing.assert_array_equal(np.array(encoder.get_layer("conv1_bn").moving_variance), 1.0)


def test_whole_segmentation_models_train_only_whole(seg_folder, tmp_path):
    with pytest.raises(ConfigError, match="segnet is a whole segmentation network"):
        transfer.train(seg_folder, output=tmp_path / "r", model="segnet", weights=None,
                       mode=TransferMode.FINE_TUNE, image_size=SIZE)
    assert not (tmp_path / "r").exists()


def test_evaluate_predict_and_export_agree(seg_run, seg_folder, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["evaluate", str(seg_run), str(seg_folder), "--json",
                                  "--output", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["samples"] == 24 and 0 <= evaluated["mean_iou"] <= 1
    assert (tmp_path / "eval" / "worst.png").is_file()

    photo = tmp_path / "photo.png"  # not the model's size: masks come back at this size
    Image.open(seg_folder / "images" / "img_000.png").resize((90, 70)).save(photo)
    result = runner.invoke(main, ["predict", str(seg_run), str(photo), "--json",
                                  "--output", str(tmp_path / "masks")])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output.strip().splitlines()[-1])
    assert sum(row["areas"].values()) == pytest.approx(1.0)
    with Image.open(row["mask"]) as mask:
        assert mask.mode == "P" and mask.size == (90, 70)
        predicted = np.asarray(mask)
    assert set(np.unique(predicted)) <= {0, 1, 2}
    with Image.open(row["overlay"]) as overlay:
        assert overlay.size == (90, 70)

    # The SavedModel in a process that imports only TensorFlow gives the same mask.
    script = (
        "import sys, json, numpy as np, tensorflow as tf\n"
        "from PIL import Image\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "x = np.asarray(Image.open(sys.argv[2]).convert('RGB'))[None]\n"
        "out = m.signatures['serving_default'](images=tf.constant(x))\n"
        "np.save(sys.argv[3], out['class_ids'].numpy()[0])\n"
        "names = [n.decode() for n in m.class_names().numpy()]\n"
        "mods = [k for k in sys.modules if k.split('.')[0] in ('zoo', 'transfer', 'cli')]\n"
        "print(json.dumps({'names': names, 'ours': mods}))\n")
    proc = subprocess.run([sys.executable, "-c", script, str(seg_run / "saved_model"),
                           str(photo), str(tmp_path / "ids.npy")], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"names": ["background", "square", "disc"], "ours": []}
    np.testing.assert_array_equal(np.load(tmp_path / "ids.npy"), predicted)

    # TFLite float16 in the LiteRT interpreter agrees with the SavedModel pixel for pixel,
    # nearly everywhere.
    from ai_edge_litert.interpreter import Interpreter

    result = runner.invoke(main, ["export", str(seg_run), "--format", "tflite", "--quantize",
                                  "float16", "--output", str(tmp_path / "m.tflite")])
    assert result.exit_code == 0, result.output
    interpreter = Interpreter(model_path=str(tmp_path / "m.tflite"))
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    image = np.asarray(Image.open(seg_folder / "images" / "img_001.png"))[None]
    interpreter.set_tensor(inp["index"], image.astype(np.uint8))
    interpreter.invoke()
    lite = interpreter.get_tensor(out["index"])[0].argmax(-1)
    import tensorflow as tf

    served = tf.saved_model.load(str(seg_run / "saved_model"))
    full = served.signatures["serving_default"](images=tf.constant(image))["class_ids"]
    agreement = float(np.mean(lite == full.numpy()[0]))
    assert agreement >= 0.99, agreement


@pytest.mark.slow  # 6 s, 15 s under load: tf2onnx converts a MobileNet U-Net; the
# post-processing's conversion is checked fast on a small model in test_evaluate_export.py
def test_onnx_export_agrees_with_predict_pixel_for_pixel(seg_run, seg_folder, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    from transfer.export import export
    from transfer.predict import predict

    path = export(seg_run, format="onnx", output=tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["class_ids", "probabilities"]
    files = sorted((seg_folder / "images").glob("*.png"))[:4]  # at the model's 64 px already
    images = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    ids, probabilities = session.run(None, {"images": images})
    assert ids.dtype == np.uint8 and probabilities.shape == (4, SIZE, SIZE, 3)
    predicted = predict(seg_run, [str(f) for f in files], output_dir=tmp_path / "predicted")
    masks = np.stack([np.asarray(Image.open(p.details["mask"])) for p in predicted])
    assert np.mean(ids == masks) >= 0.999
    np.testing.assert_array_equal(ids, probabilities.argmax(-1))


def test_predict_without_an_output_folder_is_one_clean_line(seg_run, seg_folder):
    result = CliRunner().invoke(main, ["predict", str(seg_run),
                                       str(seg_folder / "images" / "img_000.png")])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()[-1:]
    assert line == ("Error: a segmentation model writes a mask and an overlay per image; pass "
                    "--output FOLDER for them")


def test_predict_into_an_output_folder_that_cannot_be_made_is_one_clean_line(seg_run, seg_folder,
                                                                               tmp_path):
    (tmp_path / "notes.txt").write_text("a file")
    out = tmp_path / "notes.txt" / "masks"
    result = CliRunner().invoke(main, ["predict", str(seg_run), "--output", str(out),
                                       str(seg_folder / "images" / "img_000.png")])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    (line,) = result.output.strip().splitlines()[-1:]
    assert line == (f"Error: output {str(out)!r} cannot be created: "
                    f"{str(tmp_path / 'notes.txt')!r} is a file, not a folder; choose another "
                    f"--output")


@pytest.mark.parametrize("loss, setting, weighted", [
    ("auto", "auto", False), ("dice", "auto", False), ("ce", "auto", True),
    ("focal", "auto", True), ("ce+dice", "on", True), ("ce", "off", False)])
def test_auto_pixel_weights_only_for_losses_without_dice(loss, setting, weighted, monkeypatch):
    """Masks with 15 background pixels to 1 of class 1 (ratio 15 > 1.5): auto weights the loss
    by median frequency unless Dice (which balances classes itself) is in it."""
    task = get_task("segmentation")
    masks = np.zeros((2, 4, 4), np.uint8)
    masks[:, 0, 0] = 1
    monkeypatch.setattr(task, "labels", lambda split, image_size: masks)
    config = TrainConfig(task="segmentation", model="unet", backbone="keras_mobilenet",
                         loss=loss, class_weights=setting)
    assert task.loss_weights(config, split=None, num_classes=2) is None
    assert task.pixel_weights == ([8.0 / 15, 8.0] if weighted else None)


@pytest.mark.slow  # about 25 s on two shared cores; the report's summary has a fast unit test
def test_a_layout_with_a_test_split_writes_its_metrics_and_report(tmp_path):
    """images/ + masks/ under train/, val/ and test/: the test split is evaluated with the
    segmentation metrics, and metrics.json and report.html are written (the report's summary
    once read a classification key and sank both)."""
    from tests.conftest import make_segmentation_folder

    data = tmp_path / "data"
    for split, count in (("train", 8), ("val", 4), ("test", 4)):
        make_segmentation_folder(data / split, count=count, size=32, seed=len(split))
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [
        "train", str(data), "--model", "unet", "--backbone", "keras_mobilenet", "--weights",
        "none", "--image-size", "32", "--batch-size", "8", "--epochs", "1", "--mode",
        "feature-extractor", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["test"]["mean_iou"] <= 1
    report = (out / "report.html").read_text()
    assert "test mean IoU" in report


def test_a_video_gets_each_frame_drawn_and_a_json_line(seg_run, tmp_path):
    """issue 28: the segmentation run's prediction drawn onto a tiny clip's frames."""
    from tests.cli.test_video_cli import predict_clip

    lines = predict_clip(seg_run, tmp_path, size=SIZE)
    assert all("areas" in line for line in lines)
