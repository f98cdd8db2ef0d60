"""Detection's evaluation: COCO's numbers through pycocotools on cases small enough to derive by
hand, the letterbox mapping, VOC's difficult boxes, streaming, the figures and the printed
lines."""

import numpy as np
import pytest
from PIL import Image

from transfer.errors import DataError
from transfer.tasks.detection.evaluation import (
    DetectionEvaluator,
    box_iou,
    evaluation_lines,
    key_numbers,
    to_image_pixels,
)

NAMES = ("cat", "dog", "bird")


def annotation(boxes=(), classes=(), size=(100, 100), difficult=None):
    return {"boxes": [list(b) for b in boxes], "classes": list(classes),
            "difficult": list(difficult) if difficult is not None else [False] * len(boxes),
            "size": list(size)}


def decoded(*images, max_det=6):
    """The decode dict of a batch; each image a list of ``(box, score, class)``."""
    n = len(images)
    out = {"boxes": np.zeros((n, max_det, 4), np.float32),
           "scores": np.zeros((n, max_det), np.float32),
           "classes": np.full((n, max_det), -1, np.int32),
           "count": np.array([len(dets) for dets in images], np.int32)}
    for i, dets in enumerate(images):
        for j, (box, score, cls) in enumerate(dets):
            out["boxes"][i, j], out["scores"][i, j], out["classes"][i, j] = box, score, cls
    return out


def labels(*annotations):
    array = np.empty(len(annotations), dtype=object)
    array[:] = annotations
    return array


def evaluate(images, names=NAMES, image_size=100):
    """``images``: ``(annotation, detections)`` pairs, one batch."""
    evaluator = DetectionEvaluator(names, image_size=image_size)
    evaluator.update(decoded(*[d for _, d in images]), labels(*[a for a, _ in images]), ())
    return evaluator.result()


def test_perfect_detections_score_one_and_the_result_has_its_keys():
    images = [(annotation([(10, 10, 40, 30), (50, 50, 90, 95)], [0, 1]),
               [((10, 10, 40, 30), 0.9, 0), ((50, 50, 90, 95), 0.8, 1)]),
              (annotation([(0, 0, 20, 20)], [0]), [((0, 0, 20, 20), 0.7, 0)])]
    result = evaluate(images)
    assert set(result) == {"samples", "boxes", "difficult", "map", "map50", "map75",
                           "map_small", "map_medium", "map_large", "per_class", "precision",
                           "recall", "confusion_matrix", "class_names"}
    assert result["map"] == 1.0 and result["map50"] == 1.0 and result["map75"] == 1.0
    # areas 600 and 400 are small (< 32^2), 1800 medium, none large
    assert result["map_small"] == 1.0 and result["map_medium"] == 1.0
    assert result["map_large"] is None
    assert (result["samples"], result["boxes"], result["difficult"]) == (2, 3, 0)
    assert result["per_class"]["cat"] == {"ap": 1.0, "ap50": 1.0, "boxes": 2}
    assert (result["precision"], result["recall"]) == (1.0, 1.0)
    assert result["class_names"] == list(NAMES)


def test_a_box_found_at_iou_06_counts_at_three_of_the_ten_thresholds():
    truth, shifted = (10, 10, 110, 110), (35, 10, 135, 110)  # overlap 7500 / union 12500
    assert box_iou([shifted], [truth])[0, 0] == 0.6
    result = evaluate([(annotation([truth], [0], size=(200, 200)), [(shifted, 0.9, 0)])],
                      image_size=200)
    # COCO matches at IoU >= t: AP 1 at t = 0.50, 0.55, 0.60, 0 at the seven others
    assert result["map50"] == 1.0 and result["map75"] == 0.0
    assert result["map"] == 0.3 and result["per_class"]["cat"]["ap"] == 0.3


@pytest.mark.parametrize("false_score, ap", [(0.5, 1.0), (0.95, 0.5)])
def test_a_false_positive_costs_only_when_it_outranks_the_true_one(false_score, ap):
    box = (10, 10, 50, 50)
    result = evaluate([(annotation([box], [0]),
                        [(box, 0.9, 0), ((60, 60, 90, 90), false_score, 0)])])
    # outranked: precision 1 at recall 1 first, the envelope stays 1. Outranking: the curve is
    # (recall 0, precision 0) then (1, 0.5); the envelope is 0.5 at every recall level
    assert result["map"] == ap and result["map50"] == ap


def test_an_image_without_boxes_is_fine_and_its_detections_are_false_positives():
    box = (10, 10, 50, 50)
    result = evaluate([(annotation([box], [0]), [(box, 0.8, 0)]),
                       (annotation(), [((5, 5, 30, 30), 0.9, 0)])])
    assert result["samples"] == 2 and result["boxes"] == 1
    assert result["map50"] == 0.5
    # the false detection is counted in the background row
    assert result["confusion_matrix"][3][0] == 1


def test_the_letterbox_maps_predictions_back_to_the_image():
    size = (200, 400)  # height, width: r = 100 / 400 = 0.25
    model = np.array([[10, 5, 30, 25], [90, 40, 100, 60]], np.float32)
    np.testing.assert_array_equal(to_image_pixels(model, size, 100),
                                  [[40, 20, 120, 100], [360, 160, 400, 200]])  # 240 -> 200
    result = evaluate([(annotation([(40, 20, 120, 100)], [1], size=size),
                        [((10, 5, 30, 25), 0.9, 1)])])
    assert result["map"] == 1.0


def test_a_difficult_box_missed_or_found_costs_nothing():
    regular, hard = (10, 10, 40, 40), (60, 60, 90, 90)
    both = [regular, hard]
    missed = evaluate([(annotation(both, [0, 0], difficult=[False, True]),
                        [(regular, 0.9, 0)])])
    assert missed["map"] == 1.0 and (missed["boxes"], missed["difficult"]) == (1, 1)
    # found twice, above the true positive: neither detection is a false positive
    found = evaluate([(annotation(both, [0, 0], difficult=[False, True]),
                       [(hard, 0.99, 0), (hard, 0.95, 0), (regular, 0.9, 0)])])
    assert found["map"] == 1.0
    # overlap is the plain IoU, as VOC's (COCO's crowd overlap, over the detection's area, would
    # be 1 here): a small detection inside the difficult box is a false positive
    inside = evaluate([(annotation(both, [0, 0], difficult=[False, True]),
                        [((60, 60, 70, 70), 0.95, 0), (regular, 0.9, 0)])])
    assert inside["map50"] == 0.5
    # not difficult, the missed box halves the recall: precision 1 at the 51 levels 0..0.5
    plain = evaluate([(annotation(both, [0, 0]), [(regular, 0.9, 0)])])
    assert plain["map50"] == round(51 / 101, 12)


def test_a_class_without_boxes_has_no_ap():
    result = evaluate([(annotation([(10, 10, 40, 40), (50, 50, 80, 80)], [0, 1],
                                   difficult=[False, True]),
                        [((10, 10, 40, 40), 0.9, 0), ((0, 0, 9, 9), 0.5, 2)])])
    assert result["per_class"]["dog"] == {"ap": None, "ap50": None, "boxes": 0}  # difficult
    assert result["per_class"]["bird"] == {"ap": None, "ap50": None, "boxes": 0}
    assert result["map"] == 1.0  # the mean over the classes with boxes


def test_the_confusion_matrix_has_a_background_row_and_column():
    truth = annotation([(10, 10, 40, 40), (50, 50, 80, 80), (0, 60, 20, 90)], [0, 1, 2])
    dets = [((10, 10, 40, 40), 0.9, 1),  # a cat called a dog
            ((50, 50, 80, 80), 0.8, 1),  # a dog found
            ((85, 0, 99, 20), 0.7, 0),  # nothing there
            ((0, 60, 20, 90), 0.1, 2)]  # below the score shown: the bird is missed
    assert evaluate([(truth, dets)])["confusion_matrix"] == [[0, 1, 0, 0], [0, 1, 0, 0],
                                                             [0, 0, 0, 1], [1, 0, 0, 0]]


def _mixed_images():
    rng = np.random.default_rng(0)
    images = []
    for i in range(6):
        boxes = [(x, y, x + w, y + h) for x, y, w, h in rng.integers(5, 45, (i % 3 + 1, 4))]
        classes = rng.integers(0, 3, len(boxes)).tolist()
        dets = [(tuple(np.add(b, rng.integers(-4, 5, 4))), float(rng.uniform(0.05, 1)), c)
                for b, c in zip(boxes, classes)]
        dets.append(((0, 0, 30, 30), float(rng.uniform(0.05, 1)), int(rng.integers(0, 3))))
        images.append((annotation(boxes, classes, difficult=[j == 1 for j in range(len(boxes))]),
                       dets))
    return images


def test_three_batches_give_what_one_batch_gives():
    images = _mixed_images()
    streamed = DetectionEvaluator(NAMES, image_size=100)
    for start in (0, 2, 4):
        part = images[start:start + 2]
        streamed.update(decoded(*[d for _, d in part]), labels(*[a for a, _ in part]), ())
    whole = evaluate(images)
    assert 0 < whole["map"] < 1
    assert streamed.result() == whole


@pytest.mark.parametrize("images", [_mixed_images(), _mixed_images()[:1]])
def test_the_epochs_map_is_the_full_evaluations(images):
    """Each epoch's validation scores the "all" area range alone; its two numbers are the full
    evaluation's, to the bit (one image of the second case has one class, so others have none)."""
    evaluator = DetectionEvaluator(NAMES, image_size=100)
    evaluator.update(decoded(*[d for _, d in images]), labels(*[a for a, _ in images]), ())
    whole = evaluator.result()
    assert evaluator.map_result() == {"map": whole["map"], "map50": whole["map50"]}


def test_an_empty_evaluation_is_refused():
    with pytest.raises(DataError, match="no images"):
        DetectionEvaluator(NAMES, image_size=100).result()
    with pytest.raises(DataError, match="no images"):
        DetectionEvaluator(NAMES, image_size=100).map_result()
    with pytest.raises(DataError, match="a.jpg: a box of class 3 is outside"):
        DetectionEvaluator(NAMES, image_size=100).update(
            decoded([]), labels(annotation([(0, 0, 5, 5)], [3])), ["a.jpg"])


def test_the_figures_are_written_as_png(tmp_path):
    images = _mixed_images()
    paths = []
    for i in range(len(images)):
        path = tmp_path / f"image{i}.jpg"
        Image.new("RGB", (100, 100), (40 * i, 120, 200)).save(path)
        paths.append(str(path))
    evaluator = DetectionEvaluator(NAMES, image_size=100)
    evaluator.update(decoded(*[d for _, d in images]), labels(*[a for a, _ in images]), paths)
    written = evaluator.write_artifacts(evaluator.result(), tmp_path / "out")
    assert sorted(written) == ["confusion_matrix", "pr_curves", "worst"]
    for name, path in written.items():
        assert path == tmp_path / "out" / f"{name}.png"
        with Image.open(path) as png:
            assert png.format == "PNG" and png.size[0] > 100


def test_the_worst_images_are_those_with_the_lowest_recall():
    box, other, hard = (10, 10, 40, 40), (50, 50, 90, 90), (0, 50, 20, 90)
    images = [(annotation([box, other, hard], [0, 1, 2], difficult=[False, False, True]),
               [(box, 0.9, 0), (hard, 0.8, 2), ((0, 0, 5, 5), 0.7, 1)]),  # half, one false
              (annotation([box], [0]), [(box, 0.9, 1)]),  # wrong class: none found
              (annotation(), [(box, 0.9, 0)]),  # nothing to find: not drawn
              (annotation([box], [0]), [(box, 0.2, 0)])]  # found below the score shown
    evaluator = DetectionEvaluator(NAMES, image_size=100)
    evaluator.update(decoded(*[d for _, d in images]), labels(*[a for a, _ in images]),
                     ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    assert [(w[0].path, w[1:]) for w in evaluator._worst()] == [
        ("b.jpg", (0.0, 0, 1)), ("d.jpg", (0.0, 0, 0)), ("a.jpg", (0.5, 1, 1))]


def test_the_printed_lines():
    result = evaluate([(annotation([(10, 10, 40, 30), (0, 0, 20, 20)], [0, 0],
                                   difficult=[False, True]), [((10, 10, 40, 30), 0.9, 0)])])
    assert evaluation_lines({**result, "data": "val.json"}) == [
        "mAP50-95 1.000, mAP50 1.000, mAP75 1.000 on 1 images (val.json)",
        "1 boxes (1 difficult left out); precision 1.000, recall 1.000 at the best F1 (IoU 0.5)",
        "class                 AP50-95    AP50  boxes",
        "cat                     1.000   1.000      1",
        "dog                       n/a     n/a      0",
        "bird                      n/a     n/a      0"]
    assert key_numbers(result) == [("mAP50-95", 1.0), ("mAP50", 1.0), ("mAP75", 1.0),
                                   ("precision", 1.0), ("recall", 1.0)]
