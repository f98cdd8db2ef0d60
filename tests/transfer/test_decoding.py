"""One decoder: training, ``zoo predict`` and the SavedModel read a file as the same pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from transfer.data import image_dataset
from transfer.predict import predict, pretrained_classifier
from transfer.serving import ServingFunctions, export_saved_model
from transfer.tasks.classification.sources import load_image_folder

SIZE = 32  # LeNet-5's own input size: training and prediction resize to it


def _rgba_png(path: Path) -> None:
    """Random colours; the left half fully transparent (black underneath), a band half so."""
    rng = np.random.default_rng(1)
    pixels = (rng.random((SIZE, SIZE, 4)) * 255).astype(np.uint8)
    pixels[:, : SIZE // 2] = (0, 0, 0, 0)
    pixels[:4, SIZE // 2:, 3] = 128
    Image.fromarray(pixels, "RGBA").save(path)


def _exif_jpeg(path: Path) -> None:
    """Red left half, blue right half, stored sideways with EXIF orientation 6."""
    pixels = np.zeros((SIZE, SIZE, 3), np.uint8)
    pixels[:, : SIZE // 2] = (230, 20, 20)
    pixels[:, SIZE // 2:] = (20, 20, 230)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(path, exif=exif, quality=95)


@pytest.fixture(scope="module")
def odd_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("odd") / "data"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((SIZE, SIZE, 3), 40 * i, np.uint8)).save(
                root / name / f"plain_{i}.png")
    _rgba_png(root / "a" / "logo.png")
    _exif_jpeg(root / "b" / "photo.jpg")
    return {"root": root, "png": root / "a" / "logo.png", "jpg": root / "b" / "photo.jpg"}


def _training_pixels(root: Path, cache: Path) -> dict[str, np.ndarray]:
    """What the training pipeline feeds the model for every file, by file name."""
    data = load_image_folder(root, cache_dir=cache, val_split=0.4, seed=0)
    out = {}
    for split in (data.train, data.val):
        for path, (image, _) in zip(split.paths, image_dataset(split, image_size=SIZE)):
            out[Path(path).name] = image.numpy()
    return out


def test_predict_feeds_the_model_the_pixels_training_feeds(odd_files, tmp_path, monkeypatch):
    seen = []
    outputs = ServingFunctions._outputs

    def spy(self, images, input_size):
        seen.extend(np.asarray(images))
        return outputs(self, images, input_size)

    monkeypatch.setattr(ServingFunctions, "_outputs", spy)
    files = [str(odd_files["png"]), str(odd_files["jpg"])]
    predictions = predict("lenet5", files, weights=None, batch_size=8)
    assert [p.error for p in predictions] == [None, None]
    training = _training_pixels(odd_files["root"], tmp_path / "cache")
    assert len(seen) == 2
    np.testing.assert_array_equal(seen[0], training["logo.png"])
    np.testing.assert_array_equal(seen[1], training["photo.jpg"])
    assert seen[0][0, 0].tolist() == [255.0, 255.0, 255.0]  # transparent: white
    assert seen[1][0, 0, 0] > 200 and seen[1][-1, 0, 2] > 200  # turned: red on top


def test_saved_model_bytes_composite_transparency_as_predict_does(odd_files, tmp_path):
    classifier = pretrained_classifier("lenet5", weights=None)
    keras_file = tmp_path / "model.keras"
    classifier.model.save(keras_file)
    exported = export_saved_model(classifier.model, tmp_path / "saved", classifier.contract,
                                  top_k=10)
    by_predict = predict(keras_file, [str(odd_files["png"])], top_k=10)[0]
    loaded = tf.saved_model.load(str(exported))
    out = loaded.serve_bytes(tf.constant([odd_files["png"].read_bytes()]))
    by_bytes = dict(zip((c.decode() for c in out["top_classes"].numpy()[0]),
                        out["top_scores"].numpy()[0].tolist()))
    assert set(by_bytes) == set(by_predict.labels) and len(by_bytes) == 10
    for label, score in zip(by_predict.labels, by_predict.scores):
        assert by_bytes[label] == pytest.approx(score, abs=1e-5)
    # Also the pixels: serve_bytes decodes as the training reader does (alpha on white).
    from transfer.data import decode_rgb, load_normalized

    np.testing.assert_array_equal(
        decode_rgb(tf.constant(odd_files["png"].read_bytes())).numpy(),
        load_normalized(odd_files["png"]))
