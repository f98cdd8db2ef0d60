"""Object detection: which assignment and box loss the default detector trains with, measured.

Data: 4 animal classes. Animal-MNIST silhouettes (``data/animal-mnist/``, thresholded, randomly
scaled from 20% to 60% of the image and mirrored), each filled with a crop of one real photo and
pasted on a crop of another (scikit-image's sample photos), 1-3 per image; the box is the
silhouette's tight bounding box. Images are 160 x 128 (letterboxed to the model's square). One
YOLO folder (``data.yaml``, ``images/{train,val,test}``, ``labels/...``): the test split is the
held-out set, scored at the end of each run.

Runs, same data, the same ImageNet MobileNet-v1 backbone and settings:

(a) the four combinations of ``--loss`` (task-aligned or centre assignment x CIoU or GIoU), in
    feature-extractor mode (the backbone's features cached, the neck and head training);
(b) the default (``--loss auto``) in fine-tune mode, the head phase then the whole backbone.

Each run's COCO mAP@[.5:.95] and mAP50 on the held-out test split come from the run's own
``metrics.json`` (pycocotools). Times are printed as ratios to run (a)'s first.

Needs the real ImageNet MobileNet-v1 weights (``mobilenet_1_0_224_tf_no_top.h5``) in
``../shared/weights`` beside the repository, or in the folder ``ZOO_TEST_WEIGHTS`` names.

    python benchmarks/bench_detection.py [--train 400] [--val 80] [--test 150] [--size 128]
        [--epochs 12] [--fine-tune-epochs 6] [--batch 16] [--parts losses,fine-tune]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from _common import offline_keras_home, photo_crop, sample_photos, weights_file

WEIGHTS = weights_file()
os.environ["KERAS_HOME"] = str(offline_keras_home(WEIGHTS))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import transfer  # noqa: E402
from transfer.config import DETECTION_LOSSES  # noqa: E402

ANIMAL_MNIST = Path(__file__).resolve().parents[1] / "data" / "animal-mnist"
ANIMALS = ("bird", "cat", "elephant", "giraffe")
WIDTH, HEIGHT = 160, 128


def _sample(rng, photos, silhouettes):
    backdrop = int(rng.integers(len(photos)))
    image = photo_crop(rng, photos[backdrop], HEIGHT, WIDTH).copy()
    rows = []
    for _ in range(int(rng.integers(1, 4))):
        label = int(rng.integers(len(ANIMALS)))
        pool = silhouettes[ANIMALS[label]]
        side = int(rng.uniform(0.2, 0.6) * HEIGHT)
        scaled = np.asarray(Image.fromarray(pool[int(rng.integers(len(pool)))])
                            .resize((side, side), Image.Resampling.BILINEAR)) > 127
        if rng.random() < 0.5:
            scaled = scaled[:, ::-1]
        if not scaled.any():
            continue
        y, x = int(rng.integers(0, HEIGHT - side + 1)), int(rng.integers(0, WIDTH - side + 1))
        placed = np.zeros((HEIGHT, WIDTH), bool)
        placed[y:y + side, x:x + side] = scaled
        fill = int(rng.choice([i for i in range(len(photos)) if i != backdrop]))
        image[placed] = photo_crop(rng, photos[fill], HEIGHT, WIDTH)[placed]
        ys, xs = np.nonzero(placed)
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        rows.append(f"{label} {(x0 + x1) / 2 / WIDTH:.6f} {(y0 + y1) / 2 / HEIGHT:.6f} "
                    f"{(x1 - x0) / WIDTH:.6f} {(y1 - y0) / HEIGHT:.6f}")
    return image, rows


def make_folder(root: Path, counts: dict[str, int], seed: int) -> Path:
    """A YOLO folder of ``counts`` images per split; reused if complete."""
    marker = root / ".complete"
    if marker.exists():
        return root
    photos = sample_photos()
    silhouettes = {a: [np.asarray(Image.open(p).convert("L"))
                       for p in sorted((ANIMAL_MNIST / a).glob("*.png"))] for a in ANIMALS}
    rng = np.random.default_rng(seed)
    for split, n in counts.items():
        for folder in ("images", "labels"):
            (root / folder / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image, rows = _sample(rng, photos, silhouettes)
            Image.fromarray(image).save(root / "images" / split / f"{i:05d}.jpg", quality=92)
            (root / "labels" / split / f"{i:05d}.txt").write_text("\n".join(rows) + "\n")
    splits = "\n".join(f"{s}: images/{s}" for s in counts)
    (root / "data.yaml").write_text(f"path: .\n{splits}\nnames: [{', '.join(ANIMALS)}]\n")
    marker.touch()
    return root


def run(data: Path, out: Path, **settings) -> dict:
    start = time.perf_counter()
    result = transfer.train(data, output=out, backbone="keras_mobilenet", weights="imagenet",
                            verbose=0, overwrite=True, **settings)
    seconds = time.perf_counter() - start
    test = result.metrics["test"]
    return {"map": test["map"], "map50": test["map50"], "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--val", type=int, default=80)
    parser.add_argument("--test", type=int, default=150)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--fine-tune-epochs", type=int, default=6)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--parts", default="losses,fine-tune")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.gettempdir()) / "bench-detection"
    name = f"{args.train}-{args.val}-{args.test}"
    data = make_folder(work / f"data-{name}", {"train": args.train, "val": args.val,
                                                "test": args.test}, seed=0)
    common = {"image_size": args.size, "batch_size": args.batch, "seed": 42}
    parts = set(args.parts.split(","))
    results: dict[str, dict] = {}
    if "losses" in parts:
        for loss in DETECTION_LOSSES:
            results[f"feature-extractor {loss}"] = run(
                data, work / "runs" / f"fe-{loss.replace('+', '-')}",
                mode="feature-extractor", epochs=args.epochs, loss=loss, **common)
            print(json.dumps({f"feature-extractor {loss}": results[f"feature-extractor {loss}"]}),
                  flush=True)
    if "fine-tune" in parts:
        results["fine-tune auto"] = run(data, work / "runs" / "ft", mode="fine-tune",
                                        epochs=args.epochs, fine_tune_epochs=args.fine_tune_epochs,
                                        **common)
    first = next(iter(results.values()))["seconds"]
    print(f"\nheld-out images: {args.test}; train {args.train}, val {args.val}, {args.size} px")
    print(f"{'run':<32} {'mAP50-95':>9} {'mAP50':>7} {'time':>7}")
    for key, row in results.items():
        print(f"{key:<32} {row['map']:>9.3f} {row['map50']:>7.3f} "
              f"{row['seconds'] / first:>6.2f}x")


if __name__ == "__main__":
    main()
