"""Evaluation numbers, plots, and the SavedModel / .keras / TFLite exports run outside the
toolkit."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from PIL import Image

import zoo
from tests.conftest import box_iou
from transfer import evaluate as evaluate_lib
from transfer.data import ImageFolderData, decode_and_resize
from transfer.errors import ConfigError, DataError, RunDirError
from transfer.evaluate import evaluate
from transfer.export import export, write_model_card
from transfer.tasks.classification.metrics import classification_metrics


@pytest.fixture(scope="module")
def run_copy(trained_run, tmp_path_factory) -> Path:
    """A copy of the session's run directory: exports write MODEL_CARD.md into it."""
    return Path(shutil.copytree(trained_run.run_dir, tmp_path_factory.mktemp("exp") / "run"))


def test_classification_metrics_on_hand_made_probabilities():
    names = list("abcdefg")  # 7 classes, so top-5 differs from top-1 and from 100%
    probabilities = np.array([
        [0.70, 0.10, 0.05, 0.05, 0.04, 0.03, 0.03],  # a, predicted a
        [0.50, 0.30, 0.10, 0.04, 0.03, 0.02, 0.01],  # b, predicted a, b ranked 2nd
        [0.10, 0.10, 0.60, 0.05, 0.05, 0.05, 0.05],  # c, predicted c
        [0.10, 0.10, 0.40, 0.15, 0.12, 0.12, 0.01],  # g, predicted c, g ranked last
    ])
    labels = np.array([0, 1, 2, 6])
    m = classification_metrics(probabilities, labels, names)
    assert m["samples"] == 4 and m["top_k"] == 5
    assert m["top1_accuracy"] == 0.5 and m["top1_error"] == 0.5
    assert m["top5_accuracy"] == 0.75 and m["top5_error"] == 0.25
    assert m["loss"] == pytest.approx(-(math.log(0.7) + math.log(0.3) + math.log(0.6)
                                        + math.log(0.01)) / 4)
    expected = np.zeros((7, 7), dtype=int)
    expected[0, 0] = expected[1, 0] = expected[2, 2] = expected[6, 2] = 1
    assert m["confusion_matrix"] == expected.tolist()
    assert m["per_class"]["a"] == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert m["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["per_class"]["c"] == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert m["per_class"]["g"]["f1"] == 0.0 and m["per_class"]["d"]["support"] == 0
    assert m["macro"] == pytest.approx({"precision": 1 / 7, "recall": 2 / 7, "f1": 4 / 21})
    assert m["weighted"] == pytest.approx({"precision": 0.25, "recall": 0.5, "f1": 1 / 3})


def _assert_png(path: Path, min_size=(200, 100)) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1]
        assert image.size[0] <= 4000 and image.size[1] <= 4000


def test_evaluate_on_the_saved_split_uses_exactly_its_images(trained_run, tmp_path,
                                                             monkeypatch):
    seen = []
    real = evaluate_lib.score_split
    monkeypatch.setattr(evaluate_lib, "score_split",
                        lambda model, split, *a, **kw: seen.append(split)
                        or real(model, split, *a, **kw))
    out = tmp_path / "eval"
    result = evaluate(trained_run.run_dir, output_dir=out)

    val = ImageFolderData.load(trained_run.run_dir / "split.json").val
    (split,) = seen
    assert split.paths == val.paths and split.labels == val.labels
    assert result["split"] == "val" and result["unreadable"] == []
    # Same images and model as at the end of training, so the same numbers.
    trained = trained_run.metrics["val"]
    assert result["samples"] == trained["samples"] == len(val)
    assert result["top1_accuracy"] == trained["top1_accuracy"]
    assert result["confusion_matrix"] == trained["confusion_matrix"]
    assert result["loss"] == pytest.approx(trained["loss"], rel=1e-5)
    assert json.loads((out / "metrics.json").read_text()) == result
    _assert_png(out / "confusion_matrix.png", (300, 300))
    _assert_png(out / "mistakes.png")


def test_evaluate_on_a_folder_checks_class_names(trained_run, image_folder, tmp_path):
    data = tmp_path / "data"
    for name in ("red", "blue"):  # a subset of the classes is fine
        (data / name).mkdir(parents=True)
        for src in sorted((image_folder / name).glob("*.png"))[:3]:
            shutil.copy(src, data / name)
    (data / "red" / "broken.png").write_text("not an image")
    result = evaluate(trained_run.run_dir, data, output_dir=tmp_path / "eval")
    assert result["samples"] == 6 and result["split"] is None
    assert result["unreadable"] == [str(data / "red" / "broken.png")]
    assert result["per_class"]["green"]["support"] == 0
    assert result["per_class"]["red"]["support"] == 3
    _assert_png(tmp_path / "eval" / "mistakes.png", (150, 50))

    (data / "cat").mkdir()
    shutil.copy(data / "red" / sorted(p.name for p in (data / "red").glob("red_*"))[0],
                data / "cat")
    with pytest.raises(DataError, match="'cat'.*not classes of the model.*'blue', 'green'"):
        evaluate(trained_run.run_dir, data, output_dir=tmp_path / "eval2")
    with pytest.raises(RunDirError, match="not a run directory"):
        evaluate(tmp_path, data)


def test_savedmodel_export_to_a_new_place_reads_in_saved_model_cli(run_copy, tmp_path):
    target = export(run_copy, format="savedmodel", output=tmp_path / "exports" / "sm")
    assert (target / "saved_model.pb").is_file()
    cli = Path(sys.executable).parent / "saved_model_cli"
    proc = subprocess.run([str(cli), "show", "--dir", str(target), "--all"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("serving_default", "serve_images", "serve_bytes", "class_names",
                 "image_bytes", "top_classes"):
        assert name in proc.stdout
    assert "DT_UINT8" in proc.stdout and "shape: (-1, -1, -1, 3)" in proc.stdout


def _val_images(run_dir: Path, size: int) -> np.ndarray:
    val = ImageFolderData.load(run_dir / "split.json").val
    return np.stack([np.clip(np.round(decode_and_resize(tf.io.read_file(p), size).numpy()),
                             0, 255).astype(np.uint8) for p in val.paths])


def _run_tflite(path: Path, images: np.ndarray) -> tuple[np.ndarray, Interpreter]:
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert inp["dtype"] == np.uint8 and list(inp["shape"]) == [1, *images.shape[1:]]
    assert out["dtype"] == np.float32
    results = []
    for image in images:
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        results.append(interpreter.get_tensor(out["index"])[0].copy())
    return np.stack(results), interpreter


def test_tflite_variants_agree_with_the_savedmodel(run_copy, tmp_path):
    size = 32
    images = _val_images(run_copy, size)
    saved = tf.saved_model.load(str(run_copy / "saved_model"))
    reference = saved.signatures["serving_default"](images=tf.constant(images))
    reference = reference["probabilities"].numpy()

    sizes, probabilities = {}, {}
    for quantize in ("none", "float16", "int8"):
        path = export(run_copy, format="tflite", quantize=quantize,
                      output=tmp_path / f"model-{quantize}.tflite")
        sizes[quantize] = path.stat().st_size
        probabilities[quantize], interpreter = _run_tflite(path, images)
        assert probabilities[quantize].shape == reference.shape
        dtypes = {d["dtype"] for d in interpreter.get_tensor_details()}
        assert (np.int8 in dtypes) == (quantize == "int8")
        assert (np.float16 in dtypes) == (quantize == "float16")

    def agreement(q):
        return np.mean(probabilities[q].argmax(1) == reference.argmax(1))

    np.testing.assert_allclose(probabilities["none"], reference, atol=1e-5)
    assert agreement("none") == 1.0
    np.testing.assert_allclose(probabilities["float16"], reference, atol=5e-3)
    assert agreement("float16") == 1.0
    assert np.abs(probabilities["int8"] - reference).mean() < 0.05
    assert agreement("int8") >= 5 / 6
    # LeNet-5 has 62k parameters: enough for the weights to dominate the file size.
    assert sizes["int8"] < sizes["float16"] < sizes["none"]
    assert sizes["float16"] < 0.6 * sizes["none"] and sizes["int8"] < 0.4 * sizes["none"]


def test_int8_needs_calibration_images_without_a_run_dir(run_copy, tmp_path, image_folder):
    model_file = tmp_path / "alone" / "model.keras"
    model_file.parent.mkdir()
    shutil.copy(run_copy / "model.keras", model_file)
    with pytest.raises(DataError, match="calibration"):
        export(model_file, format="tflite", quantize="int8", output=tmp_path / "a.tflite")
    path = export(model_file, format="tflite", quantize="int8", output=tmp_path / "b.tflite",
                  calibration_data=image_folder / "red")
    assert Interpreter(model_path=str(path)).get_signature_list() == {
        "serving_default": {"inputs": ["images"], "outputs": ["probabilities"]}}


def test_keras_export_reloads_in_safe_mode_with_identical_predictions(run_copy, tmp_path):
    path = export(run_copy, format="keras", output=tmp_path / "exported.keras")
    reloaded = keras.saving.load_model(path, compile=False, safe_mode=True)
    original = keras.saving.load_model(run_copy / "model.keras", compile=False, safe_mode=True)
    images = _val_images(run_copy, 32).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(reloaded(images)), np.asarray(original(images)))
    with pytest.raises(ConfigError, match="must be a file ending in .keras"):
        export(run_copy, format="keras", output=tmp_path / "exported.h5")
    with pytest.raises(ConfigError, match="tflite format only"):
        export(run_copy, format="keras", quantize="int8", output=tmp_path / "q.keras")
    with pytest.raises(ConfigError, match="export format must be one of"):
        export(run_copy, format="torchscript", output=tmp_path / "m.pt")


def test_export_is_atomic_and_refuses_to_replace_without_force(run_copy, tmp_path,
                                                               monkeypatch):
    target = tmp_path / "out" / "sm"
    archive_class = type(keras.export.ExportArchive())  # the backend's subclass does the writing

    def fail_halfway(self, filepath, **kwargs):
        Path(filepath).mkdir(parents=True)
        (Path(filepath) / "saved_model.pb").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(archive_class, "write_out", fail_halfway)
    with pytest.raises(OSError, match="disk full"):
        export(run_copy, format="savedmodel", output=target)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # no temporary sibling left

    target.mkdir()
    (target / "old.txt").write_text("a user's file")
    with pytest.raises(RunDirError, match="already exists; choose another path, or pass --force"):
        export(run_copy, format="savedmodel", output=target)
    with pytest.raises(RunDirError, match="was not written by zoo, so --force"):
        export(run_copy, format="savedmodel", output=target, force=True)
    assert (target / "old.txt").is_file()
    (target / "old.txt").unlink()
    target.rmdir()

    monkeypatch.undo()
    export(run_copy, format="savedmodel", output=target)
    first = (target / "saved_model.pb").read_bytes()
    monkeypatch.setattr(archive_class, "write_out", fail_halfway)
    with pytest.raises(OSError, match="disk full"):  # a failed forced export keeps the old one
        export(run_copy, format="savedmodel", output=target, force=True)
    assert (target / "saved_model.pb").read_bytes() == first
    monkeypatch.undo()
    export(run_copy, format="savedmodel", output=target, force=True)
    assert (target / "saved_model.pb").is_file()
    assert [p.name for p in target.parent.iterdir()] == ["sm"]


def test_model_card_describes_data_metrics_and_contracts(run_copy):
    card = write_model_card(run_copy).read_text()
    metrics = json.loads((run_copy / "metrics.json").read_text())["val"]
    # The zoo's LeNet-5 preprocesses inside itself; the card names the registry's mode.
    preprocessing = zoo.get_spec("lenet5").preprocessing
    split = json.loads((run_copy / "split.json").read_text())
    for text in (
        "# Model card: lenet5 on colours",
        f"data root: `{split['root']}`",
        "| 0 | blue | 10 | 2 |", "| 2 | red | 10 | 2 |", "| | **total** | 30 | 6 |",
        "backbone: `lenet5`", "transfer mode: `full-retrain`",
        f"preprocessing mode: `{preprocessing}`",
        f"top-1 accuracy {metrics['top1_accuracy']:.4f}",
        f"macro precision / recall / F1: {metrics['macro']['precision']:.3f}",
        "`serving_default` = `serve_images` | `images`: uint8 `[batch, height, width, 3]`",
        "`serve_bytes` | `image_bytes`: string `[batch]`",
        "`probabilities` float32 `[batch, 3]`",
        "`images`: uint8 `[1, 32, 32, 3]`", "`probabilities` float32 `[1, 3]`",
        "`images`: uint8 `[batch, 32, 32, 3]` raw RGB, resized as for TFLite | `probabilities` "
        "float32 `[batch, 3]`; class names in the metadata",
    ):
        assert text in card, text


# ---- ONNX -------------------------------------------------------------------------------------

def _onnx_session(path: Path):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _model_size_pngs(images: np.ndarray, folder: Path) -> list[str]:
    """The images as PNG files already at the model's size: `zoo predict` then reads exactly
    the pixels the ONNX model gets."""
    folder.mkdir()
    paths = [str(folder / f"{i:02d}.png") for i in range(len(images))]
    for image, path in zip(images, paths):
        Image.fromarray(image).save(path)
    return paths


def test_onnx_export_agrees_with_predict(run_copy, tmp_path):
    from transfer.predict import predict

    path = export(run_copy, format="onnx", output=tmp_path / "model.onnx")
    session = _onnx_session(path)
    (inp,) = session.get_inputs()
    assert inp.name == "images" and inp.type == "tensor(uint8)"
    assert not isinstance(inp.shape[0], int) and inp.shape[1:] == [32, 32, 3]  # any batch
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    meta = session.get_modelmeta().custom_metadata_map
    names = json.loads((run_copy / "class_names.json").read_text())
    assert json.loads(meta["class_names"]) == names
    assert (meta["task"], meta["image_size"], meta["written_by"]) == ("classification", "32",
                                                                       "cnn-zoo")

    images = _val_images(run_copy, 32)
    (probabilities,) = session.run(None, {"images": images})
    (one,) = session.run(None, {"images": images[:1]})
    np.testing.assert_allclose(one[0], probabilities[0], atol=1e-6)
    predicted = predict(run_copy, _model_size_pngs(images, tmp_path / "pngs"), top_k=3)
    for row, prediction in zip(probabilities, predicted):
        assert names[int(row.argmax())] == prediction.labels[0]
        by_name = dict(zip(prediction.labels, prediction.scores))
        np.testing.assert_allclose(row, [by_name[n] for n in names], atol=1e-4)


def test_onnx_opset_extra_and_unconvertible_layers_are_one_clear_error(run_copy, tmp_path,
                                                                       monkeypatch):
    from transfer.errors import ExportError
    from transfer.export import onnx_model, onnx_opset

    path = export(run_copy, format="onnx", opset=17, output=tmp_path / "m.onnx")
    assert onnx_opset(path) == 17
    export(run_copy, format="onnx", output=path, force=True)  # its own file: replaced
    assert onnx_opset(path) == 15  # tf2onnx's default
    stranger = tmp_path / "other.onnx"
    stranger.write_bytes(b"not ours")
    with pytest.raises(RunDirError, match="not written by zoo"):
        export(run_copy, format="onnx", output=stranger, force=True)
    for bad in (7, 99):
        with pytest.raises(ConfigError, match="opset must be an integer from 14 to 18"):
            export(run_copy, format="onnx", opset=bad, output=tmp_path / "x.onnx")
    with pytest.raises(ConfigError, match="onnx format only"):
        export(run_copy, format="tflite", opset=17, output=tmp_path / "x.tflite")
    with pytest.raises(ConfigError, match="must be a file ending in .onnx"):
        export(run_copy, format="onnx", output=tmp_path / "x.bin")

    class Bessel(keras.layers.Layer):  # an op tf2onnx has no ONNX counterpart for
        def call(self, x):
            return tf.math.special.bessel_i0e(x)

    inputs = keras.Input((8, 8, 3))
    hidden = keras.layers.GlobalAveragePooling2D()(Bessel(name="bessel")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(hidden))
    with pytest.raises(ExportError, match="'BesselI0e' in layer 'bessel'.*savedmodel or tflite"):
        onnx_model(model, ["a", "b"])

    import tf2onnx

    calls = []

    def crash(*args, **kwargs):
        calls.append(os.environ.get("TF2ONNX_CATCH_ERRORS"))
        raise ValueError("no handler for\nthis")

    monkeypatch.setattr(tf2onnx.convert, "from_function", crash)
    with pytest.raises(ExportError, match=r"tf2onnx .* could not convert the model \(ValueError: "
                                          r"no handler for this\); export as savedmodel"):
        onnx_model(model, ["a", "b"])
    assert calls == ["FALSE", None]  # fast, then the careful way; the environment restored
    assert "TF2ONNX_CATCH_ERRORS" not in os.environ

    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # the extra not installed
    with pytest.raises(ExportError, match=r"needs tf2onnx.*pip install \"cnn-zoo\[onnx\]\""):
        export(run_copy, format="onnx", output=tmp_path / "y.onnx")
    assert not (tmp_path / "y.onnx").exists()


def _tiny_model(kind: str, size: int, classes: int) -> keras.Model:
    """A few random layers with the raw outputs of a segmenter, a detector or YOLO v1: enough for
    the task's serving outputs, small enough to convert in a second or two."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(
        keras.layers.Rescaling(1 / 255)(inputs))
    if kind == "segmentation":
        x = keras.layers.UpSampling2D(2, interpolation="bilinear")(x)
        return keras.Model(inputs, keras.layers.Conv2D(classes, 1, activation="softmax")(x))
    from zoo.detection import REG_MAX, anchor_points

    if kind == "detector":  # logits: wide random weights give boxes of many sizes and scores
        shape = (len(anchor_points(size)[1]), 4 * REG_MAX + classes)
        kernel, bias = (keras.initializers.RandomNormal(stddev=2.0),
                        keras.initializers.RandomNormal(stddev=2.0))
    else:  # YOLO v1's grid of 2 boxes per cell: values mostly inside [0, 1], which it clips to
        shape = (7, 7, 2 * 5 + classes)
        kernel, bias = (keras.initializers.RandomNormal(stddev=0.3),
                        keras.initializers.RandomUniform(0.1, 0.9))
    x = keras.layers.Dense(int(np.prod(shape)), kernel_initializer=kernel,
                           bias_initializer=bias)(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, keras.layers.Reshape(shape)(x))


@pytest.mark.parametrize("kind", ["segmentation", "detector", "yolov1"])
def test_onnx_runs_each_tasks_post_processing_as_tensorflow_does(kind):
    """The ONNX graph of each task's serving outputs (a segmenter's argmax; a detector's decoding
    and class-aware NMS as ONNX's NonMaxSuppression; YOLO v1's, per class) against the serving
    function that `zoo predict` runs, on small random models; trained runs are compared in the
    slow suite."""
    ort = pytest.importorskip("onnxruntime")
    from transfer.export import onnx_model
    from transfer.rundir import InputContract
    from transfer.serving import ServingFunctions

    size, names = 64, ("a", "b", "c")
    task = "segmentation" if kind == "segmentation" else "detection"
    options = ({"ignore_index": 255} if task == "segmentation" else
               {"conf": 0.2 if kind == "detector" else 0.4, "iou": 0.45, "max_det": 100,
                "head": kind, "image_size": size})
    contract = InputContract(task=task, image_size=size, channels=3, preprocessing="none",
                             class_names=names, options=options)
    model = _tiny_model(kind, size, len(names))
    session = ort.InferenceSession(onnx_model(model, contract).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    images = np.random.default_rng(1).integers(0, 256, (3, size, size, 3), dtype=np.uint8)
    got = dict(zip([o.name for o in session.get_outputs()],
                   session.run(None, {"images": images})))
    expected = {key: value.numpy() for key, value in
                ServingFunctions(model, contract).serve_images(tf.constant(images)).items()}
    if task == "segmentation":
        assert np.mean(got["class_ids"] == expected["class_ids"]) >= 0.999
        np.testing.assert_allclose(got["probabilities"], expected["probabilities"], atol=1e-5)
        return
    counts = expected["num_detections"]
    np.testing.assert_array_equal(got["num_detections"], counts)
    assert counts.min() >= 5, counts  # suppression had boxes of several classes to work on
    for i, n in enumerate(counts):
        assert (got["classes"][i, n:] == -1).all()
        ours = [got[key][i, :n] for key in ("classes", "scores", "boxes")]
        theirs = [expected[key][i, :n] for key in ("classes", "scores", "boxes")]
        if kind == "yolov1":
            # A box kept for two classes whose clipped probabilities are both 1 ties with itself,
            # and tied detections come out in either order: compare them sorted.
            ours, theirs = ([part[np.lexsort((*np.round(box, 3).T, cls, -np.round(score, 5)))]
                             for part in (cls, score, box)] for cls, score, box in (ours, theirs))
        np.testing.assert_array_equal(ours[0], theirs[0])
        np.testing.assert_allclose(ours[1], theirs[1], atol=1e-5)
        assert box_iou(ours[2], theirs[2]).min() >= 0.99


@pytest.mark.parametrize("kind", ["detector", "yolov1"])
def test_tflite_runs_each_detectors_nms_as_tensorflow_does(kind):
    """The TFLite file of each detector head, small random models, against the serving function
    that `zoo predict` runs, image by image: LiteRT's NMS op pads its output, and the count was
    the padded length (300 boxes where predict kept 4); YOLO v1's combined NMS would need a Flex
    op, which LiteRT alone does not run."""
    pytest.importorskip("ai_edge_litert")
    from ai_edge_litert.interpreter import Interpreter

    from transfer.export import tflite_model
    from transfer.rundir import InputContract
    from transfer.serving import ServingFunctions

    size, names = 64, ("a", "b", "c")
    options = {"conf": 0.2 if kind == "detector" else 0.4, "iou": 0.45, "max_det": 100,
               "head": kind, "image_size": size}
    contract = InputContract(task="detection", image_size=size, channels=3,
                             preprocessing="none", class_names=names, options=options)
    model = _tiny_model(kind, size, len(names))
    interpreter = Interpreter(model_content=tflite_model(model, contract))
    assert not [op for op in interpreter._get_ops_details() if op["op_name"].startswith("Flex")]
    runner = interpreter.get_signature_runner()
    images = np.random.default_rng(1).integers(0, 256, (3, size, size, 3), dtype=np.uint8)
    expected = {key: value.numpy() for key, value in
                ServingFunctions(model, contract).serve_images(tf.constant(images)).items()}
    for i, n in enumerate(expected["num_detections"]):
        got = runner(images=images[i:i + 1])
        assert int(got["num_detections"][0]) == n
        assert 5 <= n < 100, n  # suppression had boxes to work on, and kept fewer than max_det
        assert (got["classes"][0, n:] == -1).all() and (got["scores"][0, n:] == 0).all()
        ours = [got[key][0, :n] for key in ("classes", "scores", "boxes")]
        theirs = [expected[key][i, :n] for key in ("classes", "scores", "boxes")]
        if kind == "yolov1":  # ties come out in either order (see the ONNX test)
            ours, theirs = ([part[np.lexsort((*np.round(box, 3).T, cls, -np.round(score, 5)))]
                             for part in (cls, score, box)] for cls, score, box in (ours, theirs))
        np.testing.assert_array_equal(ours[0], theirs[0])
        np.testing.assert_allclose(ours[1], theirs[1], atol=1e-4)
        assert box_iou(ours[2], theirs[2]).min() >= 0.99


def _fenced_python_after(markdown: str, heading: str) -> str:
    section = markdown.split(heading, 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_onnx_runtime_snippet_in_the_docs_runs_as_written(run_copy, tmp_path):
    """docs/serving.md's ONNX Runtime block, in a process that imports no TensorFlow, on a photo
    already at the model's size: the class and score `zoo predict` gives."""
    pytest.importorskip("onnxruntime")
    from transfer.predict import predict

    docs = Path(__file__).resolve().parents[2] / "docs" / "serving.md"
    snippet = _fenced_python_after(docs.read_text(), "## ONNX: ONNX Runtime")
    export(run_copy, format="onnx", output=tmp_path / "model.onnx")
    Image.fromarray(_val_images(run_copy, 32)[0]).save(tmp_path / "photo.jpg", quality=95)
    check = ("\nimport sys\nassert not [m for m in sys.modules if m.split('.')[0] in "
             "('tensorflow', 'keras', 'zoo', 'transfer', 'cli')]\n")
    done = subprocess.run([sys.executable, "-c", snippet + check], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    label, score = done.stdout.split()
    (expected,) = predict(run_copy, [str(tmp_path / "photo.jpg")], top_k=1)
    assert label == expected.labels[0]
    assert float(score) == pytest.approx(expected.scores[0], abs=1e-4)


def _run_snippet(snippet: str, cwd: Path, forbidden: tuple[str, ...]) -> list[str]:
    check = (f"\nimport sys\nassert not [m for m in sys.modules if m.split('.')[0] in "
             f"{forbidden!r}]\n")
    done = subprocess.run([sys.executable, "-c", snippet + check], cwd=cwd,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


def test_the_savedmodel_snippet_in_the_docs_runs_as_written(run_copy, tmp_path):
    """docs/serving.md's TensorFlow block on the run's SavedModel, in a process that imports
    only TensorFlow: the class and score ``zoo predict`` gives."""
    from transfer.predict import predict

    docs = Path(__file__).resolve().parents[2] / "docs" / "serving.md"
    snippet = _fenced_python_after(docs.read_text(), "## SavedModel: plain TensorFlow")
    shutil.copytree(run_copy / "saved_model", tmp_path / "saved_model")
    Image.fromarray(_val_images(run_copy, 40)[0]).save(tmp_path / "photo.jpg", quality=95)
    label, score = _run_snippet(snippet, tmp_path, ("zoo", "transfer", "cli"))
    (expected,) = predict(run_copy, [str(tmp_path / "photo.jpg")], top_k=1)
    assert label == expected.labels[0]
    assert float(score) == pytest.approx(expected.scores[0], abs=1e-5)


def test_the_tflite_snippet_in_the_docs_runs_as_written(run_copy, tmp_path):
    """docs/serving.md's LiteRT block on the run's float32 TFLite export, in a process that
    imports no TensorFlow: the class and score ``zoo predict`` gives."""
    pytest.importorskip("ai_edge_litert")
    from transfer.predict import predict

    docs = Path(__file__).resolve().parents[2] / "docs" / "serving.md"
    snippet = _fenced_python_after(docs.read_text(), "## TFLite: LiteRT")
    export(run_copy, format="tflite", output=tmp_path / "model.tflite")
    shutil.copy(run_copy / "class_names.json", tmp_path / "class_names.json")
    size = json.loads((run_copy / "contract.json").read_text())["image_size"]
    Image.fromarray(_val_images(run_copy, size)[0]).save(tmp_path / "photo.jpg", quality=95)
    label, score = _run_snippet(snippet, tmp_path,
                                ("tensorflow", "keras", "zoo", "transfer", "cli"))
    (expected,) = predict(run_copy, [str(tmp_path / "photo.jpg")], top_k=1)
    assert label == expected.labels[0]
    assert float(score) == pytest.approx(expected.scores[0], abs=1e-4)
