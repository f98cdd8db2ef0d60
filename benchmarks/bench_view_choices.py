"""The view cache's two choices measured for accuracy: float16 storage against float32, and K,
the views of each image the cache holds under sampled augmentation, against no cache.

Data: ``bench_peer.py``'s (Animal-MNIST, ``--train`` images in class folders, ``--test`` held out,
at ``--size`` px). Each run is ``transfer.train(mode="fine-tune")`` with the shared ImageNet
MobileNet-v1, ``--head-epochs`` + ``--fine-tune-epochs``, seed ``--seed``, as a fresh process;
held-out top-1 by ``transfer.evaluate.evaluate``. Runs:

- flips (the default), K = 2 (the image and its mirror), float32 (the default), then float16;
- ``flip,crop,colour`` with K = 4 (the default for sampled views), K = 8, and
  ``cache_features=False`` (a fresh view every epoch, the full forward pass).

Time is each process's wall time as a ratio to the first run's.

    python benchmarks/bench_view_choices.py [--train 2400] [--test 1000] [--size 128]
        [--head-epochs 4] [--fine-tune-epochs 8] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_peer import OURS, REPO, make_dataset  # sets KERAS_HOME to the offline weights

SAMPLED = "flip,crop,colour"
RUNS = {
    "flips, K = 2, float32 (default)": {},
    "flips, K = 2, float16": {"cache_dtype": "float16"},
    f"{SAMPLED}, K = 4 (default)": {"augment": SAMPLED},
    f"{SAMPLED}, K = 8": {"augment": SAMPLED, "cache_views": 8},
    f"{SAMPLED}, no cache": {"augment": SAMPLED, "cache_features": False},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=2400)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--head-epochs", type=int, default=4)
    parser.add_argument("--fine-tune-epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path,
                        default=Path(tempfile.gettempdir()) / "zoo-bench" / "animal-mnist")
    args = parser.parse_args()
    root = make_dataset(args.data / f"{args.train}-{args.test}-{args.size}", train=args.train,
                        test=args.test, size=args.size)
    from transfer.evaluate import evaluate

    work = Path(tempfile.mkdtemp(prefix="zoo-bench-views-"))
    rows = []
    for i, (name, extra) in enumerate(RUNS.items()):
        options = {"data_dir": str(root / "images"), "output": str(work / f"run{i}"),
                   "model": "keras_mobilenet", "weights": "imagenet", "mode": "fine-tune",
                   "image_size": args.size, "batch_size": 32, "epochs": args.head_epochs,
                   "fine_tune_epochs": args.fine_tune_epochs, "seed": args.seed, "verbose": 0,
                   **extra}
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", OURS, str(REPO), json.dumps(options)],
                              capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        if done.returncode:
            sys.exit(f"{done.stderr[-3000:]}\nbench_view_choices.py: run {name!r} failed")
        top1 = evaluate(work / f"run{i}", root / "heldout")["top1_accuracy"]
        rows.append((name, top1, seconds))
        print(f"  {name}: held-out top-1 {top1:.3f}", flush=True)
    print(f"\nAnimal-MNIST at {args.size} px, {args.train} training / {args.test} held-out "
          f"images, fine-tune {args.head_epochs} + {args.fine_tune_epochs} epochs, seed "
          f"{args.seed}")
    print("| run | held-out top-1 | time / first |")
    print("|---|---:|---:|")
    for name, top1, seconds in rows:
        print(f"| {name} | {top1:.3f} | {seconds / rows[0][2]:.2f}x |")


if __name__ == "__main__":
    main()
