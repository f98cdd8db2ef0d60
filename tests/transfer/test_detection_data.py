"""Detection data: YOLO, COCO and Pascal VOC folders read into one form, messy data reported."""

from __future__ import annotations

import dataclasses
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transfer.data import (
    DROP_EMPTY_BOX,
    DROP_MALFORMED,
    DROP_OUTSIDE,
    DROP_UNKNOWN_CLASS,
    DROP_UNKNOWN_IMAGE,
    SKIP_ANNOTATION_SIZE,
    SKIP_BAD_ANNOTATION,
    SKIP_DUPLICATE,
    SKIP_MISSING,
    SKIP_NO_IMAGE_FOR_ANNOTATION,
    SKIP_NOT_IMAGE,
    SKIP_TRUNCATED,
    DataReport,
    ImageFolderData,
    load_normalized,
)
from transfer.errors import DataError
from transfer.tasks.detection.annotations import (
    NOTE_CLIPPED,
    NOTE_CROWD,
    NOTE_DIFFICULT,
    NOTE_POLYGON,
    NOTE_ROTATED,
    orient_box,
)
from transfer.tasks.detection.layouts import (
    LAYOUT_COCO,
    LAYOUT_VOC,
    LAYOUT_YOLO,
    LAYOUT_YOLO_FOLDERS,
    detection_layout,
    evaluation_split,
    load_detection,
)
from transfer.tasks.detection.voc_layout import VOC_DETECTION_CLASSES
from transfer.tasks.detection.yolo_layout import parse_flat_yaml


def _png(path: Path, width: int, height: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (90, 120, 150)).save(path)
    return str(path)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _annotations(split) -> dict[str, dict]:
    return {Path(p).stem: a for p, a in zip(split.paths, split.annotations)}


def _truncated_jpeg(path: Path) -> None:
    encoded = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(encoded, "JPEG")
    path.write_bytes(encoded.getvalue()[:700])


# ---- YOLO -----------------------------------------------------------------------------------

def make_yolo(root: Path) -> Path:
    """data.yaml with train/val/test folders and names as a mapping."""
    _write(root / "data.yaml", "# a dataset\npath: .\ntrain: images/train\nval: images/val\n"
                               "test: images/test\nnames:\n  0: cat\n  1: dog\n")
    _png(root / "images/train/a.png", 64, 48)
    _write(root / "labels/train/a.txt", "0 0.5 0.5 0.25 0.5\n1 0.125 0.25 0.25 0.5\n")
    _png(root / "images/train/b.png", 32, 32)  # no label file: background
    _png(root / "images/train/c.png", 32, 32)
    _write(root / "labels/train/c.txt", "")  # empty: background
    _png(root / "images/val/d.png", 32, 32)
    _write(root / "labels/val/d.txt", "1 0.5 0.5 0.5 0.5\n")
    _png(root / "images/test/e.png", 40, 20)
    _write(root / "labels/test/e.txt", "0 0.5 0.5 1 1\n")
    return root


def test_yolo_yaml_splits_boxes_and_background_images(tmp_path):
    data = load_detection(make_yolo(tmp_path / "yolo"))
    assert data.class_names == ("cat", "dog")
    assert [Path(p).name for p in data.train.paths] == ["a.png", "b.png", "c.png"]
    assert data.train.labels == (0, 1, 2)
    train = _annotations(data.train)
    assert train["a"] == {"boxes": [[24.0, 12.0, 40.0, 36.0], [0.0, 0.0, 16.0, 24.0]],
                          "classes": [0, 1], "difficult": [False, False], "size": [48, 64]}
    assert train["b"] == train["c"] == {"boxes": [], "classes": [], "difficult": [],
                                        "size": [32, 32]}
    assert _annotations(data.val)["d"]["boxes"] == [[8.0, 8.0, 24.0, 24.0]]
    assert _annotations(data.test)["e"] == {"boxes": [[0.0, 0.0, 40.0, 20.0]], "classes": [0],
                                            "difficult": [False], "size": [20, 40]}
    report = data.report
    assert report.images == 5 and report.usable == 5 and report.background_images == 2
    assert report.box_counts == {"cat": 2, "dog": 2}
    assert report.class_counts == {"cat": 2, "dog": 2}  # images holding each class
    assert report.split_counts["train"] == {"cat": 1, "dog": 1}
    assert report.skipped == [] and report.dropped_boxes == [] and report.box_notes == {}


def test_yolo_messy_rows_are_dropped_and_named(tmp_path):
    root = tmp_path / "flat"
    _write(root / "classes.txt", "\ufeffcat\ndog\n")  # with the BOM Notepad writes
    _png(root / "images/ok.png", 40, 20)
    _write(root / "labels/ok.txt", "\n".join([
        "0 0.5 0.5 0.5 0.5",          # 1: [10, 5, 30, 15]
        "1 0.9 0.5 0.4 0.4",          # 2: x 28..44, clipped to 40
        "5 0.5 0.5 0.1 0.1",          # 3: unknown class
        "0 0.5 0.5 0 0.2",            # 4: zero width
        "0 abc",                      # 5: malformed
        "1 1.5 1.5 0.2 0.2",          # 6: wholly outside
        "0 0.1 0.1 0.3 0.1 0.2 0.4",  # 7: a polygon, read as its bounds
        "1 0.6 0.5 -0.2 0.2",         # 8: inverted (negative width)
    ]) + "\n")
    _truncated_jpeg(root / "images/broken.jpg")
    _write(root / "labels/broken.txt", "0 0.5 0.5 0.5 0.5\n")
    (root / "images/notes.md").write_text("not an image")
    _write(root / "labels/orphan.txt", "0 0.5 0.5 0.5 0.5\n")
    for i in range(4):
        _png(root / f"images/bg{i}.png", 16, 16)
    assert detection_layout(root) == LAYOUT_YOLO_FOLDERS

    data = load_detection(root, val_split=0.2, test_split=0.2, seed=7)  # ok.png trains
    assert data.class_names == ("cat", "dog")
    every = {**_annotations(data.train), **_annotations(data.val), **_annotations(data.test)}
    assert sorted(every) == ["bg0", "bg1", "bg2", "bg3", "ok"]
    assert len(data.val) == 1 and len(data.test) == 1
    assert every["ok"]["boxes"] == [[10.0, 5.0, 30.0, 15.0], [28.0, 6.0, 40.0, 14.0],
                                    [4.0, 2.0, 12.0, 8.0]]
    assert every["ok"]["classes"] == [0, 1, 0]
    report = data.report
    label = str(root / "labels/ok.txt")
    assert sorted(report.dropped_boxes) == sorted([
        (f"{label}:3", DROP_UNKNOWN_CLASS), (f"{label}:4", DROP_EMPTY_BOX),
        (f"{label}:5", DROP_MALFORMED), (f"{label}:6", DROP_OUTSIDE),
        (f"{label}:8", DROP_EMPTY_BOX)])
    assert report.box_notes == {NOTE_CLIPPED: 1, NOTE_POLYGON: 1}
    assert report.skipped == [(str(root / "images/broken.jpg"), SKIP_TRUNCATED),
                              (str(root / "images/notes.md"), SKIP_NOT_IMAGE),
                              (str(root / "labels/orphan.txt"), SKIP_NO_IMAGE_FOR_ANNOTATION)]
    assert report.background_images == 4 and report.box_counts == {"cat": 2, "dog": 1}
    summary = report.summary(max_paths=2)
    assert "dropped 5 box(es)" in summary and "labels/ok.txt:3" in summary
    assert "background images (no boxes): 4" in summary and f"1 {NOTE_CLIPPED}" in summary
    again = load_detection(root, val_split=0.2, test_split=0.2, seed=7)
    assert (again.train, again.val, again.test) == (data.train, data.val, data.test)


def test_yolo_without_class_names_uses_the_numbers(tmp_path):
    root = tmp_path / "numbers"
    for i, row in enumerate(["0 0.5 0.5 0.5 0.5", "2 0.5 0.5 0.5 0.5", ""]):
        _png(root / f"images/train/{i}.png", 16, 16)
        _write(root / f"labels/train/{i}.txt", row)
    _png(root / "images/valid/v.png", 16, 16)  # Roboflow's name for val
    data = load_detection(root)
    assert data.class_names == ("0", "1", "2")
    assert len(data.train) == 3 and [Path(p).name for p in data.val.paths] == ["v.png"]
    assert data.report.background_images == 2  # the empty label file, and v without one


def test_yolo_yaml_with_lists_path_and_roboflow_parent_paths(tmp_path):
    root = tmp_path / "lists"
    _write(root / "data.yaml", "path: ds\ntrain: train.txt\nval: ../valid/images\n"
                               "test: [images/t1.png.txt]\nnc: 2\nnames: ['a', \"b\"]\n")
    ds = root / "ds"
    for name in ("x1", "x2", "x3"):
        _png(ds / f"images/{name}.png", 20, 10)
        _write(ds / f"labels/{name}.txt", "1 0.5 0.5 0.5 0.2\n")
    _write(ds / "train.txt", "./images/x1.png\nimages/x2.png\nimages/gone.png\n")
    _write(ds / "images/t1.png.txt", f"{ds / 'images/x3.png'}\n")
    _png(ds / "valid/images/v.png", 20, 10)
    _write(ds / "valid/labels/v.txt", "0 0.25 0.5 0.5 1\n")
    data = load_detection(root)
    assert data.root == str(ds) and data.class_names == ("a", "b")
    assert [Path(p).name for p in data.train.paths] == ["x1.png", "x2.png"]
    assert _annotations(data.train)["x1"]["boxes"] == [[5.0, 4.0, 15.0, 6.0]]
    assert _annotations(data.val)["v"]["boxes"] == [[0.0, 0.0, 10.0, 10.0]]
    assert [Path(p).name for p in data.test.paths] == ["x3.png"]
    assert data.report.skipped == [(str(ds / "images/gone.png"), SKIP_MISSING)]


def test_yolo_yaml_errors_name_the_file_and_the_fix(tmp_path):
    root = tmp_path / "bad"
    _png(root / "images/train/a.png", 8, 8)
    _write(root / "data.yaml", "train: images/train\nval: images/nowhere\nnames: [a]\n")
    with pytest.raises(DataError, match="'images/nowhere', which is not there"):
        load_detection(root)
    _write(root / "data.yaml", "train: images/train\nnc: 3\nnames: [a, b]\n")
    with pytest.raises(DataError, match="nc is 3 but names lists 2"):
        load_detection(root)
    _write(root / "data.yaml", "train: images/train\nnames: {0: a, 2: c}\n")
    with pytest.raises(DataError, match="missing 1"):
        load_detection(root)


FLAT_YAMLS = [
    "path: ../datasets/coco8  # root\ntrain: images/train\nval: images/val\ntest:\n\n"
    "names:\n  0: person\n  1: 'traffic light'\n  2: \"a # b\"\n"
    "download: |\n  from x import y\n  y('names: [1]')\n",
    "train: [a/images, b/images]\nval: v.txt\nnc: 2\nnames: ['cat', dog]\n",
    "train: images\nval: images\nnames:\n- cat\n- dog\n",
    "---\nnames: {0: cat, 1: dog}\ntrain: ./t\n",
]
DATASET_KEYS = ("path", "train", "val", "test", "nc", "names")


@pytest.mark.parametrize("text", FLAT_YAMLS)
def test_the_flat_yaml_reader_agrees_with_pyyaml(text):
    """Without PyYAML, data.yaml is read by a reader of its flat keys; on those, both agree
    (block scalars such as a download script are skipped)."""
    yaml = pytest.importorskip("yaml")
    flat, full = parse_flat_yaml(text), yaml.safe_load(text)
    assert set(flat) == set(full)
    assert {k: flat[k] for k in DATASET_KEYS if k in flat} == {
        k: full[k] for k in DATASET_KEYS if k in full}


def test_data_yaml_is_read_without_pyyaml(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml now raises ImportError
    data = load_detection(make_yolo(tmp_path / "yolo"))
    assert data.class_names == ("cat", "dog") and len(data.test) == 1


# ---- COCO -----------------------------------------------------------------------------------

def _coco_file(path: Path, images: list, annotations: list) -> None:
    categories = [{"id": 7, "name": "seven"}, {"id": 3, "name": "three"},
                  {"id": 1, "name": "one"}]
    _write(path, json.dumps({"images": images, "annotations": annotations,
                             "categories": categories}))


def make_coco(root: Path) -> Path:
    _png(root / "train2017/a.png", 64, 48)
    _png(root / "train2017/b.png", 32, 32)
    _png(root / "images/val2017/d.png", 32, 32)
    _png(root / "images/t.png", 16, 16)
    _coco_file(root / "annotations/instances_train2017.json", [
        {"id": 1, "file_name": "a.png", "width": 64, "height": 48},
        {"id": 2, "file_name": "b.png", "width": 32, "height": 32},
        {"id": 3, "file_name": "c.png", "width": 32, "height": 32},  # absent
    ], [
        {"id": 11, "image_id": 1, "category_id": 7, "bbox": [10, 5, 20, 10], "iscrowd": 0},
        {"id": 12, "image_id": 1, "category_id": 1, "bbox": [0, 0, 64, 48]},
        {"id": 13, "image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5], "iscrowd": 1},
        {"id": 14, "image_id": 2, "category_id": 99, "bbox": [1, 1, 5, 5]},
        {"id": 15, "image_id": 2, "category_id": 3, "bbox": [28, 30, 10, 10]},
        {"id": 16, "image_id": 42, "category_id": 3, "bbox": [1, 1, 5, 5]},
        {"id": 17, "image_id": 2, "category_id": 3, "bbox": [4, 4, 0, 3]},
        {"id": 18, "image_id": 2, "category_id": 3, "bbox": [4, 4]},
    ])
    _coco_file(root / "annotations/instances_val2017.json", [
        {"id": 5, "file_name": "d.png", "width": 32, "height": 32}],
        [{"id": 21, "image_id": 5, "category_id": 3, "bbox": [2, 4, 6, 8]}])
    _coco_file(root / "annotations/instances_test.json", [
        {"id": 9, "file_name": "t.png", "width": 16, "height": 16}], [])
    return root


def test_coco_categories_boxes_crowd_and_missing_images(tmp_path):
    root = make_coco(tmp_path / "coco")
    assert detection_layout(root) == LAYOUT_COCO
    data = load_detection(root)
    assert data.class_names == ("one", "three", "seven")  # ids 1, 3, 7 -> 0, 1, 2
    train = _annotations(data.train)
    assert train["a"]["boxes"] == [[10.0, 5.0, 30.0, 15.0], [0.0, 0.0, 64.0, 48.0]]
    assert train["a"]["classes"] == [2, 0]
    assert train["b"] == {"boxes": [[28.0, 30.0, 32.0, 32.0]], "classes": [1],
                          "difficult": [False], "size": [32, 32]}
    assert _annotations(data.val)["d"]["boxes"] == [[2.0, 4.0, 8.0, 12.0]]
    assert [Path(p).name for p in data.test.paths] == ["t.png"]
    report = data.report
    file = root / "annotations/instances_train2017.json"
    assert report.skipped == [(str(root / "train2017/c.png"), SKIP_MISSING)]
    assert report.dropped_boxes == [(f"{file}: annotation 14", DROP_UNKNOWN_CLASS),
                                    (f"{file}: annotation 16", DROP_UNKNOWN_IMAGE),
                                    (f"{file}: annotation 18", DROP_MALFORMED),
                                    (f"{file}: annotation 17", DROP_EMPTY_BOX)]
    assert report.box_notes == {NOTE_CROWD: 1, NOTE_CLIPPED: 1}
    assert report.background_images == 1  # t.png


def test_coco_single_file_is_split_with_the_seed(tmp_path):
    root = tmp_path / "cvat"
    images, annotations = [], []
    for i in range(5):
        _png(root / f"images/{i}.png", 16, 16)
        images.append({"id": i, "file_name": f"{i}.png", "width": 16, "height": 16})
        annotations.append({"id": 100 + i, "image_id": i, "category_id": 3,
                            "bbox": [0, 0, 8, 8]})
    _coco_file(root / "annotations/instances_default.json", images, annotations)
    data = load_detection(root, val_split=0.4, seed=1)
    assert (len(data.train), len(data.val), data.test) == (3, 2, None)
    assert data.report.skipped == []


# ---- Pascal VOC -----------------------------------------------------------------------------

def _voc_xml(path: Path, objects: list[tuple], size: tuple[int, int] | None = None) -> None:
    parts = ["<annotation>"]
    if size:
        parts.append(f"<size><width>{size[0]}</width><height>{size[1]}</height>"
                     f"<depth>3</depth></size>")
    for name, box, difficult in objects:
        xmin, ymin, xmax, ymax = box
        parts.append(f"<object><name>{name}</name><difficult>{int(difficult)}</difficult>"
                     f"<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax>"
                     f"<ymax>{ymax}</ymax></bndbox></object>")
    _write(path, "".join(parts + ["</annotation>"]))


def make_voc(root: Path) -> Path:
    voc = root / "VOCdevkit/VOC2007"
    _png(voc / "JPEGImages/000001.png", 40, 30)
    _voc_xml(voc / "Annotations/000001.xml",
             [("dog", (1, 1, 10, 20), False), ("cat", (5, 6, 40, 30), True)], (40, 30))
    _png(voc / "JPEGImages/000002.png", 20, 20)  # listed, no XML: background
    _png(voc / "JPEGImages/000003.png", 20, 20)
    _voc_xml(voc / "Annotations/000003.xml", [("cat", (2, 2, 8, 8), False)], (25, 20))
    _png(voc / "JPEGImages/000004.png", 20, 20)
    _voc_xml(voc / "Annotations/000004.xml", [("dog", (3, 4, 12, 14), False)])
    _png(voc / "JPEGImages/000005.png", 20, 20)
    _voc_xml(voc / "Annotations/000005.xml", [("dog", (1, 1, 20, 20), False)], (20, 20))
    _voc_xml(voc / "Annotations/000009.xml", [("dog", (1, 1, 5, 5), False)])  # no image
    _write(voc / "ImageSets/Main/train.txt", "000001\n000002\n000003\n")
    _write(voc / "ImageSets/Main/val.txt", "000004\n000001\n")
    _write(voc / "ImageSets/Main/trainval.txt", "000001\n000002\n000003\n000004\n")
    _write(voc / "ImageSets/Main/test.txt", "000005\n000006\n")
    return root


def test_voc_one_based_boxes_difficult_flags_and_given_splits(tmp_path):
    root = make_voc(tmp_path / "voc")
    voc = root / "VOCdevkit/VOC2007"
    assert detection_layout(root) == LAYOUT_VOC
    data = load_detection(root)
    assert data.root == str(voc) and data.class_names == VOC_DETECTION_CLASSES
    cat, dog = VOC_DETECTION_CLASSES.index("cat"), VOC_DETECTION_CLASSES.index("dog")
    train = _annotations(data.train)
    assert sorted(train) == ["000001", "000002"]
    assert train["000001"] == {"boxes": [[0.0, 0.0, 10.0, 20.0], [4.0, 5.0, 40.0, 30.0]],
                               "classes": [dog, cat], "difficult": [False, True],
                               "size": [30, 40]}
    assert train["000002"]["boxes"] == []
    assert _annotations(data.val)["000004"]["boxes"] == [[2.0, 3.0, 12.0, 14.0]]
    assert _annotations(data.test)["000005"]["boxes"] == [[0.0, 0.0, 20.0, 20.0]]
    report = data.report
    assert report.skipped == [
        (str(voc / "Annotations/000009.xml"), SKIP_NO_IMAGE_FOR_ANNOTATION),
        (str(voc / "JPEGImages/000001.png"), SKIP_DUPLICATE),  # in train.txt and val.txt
        (str(voc / "JPEGImages/000003.png"), SKIP_ANNOTATION_SIZE),  # <size> 25x20
        (str(voc / "JPEGImages/000006.jpg"), SKIP_MISSING)]
    assert report.box_notes == {NOTE_DIFFICULT: 1}
    assert report.background_images == 1 and report.box_counts["cat"] == 1


def test_voc_trainval_is_split_and_other_names_are_sorted(tmp_path):
    voc = tmp_path / "widgets"
    for i in range(4):
        _png(voc / f"JPEGImages/{i}.png", 20, 20)
        _voc_xml(voc / f"Annotations/{i}.xml",
                 [("widget" if i % 2 else "cat", (1, 1, 10, 10), False)], (20, 20))
    _png(voc / "JPEGImages/bad.png", 20, 20)
    _write(voc / "Annotations/bad.xml", "<annotation><object>")
    _write(voc / "ImageSets/Main/trainval.txt", "0\n1\n2\n3\nbad\n")
    data = load_detection(voc, val_split=0.25, seed=0)
    assert data.class_names == ("cat", "widget")
    assert (len(data.train), len(data.val)) == (3, 1)
    assert data.report.skipped == [(str(voc / "Annotations/bad.xml"), SKIP_BAD_ANNOTATION)]


# ---- EXIF orientation -----------------------------------------------------------------------

def _bright_box(pixels: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(pixels.mean(axis=2) > 128)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_box_moves_a_box_as_pillow_turns_the_image(tmp_path, orientation):
    pixels = np.zeros((20, 30, 3), np.uint8)  # stored 30 wide, 20 high
    pixels[4:9, 3:11] = 255  # the box [3, 4, 11, 9]
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(tmp_path / "x.png", exif=exif)
    shown = load_normalized(tmp_path / "x.png")
    assert list(orient_box((3, 4, 11, 9), orientation, 30, 20)) == _bright_box(shown)


def _rotated_jpeg(path: Path) -> None:
    """Stored 48 wide, 32 high, the bright box [8, 8, 24, 16]; EXIF orientation 6 shows it
    32 wide and 48 high, the box at [16, 8, 24, 24]."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros((32, 48, 3), np.uint8)
    pixels[8:16, 8:24] = 255
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(path, exif=exif, quality=100)


def test_boxes_are_in_the_exif_oriented_frame(tmp_path):
    shown = [16.0, 8.0, 24.0, 24.0]
    yolo = tmp_path / "yolo"
    _rotated_jpeg(yolo / "images/r.jpg")
    assert _bright_box(load_normalized(yolo / "images/r.jpg")) == shown
    # YOLO: fractions of the shown image, 32 x 48.
    _write(yolo / "labels/r.txt", f"0 {20 / 32} {16 / 48} {8 / 32} {16 / 48}\n")
    _png(yolo / "images/other.png", 8, 8)
    data = load_detection(yolo, val_split=0.5, seed=0)
    got = {**_annotations(data.train), **_annotations(data.val)}["r"]
    assert got["boxes"] == [shown] and got["size"] == [48, 32]

    # VOC: <size> of the stored pixels means boxes drawn on them; of the shown image, on it.
    voc = tmp_path / "voc"
    for stem, size, box in (("stored", (48, 32), (9, 9, 24, 16)),
                            ("shown", (32, 48), (17, 9, 24, 24))):
        _rotated_jpeg(voc / f"JPEGImages/{stem}.jpg")
        _voc_xml(voc / f"Annotations/{stem}.xml", [("cat", box, False)], size)
    data = load_detection(voc, val_split=0.5, seed=0)
    got = {**_annotations(data.train), **_annotations(data.val)}
    assert got["stored"]["boxes"] == got["shown"]["boxes"] == [shown]
    assert got["stored"]["size"] == [48, 32]
    assert data.report.box_notes == {NOTE_ROTATED: 1}


# ---- recognition, split.json, the report ----------------------------------------------------

def test_layouts_are_recognised_and_other_folders_are_not(tmp_path):
    assert detection_layout(make_yolo(tmp_path / "y")) == LAYOUT_YOLO
    assert detection_layout(make_coco(tmp_path / "c")) == LAYOUT_COCO
    assert detection_layout(make_voc(tmp_path / "v")) == LAYOUT_VOC
    _png(tmp_path / "split/train/images/a.png", 8, 8)
    (tmp_path / "split/train/labels").mkdir()
    assert detection_layout(tmp_path / "split") == LAYOUT_YOLO_FOLDERS
    _png(tmp_path / "classes/cat/a.png", 8, 8)
    _png(tmp_path / "classes/dog/b.png", 8, 8)
    _png(tmp_path / "seg/images/a.png", 8, 8)
    _png(tmp_path / "seg/masks/a.png", 8, 8)
    _png(tmp_path / "pet/images/a.png", 8, 8)
    _png(tmp_path / "pet/annotations/trimaps/a.png", 8, 8)
    for other in ("classes", "seg", "pet", "nowhere"):
        assert detection_layout(tmp_path / other) is None, other
    with pytest.raises(DataError, match="not a detection data folder"):
        load_detection(tmp_path / "classes")


def test_split_json_keeps_the_annotations(tmp_path):
    data = load_detection(make_coco(tmp_path / "coco"))
    data.save(tmp_path / "split.json")
    again = ImageFolderData.load(tmp_path / "split.json")
    assert again.class_names == data.class_names
    for split in ("train", "val", "test"):
        before, after = getattr(data, split), getattr(again, split)
        assert after.paths == before.paths and after.labels == before.labels
        assert list(after.annotations) == list(before.annotations)
    assert again.train.subset([1]).annotations == (data.train.annotations[1],)


def test_detection_report_round_trips_and_leaves_other_reports_alone(tmp_path):
    report = load_detection(make_coco(tmp_path / "coco")).report
    saved = report.to_dict()
    assert saved["images"] == 4 and saved["box_counts"] == {"one": 1, "three": 2, "seven": 1}
    assert saved["dropped_reason_counts"][DROP_UNKNOWN_CLASS] == 1
    again = DataReport.from_dict(json.loads(json.dumps(saved)))
    assert again == dataclasses.replace(report, seconds=round(report.seconds, 3))
    assert "boxes per class: one 1, three 2, seven 1" in report.summary()
    plain = DataReport(source="photos", class_counts={"a": 2, "b": 3})
    assert not {"images", "box_counts", "dropped_boxes", "box_notes"} & set(plain.to_dict())
    assert "boxes" not in plain.summary() and plain.usable == 5


def test_errors_for_too_few_images_or_no_boxes(tmp_path):
    root = tmp_path / "one"
    _png(root / "images/a.png", 8, 8)
    _write(root / "labels/a.txt", "0 0.5 0.5 0.5 0.5\n")
    with pytest.raises(DataError, match="needs usable images in train and val") as info:
        load_detection(root)
    assert info.value.report.images == 1
    _png(root / "images/b.png", 8, 8)
    _write(root / "labels/a.txt", "")
    _write(root / "classes.txt", "thing\n")
    with pytest.raises(DataError, match="no boxes to train on"):
        load_detection(root)


# ---- evaluation -----------------------------------------------------------------------------

def test_evaluation_split_reads_the_named_split_and_checks_class_names(tmp_path):
    root = make_yolo(tmp_path / "yolo")
    split, skipped = evaluation_split(root, ["cat", "dog"])
    assert [Path(p).name for p in split.paths] == ["d.png"] and skipped == []
    assert split.labels == (0,) and split.annotations[0]["classes"] == [1]
    split, _ = evaluation_split(root, ["cat", "dog"], split="test")
    assert [Path(p).name for p in split.paths] == ["e.png"]
    with pytest.raises(DataError, match=r"\(cat, dog\) are not the model's \(dog, cat\)"):
        evaluation_split(root, ["dog", "cat"])

    voc = make_voc(tmp_path / "voc")
    split, skipped = evaluation_split(voc, ["person", "dog", "cat"], split="test")
    assert split.annotations[0]["classes"] == [1] and skipped
    with pytest.raises(DataError, match=r"\(cat, dog\) are not the model's \(cat\)"):
        evaluation_split(voc, ["cat"])
    with pytest.raises(DataError, match="names the splits train; it has no 'val' split"):
        evaluation_split(_only_train_coco(tmp_path / "coco"), ["one", "three", "seven"])


def _only_train_coco(root: Path) -> Path:
    make_coco(root)
    (root / "annotations/instances_val2017.json").unlink()
    (root / "annotations/instances_test.json").unlink()
    return root


def test_evaluation_split_of_a_folder_without_splits_is_all_of_it(tmp_path):
    root = tmp_path / "flat"
    for i in range(3):
        _png(root / f"images/{i}.png", 8, 8)
        _write(root / f"labels/{i}.txt", f"{i % 2} 0.5 0.5 0.5 0.5\n")
    split, _ = evaluation_split(root, ["person", "bicycle", "car"])  # numbered 0, 1
    assert len(split) == 3 and [a["classes"] for a in split.annotations] == [[0], [1], [0]]
    with pytest.raises(DataError, match="not the model's"):
        evaluation_split(root, ["person"])
