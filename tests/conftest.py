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
