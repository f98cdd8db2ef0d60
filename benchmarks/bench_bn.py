"""Short full-retrain runs from scratch, across seeds: Keras's fixed BatchNorm momentum (0.99)
against ``bn_momentum="auto"`` (min(0.99, 1 - 1/steps per epoch)), in one run (issue 15).

The run is the README's full-retrain example on the embedded sample data
(``data/animal-mnist``: 10 classes, 50 images each; 20% validation) with a BatchNorm network
trained from random initialisation: ``--model`` (ResNet-18 by default) at ``--size`` px for
``--epochs`` epochs, batch ``--batch``, every other setting at its default. Each momentum is
trained with the same ``--seeds`` (the seed fixes the split, the initialisation and the
augmentation).

It prints, per momentum, each seed's validation accuracy of the kept model and of the last
epoch, their spread (max - min) and standard deviation, and the mean epoch-to-epoch jump of
validation accuracy over the second half of training: the swing a user sees.

    python benchmarks/bench_bn.py [--model resnet18] [--size 64] [--epochs 10] [--batch 32]
        [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import _common  # noqa: F401  (quiets TensorFlow's log and puts the repository on sys.path)
import keras  # noqa: E402

import transfer  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data" / "animal-mnist"


def run(args, seed: int, bn_momentum) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        result = transfer.train(DATA, output=Path(tmp) / "run", model=args.model,
                                weights=None, mode="full-retrain", image_size=args.size,
                                epochs=args.epochs, batch_size=args.batch, seed=seed,
                                bn_momentum=bn_momentum, verbose=0)
    keras.backend.clear_session()
    curve = [row["val_accuracy"] for row in result.history]
    late = curve[len(curve) // 2:]
    return {"kept": result.metrics["val"]["top1_accuracy"], "last": curve[-1],
            "jump": statistics.mean(abs(b - a) for a, b in zip(late, late[1:])),
            "curve": curve}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 epochs, 2 seeds")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.seeds = 2, "0,1"
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    return args


def main() -> None:
    args = parse_args()
    rows = {}
    for label, momentum in (("0.99 (Keras)", 0.99), ("auto", "auto")):
        rows[label] = [run(args, seed, momentum) for seed in args.seeds]
        for seed, row in zip(args.seeds, rows[label]):
            print(f"  bn_momentum {label}, seed {seed}: validation accuracy by epoch "
                  + " ".join(f"{v:.2f}" for v in row["curve"]), flush=True)
    print(f"\n{args.model} from scratch, full-retrain, {args.size} px, {args.epochs} epochs, "
          f"batch {args.batch}, data/animal-mnist (20% validation), seeds {args.seeds}")
    print("| BN momentum | val. acc. per seed (kept model) | spread | std | last epoch per seed "
          "| spread | mean epoch-to-epoch jump, 2nd half |")
    print("|---|---|---:|---:|---|---:|---:|")
    for label, runs in rows.items():
        kept, last = [r["kept"] for r in runs], [r["last"] for r in runs]
        print(f"| {label} | {', '.join(f'{v:.3f}' for v in kept)} | {max(kept) - min(kept):.3f} "
              f"| {statistics.pstdev(kept):.3f} | {', '.join(f'{v:.3f}' for v in last)} | "
              f"{max(last) - min(last):.3f} | "
              f"{statistics.mean(r['jump'] for r in runs):.3f} |")


if __name__ == "__main__":
    main()
