"""Segmentation data: image/mask pairs in every layout, messy pairs named, joint augmentation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transfer.data import (
    SKIP_COLOUR,
    SKIP_EMPTY,
    SKIP_LABELS,
    SKIP_LOSSY_MASK,
    SKIP_NO_IMAGE,
    SKIP_NO_MASK,
    SKIP_NOT_IMAGE,
    SKIP_SAME_STEM,
    SKIP_SIZE_MISMATCH,
    SKIP_SYSTEM,
    SKIP_TRUNCATED,
    DataReport,
    ImageFolderData,
    Split,
)
from transfer.errors import ConfigError, DataError
from transfer.tasks.segmentation.augment import augment_batches, joint_augment
from transfer.tasks.segmentation.masks import (
    NOTE_MASK_BINARY,
    NOTE_MASK_MAPPED,
    NOTE_MASK_RGB,
    NOTE_UNUSED_IMAGES,
    PET_CLASSES,
    VOC_CLASSES,
    class_pixel_weights,
    load_masks,
    pixel_frequencies,
    read_mask,
    read_palette,
    voc_colours,
)
from transfer.tasks.segmentation.pairs import load_segmentation

CLASSES = ("background", "road", "car")


def _noise(rng, h: int, w: int) -> np.ndarray:
    return (rng.random((h, w, 3)) * 255).astype(np.uint8)


def _labels(rng, h: int, w: int, k: int = 3, ignore: int = 255) -> np.ndarray:
    """Blocks of classes 0..k-1 with an ignored one-pixel border around the middle block."""
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4:, : w // 2] = 1 % k
    mask[h // 2:, w // 2:] = 2 % k
    mask[h // 2, :] = ignore
    return mask


def _save_mask(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask, "L").save(path)


def _save_image(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _exif_jpeg(path: Path, h: int, w: int, orientation: int = 6) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(_noise(np.random.default_rng(1), h, w))
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, exif=exif, quality=95)


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _relative(report: DataReport, root: Path) -> dict[str, str]:
    return {Path(p).relative_to(root).as_posix(): reason for p, reason in report.skipped}


# ---- pairing and messy pairs ------------------------------------------------------------------

@pytest.fixture(scope="module")
def messy(tmp_path_factory) -> Path:
    """Seven good pairs (one with an EXIF-rotated photo) and one of each messy case."""
    root = tmp_path_factory.mktemp("messy_seg")
    rng = np.random.default_rng(0)
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    for i in range(6):
        h, w = 32 + 2 * i, 40
        _save_image(root / "images" / f"street_{i}.png", _noise(rng, h, w))
        _save_mask(root / "masks" / f"street_{i}.png", _labels(rng, h, w))
    _exif_jpeg(root / "images" / "phone_ok.jpg", 24, 40)    # viewed as 40 high, 24 wide
    _save_mask(root / "masks" / "phone_ok.png", _labels(rng, 40, 24))
    _exif_jpeg(root / "images" / "phone_bad.jpg", 24, 40)
    _save_mask(root / "masks" / "phone_bad.png", _labels(rng, 24, 40))  # as stored: mismatch
    _save_image(root / "images" / "lonely.png", _noise(rng, 32, 32))
    _save_mask(root / "masks" / "orphan.png", _labels(rng, 32, 32))
    _save_image(root / "images" / "half.png", _noise(rng, 32, 32))
    _save_mask(root / "masks" / "half.png", _labels(rng, 16, 16))
    _save_image(root / "images" / "seven.png", _noise(rng, 32, 32))
    bad = _labels(rng, 32, 32)
    bad[0, 0] = 7
    _save_mask(root / "masks" / "seven.png", bad)
    _save_image(root / "images" / "cut.png", _noise(rng, 32, 32))
    _save_mask(root / "masks" / "cut_full.png", _labels(rng, 32, 32))
    full = (root / "masks" / "cut_full.png").read_bytes()
    (root / "masks" / "cut_full.png").unlink()
    (root / "masks" / "cut.png").write_bytes(full[: len(full) // 2])
    (root / "images" / "empty.png").write_bytes(b"")
    _save_mask(root / "masks" / "empty.png", _labels(rng, 32, 32))
    _save_image(root / "images" / "lossy.png", _noise(rng, 32, 32))
    Image.fromarray(_labels(rng, 32, 32), "L").save(root / "masks" / "lossy.jpg")
    _save_image(root / "images" / "twice.png", _noise(rng, 32, 32))
    _save_mask(root / "masks" / "twice.png", _labels(rng, 32, 32))
    Image.fromarray(_labels(rng, 32, 32), "L").save(root / "masks" / "twice.jpg")
    (root / "masks" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return root


EXPECTED_SKIPPED = {
    "images/lonely.png": SKIP_NO_MASK,
    "masks/orphan.png": SKIP_NO_IMAGE,
    "masks/half.png": SKIP_SIZE_MISMATCH,
    "masks/phone_bad.png": SKIP_SIZE_MISMATCH,
    "masks/seven.png": SKIP_LABELS,
    "masks/cut.png": SKIP_TRUNCATED,
    "images/empty.png": SKIP_EMPTY,
    "masks/lossy.jpg": SKIP_LOSSY_MASK,
    "masks/twice.jpg": SKIP_SAME_STEM,
    "masks/.DS_Store": SKIP_SYSTEM,
}


@pytest.fixture(scope="module")
def messy_loaded(messy, tmp_path_factory):
    before = snapshot(messy)
    data = load_segmentation(messy, cache_dir=tmp_path_factory.mktemp("cache"))
    return data, before


def test_pairs_by_stem_and_names_every_messy_pair(messy, messy_loaded):
    data, _ = messy_loaded
    assert _relative(data.report, messy) == EXPECTED_SKIPPED
    assert data.class_names == CLASSES
    usable = {f"street_{i}" for i in range(6)} | {"phone_ok", "twice"}
    assert data.report.pairs == len(usable) == 8
    splits = [data.train, data.val]
    assert sorted(Path(p).stem for s in splits for p in s.paths) == sorted(usable)
    assert (len(data.train), len(data.val), data.test) == (6, 2, None)  # round(8 * 0.2) = 2
    for split in splits:
        assert split.labels == tuple(range(len(split)))
        assert len(split.masks) == len(split.paths) == len(split.sources)
    # Direct masks are the user's files, position by position with their images.
    by_image = dict(zip(data.train.paths + data.val.paths, data.train.masks + data.val.masks))
    assert by_image[str(messy / "images" / "twice.png")] == str(messy / "masks" / "twice.png")
    assert by_image[str(messy / "images" / "street_3.png")] == str(
        messy / "masks" / "street_3.png")


def test_exif_rotated_image_is_compared_rotated_with_the_mask_as_stored(messy, messy_loaded):
    data, _ = messy_loaded
    split = data.train if str(messy / "images" / "phone_ok.jpg") in data.train.paths \
        else data.val
    i = split.paths.index(str(messy / "images" / "phone_ok.jpg"))
    assert split.orientations[i] == 6
    masks = load_masks(split, 32)
    stored = np.asarray(Image.open(messy / "masks" / "phone_ok.png"))
    rows = (np.arange(32) + 0.5) * 40 / 32
    cols = (np.arange(32) + 0.5) * 24 / 32
    np.testing.assert_array_equal(masks[i], stored[rows.astype(int)][:, cols.astype(int)])


def test_report_json_and_summary(messy, messy_loaded, tmp_path):
    data, _ = messy_loaded
    report = data.report
    report.save(tmp_path / "data_report.json")
    saved = json.loads((tmp_path / "data_report.json").read_text())
    assert saved["pairs"] == 8 and saved["usable"] == 8
    assert set(saved["pixel_frequencies"]) == set(CLASSES)
    assert DataReport.load(tmp_path / "data_report.json").to_dict() == report.to_dict()
    text = report.summary(max_paths=20)
    assert "8 usable image/mask pair(s)" in text
    for path, reason in EXPECTED_SKIPPED.items():
        assert f"{path}: {reason}" in text.replace("\\", "/")
    # Every class is in some mask, and class_counts count masks, not pixels.
    assert all(0 < n <= 8 for n in report.class_counts.values())
    assert sum(report.split_counts["train"].values()) >= len(data.train)


def test_data_dir_is_left_untouched(messy, messy_loaded):
    _, before = messy_loaded
    assert snapshot(messy) == before


def test_classification_report_and_split_json_are_unchanged():
    report = DataReport(source="x", class_counts={"a": 3, "b": 1})
    assert not {"pairs", "pixel_counts", "pixel_frequencies"} & set(report.to_dict())
    split = Split(paths=("a.png",), labels=(0,))
    assert split.to_dict() == {"paths": ["a.png"], "labels": [0]}
    seg = Split(paths=("a.png", "b.png"), labels=(0, 1), masks=("a_m.png", "b_m.png"))
    assert seg.to_dict()["masks"] == ["a_m.png", "b_m.png"]
    assert Split.from_dict(seg.to_dict()) == seg


def test_split_json_round_trip_keeps_the_masks(messy_loaded, tmp_path):
    data, _ = messy_loaded
    data.save(tmp_path / "split.json")
    again = ImageFolderData.load(tmp_path / "split.json")
    assert again.class_names == data.class_names
    for got, want in ((again.train, data.train), (again.val, data.val)):
        assert (got.paths, got.masks, got.labels) == (want.paths, want.masks, want.labels)


def test_seeded_split_is_reproducible_and_seed_dependent(messy, tmp_path):
    a = load_segmentation(messy, seed=1, cache_dir=tmp_path)
    b = load_segmentation(messy, seed=1, cache_dir=tmp_path)
    c = load_segmentation(messy, seed=2, val_split=0.25, test_split=0.25, cache_dir=tmp_path)
    assert a.val == b.val and a.train == b.train
    assert (len(c.train), len(c.val), len(c.test)) == (4, 2, 2)
    # The images and masks of the 14 complete pairs, but the empty image: never cached.
    assert b.report.from_cache == 2 * 14 - 1


# ---- mask formats -------------------------------------------------------------------------------

def test_palette_png_is_read_as_indices(tmp_path):
    mask = _labels(np.random.default_rng(0), 32, 32)
    image = Image.fromarray(mask, "P")
    palette = [0] * 768
    palette[3:6] = (200, 10, 10)       # index 1 drawn red, index 2 green: colours are not labels
    palette[6:9] = (10, 200, 10)
    image.putpalette(palette)
    image.save(tmp_path / "m.png")
    assert Image.open(tmp_path / "m.png").mode == "P"
    read = read_mask(tmp_path / "m.png")
    assert read.dtype == np.uint8
    np.testing.assert_array_equal(read, mask)


def test_16bit_and_1bit_masks_read_as_indices(tmp_path):
    mask16 = np.zeros((8, 8), np.uint16)
    mask16[2:, 3:] = 300
    Image.fromarray(mask16).save(tmp_path / "m16.png")
    read = read_mask(tmp_path / "m16.png")
    assert read.dtype == np.uint16
    np.testing.assert_array_equal(read, mask16)
    Image.fromarray(np.eye(8, dtype=bool)).save(tmp_path / "m1.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m1.png"), np.eye(8, dtype=np.uint8))


def _rgb_folder(root: Path) -> tuple[Path, dict]:
    root.mkdir(parents=True)
    colours = {0: (0, 0, 0), 1: (128, 64, 128), 2: (0, 0, 142)}
    (root / "classes.csv").write_text(
        "index,name,r,g,b\n" + "".join(f"{i},{CLASSES[i]},{r},{g},{b}\n"
                                       for i, (r, g, b) in colours.items())
        + "255,void,255,255,255\n")
    rng = np.random.default_rng(3)
    for i in range(4):
        labels = _labels(rng, 32, 32)
        rgb = np.zeros((32, 32, 3), np.uint8)
        for index, colour in [*colours.items(), (255, (255, 255, 255))]:
            rgb[labels == index] = colour
        if i == 3:
            rgb[0, 0] = (1, 2, 3)  # a colour the table lacks
        _save_image(root / "images" / f"x{i}.png", _noise(rng, 32, 32))
        _save_image(root / "masks" / f"x{i}.png", rgb)
        _save_mask(root / "expected" / f"x{i}.png", labels)
    return root, colours


def test_rgb_masks_through_the_colour_table_of_classes_csv(tmp_path):
    root, _ = _rgb_folder(tmp_path / "rgb")
    table = read_palette(root / "classes.csv")
    assert table.names == CLASSES
    np.testing.assert_array_equal(read_mask(root / "masks" / "x0.png", palette=table),
                                  np.asarray(Image.open(root / "expected" / "x0.png")))
    data = load_segmentation(root, cache_dir=tmp_path / "cache")
    assert data.class_names == CLASSES
    assert _relative(data.report, root) == {"masks/x3.png": SKIP_COLOUR}
    assert data.report.notes[NOTE_MASK_RGB] == 3
    for split in (data.train, data.val):
        assert all(m.startswith(str(tmp_path / "cache" / "masks")) for m in split.masks)
        got = load_masks(split, 32)
        for i, path in enumerate(split.paths):
            np.testing.assert_array_equal(
                got[i], np.asarray(Image.open(root / "expected" / Path(path).name)))


def test_palette_file_overrides_classes_csv(tmp_path):
    root, colours = _rgb_folder(tmp_path / "rgb")
    (tmp_path / "p.csv").write_text("".join(f"{i},{n},{r},{g},{b}\n" for (i, (r, g, b)), n in
                                            zip(colours.items(), ("sky", "lane", "bus")))
                                    + "3,unused,9,9,9\n255,void,255,255,255\n")
    data = load_segmentation(root, palette=tmp_path / "p.csv", cache_dir=tmp_path / "cache")
    assert data.class_names == ("sky", "lane", "bus", "unused")
    assert data.report.pixel_frequencies["unused"] == 0.0


def test_rgb_mask_without_a_colour_table_is_a_clear_error(tmp_path):
    root, _ = _rgb_folder(tmp_path / "rgb")
    (root / "classes.csv").unlink()
    with pytest.raises(DataError, match=r"x0\.png.*RGB colour-coded.*classes\.csv.*--palette"):
        load_segmentation(root, cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match=r"x1\.png.*colour table"):
        read_mask(root / "masks" / "x1.png")


def test_bad_class_files_and_arguments(tmp_path, messy):
    (tmp_path / "gap.csv").write_text("0,a\n2,b\n")
    with pytest.raises(DataError, match=r"0\.\.K-1.*missing \[1\]"):
        read_palette(tmp_path / "gap.csv")
    (tmp_path / "colour.csv").write_text("0,a,1,2,3\n1,b,1,2,3\n")
    with pytest.raises(DataError, match=r"colour.csv:2: colour \(1, 2, 3\) is already class 0"):
        read_palette(tmp_path / "colour.csv")
    with pytest.raises(DataError, match="not a segmentation data folder"):
        load_segmentation(tmp_path)
    with pytest.raises(ConfigError, match=r"ignore_index 1 is also a class index \(classes 0-2"):
        load_segmentation(messy, ignore_index=1)
    with pytest.raises(ConfigError, match="ignore_index must be an integer 0-255"):
        load_segmentation(messy, ignore_index=300)


def _binary_folder(root: Path, classes: str | None = None) -> np.ndarray:
    """Three pairs whose masks are 0 (background) and 255 (object), as binary masks are often
    saved; the first mask's 0/1 labels are returned."""
    rng = np.random.default_rng(0)
    for i in range(3):
        _save_image(root / "images" / f"{i}.png", _noise(rng, 16, 16))
        labels = (_labels(rng, 16, 16, k=2, ignore=0) > 0).astype(np.uint8)
        _save_mask(root / "masks" / f"{i}.png", labels * 255)
        first = labels if i == 0 else first
    if classes:
        (root / "classes.txt").write_text(classes)
    return first


@pytest.mark.parametrize("classes", [None, "background\nobject\n"])
def test_binary_masks_saved_as_0_255_are_read_as_0_1(tmp_path, caplog, classes):
    labels = _binary_folder(tmp_path / "data", classes)
    with caplog.at_level("INFO", logger="transfer.data"):
        data = load_segmentation(tmp_path / "data", cache_dir=tmp_path / "cache", val_split=0.34)
    assert data.class_names == (("class_0", "class_1") if classes is None
                                else ("background", "object"))
    assert data.report.notes[NOTE_MASK_BINARY] == 3
    assert data.report.to_dict()["notes"][NOTE_MASK_BINARY] == 3
    assert data.report.split_counts["train"]["class_1" if classes is None else "object"] == 2
    lines = [r.getMessage() for r in caplog.records if "binary masks" in r.getMessage()]
    assert lines == ["3 mask(s) hold only the values 0 and 255 with 2 classes: read as binary "
                     "masks, 255 as class 1 (pass an ignore_index to keep 255 as ignored)"]
    both = {p: m for s in (data.train, data.val) for p, m in zip(s.paths, s.masks)}
    first = load_masks(Split((str(tmp_path / "data/images/0.png"),), (0,),
                             masks=(both[str(tmp_path / "data/images/0.png")],)), 16)[0]
    np.testing.assert_array_equal(first, labels)


def test_binary_masks_keep_255_ignored_with_an_explicit_ignore_index(tmp_path):
    _binary_folder(tmp_path / "inferred")
    with pytest.raises(DataError, match=r"values \[0, 255\].*binary masks saved as 0/255"):
        load_segmentation(tmp_path / "inferred", cache_dir=tmp_path / "cache", ignore_index=255)
    _binary_folder(tmp_path / "named", "background\nobject\n")
    data = load_segmentation(tmp_path / "named", cache_dir=tmp_path / "cache",
                             ignore_index=255, val_split=0.34)
    assert NOTE_MASK_BINARY not in data.report.notes
    assert data.report.split_counts["train"]["object"] == 0


# ---- layouts ------------------------------------------------------------------------------------

def test_pascal_voc_layout(tmp_path):
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    rng = np.random.default_rng(5)
    palette = [0] * 768
    for (r, g, b), index in voc_colours():
        palette[3 * index:3 * index + 3] = (r, g, b)
    stems = [f"2007_{i:06d}" for i in range(6)]
    for stem in stems:
        labels = _labels(rng, 32, 40)
        labels[labels == 2] = 15  # person
        mask = Image.fromarray(labels, "P")
        mask.putpalette(palette)
        (voc / "SegmentationClass").mkdir(parents=True, exist_ok=True)
        mask.save(voc / "SegmentationClass" / f"{stem}.png")
        _save_image(voc / "JPEGImages" / f"{stem}.jpg", _noise(rng, 32, 40))
    for extra in ("2008_000001", "2008_000002"):  # detection-only images: no mask
        _save_image(voc / "JPEGImages" / f"{extra}.jpg", _noise(rng, 32, 40))
    sets = voc / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("\n".join(stems[:4]) + "\n")
    (sets / "val.txt").write_text("\n".join(stems[4:]) + "\n2007_999999\n")
    data = load_segmentation(tmp_path, cache_dir=tmp_path / "cache")
    assert data.class_names == VOC_CLASSES and len(VOC_CLASSES) == 21
    assert [Path(p).stem for p in data.train.paths] == stems[:4]
    assert [Path(p).stem for p in data.val.paths] == stems[4:]
    assert data.train.masks[0] == str(voc / "SegmentationClass" / f"{stems[0]}.png")
    assert _relative(data.report, voc) == {"JPEGImages/2007_999999": "missing"}
    assert data.report.notes[NOTE_UNUSED_IMAGES] == 2
    masks = load_masks(data.train, 40)
    assert set(np.unique(masks)) == {0, 1, 15, 255}
    assert data.report.split_counts["train"]["person"] == 4
    assert data.report.pixel_counts["cat"] == 0
    # Another ignore index: VOC's stored 255 borders become it, in normalised copies.
    other = load_segmentation(tmp_path, ignore_index=100, cache_dir=tmp_path / "cache")
    assert (other.report.pairs, other.report.skipped) == (6, data.report.skipped)
    np.testing.assert_array_equal(load_masks(other.train, 40),
                                  np.where(masks == 255, 100, masks))


def test_oxford_pet_trimaps(tmp_path):
    rng = np.random.default_rng(6)
    trimap = np.full((32, 32), 2, np.uint8)   # background
    trimap[8:24, 8:24] = 3                    # border
    trimap[10:22, 10:22] = 1                  # pet
    expected = np.select([trimap == 1, trimap == 2], [1, 0], 255).astype(np.uint8)
    for i in range(5):
        _save_image(tmp_path / "images" / f"Abyssinian_{i}.jpg", _noise(rng, 32, 32))
        _save_mask(tmp_path / "annotations" / "trimaps" / f"Abyssinian_{i}.png", trimap)
    (tmp_path / "images" / "Abyssinian_0.mat").write_bytes(b"MATLAB 5.0")
    (tmp_path / "annotations" / "trimaps" / "._Abyssinian_0.png").write_bytes(b"\0\5\26\7")
    data = load_segmentation(tmp_path, cache_dir=tmp_path / "cache")
    assert data.class_names == PET_CLASSES
    assert _relative(data.report, tmp_path) == {
        "images/Abyssinian_0.mat": SKIP_NOT_IMAGE,
        "annotations/trimaps/._Abyssinian_0.png": SKIP_SYSTEM}
    assert data.report.notes[NOTE_MASK_MAPPED] == 5
    for split in (data.train, data.val):
        for mask in load_masks(split, 32):
            np.testing.assert_array_equal(mask, expected)
    assert data.report.pixel_counts == {"background": len(data.train) * (1024 - 256),
                                        "pet": len(data.train) * 144}
    # The official lists fix the split: trainval is the pool, test.txt the test split.
    (tmp_path / "annotations" / "trainval.txt").write_text(
        "".join(f"Abyssinian_{i} 1 1 1\n" for i in range(3)))
    (tmp_path / "annotations" / "test.txt").write_text("Abyssinian_3 1 1 1\nAbyssinian_4 1 1 1\n")
    listed = load_segmentation(tmp_path, cache_dir=tmp_path / "cache")
    assert sorted(Path(p).stem for p in listed.test.paths) == ["Abyssinian_3", "Abyssinian_4"]
    assert (len(listed.train), len(listed.val)) == (2, 1)
    bad = np.where(trimap == 3, 4, trimap).astype(np.uint8)  # 4 is no trimap value
    _save_mask(tmp_path / "annotations" / "trimaps" / "Abyssinian_2.png", bad)
    assert _relative(load_segmentation(tmp_path, cache_dir=tmp_path / "cache").report,
                     tmp_path)["annotations/trimaps/Abyssinian_2.png"] == SKIP_LABELS


def test_train_val_test_folders(tmp_path):
    rng = np.random.default_rng(8)
    counts = {"train": 3, "val": 2, "test": 1}
    for split, n in counts.items():
        for i in range(n):
            _save_image(tmp_path / split / "images" / f"{split}{i}.png", _noise(rng, 24, 24))
            _save_mask(tmp_path / split / "masks" / f"{split}{i}.png", _labels(rng, 24, 24))
    _save_mask(tmp_path / "train" / "masks" / "train0.png", np.full((24, 24), 3, np.uint8))
    data = load_segmentation(tmp_path, val_split=0.5, cache_dir=tmp_path / "cache")
    for split, n in counts.items():
        assert [Path(p).parent.parent.name for p in getattr(data, split).paths] == [split] * n
    assert data.class_names == ("class_0", "class_1", "class_2", "class_3")  # max label 3 + 1


# ---- masks for training -------------------------------------------------------------------------

def test_load_masks_nearest_keeps_only_the_labels_and_the_ignore_index(tmp_path):
    import tensorflow as tf

    rng = np.random.default_rng(9)
    mask = rng.choice(np.array([0, 3, 255], np.uint8), size=(37, 53))
    _save_mask(tmp_path / "m.png", mask)
    split = Split(paths=("i.png",), labels=(0,), masks=(str(tmp_path / "m.png"),))
    for size in (16, 64):
        got = load_masks(split, size)
        assert got.shape == (1, size, size) and got.dtype == np.uint8
        assert set(np.unique(got)) <= {0, 3, 255} and 255 in got
        # The same pixels as TensorFlow's nearest resize (what serving would do).
        want = tf.image.resize(mask[..., None], (size, size), method="nearest")[..., 0]
        np.testing.assert_array_equal(got[0], want.numpy())
    with pytest.raises(DataError, match="missing.*load the data again"):
        load_masks(Split(paths=("i.png",), labels=(0,), masks=("/nope.png",)), 8)
    with pytest.raises(DataError, match="0 mask"):
        load_masks(Split(paths=("i.png",), labels=(0,)), 8)


def test_pixel_frequencies_and_median_frequency_weights_exactly():
    a = np.array([[0, 0], [0, 1]], np.uint8)      # 4 labelled pixels
    b = np.array([[1, 1], [2, 255]], np.uint8)    # 3 labelled pixels
    freqs = pixel_frequencies([a, b], 4)
    # class 0: 3 / 4; class 1: 3 / (4 + 3); class 2: 1 / 3; class 3 absent.
    assert freqs == pytest.approx([3 / 4, 3 / 7, 1 / 3, 0.0], abs=0, rel=1e-12)
    weights = class_pixel_weights(freqs)  # median of the present: 3/7
    assert weights == pytest.approx([4 / 7, 1.0, 9 / 7, 0.0], rel=1e-12)
    with pytest.raises(DataError):
        class_pixel_weights([0.0, 0.0])


def test_report_pixel_statistics_come_from_the_training_masks(tmp_path):
    a = np.array([[0, 0], [0, 1]], np.uint8)
    b = np.array([[1, 1], [2, 255]], np.uint8)
    for split, masks in (("train", [a, b]), ("val", [np.full((2, 2), 3, np.uint8)])):
        for i, mask in enumerate(masks):
            _save_image(tmp_path / split / "images" / f"{i}.png", np.zeros((2, 2, 3), np.uint8))
            _save_mask(tmp_path / split / "masks" / f"{i}.png", mask)
    (tmp_path / "classes.txt").write_text("a\nb\nc\nd\n")
    report = load_segmentation(tmp_path, cache_dir=tmp_path / "cache").report
    assert report.pixel_counts == {"a": 3, "b": 3, "c": 1, "d": 0}
    assert list(report.pixel_frequencies.values()) == pytest.approx([3 / 4, 3 / 7, 1 / 3, 0.0])
    assert report.split_counts == {"train": {"a": 1, "b": 2, "c": 1, "d": 0},
                                   "val": {"a": 0, "b": 0, "c": 0, "d": 1}}


# ---- joint augmentation -------------------------------------------------------------------------

def _coordinate_batch(b: int = 6, s: int = 48):
    """Images whose channels are 4x and 4y; masks holding x and y: bilinear is exact on them."""
    y, x = np.mgrid[0:s, 0:s]
    images = np.stack([4.0 * x, 4.0 * y, np.zeros_like(x, float)], -1)
    images = np.broadcast_to(images, (b, s, s, 3)).astype(np.float32)
    return (images, np.broadcast_to(x, (b, s, s)).astype(np.uint8),
            np.broadcast_to(y, (b, s, s)).astype(np.uint8))


def _augment_in_dataset(images, masks, seed, **options):
    """Run joint_augment as a tf.data map (graph mode), as training does."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensors((images, masks)).map(
        lambda i, m: joint_augment(i, m, tf.constant(seed, tf.int64), **options))
    out_images, out_masks = next(iter(ds))
    return out_images.numpy(), out_masks.numpy()


def test_joint_augmentation_keeps_image_and_mask_aligned():
    images, xs, ys = _coordinate_batch()
    out, mx = _augment_in_dataset(images, xs, [3, 4], colour=False, rotate=15.0)
    out_again, my = _augment_in_dataset(images, ys, [3, 4], colour=False, rotate=15.0)
    np.testing.assert_array_equal(out, out_again)
    labelled = mx != 255
    assert np.array_equal(labelled, my != 255)
    # Image sampled bilinearly at the source point, mask at its nearest pixel: within half a
    # pixel on both axes, everywhere the mask is not ignored.
    assert np.abs(out[..., 0] / 4 - mx)[labelled].max() <= 0.5 + 1e-3
    assert np.abs(out[..., 1] / 4 - my)[labelled].max() <= 0.5 + 1e-3
    # ...and the transform did something: pixels moved, and some came from outside.
    s = images.shape[1]
    assert (mx != np.arange(s)[None, None, :])[labelled].mean() > 0.5
    assert 0 < (~labelled).mean() < 0.5


def test_flips_move_class_coded_images_and_masks_exactly_together():
    rng = np.random.default_rng(0)
    masks = np.stack([_labels(rng, 32, 32) for _ in range(8)])
    masks[:, :, :5] = 0  # asymmetric, so a flip shows
    images = np.repeat((masks.astype(np.float32) * 0.5)[..., None], 3, axis=-1)
    out, out_masks = _augment_in_dataset(images, masks, [1, 2], scale=None, rotate=0.0,
                                         colour=False)
    np.testing.assert_array_equal(out[..., 0], out_masks.astype(np.float32) * 0.5)
    flipped = [np.array_equal(m, mask[:, ::-1]) for m, mask in zip(out_masks, masks)]
    kept = [np.array_equal(m, mask) for m, mask in zip(out_masks, masks)]
    assert all(f != k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


def test_joint_augmentation_is_deterministic_per_seed_and_keeps_shapes():
    import tensorflow as tf

    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    masks = np.stack([_labels(rng, 32, 32) for _ in range(4)]).astype(np.int32)
    a = _augment_in_dataset(images, masks, [7, 7])
    b = _augment_in_dataset(images, masks, [7, 7])
    c = _augment_in_dataset(images, masks, [7, 8])
    plain = _augment_in_dataset(images, masks, [7, 7], colour=False)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1]) and not np.array_equal(a[0], c[0])
    np.testing.assert_array_equal(a[1], plain[1])          # colour never moves the mask
    assert not np.array_equal(a[0], plain[0])
    assert a[0].shape == images.shape and a[1].shape == masks.shape
    assert a[1].dtype == np.int32 and 0 <= a[0].min() and a[0].max() <= 255
    assert set(np.unique(a[1])) <= {0, 1, 2, 255}
    eager = joint_augment(tf.constant(images), tf.constant(masks.astype(np.uint8)),
                          tf.constant([7, 7], tf.int64))
    assert eager[1].dtype == tf.uint8
    np.testing.assert_array_equal(eager[1].numpy(), a[1])
    with pytest.raises(ConfigError, match="scale"):
        joint_augment(images, masks, tf.constant([1, 2], tf.int64), scale=(1.2, 0.8))


def test_augment_batches_differs_per_epoch_and_repeats_per_run():
    import tensorflow as tf

    rng = np.random.default_rng(2)
    images = rng.uniform(0, 255, (4, 24, 24, 3)).astype(np.float32)
    masks = np.stack([_labels(rng, 24, 24) for _ in range(4)])

    def epochs(seed: int) -> list[np.ndarray]:
        ds = augment_batches(tf.data.Dataset.from_tensor_slices((images, masks)).batch(2),
                             seed=seed)
        return [np.concatenate([m.numpy() for _, m in ds]) for _ in range(2)]

    first, second = epochs(5)
    assert not np.array_equal(first, second)
    again = epochs(5)
    np.testing.assert_array_equal(first, again[0])
    np.testing.assert_array_equal(second, again[1])


def _pairs_folder(root: Path, masks: list[np.ndarray]) -> Path:
    rng = np.random.default_rng(0)
    for i, mask in enumerate(masks):
        _save_image(root / "images" / f"{i}.png", _noise(rng, *mask.shape))
        _save_mask(root / "masks" / f"{i}.png", mask)
    return root


def test_ignore_index_advice_names_only_values_the_option_accepts(tmp_path):
    """Every value advised is 0-255 and no class; where none is left, the advice says so."""
    masks = [np.arange(64, dtype=np.uint8).reshape(8, 8) % 3 for _ in range(2)]
    root = _pairs_folder(tmp_path / "wide", masks)
    (root / "classes.txt").write_text("".join(f"c{i}\n" for i in range(256)))
    with pytest.raises(DataError) as info:  # not a ConfigError: no option value can fix it
        load_segmentation(root, cache_dir=tmp_path / "cache")
    assert str(info.value) == (
        "ignore_index 255 is also a class index (classes 0-255), and 8-bit masks leave no "
        f"other value for it: list at most 255 classes in {str(root / 'classes.txt')!r}")
    (root / "classes.txt").write_text("".join(f"c{i}\n" for i in range(200)))
    with pytest.raises(ConfigError) as info:
        load_segmentation(root, ignore_index=100, cache_dir=tmp_path / "cache")
    assert str(info.value) == ("ignore_index 100 is also a class index (classes 0-199); choose "
                               "an ignore_index from 200 to 255")

    # Labels read from the masks: up to 150 with ignore_index 100 (150 fits below 255) ...
    masks = [np.full((8, 8), 150, np.uint8), np.zeros((8, 8), np.uint8)]
    root = _pairs_folder(tmp_path / "labels", masks)
    with pytest.raises(DataError) as info:
        load_segmentation(root, ignore_index=100, cache_dir=tmp_path / "cache")
    assert str(info.value) == (
        f"the masks in {str(root)!r} hold labels up to 150, above ignore_index 100; choose an "
        f"ignore_index from 151 to 255")
    # ... and up to 255, which leaves no 8-bit value for ignore_index.
    masks = [np.full((8, 8), 255, np.uint8), np.zeros((8, 8), np.uint8)]
    root = _pairs_folder(tmp_path / "full", masks)
    with pytest.raises(DataError) as info:
        load_segmentation(root, ignore_index=100, cache_dir=tmp_path / "cache")
    assert str(info.value) == (
        f"the masks in {str(root)!r} hold labels up to 255, and 8-bit masks leave no other "
        f"value for ignore_index 100: use at most 255 classes (0-254; ignore_index 255)")


def test_binary_hint_only_for_0_255_masks_and_only_advice_that_works(tmp_path):
    masks = [np.where(np.arange(64).reshape(8, 8) % 2, 255, 0).astype(np.uint8)] * 2
    root = _pairs_folder(tmp_path / "binary", masks)
    with pytest.raises(DataError) as info:
        load_segmentation(root, ignore_index=255, cache_dir=tmp_path / "cache")
    # Read as 0/1 by default; an explicit ignore_index 255 keeps every object pixel ignored, and
    # another ignore_index would make 255 a label: 256 classes, which 8-bit masks cannot have.
    assert str(info.value).endswith("binary masks saved as 0/255: save them as 0/1")
    masks = [(np.arange(64).reshape(8, 8) % 2).astype(np.uint8)] * 2
    root = _pairs_folder(tmp_path / "ones", masks)
    with pytest.raises(DataError) as info:
        load_segmentation(root, ignore_index=1, cache_dir=tmp_path / "cache")
    assert str(info.value).endswith(
        "hold the values [0, 1] (ignore_index 1); if 1 is a class, choose an ignore_index from "
        "2 to 255")


def test_too_few_pairs_advise_the_check_that_lists_every_file(tmp_path):
    masks = [(np.arange(64).reshape(8, 8) % 2).astype(np.uint8)]
    root = _pairs_folder(tmp_path / "one", masks)
    with pytest.raises(DataError) as info:
        load_segmentation(root, cache_dir=tmp_path / "cache")
    # a failed 'zoo data check' prints this line only; with --json it lists every file
    assert str(info.value).endswith(f"; run 'zoo data check {root} --json' to see every file")
