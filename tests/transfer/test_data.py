"""Real-world image folders: every odd file is used correctly or skipped and named."""

from __future__ import annotations

import hashlib
import io
import json
import time
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transfer import data as data_lib
from transfer.data import (
    NOTE_16BIT,
    NOTE_ALPHA,
    NOTE_ANIMATION,
    NOTE_CMYK,
    NOTE_EXIF,
    NOTE_PALETTE,
    NOTE_SUFFIX,
    SKIP_DUPLICATE,
    SKIP_EMPTY,
    SKIP_MISSING,
    SKIP_NOT_IMAGE,
    SKIP_OUTSIDE,
    SKIP_SYSTEM,
    SKIP_TRUNCATED,
    DataReport,
    checks,
    list_image_files,
    load_normalized,
    make_dataset,
)
from transfer.errors import ConfigError, DataError
from transfer.tasks.classification.sources import load_image_folder, load_source

AHRE = "Ähre"
# Relative path -> reason, for every file of the messy folder that must be skipped.
EXPECTED_SKIPPED = {
    ".DS_Store": SKIP_SYSTEM,
    "README.md": SKIP_OUTSIDE,
    "cat/.DS_Store": SKIP_SYSTEM,
    "cat/Thumbs.db": SKIP_SYSTEM,
    "cat/README.md": SKIP_NOT_IMAGE,
    "cat/empty.jpg": SKIP_EMPTY,
    "cat/error_page.jpg": SKIP_NOT_IMAGE,
    "cat/truncated.jpg": SKIP_TRUNCATED,
}
USABLE = {"cat": 9, "sea lion": 5, AHRE: 4}


def _noise(rng, h: int, w: int, c: int = 3) -> np.ndarray:
    return (rng.random((h, w, c)) * 255).astype(np.uint8)


def _exif_rotated_jpeg(path: Path, orientation: int = 6) -> np.ndarray:
    """A 24x40 JPEG, red left half and blue right half, tagged with ``orientation``."""
    pixels = np.zeros((24, 40, 3), np.uint8)
    pixels[:, :20] = (230, 20, 20)
    pixels[:, 20:] = (20, 20, 230)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, exif=exif, quality=95)
    return pixels


def make_messy_folder(root: Path) -> Path:
    """Every kind of file a real folder holds, in three classes and an empty one."""
    rng = np.random.default_rng(7)
    cat, sea_lion = root / "cat", root / "sea lion"
    ahre = root / unicodedata.normalize("NFD", AHRE)  # as macOS stores it
    for folder in (cat, sea_lion, ahre, root / "empty"):
        folder.mkdir(parents=True)
    for folder in (cat, sea_lion, ahre):
        for i in range(3):
            Image.fromarray(_noise(rng, 30, 36)).save(folder / f"photo_{i}.jpg", quality=90)
    _exif_rotated_jpeg(cat / "exif_rotated.jpg")
    Image.fromarray(_noise(rng, 30, 34, 4)).save(cat / "screenshot.png")  # RGBA
    Image.fromarray(_noise(rng, 30, 30)[..., 0]).save(cat / "gray.png")  # L
    Image.fromarray(_noise(rng, 30, 30)[..., 0]).save(cat / "gray_scan.jpg")  # L JPEG
    Image.fromarray((rng.random((30, 30)) * 65535).astype(np.uint16)).save(cat / "gray16.png")
    Image.fromarray(_noise(rng, 30, 30)).convert("CMYK").save(cat / "cmyk_scan.jpg")
    frames = [Image.fromarray(_noise(rng, 30, 30)).convert("P") for _ in range(3)]
    frames[0].save(sea_lion / "animated.gif", save_all=True, append_images=frames[1:],
                   duration=100, loop=0)
    Image.fromarray(_noise(rng, 30, 30)).save(sea_lion / "bitmap.bmp")
    Image.fromarray(_noise(rng, 30, 30)).save(ahre / "really_a_png.jpg", format="PNG")
    encoded = io.BytesIO()
    Image.fromarray(_noise(rng, 64, 64)).save(encoded, "JPEG")
    (cat / "truncated.jpg").write_bytes(encoded.getvalue()[:700])
    (cat / "error_page.jpg").write_text("<html><body><h1>403 Forbidden</h1></body></html>\n")
    (cat / "empty.jpg").write_bytes(b"")
    (cat / ".DS_Store").write_bytes(b"\0\0\0\1Bud1\0\0\x10\0")
    (cat / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")
    (cat / "README.md").write_text("# Cats\n")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1\0\0\x10\0")
    (root / "README.md").write_text("# My photos\n")
    return root


def make_folder(root: Path, *, per_class: int, seed: int = 0,
                classes: dict | None = None) -> Path:
    """A clean folder of small PNGs, one sub-folder per class."""
    rng = np.random.default_rng(seed)
    for name, colour in (classes or {"red": (220, 30, 30), "green": (30, 200, 30),
                                     "blue": (30, 30, 220)}).items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = _noise(rng, 12, 14) // 3
            pixels[3:9, 3:9] = colour
            Image.fromarray(pixels).save(root / name / f"{name}_{i:02d}.png")
    return root


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with the hash of its bytes (folders map to '')."""
    out = {}
    for path in sorted(root.rglob("*")):
        out[str(path.relative_to(root))] = (
            hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "")
    return out


@pytest.fixture(scope="module")
def messy(tmp_path_factory) -> Path:
    return make_messy_folder(tmp_path_factory.mktemp("messy") / "photos")


@pytest.fixture(scope="module")
def loaded(messy, tmp_path_factory):
    """The messy folder loaded once; the folder's snapshot taken before."""
    before = snapshot(messy)
    cache = tmp_path_factory.mktemp("cache")
    folder = load_image_folder(messy, cache_dir=cache, val_split=0.25)
    return folder, before, cache


def _relative(report: DataReport, root: Path) -> dict[str, str]:
    return {unicodedata.normalize("NFC", str(Path(p).relative_to(root))): reason
            for p, reason in report.skipped}


def test_skips_exactly_the_unusable_files_and_names_them(loaded, messy):
    folder, _, _ = loaded
    report = folder.report
    assert _relative(report, messy) == EXPECTED_SKIPPED
    assert folder.class_names == ("cat", "sea lion", AHRE)  # NFC names, sorted
    assert report.class_counts == USABLE
    assert report.dropped_classes == {"empty": "no files"}
    assert report.reason_counts == {SKIP_SYSTEM: 3, SKIP_NOT_IMAGE: 2, SKIP_EMPTY: 1,
                                    SKIP_OUTSIDE: 1, SKIP_TRUNCATED: 1}
    for note in (NOTE_EXIF, NOTE_ALPHA, NOTE_16BIT, NOTE_CMYK, NOTE_PALETTE, NOTE_ANIMATION,
                 NOTE_SUFFIX):
        assert report.notes[note] >= 1, note
    assert report.files_checked == sum(USABLE.values()) + len(EXPECTED_SKIPPED)
    counts = {name: report.split_counts["train"][name] + report.split_counts["val"][name]
              for name in USABLE}
    assert counts == USABLE and "test" not in report.split_counts
    assert report.imbalance_ratio == pytest.approx(9 / 4)


def test_report_json_and_summary_name_every_skipped_file(loaded, messy, tmp_path):
    report = loaded[0].report
    report.save(tmp_path / "data_report.json")
    saved = json.loads((tmp_path / "data_report.json").read_text())
    assert {s["path"] for s in saved["skipped"]} == {p for p, _ in report.skipped}
    assert saved["class_counts"] == USABLE and saved["reason_counts"] == report.reason_counts
    assert DataReport.load(tmp_path / "data_report.json").skipped == report.skipped
    summary = report.summary(max_paths=3)
    assert "18 usable image(s) in 3 class(es)" in summary
    assert f"cat 9, sea lion 5, {AHRE} 4" in summary and "8 file(s)" in summary
    assert ".DS_Store: system or hidden file" in summary and "and 5 more" in summary


def test_training_pixels_are_the_normalised_images_resized(loaded):
    folder, _, _ = loaded
    for split in (folder.train, folder.val):
        images = np.concatenate([x.numpy() for x, _ in make_dataset(
            split, image_size=20, batch_size=8, cache=False)])
        expected = np.stack([data_lib.resize_images(load_normalized(p), 20).numpy()
                             for p in split.paths])
        np.testing.assert_array_equal(images, expected)


def test_normalisation_of_each_odd_file(messy):
    cat, sea_lion = messy / "cat", messy / "sea lion"
    rotated = load_normalized(cat / "exif_rotated.jpg")
    assert rotated.shape == (40, 24, 3)  # stored 24x40, orientation 6: turned clockwise
    assert rotated[:20, :, 0].mean() > 200 and rotated[20:, :, 2].mean() > 200  # red on top
    stored = np.asarray(Image.open(cat / "exif_rotated.jpg").convert("RGB"))
    np.testing.assert_array_equal(rotated, np.rot90(stored, k=-1))
    screenshot = load_normalized(cat / "screenshot.png")
    rgba = np.asarray(Image.open(cat / "screenshot.png")).astype(np.float64)
    on_white = rgba[..., :3] * rgba[..., 3:] / 255 + 255 * (1 - rgba[..., 3:] / 255)
    assert np.abs(screenshot - on_white).max() <= 1
    raw16 = np.asarray(Image.open(cat / "gray16.png"))
    np.testing.assert_array_equal(load_normalized(cat / "gray16.png")[..., 1], raw16 >> 8)
    assert load_normalized(cat / "cmyk_scan.jpg").shape == (30, 30, 3)
    first = np.asarray(Image.open(sea_lion / "animated.gif").convert("RGB"))
    np.testing.assert_array_equal(load_normalized(sea_lion / "animated.gif"), first)


def test_every_exif_orientation_matches_pillow(tmp_path):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for orientation in range(1, 9):
        for fmt in ("JPEG", "PNG"):
            path = tmp_path / f"o{orientation}.{fmt.lower()}"
            image = Image.fromarray(_noise(rng, 6, 10))
            exif = image.getexif()
            exif[0x0112] = orientation
            image.save(path, format=fmt, exif=exif)
            decoded = data_lib.orient_image(
                data_lib.decode_rgb(tf.io.read_file(str(path))), orientation)
            np.testing.assert_array_equal(decoded.numpy(), load_normalized(path),
                                          err_msg=f"{fmt} orientation {orientation}")


def test_data_dir_is_left_untouched(loaded, messy):
    folder, before, _ = loaded
    for _ in make_dataset(folder.train, image_size=16, batch_size=4):
        pass
    assert snapshot(messy) == before


def test_second_run_reuses_the_cached_checks(loaded, messy, monkeypatch):
    folder, _, cache = loaded
    assert folder.report.from_cache == 0
    check_one = checks._check_one

    def only_empty_files(entry, image_dir):  # an empty file is never worth caching
        assert entry[1] == 0, f"checked {entry[0]} again"
        return check_one(entry, image_dir)

    monkeypatch.setattr(checks, "_check_one", only_empty_files)
    again = load_image_folder(messy, cache_dir=cache, val_split=0.25)
    assert again.report.from_cache == sum(USABLE.values()) + 3  # all but the empty file
    assert again.train == folder.train and again.report.skipped == folder.report.skipped


def test_changed_file_is_checked_again(tmp_path):
    root = make_folder(tmp_path / "data", per_class=3)
    first = load_image_folder(root, cache_dir=tmp_path / "cache")
    victim = root / "red" / "red_00.png"
    victim.write_bytes(victim.read_bytes()[:100])
    second = load_image_folder(root, cache_dir=tmp_path / "cache")
    assert first.report.from_cache == 0 and second.report.from_cache == 8
    assert second.report.skipped == [(str(victim), SKIP_TRUNCATED)]


def test_small_class_is_an_error_unless_dropped(tmp_path, caplog):
    root = make_folder(tmp_path / "data", per_class=4)
    for path in sorted((root / "red").iterdir())[1:]:
        path.write_text("not an image")
    with pytest.raises(DataError, match=r"'red' has 1;.*--drop-small-classes") as info:
        load_image_folder(root, cache_dir=tmp_path / "cache")
    assert info.value.report.class_counts["red"] == 1
    folder = load_image_folder(root, cache_dir=tmp_path / "cache", drop_small_classes=True)
    assert folder.class_names == ("blue", "green")
    assert folder.report.dropped_classes == {"red": "1 usable image(s), fewer than 2"}
    assert "dropping class 'red'" in caplog.text
    with pytest.raises(DataError, match="'blue' has 4"):
        load_image_folder(root, cache_dir=tmp_path / "cache", min_per_class=5,
                          drop_small_classes=False)


def test_fewer_than_two_usable_classes_is_a_clear_error(tmp_path):
    root = make_folder(tmp_path / "data", per_class=3, classes={"red": (200, 0, 0)})
    (root / "junk").mkdir()
    (root / "junk" / "a.jpg").write_text("<html></html>")
    with pytest.raises(DataError, match=r"at least 2 classes with usable images; found 1 "
                                        r"\(red: 3\); 1 file\(s\) were skipped \(1 not an image"):
        load_image_folder(root, cache_dir=tmp_path / "cache", drop_small_classes=True)


def test_presplit_folders_and_seeded_three_way_split(tmp_path):
    cache = tmp_path / "cache"
    flat = make_folder(tmp_path / "flat", per_class=10)
    a = load_image_folder(flat, cache_dir=cache, val_split=0.2, test_split=0.2, seed=3)
    b = load_image_folder(flat, cache_dir=cache, val_split=0.2, test_split=0.2, seed=3)
    assert a.train == b.train and a.val == b.val and a.test == b.test
    assert [len(a.train), len(a.val), len(a.test)] == [18, 6, 6]
    assert a.test.class_counts(3) == [2, 2, 2]
    assert not set(a.train.paths) & set(a.val.paths) | set(a.test.paths) & set(a.train.paths)
    presplit = tmp_path / "presplit"
    for split, n in (("train", 6), ("val", 2), ("test", 2)):
        make_folder(presplit / split, per_class=n, seed=len(split))
    folder = load_image_folder(presplit, cache_dir=cache)
    assert [len(folder.train), len(folder.val), len(folder.test)] == [18, 6, 6]
    assert all("/val/" in p for p in folder.val.paths)
    (presplit / "val").rename(tmp_path / "val_gone")  # train/ and test/ only: val is drawn
    folder = load_image_folder(presplit, cache_dir=cache, val_split=0.5)
    assert [len(folder.train), len(folder.val), len(folder.test)] == [9, 9, 6]
    assert all("/train/" in p for p in folder.val.paths)


def test_symlinked_folders_and_files_never_put_one_file_in_two_places(tmp_path, caplog):
    import os

    flat = make_folder(tmp_path / "flat", per_class=6)
    os.symlink(flat / "red", flat / "green" / "more_red")  # a folder of red images under green
    os.symlink(flat / "blue" / "blue_00.png", flat / "green" / "looks_green.png")
    presplit = tmp_path / "presplit"
    make_folder(presplit / "train", per_class=6)
    make_folder(presplit / "val", per_class=2, seed=1)
    os.symlink(presplit / "train" / "red" / "red_00.png", presplit / "val" / "red" / "leak.png")
    expected = {
        flat: {("green/looks_green.png", "blue/blue_00.png")} | {
            (f"green/more_red/red_{i:02d}.png", f"red/red_{i:02d}.png") for i in range(6)},
        presplit: {("val/red/leak.png", "train/red/red_00.png")}}
    for root, linked in expected.items():
        caplog.clear()
        with caplog.at_level("WARNING", logger="transfer.data"):
            folder = load_image_folder(root, cache_dir=tmp_path / "cache", val_split=0.3)
        splits = [folder.train, folder.val]
        real = [os.path.realpath(p) for s in splits for p in s.paths]
        assert len(real) == len(set(real)) == 18 + (6 if root == presplit else 0)
        by_real = {os.path.realpath(p): y for s in splits for p, y in zip(s.paths, s.labels)}
        if root == flat:  # blue, not green; each red image once, as red
            assert by_real[os.path.realpath(flat / "blue" / "blue_00.png")] == 0
            assert [by_real[os.path.realpath(p)] for p in sorted((flat / "red").iterdir())] \
                == [2] * 6
        assert {(str(Path(p).relative_to(root)), r) for p, r in folder.report.skipped} == {
            (link, data_lib.SKIP_LINKED) for link, _ in linked}
        assert folder.report.reason_counts == {data_lib.SKIP_LINKED: len(linked)}
        warnings = [r.getMessage() for r in caplog.records if "same file" in r.getMessage()]
        assert len(warnings) == 1 and f"{len(linked)} file(s)" in warnings[0]
        link, target = sorted(linked)[0]
        assert f"{root / link} (= {root / target})" in warnings[0]
    report = json.loads((folder.report.save(tmp_path / "data_report.json"),
                         (tmp_path / "data_report.json").read_text())[1])
    assert {"path": str(presplit / "val/red/leak.png"),
            "reason": data_lib.SKIP_LINKED} in report["skipped"]


def test_presplit_val_without_a_class_is_warned_and_reported(tmp_path, caplog):
    root = tmp_path / "presplit"
    make_folder(root / "train", per_class=4)
    make_folder(root / "val", per_class=2, seed=1, classes={"red": (220, 30, 30)})
    make_folder(root / "test", per_class=2, seed=2)
    with caplog.at_level("WARNING", logger="transfer.data"):
        folder = load_image_folder(root, cache_dir=tmp_path / "cache")
    assert folder.val.class_counts(3) == [0, 0, 2]
    assert [r.getMessage() for r in caplog.records] == [
        f"{str(root / 'val')!r} has no usable images of 2 class(es) of train/: blue, green; "
        f"they are not validated"]
    assert folder.report.missing_classes == {"val": ["blue", "green"]}
    assert folder.report.to_dict()["missing_classes"] == {"val": ["blue", "green"]}
    again = DataReport.from_dict(folder.report.to_dict())
    assert again.missing_classes == {"val": ["blue", "green"]}


def test_csv_source(tmp_path):
    root = make_folder(tmp_path / "images", per_class=3,
                             classes={"sea lion": (90, 90, 90), AHRE: (200, 180, 20)})
    rows = ["path,label"]
    for path in sorted(root.rglob("*.png")):
        rows.append(f"{path.relative_to(tmp_path)},{path.parent.name}")
    rows += [f"{rows[1].split(',')[0]},sea lion", "images/gone.png,sea lion",  # twice; missing
             f"{(root / AHRE / f'{AHRE}_00.png')},{AHRE}"]  # absolute, and listed before
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("\n".join(rows) + "\n")
    folder = load_source(csv_file, cache_dir=tmp_path / "cache", val_split=0.34)
    assert folder.class_names == ("sea lion", AHRE)
    assert len(folder.train) + len(folder.val) == 6
    assert {Path(p).name: r for p, r in folder.report.skipped} == {
        "sea lion_00.png": SKIP_DUPLICATE, f"{AHRE}_00.png": SKIP_DUPLICATE,
        "gone.png": SKIP_MISSING}
    batches = list(make_dataset(folder.train, image_size=8, batch_size=2))
    assert sum(len(y) for _, y in batches) == len(folder.train)
    with pytest.raises(DataError, match=r"labels.csv:2: expected 'path,label'"):
        csv_file.write_text("path,label\nonly-a-path\n")
        load_source(csv_file, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("text,line,message", [
    # a header of two columns: a third cell is a comma in the label
    ("path,label\na.png,cat\nb.png,cat, big\n", 3,
     ("3 columns where 'path,label' rows have 2; if the label holds a comma, quote it: "
      "b.png,\"cat, big\"")),
    # no header, a comma in every label: the third cell looks like a split column
    ("a.png,cat, big\nb.png,dog, small\n", 1,
     ("' big' is not a split (train, val or test); if the label holds a comma, quote it: "
      "a.png,\"cat, big\"")),
    # a split column, and a comma in one label
    ("a.png,cat,train\nb.png,cat, big,val\n", 2,
     ("4 columns where 'path,label,split' rows have 3; if the label holds a comma, quote "
      "it: b.png,\"cat, big\",val")),
    # no header, a comma in some labels only
    ("a.png,cat\nb.png,cat, big\n", 2,
     ("3 columns where 'path,label' rows have 2; if the label holds a comma, quote it: "
      "b.png,\"cat, big\"")),
])
def test_csv_label_with_an_unquoted_comma_names_the_line_and_the_quoting(tmp_path, text, line,
                                                                         message):
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text(text)
    with pytest.raises(DataError) as info:
        load_source(csv_file, cache_dir=tmp_path / "cache")
    assert str(info.value) == f"{csv_file}:{line}: {message}"


def test_tfds_offline_fails_fast_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    start = time.perf_counter()
    with pytest.raises(DataError, match=r"TFDS dataset 'mnist' is not prepared in .*tfds build "
                                        r"mnist --data_dir"):
        load_source("tfds:mnist", cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match="not prepared"):
        load_source("tfds:cifar10:3.0.2", tfds_data_dir=tmp_path, cache_dir=tmp_path / "c")
    assert time.perf_counter() - start < 10


def test_tfds_prepared_locally_is_materialised_once(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")

    class TinyShapes(tfds.core.GeneratorBasedBuilder):
        __module__ = "tiny_shapes"  # tfds looks for package resources of a dotted module
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self, supervised_keys=("image", "label"),
                features=tfds.features.FeaturesDict({
                    "image": tfds.features.Image(shape=(8, 8, 3)),
                    "label": tfds.features.ClassLabel(names=["dark", "light"])}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(8), "test": self._generate_examples(4)}

        def _generate_examples(self, n):
            for i in range(n):
                yield i, {"image": np.full((8, 8, 3), 40 + 170 * (i % 2), np.uint8),
                          "label": i % 2}

    TinyShapes(data_dir=tmp_path / "tfds").download_and_prepare()
    folder = load_source("tfds:tiny_shapes", tfds_data_dir=tmp_path / "tfds",
                         cache_dir=tmp_path / "cache")
    assert folder.class_names == ("dark", "light") and folder.report.source == "tfds:tiny_shapes"
    assert [len(folder.train), len(folder.val), len(folder.test)] == [6, 2, 4]
    images, labels = next(iter(make_dataset(folder.test, image_size=8, batch_size=4)))
    assert np.array_equal(images.numpy()[:, 0, 0, 0] > 128, labels.numpy() == 1)
    again = load_source("tfds:tiny_shapes", tfds_data_dir=tmp_path / "tfds",
                        cache_dir=tmp_path / "cache")
    assert again.report.from_cache == 12 and again.train == folder.train


def test_bad_sources_and_arguments(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_source(tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="not a .csv"):
        load_source(tmp_path / "notes.txt")
    with pytest.raises(ConfigError, match="test_split"):
        load_image_folder(tmp_path, val_split=0.5, test_split=0.5)


def test_prediction_and_viz_list_a_folder_as_training_does(tmp_path, monkeypatch):
    from transfer.predict import DECODABLE_SUFFIXES, expand_inputs
    from transfer.viz.common import list_images

    root = tmp_path / "photos"
    for rel in ("cat/a.jpg", "cat/B.PNG", "cat b/c.png", "dog/sub/d.webp", "dog/notes.txt",
                "top.gif", ".thumbnails/t.jpg", "__MACOSX/cat/._a.jpg", "cat/.e.jpg",
                "cat/Thumbs.db"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")  # listing opens nothing
    images = [str(root / rel) for rel in ("cat b/c.png", "cat/B.PNG", "cat/a.jpg", "top.gif")]
    decodable = [*images[:3], str(root / "dog" / "sub" / "d.webp"), images[3]]
    assert list_image_files(root) == images
    assert list_image_files(root, suffixes=DECODABLE_SUFFIXES) == decodable
    assert expand_inputs([f"{root}/"]) == decodable
    assert list_images(root) == (images, ["cat b", "cat", "cat", None])
    monkeypatch.chdir(root / "cat")
    assert expand_inputs(["."]) == ["B.PNG", "a.jpg"]
    with pytest.raises(DataError, match="does not exist or is not a folder"):
        list_image_files(root / "top.gif")


def test_train_on_the_messy_folder(messy, tmp_path, monkeypatch):
    import transfer

    monkeypatch.setenv("CNN_ZOO_CACHE_DIR", str(tmp_path / "cache"))
    before = snapshot(messy)
    result = transfer.train(messy, output=tmp_path / "run", model="lenet5", mode="full-retrain",
                            weights=None, epochs=1, batch_size=4, verbose=0,
                            early_stopping_patience=0)
    assert result.class_names == ("cat", "sea lion", AHRE)
    assert result.metrics["val"]["samples"] + len(
        json.loads((result.run_dir / "split.json").read_text())["train"]["paths"]) == 18
    saved = DataReport.load(result.run_dir / "data_report.json")
    assert _relative(saved, messy) == EXPECTED_SKIPPED
    assert snapshot(messy) == before
