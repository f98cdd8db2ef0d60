"""The view cache (issue 26): the fine-tune phase's epoch time with the caches against without,
and the loss curves of both, measured in one run.

Data: Animal-MNIST silhouettes (``data/animal-mnist/``, 10 classes) filled with one real photo
crop and pasted on another (scikit-image's sample photos), ``--size`` px. Runs, per backbone, the
same data, seed and settings, flips on (fine-tune's default), ``--head-epochs`` +
``--epochs``:

- ``cached``: the defaults, the head phase on the backbone's features of 2 views per image (the
  image and its mirror), the fine-tune phase on the cached outputs below the unfreeze block;
- ``plain``: ``cache_features=False``, full forward passes in both phases.

Printed: the ratio plain / cached of the fine-tune phase's mean epoch time (the cache is built
before the phase's first epoch), the whole run's wall-time ratio, and each run's fine-tune
losses. The backbones: the shared ImageNet MobileNet-v1 (``keras_mobilenet``, default unfreeze
block ``conv_dw_7``) and ResNet-50 (``keras_resnet50``, random weights: its ImageNet file is
not on this machine; the timing does not depend on the weights).

    python benchmarks/bench_views.py [--images 240] [--size 224] [--epochs 3]
        [--head-epochs 1] [--batch 32] [--models keras_mobilenet,keras_resnet50]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _common import offline_keras_home, photo_crop, sample_photos, weights_file

WEIGHTS = weights_file()
os.environ["KERAS_HOME"] = str(offline_keras_home(WEIGHTS))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import transfer  # noqa: E402

ANIMAL_MNIST = Path(__file__).resolve().parents[1] / "data" / "animal-mnist"


def make_folder(root: Path, images: int, size: int, seed: int = 0) -> Path:
    """Class folders of silhouettes filled with a photo and pasted on another; reused."""
    marker = root / ".complete"
    if marker.exists():
        return root
    photos = sample_photos()
    classes = sorted(p.name for p in ANIMAL_MNIST.iterdir() if p.is_dir())
    rng = np.random.default_rng(seed)
    for i in range(images):
        name = classes[i % len(classes)]
        pool = sorted((ANIMAL_MNIST / name).glob("*.png"))
        shape = np.asarray(Image.open(pool[int(rng.integers(len(pool)))]).convert("L")
                           .resize((size, size), Image.Resampling.BILINEAR)) > 127
        back, fill = rng.choice(len(photos), 2, replace=False)
        image = photo_crop(rng, photos[back], size, size).copy()
        image[shape] = photo_crop(rng, photos[fill], size, size)[shape]
        (root / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / name / f"{i:05d}.jpg", quality=92)
    marker.touch()
    return root


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)


def run(data: Path, out: Path, model: str, args, **settings) -> dict:
    timer = EpochTimer()
    start = time.perf_counter()
    result = transfer.train(
        data, output=out, model=model, mode="fine-tune",
        weights="imagenet" if model == "keras_mobilenet" else None, image_size=args.size,
        epochs=args.head_epochs, fine_tune_epochs=args.epochs, batch_size=args.batch,
        early_stopping_patience=0, seed=42, verbose=0, overwrite=True,
        callbacks=[timer], **settings)
    total = time.perf_counter() - start
    fine = [t for t, row in zip(timer.times, result.history) if row["phase"] == "fine-tune"]
    return {"epoch": float(np.mean(fine)), "total": total,
            "losses": [round(r["loss"], 4) for r in result.history if r["phase"] == "fine-tune"],
            "val_accuracy": result.metrics["val"].get("top1_accuracy")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--head-epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--models", default="keras_mobilenet,keras_resnet50")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.gettempdir()) / "bench-views"
    data = make_folder(work / f"data-{args.images}-{args.size}", args.images, args.size)
    rows = []
    for model in args.models.split(","):
        cached = run(data, work / "runs" / f"{model}-cached", model, args)
        plain = run(data, work / "runs" / f"{model}-plain", model, args, cache_features=False)
        rows.append((model, cached, plain))
        print(model, {"cached": cached, "plain": plain}, flush=True)
    print(f"\n{args.images} images at {args.size} px, flips, {args.head_epochs} head + "
          f"{args.epochs} fine-tune epochs, batch {args.batch}")
    print(f"{'backbone':<18} {'fine-tune epoch: plain/cached':>30} {'whole run':>10}  losses "
          f"(cached | plain)")
    for model, cached, plain in rows:
        print(f"{model:<18} {plain['epoch'] / cached['epoch']:>29.2f}x "
              f"{plain['total'] / cached['total']:>9.2f}x  {cached['losses']} | "
              f"{plain['losses']}")


if __name__ == "__main__":
    main()
