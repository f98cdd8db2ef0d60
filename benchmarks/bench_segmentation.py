"""Semantic segmentation on the reference dataset of issue 13: the toolkit against a hand-written
Keras U-Net on the same ImageNet MobileNet-v1 encoder, and the feature cache, in one run.

Data: 4 animal classes + background. Animal-MNIST silhouettes (``data/animal-mnist/``:
thresholded, randomly scaled and flipped), each filled with a crop of one real photo and pasted
on a crop of another (scikit-image's sample photos); a band of 2-3 px around every animal is
``255`` (ignored, as Pascal VOC's borders). 600 training, 120 validation and 200 held-out images
at 128 px, each split drawn with its own seed: ``data/train/``, ``data/val/`` and ``heldout/``,
folders of ``images/`` + ``masks/``, with ``classes.txt``.

Runs, same data, same encoder weights, batch size and epochs:

(a) the segmentation_models recipe written by hand: ``keras.applications.MobileNet`` without
    top, skips at ``zoo.get_taps("keras_mobilenet")``, a U-Net decoder (2x upsampling,
    concatenation, two 3x3 convolution-BN-ReLU per stage), softmax,
    ``SparseCategoricalCrossentropy(ignore_class=255)``, Adam 1e-3; the encoder frozen for
    ``--epochs``, then everything for ``--fine-tune-epochs``;
(b) ``transfer.train`` with its defaults in the three modes: fine-tune (``--epochs`` +
    ``--fine-tune-epochs``), feature-extractor and full-retrain (their sum);
(c) feature-extractor on cached encoder features vs the same run with ``cache_features=False``
    (the frozen encoder runs on every batch);
(d) the time of our fine-tune vs the hand-written U-Net.

The mean IoU of every run is taken on the held-out images by
``transfer.tasks.segmentation.metrics.segmentation_summary``. Times are printed as ratios
measured in this run only.

Needs the real ImageNet MobileNet-v1 weights (``mobilenet_1_0_224_tf_no_top.h5``) in
``../shared/weights`` beside the repository, or in the folder ``ZOO_TEST_WEIGHTS`` names; they
are linked into a temporary ``KERAS_HOME`` under the names Keras asks for.

    python benchmarks/bench_segmentation.py [--quick] [--parts reference,fine-tune,...]
        [--train 600] [--val 120] [--test 200] [--size 128] [--epochs 8]
        [--fine-tune-epochs 8] [--batch 16] [--set FIELD=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from _common import offline_keras_home, photo_crop, sample_photos, weights_file

WEIGHTS = weights_file()
# Keras reads KERAS_HOME once, when it is imported.
os.environ["KERAS_HOME"] = str(offline_keras_home(WEIGHTS))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from scipy import ndimage  # noqa: E402

import transfer  # noqa: E402
import zoo  # noqa: E402
from transfer.tasks.segmentation.metrics import segmentation_summary  # noqa: E402

ANIMAL_MNIST = Path(__file__).resolve().parents[1] / "data" / "animal-mnist"
ANIMALS = ("bird", "cat", "elephant", "giraffe")  # 4 of Animal-MNIST's 10 silhouettes
CLASSES = ("background", *ANIMALS)
IGNORE = 255
SEEDS = {"train": 0, "val": 1, "test": 2}
BACKBONE = "keras_mobilenet"
REFERENCE_FILTERS = (256, 128, 64, 32, 16)  # segmentation_models' U-Net decoder widths


# ---- the data -------------------------------------------------------------------------------

def _silhouettes() -> dict[str, list[np.ndarray]]:
    return {animal: [np.asarray(Image.open(path).convert("L"))
                     for path in sorted((ANIMAL_MNIST / animal).glob("*.png"))]
            for animal in ANIMALS}


def _shape(rng: np.random.Generator, silhouette: np.ndarray, side: int) -> np.ndarray:
    """The silhouette scaled to ``side`` px, thresholded into a shape, maybe mirrored."""
    scaled = np.asarray(Image.fromarray(silhouette).resize((side, side),
                                                           Image.Resampling.BILINEAR))
    shape = scaled > 127
    return shape[:, ::-1] if rng.random() < 0.5 else shape


def _sample(rng: np.random.Generator, photos, silhouettes, size: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """One image and its mask: 1-3 animals on a photo crop, each a crop of another photo."""
    backdrop = int(rng.integers(len(photos)))
    image = photo_crop(rng, photos[backdrop], size, size).copy()
    mask = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        label = int(rng.integers(len(ANIMALS)))
        pool = silhouettes[ANIMALS[label]]
        side = int(rng.uniform(0.35, 0.7) * size)
        shape = _shape(rng, pool[int(rng.integers(len(pool)))], side)
        if not shape.any():
            continue
        y, x = (int(v) for v in rng.integers(0, size - side + 1, 2))
        placed = np.zeros((size, size), bool)
        placed[y:y + side, x:x + side] = shape
        fill = int(rng.choice([i for i in range(len(photos)) if i != backdrop]))
        texture = photo_crop(rng, photos[fill], size, size)
        image[placed] = texture[placed]
        # The ignore band straddles the edge: 1 px inside, 1-2 px outside (2-3 px in all).
        outside = ndimage.binary_dilation(placed, iterations=int(rng.integers(1, 3)))
        inside = ndimage.binary_erosion(placed)
        mask[outside & ~inside] = IGNORE
        mask[inside] = label + 1  # a later animal covers what it overlaps
    return image, mask


def make_dataset(root: Path, *, size: int, counts: dict[str, int]) -> Path:
    """``root/data/{train,val}/{images,masks}`` to train on and ``root/heldout/{images,masks}``,
    each with ``classes.txt``; reused if complete."""
    marker = root / (".complete-" + "-".join(f"{k}{v}" for k, v in counts.items()) + f"-{size}")
    if marker.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    photos, silhouettes = sample_photos(), _silhouettes()
    for split, count in counts.items():
        rng = np.random.default_rng(SEEDS[split])
        folder = _folder(root, split)
        (folder / "images").mkdir(parents=True)
        (folder / "masks").mkdir(parents=True)
        for i in range(count):
            image, mask = _sample(rng, photos, silhouettes, size)
            Image.fromarray(image).save(folder / "images" / f"{i:04d}.png")
            Image.fromarray(mask).save(folder / "masks" / f"{i:04d}.png")
    for folder in (root / "data", root / "heldout"):
        (folder / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    marker.touch()
    return root


def _folder(root: Path, split: str) -> Path:
    return root / "heldout" if split == "test" else root / "data" / split


def load_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A split's images (float32 0-255) and masks (uint8), in file order."""
    folder = _folder(root, split)
    names = sorted((folder / "images").glob("*.png"))
    images = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in names])
    masks = np.stack([np.asarray(Image.open(folder / "masks" / p.name)) for p in names])
    return images.astype("float32"), masks


# ---- (a) the hand-written U-Net -------------------------------------------------------------

def reference_unet(*, size: int, classes: int) -> tuple[keras.Model, keras.Model]:
    """segmentation_models' U-Net on keras.applications' MobileNet, written out by hand.

    Returns the model (raw 0-255 pixels in) and its encoder, whose layers the caller freezes.
    """
    encoder = keras.applications.MobileNet(include_top=False, weights=str(WEIGHTS),
                                           input_shape=(size, size, 3))
    taps = zoo.get_taps(BACKBONE)
    skips = [encoder.get_layer(taps.layer(stride)).output for stride in (16, 8, 4, 2)]
    x = encoder.get_layer(taps.layer(32)).output
    for stage, width in enumerate(REFERENCE_FILTERS):
        x = keras.layers.UpSampling2D(2)(x)
        if stage < len(skips):
            x = keras.layers.Concatenate()([x, skips[stage]])
        for _ in range(2):
            x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False,
                                    kernel_initializer="he_uniform")(x)
            x = keras.layers.BatchNormalization()(x)
            x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(classes, 3, padding="same")(x)
    outputs = keras.layers.Activation("softmax")(x)
    unet = keras.Model(encoder.input, outputs)
    # keras.applications.mobilenet.preprocess_input: x / 127.5 - 1
    pixels = keras.Input((size, size, 3))
    model = keras.Model(pixels, unet(keras.layers.Rescaling(1 / 127.5, offset=-1)(pixels)))
    return model, encoder


def run_reference(root: Path, args, test: tuple[np.ndarray, np.ndarray]) -> dict:
    keras.utils.set_random_seed(0)
    x, y = load_split(root, "train")
    model, encoder = reference_unet(size=args.size, classes=len(CLASSES))
    start, cpu = time.perf_counter(), time.process_time()
    for trainable, epochs in ((False, args.epochs), (True, args.fine_tune_epochs)):
        for layer in encoder.layers:
            layer.trainable = trainable
        model.compile(keras.optimizers.Adam(1e-3),
                      keras.losses.SparseCategoricalCrossentropy(ignore_class=IGNORE))
        if epochs:
            model.fit(x, y, batch_size=args.batch, epochs=epochs, shuffle=True, verbose=0)
    seconds, seconds_cpu = time.perf_counter() - start, time.process_time() - cpu
    probabilities = model.predict(test[0], batch_size=args.batch, verbose=0)
    summary = segmentation_summary(probabilities.argmax(-1), test[1], CLASSES,
                                   ignore_index=IGNORE)
    total = time.perf_counter() - start
    keras.backend.clear_session()
    return {"summary": summary, "training": seconds, "training_cpu": seconds_cpu,
            "total": total, "epochs": f"{args.epochs} + {args.fine_tune_epochs}"}


# ---- (b, c) ours ----------------------------------------------------------------------------

def run_ours(root: Path, args, mode: str, **options) -> dict:
    epochs = dict(epochs=args.epochs, fine_tune_epochs=args.fine_tune_epochs)
    if mode != "fine-tune":
        epochs = dict(epochs=args.epochs + args.fine_tune_epochs, fine_tune_epochs=0)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        settings = {"image_size": args.size, "batch_size": args.batch, **epochs,
                    **args.overrides, **options}
        result = transfer.train(root / "data", output=Path(tmp) / "run", task="segmentation",
                                model="unet", backbone=BACKBONE, weights="imagenet", mode=mode,
                                verbose=0, **settings)
        trained = time.perf_counter() - start
        heldout = evaluate(result.run_dir, root / "heldout")
    total = trained + heldout.pop("seconds")
    keras.backend.clear_session()
    seconds = result.metrics["seconds"]
    return {"summary": heldout, "training": seconds["training"],
            "training_cpu": seconds["training_cpu"], "total": total,
            "epochs": (f"{epochs['epochs']} + {epochs['fine_tune_epochs']}"
                       if mode == "fine-tune" else str(epochs["epochs"])),
            "history": result.history}


def evaluate(run_dir: Path, folder: Path) -> dict:
    """``transfer.evaluate.evaluate`` on a folder of pairs, with the seconds it took."""
    from transfer.evaluate import evaluate as evaluate_run

    start = time.perf_counter()
    metrics = evaluate_run(run_dir, folder)
    return {**metrics, "seconds": time.perf_counter() - start}


# ---- the run --------------------------------------------------------------------------------

PARTS = ("reference", "fine-tune", "feature-extractor", "no-cache", "full-retrain")
LABELS = {"reference": "(a) hand-written U-Net (segmentation_models recipe)",
          "fine-tune": "(b) ours, fine-tune (defaults)",
          "feature-extractor": "(b) ours, feature-extractor (cached features)",
          "no-cache": "(c) ours, feature-extractor, cache_features=False",
          "full-retrain": "(b) ours, full-retrain"}


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 32/16/16 images, 1 + 1 epochs")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--train", type=int, default=600)
    parser.add_argument("--val", type=int, default=120)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=8,
                        help="head epochs (encoder frozen); the one-phase modes train "
                             "epochs + fine-tune-epochs")
    parser.add_argument("--fine-tune-epochs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="a TrainConfig field for our runs (JSON value), e.g. loss=\"ce\" "
                             "or augment=true; repeatable")
    parser.add_argument("--data", type=Path,
                        default=Path(tempfile.gettempdir()) / "zoo-bench" / "animals-seg")
    args = parser.parse_args()
    if args.quick:
        args.train, args.val, args.test, args.epochs, args.fine_tune_epochs = 32, 16, 16, 1, 1
    args.parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {','.join(PARTS)}")
    args.overrides = dict((k, _value(v)) for k, _, v in (s.partition("=") for s in args.set))
    return args


def main() -> None:
    args = parse_args()
    counts = {"train": args.train, "val": args.val, "test": args.test}
    root = make_dataset(args.data / "-".join(f"{v}" for v in counts.values()), size=args.size,
                        counts=counts)
    test = load_split(root, "test")
    runs: dict[str, dict] = {}
    for part in args.parts:
        if part == "reference":
            runs[part] = run_reference(root, args, test)
        elif part == "no-cache":
            runs[part] = run_ours(root, args, "feature-extractor", cache_features=False)
        else:
            runs[part] = run_ours(root, args, part)
        curve = " ".join(f"{row['mean_iou']:.2f}/{row['val_mean_iou']:.2f}"
                         for row in runs[part].get("history", ()))
        print(f"  {part}: held-out mean IoU {runs[part]['summary']['mean_iou']:.4f}"
              + (f"; training/validation mIoU by epoch: {curve}" if curve else ""), flush=True)
    report(args, runs)


def report(args, runs: dict[str, dict]) -> None:
    changed = "".join(f", {k}={v!r}" for k, v in args.overrides.items())
    print(f"\nsegmentation, {len(ANIMALS)} animals + background on photo textures, "
          f"{args.size} px: {args.train} training, {args.val} validation, {args.test} held-out "
          f"images; U-Net on ImageNet {BACKBONE}, batch {args.batch}{changed}")
    base = runs.get("reference")
    header = ("| run | epochs | held-out mIoU | pixel acc. | training time / (a) "
              "| end-to-end / (a) |")
    print(header)
    print("|---|---|---:|---:|---:|---:|")
    for part, run in runs.items():
        summary = run["summary"]
        ratio = (f"{run['training'] / base['training']:.2f}x" if base else "")
        total = (f"{run['total'] / base['total']:.2f}x" if base else "")
        print(f"| {LABELS[part]} | {run['epochs']} | {summary['mean_iou']:.4f} | "
              f"{summary['pixel_accuracy']:.4f} | {ratio} | {total} |")
    for part, run in runs.items():
        ious = ", ".join(f"{name} {'-' if v is None else f'{v:.3f}'}"
                         for name, v in run["summary"]["per_class_iou"].items())
        print(f"  per-class IoU, {part}: {ious}")
    if "feature-extractor" in runs and "no-cache" in runs:
        cached, plain = runs["feature-extractor"], runs["no-cache"]
        print(f"(c) cached encoder features vs cache_features=False, same epochs: "
              f"{plain['training'] / cached['training']:.2f}x faster wall time, "
              f"{plain['training_cpu'] / cached['training_cpu']:.2f}x less CPU time")
    if base and "fine-tune" in runs:
        ours = runs["fine-tune"]
        print(f"(d) our fine-tune / hand-written U-Net: {ours['training'] / base['training']:.2f}x "
              f"training wall time ({ours['training_cpu'] / base['training_cpu']:.2f}x CPU), "
              f"{ours['total'] / base['total']:.2f}x end to end (ours adds validation every "
              f"epoch, checkpoints, evaluation and SavedModel export)")
    if "fine-tune" in runs:
        miou = runs["fine-tune"]["summary"]["mean_iou"]
        # The target is for the toolkit's default fine-tune on 128 px data, whose
        # default training size is the backbone's (224 px for MobileNet): --size 224 checks it.
        print(f"target: fine-tune held-out mIoU >= 0.80 (the default fine-tune trains at "
              f"224 px; this run at {args.size} px): {miou:.4f} "
              f"({'met' if miou >= 0.80 else 'MISSED'} at {args.size} px)")


if __name__ == "__main__":
    main()
