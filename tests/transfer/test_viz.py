"""Visualisation tools: loading, tapping nested layers, and every output's shape and range.

Grad-CAM and FGSM are checked on a synthetic task whose answer is known: two classes that differ
only by a bright patch at a fixed place, learned in a few seconds by a tiny nested model laid out
like the toolkit's classifiers.
"""

from __future__ import annotations

import base64
import io
import re
import shutil

import numpy as np
import pytest
from PIL import Image

PATCH_ROWS, PATCH_COLS = slice(4, 12), slice(20, 28)


def _open_png(path_or_bytes) -> Image.Image:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else open(path_or_bytes, "rb").read()
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "PNG"
    return image


def _patch_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise; odd-numbered images (class 1) have a brighter 8x8 patch at a fixed place."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(40, 160, (n, 32, 32, 3)).astype(np.float32)
    y = np.arange(n) % 2
    x[y == 1, PATCH_ROWS, PATCH_COLS] += 70
    return np.clip(x, 0, 255), y


@pytest.fixture(scope="module")
def patch_model():
    """A tiny classifier (image -> preprocess -> nested backbone -> head) trained on the patches."""
    import keras

    keras.utils.set_random_seed(0)
    layers = keras.layers
    inner = keras.Input((32, 32, 3))
    h = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inner)
    h = layers.MaxPooling2D(2, name="pool1")(h)
    h = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(h)
    h = layers.GlobalAveragePooling2D(name="avg_pool")(h)
    backbone = keras.Model(inner, h, name="backbone")
    image = keras.Input((32, 32, 3), name="image")
    z = layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")(image)
    z = layers.Dropout(0.1, name="head_dropout")(backbone(z))
    model = keras.Model(image, layers.Dense(2, activation="softmax", name="classifier")(z))
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x, y = _patch_images(160, seed=0)
    model.fit(x, y, epochs=15, batch_size=16, verbose=0)
    x_test, y_test = _patch_images(40, seed=1)
    assert model.evaluate(x_test, y_test, verbose=0)[1] == 1.0
    return model, x_test, y_test


@pytest.fixture(scope="module")
def run_model(trained_run):
    from transfer.viz import load_for_viz

    return load_for_viz(trained_run.run_dir)


@pytest.fixture(scope="module")
def val_images(trained_run, run_model):
    import json

    from transfer.viz.common import load_images

    split = json.loads((trained_run.run_dir / "split.json").read_text())
    return load_images(split["val"]["paths"][:3], run_model.image_size)


# ---- loading and tapping ----------------------------------------------------------------------

def test_load_for_viz_run_dir_file_and_registry(trained_run, run_model, tmp_path):
    from transfer.errors import RunDirError
    from transfer.viz import load_for_viz
    from zoo.errors import UnknownModelError

    assert run_model.class_names == list(trained_run.class_names)
    assert run_model.image_size == 32 and run_model.model.input_shape == (None, 32, 32, 3)
    from_file = load_for_viz(trained_run.run_dir / "model.keras")
    assert from_file.class_names == run_model.class_names

    registry = load_for_viz("lenet5")
    assert registry.class_names is None and registry.image_size == 32
    out = np.asarray(registry.model(np.full((2, 32, 32, 3), 200.0, np.float32)))
    assert out.shape == (2, 10) and np.allclose(out.sum(axis=1), 1, atol=1e-5)
    assert registry.model.input_shape == (None, 32, 32, 3)  # RGB in, luma to LeNet
    assert registry.model.get_layer("rgb_to_gray").output_shape == (None, None, None, 1)

    with pytest.raises(UnknownModelError, match="Did you mean lenet5"):
        load_for_viz("lenet")
    with pytest.raises(RunDirError, match="SavedModel"):
        load_for_viz(trained_run.run_dir / "saved_model")
    with pytest.raises(RunDirError, match="not a run directory"):
        load_for_viz(tmp_path)


def test_tap_reaches_nested_layers_and_knows_their_geometry(run_model):
    from transfer.errors import ConfigError
    from transfer.viz.common import find_layer, last_spatial_layer
    from transfer.viz.taps import tap_model

    model = run_model.model
    tap = tap_model(model, ["c1_conv", "backbone/s4_pool", ("head_dropout", "input")])
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    c1, s4, pooled, probabilities = (np.asarray(t) for t in tap(x))
    assert c1.shape == (2, 28, 28, 6) and s4.shape == (2, 5, 5, 16) and pooled.shape == (2, 120)
    np.testing.assert_allclose(probabilities, np.asarray(model(x)), atol=1e-6)
    # LeNet-5 is 'valid'-padded: C1's first cell is centred on pixel 2, S4's cells 4 px apart
    # starting at 7.5, not spread over the whole image.
    g1, g4, _ = tap.geometries
    assert (g1.y0, g1.sy) == (2.0, 1.0) and (g4.y0, g4.sy, g4.x0, g4.sx) == (7.5, 4.0, 7.5, 4.0)
    assert last_spatial_layer(model)[0] == "backbone/s4_pool"  # C5 is 1x1, passed over
    with pytest.raises(ConfigError, match="no layer named 'nope'.*c1_conv"):
        find_layer(model, "nope")


# ---- filters and activations ------------------------------------------------------------------

def test_filters_are_normalised_per_filter(run_model, tmp_path):
    from transfer.errors import ConfigError
    from transfer.viz import conv_filters, load_for_viz, plot_filters
    from transfer.viz.filters import filter_grid

    filters = conv_filters(run_model.model)
    assert filters.layer == "backbone/c1_conv" and filters.shown == "grey"
    assert filters.images.shape == (6, 5, 5, 1)
    assert np.allclose(filters.images.min(axis=(1, 2, 3)), 0)
    assert np.allclose(filters.images.max(axis=(1, 2, 3)), 1)
    deeper = conv_filters(run_model.model, "c3_conv")
    assert deeper.images.shape == (16, 5, 5, 1) and deeper.shown == "channel-mean"
    with pytest.raises(ConfigError, match="not a 2-D convolution"):
        conv_filters(run_model.model, "s2_pool")

    rgb = conv_filters(load_for_viz("resnet18", image_size=32).model)
    assert rgb.images.shape == (64, 7, 7, 3) and rgb.shown == "rgb"
    grid = filter_grid(rgb)
    assert grid.ndim == 3 and grid.shape[2] == 3 and 0 <= grid.min() and grid.max() <= 1

    png = _open_png(plot_filters(run_model.model, tmp_path))
    assert png.size[0] >= 300 and png.size[1] >= 200


def test_activations_grid(run_model, val_images, tmp_path):
    from transfer.viz import feature_maps, plot_activations
    from transfer.viz.activations import activation_grid

    maps, layer = feature_maps(run_model.model, val_images[0])
    assert layer == "backbone/c1_conv" and maps.shape == (28, 28, 6)
    maps, layer = feature_maps(run_model.model, val_images[0], layer="s2_pool")
    assert maps.shape == (14, 14, 6)
    grid = activation_grid(maps)
    assert grid.shape[2] == 3 and 0 <= grid.min() and grid.max() <= 1
    path = plot_activations(run_model.model, val_images[0], tmp_path, layer="c3_conv",
                            name="val0")
    assert path.name == "activations_val0_backbone_c3_conv.png"
    assert _open_png(path).size[0] >= 400


# ---- Grad-CAM ---------------------------------------------------------------------------------

def test_gradcam_peaks_inside_the_planted_patch(patch_model):
    from transfer.viz import grad_cam

    model, x, y = patch_model
    cam = grad_cam(model, x[y == 1][:8], class_index=1)
    assert cam.layer == "backbone/conv2"
    assert cam.heatmaps.shape == (8, 32, 32) and cam.maps.shape == (8, 16, 16)
    assert cam.heatmaps.min() >= 0 and cam.heatmaps.max() <= 1
    for heatmap in cam.heatmaps:
        row, col = np.unravel_index(np.argmax(heatmap), heatmap.shape)
        assert PATCH_ROWS.start - 1 <= row < PATCH_ROWS.stop + 1, (row, col)
        assert PATCH_COLS.start - 1 <= col < PATCH_COLS.stop + 1, (row, col)
    assert list(cam.class_indices) == [1] * 8


def test_gradcam_upsampling_puts_cells_at_their_centres():
    from transfer.viz.gradcam import upsample
    from transfer.viz.taps import Geometry

    cam = np.zeros((5, 5), np.float32)
    cam[1, 3] = 1.0
    up = upsample(cam, Geometry(7.5, 4.0, 7.5, 4.0), 32)  # LeNet-5's S4
    rows, cols = np.nonzero(up == up.max())
    assert set(rows) <= {11, 12} and set(cols) <= {19, 20}  # 7.5 + 4 = 11.5, 7.5 + 12 = 19.5
    even = upsample(cam, None, 30)  # unknown geometry: cells spread evenly, 6 px each
    rows, cols = np.nonzero(even == even.max())
    assert set(rows) == {8, 9} and set(cols) == {20, 21}  # centres 8.5 and 20.5


def test_gradcam_on_a_run_and_its_figures(run_model, val_images, tmp_path):
    from transfer.viz import grad_cam, plot_gradcam

    cam = grad_cam(run_model.model, val_images)
    assert cam.heatmaps.shape == (3, 32, 32) and cam.probabilities.shape == (3, 3)
    assert 0 <= cam.heatmaps.min() and cam.heatmaps.max() <= 1
    paths = plot_gradcam(run_model.model, val_images, ["a", "b", "c"], tmp_path,
                         class_names=run_model.class_names, class_index=2)
    assert [p.name for p in paths] == ["gradcam_a.png", "gradcam_b.png", "gradcam_c.png"]
    assert _open_png(paths[0]).size[0] >= 600


# ---- maximisation -----------------------------------------------------------------------------

def test_maximize_raises_the_objective(run_model, tmp_path):
    from transfer.viz import deep_dream, maximize
    from transfer.viz.maximize import plot_maximized

    result = maximize(run_model.model, layer="c3_conv", channel=3, steps=24)
    assert result.image.shape == (32, 32, 3)
    assert 0 <= result.image.min() and result.image.max() <= 255
    assert result.objective[-1] > result.objective[0]
    by_class = maximize(run_model.model, class_index=1, steps=24)
    assert by_class.objective[-1] > by_class.objective[0]
    assert _open_png(plot_maximized(result, tmp_path / "m.png")).size[0] >= 300

    image = np.full((32, 32, 3), 100.0, np.float32)
    image[8:24, 8:24] = 200.0
    dream = deep_dream(run_model.model, image, layer="c3_conv", steps=8, octaves=2)
    assert dream.image.shape == image.shape and not np.allclose(dream.image, image)
    assert 0 <= dream.image.min() and dream.image.max() <= 255


# ---- adversarial examples ---------------------------------------------------------------------

def test_fgsm_accuracy_falls_as_epsilon_grows(patch_model, tmp_path):
    from transfer.plots import save_figure
    from transfer.viz import robustness
    from transfer.viz.adversarial import robustness_figure

    model, x, y = patch_model
    result = robustness(model, x, y, epsilons=(0, 1, 2, 4, 8, 16, 32))
    accuracy = result["accuracy"]
    assert accuracy[0] == 1.0 and result["samples"] == 40
    assert all(b <= a for a, b in zip(accuracy, accuracy[1:])), accuracy
    assert accuracy[-1] < accuracy[0]
    assert _open_png(save_figure(robustness_figure(result), tmp_path / "r.png")).size[0] >= 400


def test_adversarial_example_stays_within_eps(run_model, val_images, tmp_path):
    from transfer.plots import save_figure
    from transfer.viz import adversarial_example
    from transfer.viz.adversarial import adversarial_figure

    result = adversarial_example(run_model.model, val_images[0], eps=8,
                                 class_names=run_model.class_names)
    assert result["linf"] <= 8 + 1e-4 and result["linf"] > 0
    assert 0 <= result["adversarial"].min() and result["adversarial"].max() <= 255
    assert [p["label"] for p in result["before"]] and len(result["after"]) == 3
    assert sum(p["score"] for p in result["before"]) == pytest.approx(1, abs=1e-4)
    assert _open_png(save_figure(adversarial_figure(result), tmp_path / "a.png")).size[0] >= 600


# ---- embeddings -------------------------------------------------------------------------------

def test_similar_finds_the_exact_duplicate_first(trained_run, image_folder, tmp_path):
    from transfer.viz import build_index, load_index, similar

    index = build_index(trained_run.run_dir, image_folder, tmp_path / "index")
    assert (tmp_path / "index.npz").is_file() and (tmp_path / "index.json").is_file()
    assert index.embeddings.shape == (36, 120)
    np.testing.assert_allclose(np.linalg.norm(index.embeddings, axis=1), 1, atol=1e-5)
    assert set(index.labels) == {"red", "green", "blue"}

    query = sorted(image_folder.glob("green/*.png"))[4]
    matches, image = similar(load_index(tmp_path / "index.npz"), query, k=6)
    assert image.shape == (32, 32, 3) and len(matches) == 6
    assert matches[0].path == str(query.resolve()) and matches[0].distance < 1e-5
    assert [m.rank for m in matches] == [1, 2, 3, 4, 5, 6]
    assert all(a.distance <= b.distance for a, b in zip(matches, matches[1:]))


# ---- report -----------------------------------------------------------------------------------

def test_report_is_self_contained(trained_run, tmp_path):
    from transfer.viz import write_report

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run.run_dir, run_dir, ignore=shutil.ignore_patterns("saved_model"))
    page = write_report(run_dir).read_text()
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) >= 4 and not re.search(r"(href|src)=\"?(https?:|//|file:)", page)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    for source in sources:
        assert _open_png(base64.b64decode(source.split(",", 1)[1])).size[0] >= 100
    for title in ("Training curves", "Confusion matrix", "Worst mistakes", "filters", "Grad-CAM"):
        assert title in page
    assert "not available" not in page

    marker = _png_bytes()
    (run_dir / "mistakes.png").write_bytes(marker)
    page = write_report(run_dir).read_text()
    assert base64.b64encode(marker).decode() in page


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_report_summary_reads_segmentation_metrics_of_val_and_test():
    """A segmentation run with a test split: the summary once read ``top1_accuracy`` from the
    test metrics and sank metrics.json and report.html with a KeyError."""
    from transfer.tasks import get_task
    from transfer.viz.common import VizModel
    from transfer.viz.report import _summary

    seg = {"samples": 4, "mean_iou": 0.5, "pixel_accuracy": 0.875, "dice": 0.625,
           "loss": 0.25, "per_class_iou": {"a": 0.5}, "confusion_matrix": [[1]]}
    summary = _summary({"model": "unet"}, {"val": seg, "test": dict(seg, mean_iou=0.375)},
                       VizModel(None, ["a"], 32), get_task("segmentation"))
    for row in ("validation mean IoU</th><td>0.5000", "test mean IoU</th><td>0.3750",
                "test pixel accuracy</th><td>0.8750", "test Dice</th><td>0.6250"):
        assert row in summary
    assert "top-1" not in summary
    classification = {"samples": 9, "top1_accuracy": 0.5, "top5_accuracy": 1.0, "top_k": 3,
                      "loss": None}
    summary = _summary({}, {"val": classification, "test": classification},
                       VizModel(None, ["a"], 32), get_task("classification"))
    assert "test top-1 accuracy</th><td>0.5000" in summary
    assert "validation top-3 accuracy</th><td>1.0000" in summary
    assert "loss" not in summary
