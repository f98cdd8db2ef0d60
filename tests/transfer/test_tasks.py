"""The task interface as the engine uses it: layouts recognised by the registry, streaming
evaluation equal to one pass, task options carried by the input contract, targets of any
length gathered by position."""

import json

import numpy as np
import pytest

from tests.conftest import make_image_folder, make_segmentation_folder
from transfer.config import TrainConfig
from transfer.rundir import InputContract
from transfer.tasks import DEFAULT_TASK, TASKS, get_task, recognise, served_task, task_for
from transfer.tasks.segmentation.metrics import segmentation_summary


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    classes = make_image_folder(root / "classes", per_class=2)
    pairs = make_segmentation_folder(root / "pairs", count=4, size=16)
    presplit = root / "presplit"
    for split in ("train", "val"):
        make_image_folder(presplit / split, per_class=2)
    (root / "labels.csv").write_text("path,label\n")
    (root / "empty").mkdir()
    return {"classes": classes, "pairs": pairs, "presplit": presplit,
            "csv": root / "labels.csv", "empty": root / "empty"}


def test_the_registry_recognises_each_tasks_layout(layouts):
    assert recognise(layouts["pairs"]) == ("segmentation", "images/ + masks/")
    assert recognise(layouts["classes"]) == ("classification", "one sub-folder per class")
    assert recognise(layouts["presplit"], split="val") == ("classification",
                                                           "one sub-folder per class")
    assert recognise(layouts["csv"]) == ("classification", "a CSV file of path,label rows")
    assert recognise("tfds:mnist") == ("classification", "a TensorFlow Datasets dataset")
    assert recognise(layouts["empty"]) is None
    # segmentation's images/ + masks/ would also read as two class folders: asked first
    assert TASKS["segmentation"].claim_order < TASKS["classification"].claim_order


def test_task_auto_follows_the_model_options_then_the_layout(layouts):
    auto = TrainConfig(task="auto")
    assert task_for(auto, layouts["pairs"]) == "segmentation"
    assert task_for(auto, layouts["classes"]) == "classification"
    assert task_for(auto, layouts["empty"]) == DEFAULT_TASK == "classification"
    assert task_for(auto.replace(model="unet", backbone="keras_mobilenet"),
                    layouts["classes"]) == "segmentation"
    assert task_for(auto.replace(model="segnet"), layouts["classes"]) == "segmentation"
    assert task_for(TrainConfig(task="classification"), layouts["pairs"]) == "classification"


def test_a_savedmodel_is_told_apart_by_its_outputs():
    assert served_task({"probabilities", "top_scores", "top_indices", "top_classes"}) == \
        "classification"
    assert served_task({"probabilities", "class_ids", "sizes"}) == "segmentation"
    with pytest.raises(Exception, match="not those of any task"):
        served_task({"logits"})


def test_segmentation_streamed_in_batches_equals_one_pass():
    rng = np.random.default_rng(0)
    names = ["a", "b", "c"]
    probabilities = rng.dirichlet(np.ones(3), size=(7, 8, 8)).astype(np.float32)
    labels = rng.integers(0, 3, (7, 8, 8)).astype(np.uint8)
    labels[0, :2] = 255  # ignored pixels
    labels[1] = 255  # an image without a counted pixel
    whole = segmentation_summary(probabilities.argmax(-1), labels, names,
                                 probabilities=probabilities)
    evaluator = get_task("segmentation").evaluator(names)
    for start in range(0, 7, 3):
        evaluator.update(probabilities[start:start + 3], labels[start:start + 3],
                         [f"{i}.png" for i in range(start, min(start + 3, 7))])
    streamed = evaluator.result()
    assert streamed["loss"] == pytest.approx(whole["loss"], rel=1e-12)
    assert {k: v for k, v in streamed.items() if k != "loss"} == \
        {k: v for k, v in whole.items() if k != "loss"}
    assert streamed["per_image_iou"][1] is None
    # the worst images kept are the lowest IoU, an image without counted pixels last
    worst = [w[1] for w in evaluator._worst]
    ious = [np.inf if v is None else v for v in whole["per_image_iou"]]
    assert worst == sorted(range(7), key=lambda i: (ious[i], i))


def test_classification_streamed_in_batches_equals_one_pass():
    rng = np.random.default_rng(1)
    probabilities = rng.dirichlet(np.ones(4), size=10).astype(np.float32)
    labels = rng.integers(0, 4, 10)
    task = get_task("classification")
    whole = task.summarise(probabilities, labels, list("abcd"))
    evaluator = task.evaluator(list("abcd"))
    for start in (0, 4, 8):
        evaluator.update(probabilities[start:start + 4], labels[start:start + 4],
                         [str(i) for i in range(start, min(start + 4, 10))])
    assert evaluator.result() == whole
    assert evaluator.predictions().paths == tuple(str(i) for i in range(10))


def test_task_options_travel_in_the_contract_and_old_contracts_still_load():
    contract = InputContract("segmentation", 32, 3, "tf", ("a", "b"),
                             options=get_task("segmentation", ignore_index=7).contract_options())
    data = contract.to_dict()
    assert data["task_options"] == {"ignore_index": 7} and "ignore_index" not in data
    assert InputContract.from_dict(json.loads(json.dumps(data))) == contract
    assert get_task(contract.task, **contract.task_options()).ignore_index == 7
    legacy = {"task": "segmentation", "image_size": 32, "channels": 3, "preprocessing": "tf",
              "class_names": ["a", "b"], "ignore_index": 255}
    assert InputContract.from_dict(legacy).options == {"ignore_index": 255}
    classifier = InputContract("classification", 32, 3, "tf", ("a",))
    assert "task_options" not in classifier.to_dict()
    assert get_task("classification").contract_options() == {}


def test_targets_of_any_length_are_gathered_by_position():
    import tensorflow as tf

    from transfer.feeding import take

    boxes = {"boxes": tf.constant(np.arange(3 * 2 * 4, dtype=np.float32).reshape(3, 2, 4)),
             "count": tf.constant([2, 0, 1])}
    rows = take(boxes, tf.constant([2, 0]))
    np.testing.assert_array_equal(rows["count"].numpy(), [1, 2])
    np.testing.assert_array_equal(rows["boxes"].numpy(), boxes["boxes"].numpy()[[2, 0]])


@pytest.mark.parametrize("name", sorted(TASKS))
def test_probe_targets_have_the_shape_and_type_of_the_training_targets(name):
    targets = get_task(name).probe_targets(5, 3, 16, np.random.default_rng(0))
    assert targets.shape == {"classification": (5, 3), "segmentation": (5, 16, 16),
                             "detection": (5, 4, 5)}[name]
    if name == "segmentation":
        assert targets.max() < 3
    if name == "detection":  # (class, x0, y0, x1, y1) in the input's pixels, corners ordered
        assert set(np.unique(targets[..., 0])) <= {0, 1, 2}
        assert (targets[..., 1] <= targets[..., 3]).all() and (targets[..., 2] <=
                                                               targets[..., 4]).all()
        assert targets[..., 1:].min() >= 0 and targets[..., 1:].max() <= 16


def test_letterbox_keeps_the_aspect_ratio_and_pads_below_and_right():
    from transfer.data.pipelines import LETTERBOX_FILL, letterbox_scale, resize_images

    image = np.full((20, 40, 3), 200, np.uint8)  # wide: scaled by 16/40, 8 rows of picture
    out = resize_images(image, 16, "letterbox").numpy()
    assert out.shape == (16, 16, 3)
    np.testing.assert_allclose(out[:8], 200.0)
    np.testing.assert_allclose(out[8:], LETTERBOX_FILL)
    assert float(letterbox_scale([20, 40], 16)) == pytest.approx(0.4)
    batch = resize_images(np.stack([image, image]), 16, "letterbox").numpy()
    np.testing.assert_array_equal(batch[1], out)
    tall = resize_images(np.full((40, 10, 3), 50, np.uint8), 16, "letterbox").numpy()
    np.testing.assert_allclose(tall[:, :4], 50.0)
    np.testing.assert_allclose(tall[:, 4:], LETTERBOX_FILL)


def test_a_split_keeps_its_annotations_through_json_and_subsets():
    from transfer.data import Split

    split = Split(("a.jpg", "b.jpg", "c.jpg"), (0, 1, 2),
                  annotations=({"boxes": [[0, 0, 4, 4]], "classes": [1]},
                               {"boxes": [], "classes": []},
                               {"boxes": [[1, 2, 3, 4]], "classes": [0]}))
    again = Split.from_dict(json.loads(json.dumps(split.to_dict())))
    assert again == split
    assert split.subset([2, 0]).annotations == (split.annotations[2], split.annotations[0])
    assert split.subset([1]).paths == ("b.jpg",) and split.subset([1]).masks == ()


@pytest.mark.parametrize("name", ["classification", "segmentation"])
def test_mosaic_is_refused_by_the_tasks_without_boxes(name):
    from transfer.errors import ConfigError

    with pytest.raises(ConfigError, match="mosaic is for detection"):
        get_task(name).check(TrainConfig(task=name, augment="flip,mosaic"))
