"""Where a fine-tune (or feature-extractor) run's time goes, end to end, as shares of the
whole process: start-up, reading and checking the data, each cache, each phase, evaluation, the
SavedModel export, the figures, the card and the report.

Each run is a fresh ``zoo train`` process on ``bench_peer.py``'s data (Animal-MNIST at
``--size`` px, ``images/`` of that folder), with the shared ImageNet MobileNet-v1 and
``bench_peer.py``'s settings (``--head-epochs`` + ``--fine-tune-epochs``, batch 32): once with
the defaults (the view cache on) and once with ``--no-cache-features``. The steps come from the
run's ``metrics.json`` (``seconds.steps``); start-up is the process's wall time minus their sum
(interpreter, TensorFlow import, building the model, the rest).

    python benchmarks/bench_profile.py [--data /tmp/zoo-bench/animal-mnist/1200-500-128/images]
        [--size 128] [--head-epochs 4] [--fine-tune-epochs 8] [--batch 32]
        [--mode fine-tune|feature-extractor] [--fe-epochs 15]
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

from _common import offline_keras_home, weights_file

REPO = Path(__file__).resolve().parents[1]


def run(data: Path, out: Path, args, *extra: str) -> dict:
    env = {**os.environ, "KERAS_HOME": str(offline_keras_home(weights_file()))}
    epochs = (["--epochs", str(args.head_epochs), "--fine-tune-epochs",
               str(args.fine_tune_epochs)] if args.mode == "fine-tune"
              else ["--epochs", str(args.fe_epochs)])
    command = [sys.executable, "-m", "cli.main", "train", str(data), "--model",
               "keras_mobilenet", "--mode", args.mode, "--image-size", str(args.size),
               *epochs, "--batch-size", str(args.batch), "--output", str(out), "--overwrite",
               *extra]
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True, text=True)
    total = time.perf_counter() - start
    steps = json.loads((out / "metrics.json").read_text())["seconds"]["steps"]
    return {"total": total, "steps": {"start-up and the rest": total - sum(steps.values()),
                                      **steps}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="a class-folder dataset; default: bench_peer.py's Animal-MNIST "
                             "(1,200 training images at --size px), made if absent")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--head-epochs", type=int, default=4)
    parser.add_argument("--fine-tune-epochs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--mode", choices=("fine-tune", "feature-extractor"),
                        default="fine-tune")
    parser.add_argument("--fe-epochs", type=int, default=15,
                        help="epochs of --mode feature-extractor (bench_peer.py's)")
    args = parser.parse_args()
    if args.data is None:  # `make benchmark` runs every script without arguments
        from bench_peer import make_dataset

        root = Path(tempfile.gettempdir()) / "zoo-bench" / "animal-mnist"
        args.data = make_dataset(root / f"1200-500-{args.size}", train=1200, test=500,
                                 size=args.size) / "images"
    work = Path(tempfile.mkdtemp(prefix="zoo-bench-profile-"))
    runs = {"cached (default)": run(args.data, work / "cached", args),
            "--no-cache-features": run(args.data, work / "plain", args, "--no-cache-features")}
    names = list(dict.fromkeys(k for r in runs.values() for k in r["steps"]))
    base = runs["--no-cache-features"]["total"]
    print(f"| step | {' | '.join(runs)} |")
    print("|---|" + "---:|" * len(runs))
    for name in names:
        cells = [f"{r['steps'].get(name, 0) / r['total']:.1%}" for r in runs.values()]
        print(f"| {name} | {' | '.join(cells)} |")
    ratios = " | ".join(f"{r['total'] / base:.2f}x" for r in runs.values())
    print(f"| whole process, as a ratio to --no-cache-features | {ratios} |")


if __name__ == "__main__":
    main()
