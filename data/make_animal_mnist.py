"""Regenerate data/animal-mnist/ from the `animal-mnist` package (MIT): 50 images per class.

Run with the package installed: `pip install animal-mnist==0.4 && python data/make_animal_mnist.py`.
"""

import gzip
import pickle
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

import animal_mnist

CLASSES = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra")
PER_CLASS = 50


def main() -> None:
    package = Path(animal_mnist.__file__).parent
    source = package / "data" / "Animal_MNIST"
    with gzip.open(source / "animal_data_version_3.gz", "rb") as f:
        images = np.asarray(pickle.load(f))
    with gzip.open(source / "animal_label_version_3.gz", "rb") as f:
        labels = np.asarray(pickle.load(f))
    out = Path(__file__).parent / "animal-mnist"
    shutil.rmtree(out, ignore_errors=True)
    rng = np.random.default_rng(0)
    for label, name in enumerate(CLASSES):
        folder = out / name
        folder.mkdir(parents=True)
        chosen = rng.choice(np.flatnonzero(labels == label), PER_CLASS, replace=False)
        for i, index in enumerate(sorted(chosen)):
            Image.fromarray(images[index]).save(folder / f"{name}_{i:03d}.png", optimize=True)
    license_file = next(package.parent.glob("animal_mnist-*.dist-info")) / "licenses" / "LICENSE"
    shutil.copy(license_file, out / "LICENSE")


if __name__ == "__main__":
    main()
