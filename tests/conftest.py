"""Shared fixtures: small generated image folders, so no test needs the network."""

from __future__ import annotations

import os
import tempfile  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Image checks are cached per user; tests use a cache of their own, never ~/.cache.
os.environ["CNN_ZOO_CACHE_DIR"] = tempfile.mkdtemp(prefix="zoo-test-cache-")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}

# The deeper or wider members of a model family whose smallest member runs the same builder in
# the fast suite (resnet18/50, densenet121, efficientnetb0 and v2b0, convnexttiny, vgg16_bn,
# cspdarknet_n): tests parametrized over registry names build them only in the slow suite.
FAMILY_SIBLINGS = frozenset({
    "cspdarknet_s", "keras_convnextsmall", "keras_convnextbase", "keras_densenet169",
    "keras_densenet201",
    "keras_efficientnetb1", "keras_efficientnetb2", "keras_efficientnetb3", "keras_efficientnetb4",
    "keras_efficientnetb5", "keras_efficientnetv2b1", "keras_efficientnetv2b2",
    "keras_efficientnetv2b3", "keras_efficientnetv2s", "keras_resnet101", "keras_resnet152",
    "keras_resnet101v2", "keras_resnet152v2", "densenet169", "densenet201", "resnet101",
    "resnet152", "vgg19_bn"})


@pytest.hookimpl(tryfirst=True)  # before -m 'not slow' deselects
def pytest_collection_modifyitems(config, items):
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("name") in FAMILY_SIBLINGS:
            item.add_marker(pytest.mark.slow(reason="a smaller model of its family runs fast"))


def make_image_folder(root: Path, *, per_class: int = 12, size: tuple[int, int] = (40, 48),
                      seed: int = 0, classes: dict | None = None) -> Path:
    """One sub-folder per class; each image is noise with a coloured square of its class.

    Sizes vary a little so resizing is exercised; the task is easy enough that a tiny model
    learns it in a few epochs.
    """
    rng = np.random.default_rng(seed)
    for name, colour in (classes or COLOURS).items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = size[0] + int(rng.integers(0, 9)), size[1] + int(rng.integers(0, 9))
            image = (rng.random((h, w, 3)) * 90).astype(np.uint8)
            top, left = int(rng.integers(0, h // 3)), int(rng.integers(0, w // 3))
            image[top:top + h // 2, left:left + w // 2] = colour
            Image.fromarray(image).save(folder / f"{name}_{i:02d}.png")
    return root


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of each box in ``a`` with the box at the same place in ``b`` (x0, y0, x1, y1)."""
    low, high = np.maximum(a[:, :2], b[:, :2]), np.minimum(a[:, 2:], b[:, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=1)
    area = np.prod(a[:, 2:] - a[:, :2], axis=1) + np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / (area - inter)


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """A read-only, three-class folder of 12 images per class, shared by the whole session."""
    return make_image_folder(tmp_path_factory.mktemp("data") / "colours")


@pytest.fixture(scope="session")
def trained_run(image_folder, tmp_path_factory):
    """A LeNet-5 run directory trained for a few epochs, shared by the read-only tests."""
    import transfer

    out = tmp_path_factory.mktemp("runs") / "lenet"
    return transfer.train(image_folder, output=out, model="lenet5", mode="full-retrain",
                          weights=None, epochs=4, batch_size=8, verbose=0,
                          early_stopping_patience=0)


def make_segmentation_folder(root: Path, *, count: int = 24, size: int = 64, seed: int = 0,
                             classes: tuple[str, ...] = ("background", "square", "disc")) -> Path:
    """``images/`` + ``masks/`` pairs: noisy backgrounds with a bright square (class 1) and a
    dark disc (class 2) at random places, a one-pixel 255 (ignore) band around the disc, and
    ``classes.txt``."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    for i in range(count):
        image = (rng.random((size, size, 3)) * 80 + 60).astype(np.uint8)
        mask = np.zeros((size, size), np.uint8)
        side = int(rng.integers(size // 5, size // 3))
        top, left = (int(v) for v in rng.integers(0, size - side, 2))
        image[top:top + side, left:left + side] = (230, 220, 40)
        mask[top:top + side, left:left + side] = 1
        radius = int(rng.integers(size // 8, size // 5))
        cy, cx = (int(v) for v in rng.integers(radius + 1, size - radius - 1, 2))
        distance = np.hypot(yy - cy, xx - cx)
        image[distance <= radius] = (20, 30, 140)
        mask[distance <= radius] = 2
        mask[(distance > radius) & (distance <= radius + 1)] = 255
        Image.fromarray(image).save(root / "images" / f"img_{i:03d}.png")
        Image.fromarray(mask).save(root / "masks" / f"img_{i:03d}.png")
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    return root


@pytest.fixture(scope="session")
def seg_folder(tmp_path_factory) -> Path:
    """A read-only folder of 24 image/mask pairs at 64 px, three classes and an ignore band."""
    return make_segmentation_folder(tmp_path_factory.mktemp("data") / "shapes")
