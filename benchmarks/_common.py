"""Shared pieces of the benchmarks: a generated image folder and a timer.

Benchmarks print ratios measured in one run (ours vs. the plain-Keras way), never a lone
absolute time: timings on a shared 2-core machine are noisy, ratios much less so.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

COLOURS = [(220, 40, 40), (40, 200, 40), (40, 40, 220), (220, 200, 40), (200, 40, 220)]


def make_jpeg_folder(root: Path, *, images: int, size: int = 224, classes: int = 5,
                     seed: int = 0) -> Path:
    """``images`` JPEGs (about ``size`` px) in ``classes`` folders: textured noise with a
    class-coloured blob at a random place; reused if already there."""
    marker = root / f".complete-{images}-{size}-{classes}"
    if marker.exists():
        return root
    rng = np.random.default_rng(seed)
    for i in range(images):
        label = i % classes
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        h, w = size + int(rng.integers(-16, 17)), size + int(rng.integers(-16, 17))
        image = (rng.random((h, w, 3)) * 120 + 40).astype(np.uint8)
        r = int(rng.integers(size // 8, size // 4))
        cy, cx = int(rng.integers(r, h - r)), int(rng.integers(r, w - r))
        yy, xx = np.ogrid[:h, :w]
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = COLOURS[label]
        Image.fromarray(image).save(folder / f"{i:05d}.jpg", quality=90)
    marker.touch()
    return root


@contextlib.contextmanager
def timed(results: dict, key: str):
    start = time.perf_counter()
    yield
    results[key] = time.perf_counter() - start
