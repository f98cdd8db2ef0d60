"""Our toolkit against TensorFlow Hub's ``make_image_classifier`` (MIC), the tool it replaces,
side by side in one run: held-out top-1 accuracy and the ratio of wall times.

Data: Animal-MNIST (the ``animal-mnist`` 0.4 wheel from PyPI, 10 classes of 1,000 silhouettes,
as ``data/make_animal_mnist.py`` uses), upscaled bilinearly to ``--size`` px RGB PNGs: ``--train``
images in ``images/<class>/`` that both tools train on (each holds out 20% of them for its own
validation) and ``--test`` other images in ``heldout/<class>/`` that neither sees.

The backbone of both is the same ImageNet MobileNet-v1: ours through ``keras_mobilenet`` and
``weights="imagenet"``; MIC's through a TF2 hub feature-vector SavedModel exported from the same
weights file (float images in [0, 1] of any size, global-average-pooled 1,024 features).

Runs, same image folder, image size and batch size:

(1) feature-extractor, ``--fe-epochs``: ``transfer.train(mode="feature-extractor")`` against
    MIC's defaults (frozen module, SGD with momentum at 0.005);
(2) fine-tune, ``--head-epochs`` + ``--fine-tune-epochs``: ``transfer.train(mode="fine-tune")``
    against ``--do_fine_tuning`` for as many epochs in all, MIC at its default learning rate
    (part ``fine-tune``) and at ``--tuned-lr`` (part ``fine-tune-tuned``).

Each tool runs as a fresh process, timed from its start to its model saved: the same boundary
for both (interpreter, TensorFlow import, data reading, training, export); each of our runs gets
an empty cache of image checks, as MIC has none. Our fine-tune runs once and is compared with
both MIC fine-tunes. Held-out accuracy is taken afterwards, outside the timings: ours by
``transfer.evaluate.evaluate``, MIC's by loading its SavedModel in its own venv and reading the
images as MIC does (``image_dataset_from_directory``, bilinear, ``/ 255``). That SavedModel's
backbone variables are compared with the exported module's, to show that MIC's fine-tuning
moved them (and its feature extraction did not).

MIC left TensorFlow Hub in 0.16; its two files are taken from the tensorflow-hub 0.13.0 wheel and
run in a venv of their own (``--peer-venv``, created on first use and reused) with TensorFlow at
our version, tf-keras, tensorflow-hub 0.16 and ``TF_USE_LEGACY_KERAS=1``.

Needs the real ImageNet MobileNet-v1 weights (``mobilenet_1_0_224_tf_no_top.h5``) in
``../shared/weights`` beside the repository, or in the folder ``ZOO_TEST_WEIGHTS`` names, and
the package registry (pip) the first time.

    python benchmarks/bench_peer.py [--quick] [--parts feature-extractor,fine-tune,...]
        [--train 2400] [--test 1000] [--size 128] [--fe-epochs 15] [--head-epochs 4]
        [--fine-tune-epochs 8] [--batch 32] [--tuned-lr 5e-4] [--seeds 1]
        [--precision float32] [--peer-venv DIR]
"""

from __future__ import annotations

import argparse
import atexit
import importlib.metadata
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from _common import (
    ANIMAL_CLASSES,
    CACHE,
    animal_mnist,
    download,
    offline_keras_home,
    parse_parts,
    pip,
    weights_file,
)

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = weights_file()
# Read by our training processes when they import Keras.
os.environ["KERAS_HOME"] = str(offline_keras_home(WEIGHTS))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

CLASSES = ANIMAL_CLASSES
MIC_WHEEL = "tensorflow-hub==0.13.0"
MIC_FILES = ("make_image_classifier.py", "make_image_classifier_lib.py")
MIC_DEFAULT_LR = 0.005  # make_image_classifier_lib.get_default_hparams()
# Patches that let the 0.13.0 files run on their own beside each other, on any Python.
MIC_PATCHES = {
    "from tensorflow_hub.tools.make_image_classifier import make_image_classifier_lib as lib":
        "import make_image_classifier_lib as lib",
    "from distutils.version import LooseVersion":
        "LooseVersion = lambda v: tuple(int(p) for p in __import__('re').findall(r'\\d+', v)[:3])",
}


# ---- the data -------------------------------------------------------------------------------

def make_dataset(root: Path, *, train: int, test: int, size: int) -> Path:
    """``root/images/<class>/`` (``train`` images) and ``root/heldout/<class>/`` (``test``
    others), drawn evenly from the classes; reused if complete."""
    marker = root / f".complete-{train}-{test}-{size}"
    if marker.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    images, labels = animal_mnist()
    rng = np.random.default_rng(0)
    per_class = {"images": train // len(CLASSES), "heldout": test // len(CLASSES)}
    for label, name in enumerate(CLASSES):
        chosen = iter(rng.permutation(np.flatnonzero(labels == label)))  # no image in both
        for split, count in per_class.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in itertools.islice(chosen, count):
                image = Image.fromarray(images[i]).convert("RGB")
                image = image.resize((size, size), Image.Resampling.BILINEAR)
                image.save(folder / f"{i:05d}.png")
    marker.touch()
    return root


# ---- the peer: make_image_classifier in its own venv ----------------------------------------

# Run with the peer's python: the ImageNet MobileNet-v1 as a TF2 hub feature-vector SavedModel.
EXPORT = '''
import sys
import tensorflow as tf

weights, out = sys.argv[1], sys.argv[2]
backbone = tf.keras.applications.MobileNet(include_top=False, weights=weights,
                                           input_shape=(None, None, 3), pooling="avg")


class FeatureVector(tf.Module):
    """hub.KerasLayer's reusable SavedModel: images in [0, 1] of any size -> 1024 features."""

    # Plain tracked lists in the SavedModel, where tf.Module has properties.
    variables = trainable_variables = regularization_losses = None

    def __init__(self, model):
        super().__init__()
        self._model = model
        self.variables = list(model.variables)
        self.trainable_variables = list(model.trainable_variables)
        self.regularization_losses = []  # MobileNet has no kernel regularizers

    @tf.function
    def __call__(self, images, training=False):
        return self._model(images * 2.0 - 1.0, training=training)  # MobileNet's "tf" mode


module = FeatureVector(backbone)
for training in (False, True):  # hub.KerasLayer passes training as a Python bool
    module.__call__.get_concrete_function(tf.TensorSpec([None, None, None, 3], tf.float32),
                                          training=training)
tf.saved_model.save(module, out)
'''

# Run with the peer's python: MIC's SavedModel on the held-out folder, read as MIC reads images,
# and how far its backbone moved from the exported module's.
EVALUATE = '''
import json, sys
import numpy as np
import tensorflow as tf

model_dir, module_dir, heldout, labels_file, size = sys.argv[1:]
labels = open(labels_file).read().split()
data = tf.keras.utils.image_dataset_from_directory(
    heldout, class_names=labels, label_mode="int", image_size=(int(size), int(size)),
    interpolation="bilinear", shuffle=False, batch_size=64)
model = tf.saved_model.load(model_dir)
correct = total = 0
for images, truth in data:
    predicted = np.argmax(model(images / 255.0, training=False), axis=-1)
    correct += int(np.sum(predicted == truth.numpy()))
    total += len(predicted)
before = {v.name: v.numpy() for v in tf.saved_model.load(module_dir).variables}
after = {v.name: v.numpy() for v in model.variables if v.name in before}
moved = [n for n in after if not np.array_equal(after[n], before[n])]
print(json.dumps({"top1": correct / total, "samples": total, "backbone": len(after),
                  "moved": len(moved), "kernels": sum("kernel" in n for n in after),
                  "kernels_moved": sum("kernel" in n for n in moved)}))
'''


def peer_python(venv: Path) -> Path:
    """The peer venv's python, with TensorFlow at our version, tf-keras, tensorflow-hub 0.16 and
    MIC's two files in ``mic/``; built on first use (a few minutes), then reused."""
    version = importlib.metadata.version("tensorflow")
    python, marker = venv / "bin" / "python", venv / f".complete-tensorflow-{version}"
    if marker.exists():
        return python
    print(f"creating the peer venv in {venv} (TensorFlow {version}; once) ...", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # pillow: MIC checks that tf.keras.preprocessing can load images before it starts.
    pip(python, "install", [f"tensorflow=={version}", "tf-keras", "tensorflow-hub==0.16.*",
                            "pillow"])
    (venv / "mic").mkdir()
    with zipfile.ZipFile(download(MIC_WHEEL)) as wheel:
        for name in MIC_FILES:
            text = wheel.read(f"tensorflow_hub/tools/make_image_classifier/{name}").decode()
            for old, new in MIC_PATCHES.items():
                text = text.replace(old, new)
            (venv / "mic" / name).write_text(text)
    marker.touch()
    return python


def peer_run(python: Path, what: str, args: list[str], log: Path) -> str:
    """A command in the peer venv, output to ``log``; a failure ends the benchmark with its
    last lines."""
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("PYTHONPATH", None)
    with open(log, "w") as out:
        done = subprocess.run([str(python), *args], check=False, stdout=out,
                              stderr=subprocess.STDOUT, env=env)
    text = log.read_text()
    if done.returncode:
        tail = "\n".join(text.strip().splitlines()[-15:])
        sys.exit(f"{tail}\nbench_peer.py: {what} failed in the peer venv (exit "
                 f"{done.returncode}); the end of its output is above")
    return text


def run_mic(python: Path, work: Path, root: Path, args, *, name: str, epochs: int,
            fine_tune: bool, learning_rate: float) -> dict:
    out = work / name
    out.mkdir()
    command = [str(python.parents[1] / "mic" / "make_image_classifier.py"),
               f"--image_dir={root / 'images'}", f"--tfhub_module={work / 'module'}",
               f"--image_size={args.size}", f"--saved_model_dir={out / 'model'}",
               f"--labels_output_file={out / 'labels.txt'}", f"--train_epochs={epochs}",
               f"--batch_size={args.batch}", f"--learning_rate={learning_rate}",
               "--do_fine_tuning" if fine_tune else "--nodo_fine_tuning"]
    start = time.perf_counter()
    peer_run(python, "make_image_classifier", command, out / "log.txt")
    seconds = time.perf_counter() - start
    evaluation = ["-c", EVALUATE, str(out / "model"), str(work / "module"),
                  str(root / "heldout"), str(out / "labels.txt"), str(args.size)]
    text = peer_run(python, "the evaluation of MIC's model", evaluation, out / "evaluate.txt")
    return {"seconds": seconds, "epochs": str(epochs), "lr": learning_rate,
            **json.loads(text.strip().splitlines()[-1])}


# ---- ours -----------------------------------------------------------------------------------

OURS = '''
import json, sys
sys.path.insert(0, sys.argv[1])
import transfer

options = json.loads(sys.argv[2])
transfer.train(options.pop("data_dir"), **options)
'''


def run_ours(work: Path, root: Path, args, *, name: str, mode: str, epochs: int,
             fine_tune_epochs: int, seed: int = 0) -> dict:
    from transfer.evaluate import evaluate

    run_dir = work / name
    # A cache of image checks of its own: each run starts cold, as MIC does.
    options = {"data_dir": str(root / "images"), "output": str(run_dir),
               "cache_dir": str(work / f"{name}-cache"),
               "model": "keras_mobilenet", "weights": "imagenet", "mode": mode,
               "image_size": args.size, "batch_size": args.batch, "epochs": epochs,
               "seed": seed, "precision": args.precision, "verbose": 0}
    if mode == "fine-tune":  # refused in other modes, where it would do nothing
        options["fine_tune_epochs"] = fine_tune_epochs
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", OURS, str(REPO), json.dumps(options)],
                          check=False, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{done.stderr.strip()[-3000:]}\nbench_peer.py: our {mode} run failed "
                 f"(exit {done.returncode}); its output is above")
    metrics = evaluate(run_dir, root / "heldout")
    return {"seconds": seconds, "top1": metrics["top1_accuracy"], "samples": metrics["samples"],
            "epochs": f"{epochs} + {fine_tune_epochs}" if mode == "fine-tune" else str(epochs)}


def repeated(runs: list[dict]) -> dict:
    """Several runs of one tool as one row: the mean wall time and top-1, each run's top-1 in
    ``each`` (the first run's other fields)."""
    return {**runs[0], "seconds": float(np.mean([r["seconds"] for r in runs])),
            "top1": float(np.mean([r["top1"] for r in runs])),
            "each": [r["top1"] for r in runs]}


# ---- the run --------------------------------------------------------------------------------

PARTS = ("feature-extractor", "fine-tune", "fine-tune-tuned")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 160 training / 50 held-out images at 64 px, 1 epoch "
                             "per phase")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--train", type=int, default=2400)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--fe-epochs", type=int, default=15, help="feature-extractor epochs")
    parser.add_argument("--head-epochs", type=int, default=4,
                        help="our fine-tune's first phase (backbone frozen); MIC fine-tunes "
                             "head + fine-tune epochs in one")
    parser.add_argument("--fine-tune-epochs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tuned-lr", type=float, default=5e-4,
                        help="MIC's learning rate in part fine-tune-tuned")
    parser.add_argument("--seeds", type=int, default=1,
                        help="runs of each tool per row: ours with seeds 0..N-1, MIC (which "
                             "takes no seed) as many times; rows give the means")
    parser.add_argument("--precision", default="float32",
                        choices=("float32", "mixed_float16", "mixed_bfloat16"),
                        help="our runs' --precision (MIC trains in float32)")
    parser.add_argument("--peer-venv", type=Path, default=CACHE / "peer-venv")
    parser.add_argument("--data", type=Path,
                        default=Path(tempfile.gettempdir()) / "zoo-bench" / "animal-mnist")
    args = parser.parse_args()
    if args.quick:
        args.train, args.test, args.size = 160, 50, 64
        args.fe_epochs, args.head_epochs, args.fine_tune_epochs = 1, 1, 1
    if args.train % len(CLASSES) or args.test % len(CLASSES) \
            or args.train + args.test > 10_000:
        parser.error(f"--train and --test must be multiples of {len(CLASSES)} (images are drawn "
                     f"evenly from the classes), 10,000 at most together; got {args.train} and "
                     f"{args.test}")
    if args.train // 5 < args.batch:
        parser.error(f"MIC validates on 20% of --train in whole batches; --train must be at "
                     f"least 5 x --batch ({5 * args.batch}), got {args.train}")
    args.parts = parse_parts(parser, args.parts, PARTS)
    return args


def main() -> None:
    args = parse_args()
    root = make_dataset(args.data / f"{args.train}-{args.test}-{args.size}", train=args.train,
                        test=args.test, size=args.size)
    python = peer_python(args.peer_venv)
    work = Path(tempfile.mkdtemp(prefix="zoo-bench-peer-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    peer_run(python, "the hub module's export",
             ["-c", EXPORT, str(WEIGHTS), str(work / "module")], work / "export.txt")
    rows = []
    seeds = range(args.seeds)
    if "feature-extractor" in args.parts:
        mic = repeated([run_mic(python, work, root, args, name=f"mic-fe-{i}",
                                epochs=args.fe_epochs, fine_tune=False,
                                learning_rate=MIC_DEFAULT_LR) for i in seeds])
        ours = repeated([run_ours(work, root, args, name=f"ours-fe-{i}",
                                  mode="feature-extractor", epochs=args.fe_epochs,
                                  fine_tune_epochs=0, seed=i) for i in seeds])
        rows.append(("feature-extractor", ours, mic))
        progress(rows[-1])
    tuned = {"fine-tune": MIC_DEFAULT_LR, "fine-tune-tuned": args.tuned_lr}
    ours = None
    for part in (p for p in tuned if p in args.parts):
        mic = repeated([run_mic(python, work, root, args, name=f"mic-{part}-{i}",
                                epochs=args.head_epochs + args.fine_tune_epochs, fine_tune=True,
                                learning_rate=tuned[part]) for i in seeds])
        ours = ours or repeated([run_ours(work, root, args, name=f"ours-ft-{i}",
                                          mode="fine-tune", epochs=args.head_epochs,
                                          fine_tune_epochs=args.fine_tune_epochs, seed=i)
                                 for i in seeds])
        rows.append(("fine-tune", ours, mic))
        progress(rows[-1])
    report(args, rows)


def progress(row: tuple[str, dict, dict]) -> None:
    mode, ours, mic = row
    print(f"  {mode}, MIC at {mic['lr']:g}: held-out top-1 ours {ours['top1']:.3f}, MIC "
          f"{mic['top1']:.3f}; wall time ours / MIC {ours['seconds'] / mic['seconds']:.2f}x",
          flush=True)


def report(args, rows: list[tuple[str, dict, dict]]) -> None:
    print(f"\nAnimal-MNIST, {len(CLASSES)} classes, {args.size} px: {args.train} training images "
          f"(each tool validates on 20% of them), {args.test} held-out; ImageNet MobileNet-v1, "
          f"batch {args.batch}; {args.seeds} run(s) of each tool per row, means; our "
          f"precision {args.precision}")
    print("| mode | epochs ours / MIC | MIC learning rate | held-out top-1 ours | "
          "held-out top-1 MIC | wall time ours / MIC |")
    print("|---|---|---:|---:|---:|---:|")
    for mode, ours, mic in rows:
        default = " (default)" if mic["lr"] == MIC_DEFAULT_LR else ""
        print(f"| {mode} | {ours['epochs']} / {mic['epochs']} | {mic['lr']:g}{default} | "
              f"{ours['top1']:.3f} | {mic['top1']:.3f} | {ours['seconds'] / mic['seconds']:.2f}x |")
    for mode, ours, mic in rows:
        if len(ours["each"]) > 1:
            print(f"  {mode} top-1 of each run: ours "
                  f"{', '.join(f'{x:.3f}' for x in ours['each'])}; MIC at {mic['lr']:g} "
                  f"{', '.join(f'{x:.3f}' for x in mic['each'])}")
    for mode, _, mic in rows:
        print(f"  MIC {mode} at {mic['lr']:g}: {mic['moved']} of {mic['backbone']} backbone "
              f"variables changed ({mic['kernels_moved']} of {mic['kernels']} convolution "
              f"kernels)")
    print("Wall times run from each tool's process start to its model saved; held-out "
          "evaluation is not timed.")


if __name__ == "__main__":
    main()
