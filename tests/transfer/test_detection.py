"""Detection end to end through the CLI, on a generated YOLO folder with a test split: data
check, train (the task read off the layout), evaluate, predict, export, and the SavedModel in a
process that imports only TensorFlow."""

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli.main import main
from tests.conftest import box_iou

SIZE = 64
CLASSES = ("square", "bar")
COLOURS = {0: (230, 40, 40), 1: (40, 200, 60)}


def make_yolo_folder(root: Path, *, counts=(("train", 16), ("val", 6), ("test", 4)),
                     seed: int = 0) -> Path:
    """``data.yaml`` + ``images/<split>/`` + ``labels/<split>/``: 80 x 64 images of noise with
    one or two coloured boxes (a square, class 0; a bar, class 1) and their YOLO rows; one
    training image has no label file (a background image)."""
    rng = np.random.default_rng(seed)
    for split, n in counts:
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(n):
            width, height = 80, 64
            pixels = rng.integers(0, 90, (height, width, 3)).astype(np.uint8)
            rows = []
            for cls in rng.permutation(2)[:1 + i % 2]:
                w, h = (18, 18) if cls == 0 else (34, 10)
                x0 = int(rng.integers(0, width - w))
                y0 = int(rng.integers(0, height - h))
                pixels[y0:y0 + h, x0:x0 + w] = COLOURS[int(cls)]
                rows.append(f"{cls} {(x0 + w / 2) / width:.6f} {(y0 + h / 2) / height:.6f} "
                            f"{w / width:.6f} {h / height:.6f}")
            Image.fromarray(pixels).save(root / "images" / split / f"{split}_{i:02d}.png")
            if not (split == "train" and i == 0):
                (root / "labels" / split / f"{split}_{i:02d}.txt").write_text(
                    "\n".join(rows) + "\n")
    (root / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: images/val\ntest: images/test\n"
        f"names: [{', '.join(CLASSES)}]\n")
    return root


@pytest.fixture(scope="module")
def yolo_folder(tmp_path_factory):
    return make_yolo_folder(tmp_path_factory.mktemp("data") / "boxes")


@pytest.fixture(scope="module")
def detection_run(yolo_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("det") / "run"
    result = CliRunner().invoke(main, [
        "train", str(yolo_folder), "--backbone", "keras_mobilenet", "--weights", "none",
        "--mode", "feature-extractor", "--image-size", str(SIZE), "--epochs", "1",
        "--batch-size", "8", "--seed", "3", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "validation mAP50-95" in result.output
    return out


def test_data_check_reports_boxes_and_the_background_image(yolo_folder):
    result = CliRunner().invoke(main, ["data", "check", str(yolo_folder), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] is True
    assert sum(report["class_counts"].values()) > 0


def test_the_run_directory_describes_a_detector(detection_run):
    contract = json.loads((detection_run / "contract.json").read_text())
    assert contract["task"] == "detection" and contract["class_names"] == list(CLASSES)
    assert contract["task_options"]["head"] == "detector"
    assert contract["task_options"]["image_size"] == SIZE
    metrics = json.loads((detection_run / "metrics.json").read_text())
    for split in ("val", "test"):
        assert set(metrics[split]) >= {"map", "map50", "map75", "per_class", "samples"}
        assert 0.0 <= metrics[split]["map"] <= 1.0
    history = json.loads((detection_run / "history.json").read_text())
    assert history and all({"loss", "val_loss", "val_map", "val_map50"} <= set(row)
                           for row in history)  # the task's own validation pass gives them all
    assert (detection_run / "report.html").is_file()
    assert "mAP50-95" in (detection_run / "MODEL_CARD.md").read_text()
    for figure in ("pr_curves.png", "worst.png", "confusion_matrix.png"):
        assert (detection_run / figure).is_file(), figure


def test_evaluate_predict_and_the_savedmodel_agree(detection_run, yolo_folder, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["evaluate", str(detection_run), str(yolo_folder), "--split",
                                  "test", "--output", str(tmp_path / "eval"), "--json"])
    assert result.exit_code == 0, result.output
    evaluated = json.loads(result.stdout)
    trained = json.loads((detection_run / "metrics.json").read_text())["test"]
    assert evaluated["map"] == pytest.approx(trained["map"], abs=1e-6)

    image = yolo_folder / "images" / "test" / "test_00.png"
    result = runner.invoke(main, ["predict", str(detection_run), str(image), "--output",
                                  str(tmp_path / "drawn"), "--csv", "--conf", "0.001"])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["path", "class", "score", "x0", "y0", "x1", "y1", "error"]
    assert all(row[0] == str(image) and row[1] in CLASSES for row in rows[1:])
    assert (tmp_path / "drawn" / "test_00_boxes.png").is_file()
    predicted = [[float(v) for v in row[3:7]] for row in rows[1:]]
    assert predicted, "at score 0.001 some box is drawn"
    for box in predicted:  # in the image's own pixels (80 x 64), not the model's 64 x 64
        assert 0 <= box[0] <= box[2] <= 80 and 0 <= box[1] <= box[3] <= 64

    # The SavedModel, in a process that imports only TensorFlow, with the same threshold
    # set on the run's own export: boxes in the image's own pixels (80 x 64).
    script = f"""
import json, sys, numpy as np, tensorflow as tf
from PIL import Image
model = tf.saved_model.load({str(detection_run / 'saved_model')!r})
image = np.asarray(Image.open({str(image)!r}).convert("RGB"))[None]
out = model.serve_images(tf.constant(image))
assert not [m for m in sys.modules if m.split(".")[0] in ("zoo", "transfer", "cli")]
n = int(out["num_detections"][0])
print(json.dumps({{"boxes": out["boxes"][0, :n].numpy().tolist(),
                  "labels": [l.decode() for l in out["labels"][0, :n].numpy()],
                  "shape": list(out["boxes"].shape)}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    served = json.loads(done.stdout.strip().splitlines()[-1])
    assert served["shape"][2] == 4
    kept = [b for b, row in zip(predicted, rows[1:]) if float(row[2]) >= 0.25]
    np.testing.assert_allclose(served["boxes"], kept, atol=0.02)
    for box in served["boxes"]:
        assert 0 <= box[0] <= box[2] <= 80 and 0 <= box[1] <= box[3] <= 64


def _letterboxed_squares(yolo_folder, folder):
    """The test images letterboxed to the model's square and saved losslessly, so that predict
    reads the pixels a TFLite or ONNX caller passes (and letterboxes a square to itself)."""
    from transfer.data import resize_images

    folder.mkdir()
    files, images = [], []
    for path in sorted((yolo_folder / "images" / "test").glob("*.png")):
        image = np.asarray(Image.open(path).convert("RGB"))
        image = np.clip(np.round(np.asarray(resize_images(image, SIZE, "letterbox"))), 0, 255)
        images.append(image.astype(np.uint8))
        files.append(str(folder / path.name))
        Image.fromarray(images[-1]).save(files[-1])
    return files, images


def _tflite_runner(model, contract, **kwargs):
    from ai_edge_litert.interpreter import Interpreter

    from transfer.export import tflite_model

    return Interpreter(model_content=tflite_model(model, contract, **kwargs)).get_signature_runner()


@pytest.mark.slow  # 20 s: two conversions of a MobileNet detector
@pytest.mark.parametrize("conf", [0.25, 0.001])
def test_tflite_keeps_the_boxes_predict_keeps(detection_run, yolo_folder, tmp_path, conf):
    """LiteRT's NMS op pads its output to max_det: the file counted 300 detections where predict
    kept none (at the default 0.25 here) and returned the padding as boxes of score 0. It now
    keeps predict's count, classes, scores and boxes (IoU >= 0.99), at 0.001 too, where
    suppression has boxes to work on."""
    pytest.importorskip("ai_edge_litert")
    import dataclasses

    from transfer.predict import load_classifier, predict

    loaded = load_classifier(detection_run)
    contract = dataclasses.replace(loaded.contract,
                                   options={**loaded.contract.options, "conf": conf})
    runner = _tflite_runner(loaded.model, contract)
    files, images = _letterboxed_squares(yolo_folder, tmp_path / "square")
    predicted = predict(detection_run, files, output_dir=tmp_path / "drawn",
                        options={"conf": conf})
    kept_any = 0
    for image, prediction in zip(images, predicted):
        got = runner(images=image[None])
        assert got["boxes"].shape == (1, 300, 4)
        kept = prediction.details["detections"]
        n = int(got["num_detections"][0])
        assert n == len(kept)
        kept_any += n
        assert [CLASSES[c] for c in got["classes"][0, :n]] == [d["class"] for d in kept]
        np.testing.assert_allclose(got["scores"][0, :n], [d["score"] for d in kept], atol=1e-4)
        assert (got["scores"][0, n:] == 0).all() and (got["classes"][0, n:] == -1).all()
        if n:
            assert box_iou(got["boxes"][0, :n], np.array([d["box"] for d in kept])).min() >= 0.99
    assert kept_any or conf > 0.01, "at score 0.001 some box is kept"


@pytest.mark.slow  # 8 s, 22 s under load: tf2onnx converts a MobileNet detector; decoding
# and NMS are checked fast on a small model in test_evaluate_export.py
def test_onnx_export_keeps_the_boxes_predict_keeps(detection_run, yolo_folder, tmp_path):
    """ONNX Runtime's NonMaxSuppression keeps the boxes, classes and scores of ``zoo predict``
    at a low threshold (so that suppression has boxes to work on)."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    import dataclasses

    from transfer.export import onnx_model
    from transfer.predict import load_classifier, predict

    loaded = load_classifier(detection_run)
    contract = dataclasses.replace(loaded.contract,
                                   options={**loaded.contract.options, "conf": 0.001})
    session = ort.InferenceSession(onnx_model(loaded.model, contract).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["boxes", "classes", "num_detections",
                                                       "scores"]
    files, images = _letterboxed_squares(yolo_folder, tmp_path / "square")
    boxes, classes, counts, scores = session.run(None, {"images": np.stack(images)})
    predicted = predict(detection_run, files, output_dir=tmp_path / "drawn",
                        options={"conf": 0.001})
    assert sum(counts) > 0, "at score 0.001 some box is kept"
    for i, prediction in enumerate(predicted):
        kept = prediction.details["detections"]
        n = int(counts[i])
        assert n == len(kept)
        assert [CLASSES[c] for c in classes[i, :n]] == [d["class"] for d in kept]
        np.testing.assert_allclose(scores[i, :n], [d["score"] for d in kept], atol=1e-4)
        if n:
            assert box_iou(boxes[i, :n], np.array([d["box"] for d in kept])).min() >= 0.99
        assert (classes[i, n:] == -1).all() and (scores[i, n:] == 0).all()


def as_coco(yolo: Path, root: Path) -> Path:
    """The YOLO folder rewritten as COCO JSON: ``<split>/`` image folders beside
    ``annotations/instances_<split>.json``, category ids 5 and 9 (remapped to 0 and 1)."""
    import shutil

    for split in ("train", "val", "test"):
        images, annotations = [], []
        for i, path in enumerate(sorted((yolo / "images" / split).glob("*.png"))):
            (root / split).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, root / split / path.name)
            images.append({"id": i, "file_name": path.name, "width": 80, "height": 64})
            label = yolo / "labels" / split / f"{path.stem}.txt"
            for row in (label.read_text().split("\n") if label.exists() else []):
                if row.strip():
                    c, cx, cy, w, h = (float(v) for v in row.split())
                    annotations.append({"id": len(annotations) + 1, "image_id": i,
                                        "category_id": (5, 9)[int(c)], "iscrowd": 0,
                                        "bbox": [(cx - w / 2) * 80, (cy - h / 2) * 64, w * 80,
                                                 h * 64]})
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(
            {"images": images, "annotations": annotations,
             "categories": [{"id": 5, "name": CLASSES[0]}, {"id": 9, "name": CLASSES[1]}]}))
    return root


def as_voc(yolo: Path, root: Path) -> Path:
    """The YOLO folder rewritten as Pascal VOC: ``JPEGImages/``, ``Annotations/*.xml`` (1-based
    corners) and ``ImageSets/Main/{train,val,test}.txt``."""
    import shutil

    (root / "JPEGImages").mkdir(parents=True)
    (root / "Annotations").mkdir()
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for split in ("train", "val", "test"):
        stems = []
        for path in sorted((yolo / "images" / split).glob("*.png")):
            shutil.copy(path, root / "JPEGImages" / path.name)
            stems.append(path.stem)
            label = yolo / "labels" / split / f"{path.stem}.txt"
            objects = ""
            for row in (label.read_text().split("\n") if label.exists() else []):
                if row.strip():
                    c, cx, cy, w, h = (float(v) for v in row.split())
                    x0, y0 = round((cx - w / 2) * 80) + 1, round((cy - h / 2) * 64) + 1
                    x1, y1 = round((cx + w / 2) * 80), round((cy + h / 2) * 64)
                    objects += (f"<object><name>{CLASSES[int(c)]}</name><difficult>0"
                                f"</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
                                f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>")
            (root / "Annotations" / f"{path.stem}.xml").write_text(
                f"<annotation><size><width>80</width><height>64</height><depth>3</depth>"
                f"</size>{objects}</annotation>")
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(stems) + "\n")
    return root


@pytest.mark.parametrize("layout", ["coco", "voc"])
def test_data_check_reads_coco_and_voc_with_their_test_split(layout, yolo_folder, tmp_path):
    root = (as_coco if layout == "coco" else as_voc)(yolo_folder, tmp_path / layout)
    result = CliRunner().invoke(main, ["data", "check", str(root), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["images"] == 26
    assert report["background_images"] == 1
    assert set(report["split_counts"]) == {"train", "val", "test"}


@pytest.mark.slow  # 40 s each: a run per layout; the YOLO run above is the fast one
@pytest.mark.parametrize("layout", ["coco", "voc"])
def test_coco_and_voc_train_and_evaluate_on_their_test_split(layout, yolo_folder, tmp_path):
    root = (as_coco if layout == "coco" else as_voc)(yolo_folder, tmp_path / layout)
    runner = CliRunner()
    result = runner.invoke(main, [
        "train", str(root), "--task", "detection", "--backbone", "keras_mobilenet",
        "--weights", "none", "--mode", "feature-extractor", "--image-size", str(SIZE),
        "--epochs", "1", "--batch-size", "8", "--output", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test"]["samples"] == 4 and metrics["val"]["samples"] == 6
    result = runner.invoke(main, ["evaluate", str(tmp_path / "run"), str(root), "--split",
                                  "test", "--output", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    assert "mAP50-95" in result.output


@pytest.mark.slow  # 30 s: the paper's network at 128 px (77 M parameters)
def test_yolov1_trains_from_scratch_through_the_cli(yolo_folder, tmp_path):
    result = CliRunner().invoke(main, [
        "train", str(yolo_folder), "--model", "yolov1", "--weights", "none", "--mode",
        "full-retrain", "--image-size", "128", "--epochs", "1", "--batch-size", "8",
        "--output", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    contract = json.loads((tmp_path / "run" / "contract.json").read_text())
    assert contract["task_options"]["head"] == "yolov1"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics["test"]) >= {"map", "map50"}


def test_the_detectors_keras_file_opens_in_plain_keras(detection_run, tmp_path):
    """model.keras in ``python -I`` with the package blocked: it loads in safe mode, as plain
    ``load_model(path)`` (every layer is Keras's own; the loss, the toolkit's, is left out with
    Keras's warning) and gives the raw outputs the run's model gives."""
    import keras

    from tests.transfer.test_pretrained import run_without_package

    model = keras.saving.load_model(detection_run / "model.keras", compile=False)
    image = np.random.default_rng(0).uniform(0, 255, (1, SIZE, SIZE, 3)).astype(np.float32)
    np.save(tmp_path / "image.npy", image)
    np.save(tmp_path / "want.npy", np.asarray(model(image)))
    proc = run_without_package(f"""
import numpy as np, keras
model = keras.saving.load_model({str(detection_run / 'model.keras')!r}, safe_mode=True)
got = np.asarray(model(np.load("image.npy")))
np.testing.assert_allclose(got, np.load("want.npy"), atol=1e-4)
print("outputs", got.shape)
""", tmp_path)
    assert "outputs (1, " in proc.stdout


DETECTION_KILL = """
import os, signal, sys
import keras
import transfer

data_dir, out, kill_epoch = sys.argv[1], sys.argv[2], int(sys.argv[3])

class KillMidEpoch(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
    def on_train_batch_end(self, batch, logs=None):
        if self.epoch + 1 == kill_epoch and batch == 0:
            os.kill(os.getpid(), signal.SIGKILL)

# fine-tune with flips: the head phase on a cache of views (the image and its mirror, the boxes
# mirrored with it), then the whole backbone on full forward passes
transfer.train(data_dir, output=out, backbone="keras_mobilenet", weights=None,
               mode="fine-tune", image_size=64, epochs=2, fine_tune_epochs=2, batch_size=8,
               seed=5, deterministic=True, early_stopping_patience=0, verbose=0,
               callbacks=[KillMidEpoch()] if kill_epoch else [])
"""


@pytest.mark.slow  # 90 s: a detector trained three times, once killed
@pytest.mark.parametrize("kill_epoch", [2, 3])  # in the head phase, in the fine-tune phase
def test_a_detector_resumed_after_a_kill_matches_an_uninterrupted_run(yolo_folder, tmp_path,
                                                                       kill_epoch):
    import signal

    import transfer

    def run(out, kill):
        return subprocess.run([sys.executable, "-c", DETECTION_KILL, str(yolo_folder),
                               str(out), str(kill)], capture_output=True, text=True,
                              timeout=600)

    whole = run(tmp_path / "whole", 0)
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = run(tmp_path / "killed", kill_epoch)
    assert killed.returncode == -signal.SIGKILL
    result = transfer.resume(tmp_path / "killed", verbose=0)
    expected = json.loads((tmp_path / "whole" / "history.json").read_text())
    assert [r["phase"] for r in result.history] == [r["phase"] for r in expected]
    for got, want in zip(result.history, expected):
        for key in ("loss", "val_loss", "val_map"):
            assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), (key, got, want)
    want = json.loads((tmp_path / "whole" / "metrics.json").read_text())["test"]
    assert result.metrics["test"]["map"] == pytest.approx(want["map"], abs=1e-6)


def test_a_video_gets_each_frame_drawn_and_a_json_line(detection_run, tmp_path):
    """issue 28: the detection run's prediction drawn onto a tiny clip's frames."""
    from tests.cli.test_video_cli import predict_clip

    lines = predict_clip(detection_run, tmp_path, size=SIZE)
    assert all("detections" in line for line in lines)


@pytest.mark.slow  # 12 s of calibration and conversion
def test_int8_tflite_runs_the_network_in_int8_and_the_nms_in_float(detection_run, tmp_path):
    """TensorFlow's int8 calibrator killed the process (a segmentation fault) on the While loop
    around the detector's NMS, and the export was refused. At the TFLite file's batch of one the
    NMS has no loop: the convolutions are int8, the NMS (no int8 kernel) float, uint8 in."""
    pytest.importorskip("ai_edge_litert")
    from ai_edge_litert.interpreter import Interpreter

    out = tmp_path / "model.tflite"
    result = CliRunner().invoke(main, ["export", str(detection_run), "--format", "tflite",
                                       "--quantize", "int8", "--output", str(out)])
    assert result.exit_code == 0, result.output
    interpreter = Interpreter(model_path=str(out))
    interpreter.allocate_tensors()
    ops = interpreter._get_ops_details()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    convolutions = [op for op in ops if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert convolutions and all(tensors[op["inputs"][1]]["dtype"] == np.int8
                                for op in convolutions)
    (nms,) = [op for op in ops if op["op_name"] == "NON_MAX_SUPPRESSION_V5"]
    assert tensors[nms["inputs"][0]]["dtype"] == np.float32
    assert not [op for op in ops if op["op_name"].startswith("Flex")]
    runner = interpreter.get_signature_runner()
    assert runner.get_input_details()["images"]["dtype"] == np.uint8
    got = runner(images=np.full((1, SIZE, SIZE, 3), 90, np.uint8))
    n = int(got["num_detections"][0])
    assert 0 <= n <= 300 and (got["classes"][0, n:] == -1).all()
    assert ((0 <= got["boxes"]) & (got["boxes"] <= SIZE)).all()
