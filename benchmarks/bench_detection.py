"""Object detection measured: the default detector's losses, and it against Ultralytics YOLOv8n.

Which assignment and box loss the default detector trains with, and how our detectors compare
with Ultralytics YOLOv8n on the same data.

Data: animal silhouettes on photo textures. Animal-MNIST silhouettes (``data/animal-mnist/``,
thresholded, scaled, mirrored at random), each filled with a crop of one real photo and pasted on
a crop of another (scikit-image's sample photos); the box is the silhouette's tight bounding
box. One YOLO folder (``data.yaml`` with an absolute ``path:``, ``images/{train,val,test}``,
``labels/...``), read by our toolkit and by Ultralytics alike: the test split is the held-out
set, scored at the end of each run. By default 4 classes (bird, cat, elephant, giraffe), 1-3
objects per image of 20-60% of the image's height, images of 160 x 128 (letterboxed to the
model's square): the data of the runs (a) and (b) below, as before these options. ``--classes``
(up to 10: then horse, bear, cow, dog, sheep, zebra), ``--objects``, ``--object-px`` (the
pasted silhouette's side) and ``--image-px`` (width and height each drawn per image) change it;
``--preset issue`` is the comparison's reference data: 5 classes, 1-6 objects of 18-110 px,
images of 176-288 px, 800 / 200 / 300 images, 30 epochs at 256 px (about 45 min for Ultralytics
alone on 2 cores; explicit flags override a preset).

Parts (``--parts``, comma-separated):

- ``losses``: the four combinations of ``--loss`` (task-aligned or centre assignment x CIoU or
  GIoU) in feature-extractor mode, the ImageNet MobileNet-v1 backbone's features cached;
- ``fine-tune``: the default (``--loss auto``) in fine-tune mode, ``--epochs`` head epochs then
  ``--fine-tune-epochs`` of the whole backbone. These two run in this process, as they always
  did, and print times as ratios to the first of them;
- ``scratch``: ours from scratch, ``weights="none"``, full-retrain, the default detector on
  :data:`SCRATCH_BACKBONE` (YOLOv8n's own backbone, ``cspdarknet_n``: the backbone to train
  from scratch on a CPU, where the default ``keras_mobilenetv2`` takes twice as long a step),
  ``--epochs``; ``--scratch-backbones`` names other registry backbones to train the same way,
  one row each (``keras_mobilenetv2`` for the default backbone);
- ``peer``: Ultralytics YOLOv8n from scratch (``yolov8n.yaml``, no weight download), ``--epochs``,
  its default training recipe, ``plots=False, amp=False``, CPU, ``--peer-workers`` loaders;
- ``modes``: ours on the ImageNet MobileNet-v1 in feature-extractor (``--epochs``) and fine-tune
  (``--head-epochs`` + the rest of ``--epochs``, so as many epochs in all) modes;
- ``cache``: the feature-extractor of ``modes`` again with ``cache_features=False`` (the same
  head trained on the frozen backbone run on every step), so the cache's speed-up is a ratio of
  two runs here (the cached one runs with it, as in ``modes``);
- ``policies``: the fine-tune of ``modes`` under each fine-tune policy of :data:`POLICIES`
  (which blocks train, BatchNorm training or frozen, the learning-rate factor), so the task's
  default can be chosen by measurement;
- ``int8``: the ``modes`` fine-tune run (trained first if absent) exported as TFLite float32,
  float16 and int8 (calibrated on 100 of its training images), each run in LiteRT on the
  letterboxed held-out images and scored by the same COCO code (int8: the network in int8, the
  decoding and NMS in float);
- ``yolov1``: the zoo's YOLO v1 (Redmon et al. 2016, its 24 convolutions and 7 x 7 grid) from
  scratch, full-retrain, ``--epochs``, beside the modern head.

The last three share the image size, batch size and number of epochs, and each runs as a fresh
process, timed from its start to its trained model saved after the last epoch (interpreter and
framework import, data reading, training with each epoch's validation): the evaluation and
export ours does afterwards (``metrics.json``'s ``evaluation_and_export`` seconds) and
Ultralytics' final validation of ``best.pt`` are left out; the whole processes' times are
printed beside. Ultralytics' label caches are removed before each of its runs, and each of our
runs gets an empty cache of image checks, so both start cold. Times are ratios to the peer's.

Scoring, one scorer for both: ``transfer.tasks.detection.evaluation.DetectionEvaluator``
(pycocotools' COCO mAP@[.5:.95] and mAP50), against the boxes our YOLO reader reads from the
test labels, on detections at ``conf=0.001``, NMS IoU 0.7, at most 300 per image, each box's
best class: ours are the run's own test metrics (``metrics.json``); Ultralytics' are
``YOLO(best.pt).predict`` over the test images at those settings (boxes in each image's pixels),
scored here. Ultralytics' own ``val`` mAP (multi-label NMS, its own AP code) on the val split
(end of training) and on the test split are printed for reference.

Ultralytics is AGPL and only a measuring stick: it is no dependency of the project. It runs in a
venv of its own (``--peer-venv``, created on first use and reused, about 6 GB: torch 2.14.1 and
torchvision 0.29.1 from the machine's local wheels with their CUDA libraries, and
``ultralytics``), with ``YOLO_CONFIG_DIR`` a temporary folder holding a TrueType font found here
as its ``Arial.ttf`` and ``YOLO_OFFLINE=1``, so it downloads nothing.

Needs the real ImageNet MobileNet-v1 weights (``mobilenet_1_0_224_tf_no_top.h5``) in
``../shared/weights`` beside the repository, or in the folder ``ZOO_TEST_WEIGHTS`` names, and
the package registry (pip) the first time the peer venv is made.

    python benchmarks/bench_detection.py [--preset issue] [--parts losses,fine-tune]
        [--train 400] [--val 80] [--test 150] [--size 128] [--epochs 12]
        [--fine-tune-epochs 6] [--head-epochs N] [--batch 16] [--classes 4] [--objects 1-3]
        [--object-px LO-HI] [--image-px LO-HI] [--peer-venv DIR] [--peer-workers 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    CACHE,
    offline_keras_home,
    parse_parts,
    photo_crop,
    pip,
    sample_photos,
    weights_file,
)

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = weights_file()
# Read by Keras here and by our training processes, which inherit the environment.
os.environ["KERAS_HOME"] = str(offline_keras_home(WEIGHTS))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import transfer  # noqa: E402
from zoo.errors import ZooError  # noqa: E402
from transfer.config import DETECTION_LOSSES  # noqa: E402

ANIMAL_MNIST = REPO / "data" / "animal-mnist"
# The first four are the default data's; --classes takes the first N.
ANIMALS = ("bird", "cat", "elephant", "giraffe", "horse", "bear", "cow", "dog", "sheep", "zebra")
WIDTH, HEIGHT = 160, 128


@dataclasses.dataclass(frozen=True)
class Spec:
    """What the generated images hold; the defaults are the data the runs (a), (b) had."""

    classes: int = 4
    objects: tuple[int, int] = (1, 3)
    object_px: tuple[int, int] | None = None  # None: 20-60% of the image's height
    image_px: tuple[int, int] | None = None  # None: WIDTH x HEIGHT

    def tag(self) -> str:
        """'' for the defaults (the folder name they always had), else what differs."""
        parts = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value != field.default:
                text = "-".join(map(str, value)) if isinstance(value, tuple) else str(value)
                parts.append(f"{field.name.replace('_', '')}{text}")
        return "".join(f"-{p}" for p in parts)


def _sample(rng, photos, silhouettes, spec: Spec):
    # Draws in the order the default data was drawn; the options add draws only when set.
    if spec.image_px is None:
        width, height = WIDTH, HEIGHT
    else:
        height, width = (int(v) for v in rng.integers(spec.image_px[0], spec.image_px[1] + 1,
                                                      size=2))
    backdrop = int(rng.integers(len(photos)))
    image = photo_crop(rng, photos[backdrop], height, width).copy()
    rows = []
    for _ in range(int(rng.integers(spec.objects[0], spec.objects[1] + 1))):
        label = int(rng.integers(spec.classes))
        pool = silhouettes[ANIMALS[label]]
        if spec.object_px is None:
            side = int(rng.uniform(0.2, 0.6) * height)
        else:
            side = min(int(rng.integers(spec.object_px[0], spec.object_px[1] + 1)), height,
                       width)
        scaled = np.asarray(Image.fromarray(pool[int(rng.integers(len(pool)))])
                            .resize((side, side), Image.Resampling.BILINEAR)) > 127
        if rng.random() < 0.5:
            scaled = scaled[:, ::-1]
        if not scaled.any():
            continue
        y, x = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
        placed = np.zeros((height, width), bool)
        placed[y:y + side, x:x + side] = scaled
        fill = int(rng.choice([i for i in range(len(photos)) if i != backdrop]))
        image[placed] = photo_crop(rng, photos[fill], height, width)[placed]
        ys, xs = np.nonzero(placed)
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        rows.append(f"{label} {(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} "
                    f"{(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}")
    return image, rows


def make_folder(root: Path, counts: dict[str, int], seed: int, spec: Spec = Spec()) -> Path:
    """A YOLO folder of ``counts`` images per split; reused if complete. ``data.yaml`` is
    written each time, its ``path:`` absolute (Ultralytics reads a relative one from its own
    datasets folder; our reader from the yaml's)."""
    names = ANIMALS[:spec.classes]
    marker = root / ".complete"
    if not marker.exists():
        photos = sample_photos()
        silhouettes = {a: [np.asarray(Image.open(p).convert("L"))
                           for p in sorted((ANIMAL_MNIST / a).glob("*.png"))] for a in names}
        rng = np.random.default_rng(seed)
        for split, n in counts.items():
            for folder in ("images", "labels"):
                (root / folder / split).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                image, rows = _sample(rng, photos, silhouettes, spec)
                Image.fromarray(image).save(root / "images" / split / f"{i:05d}.jpg", quality=92)
                (root / "labels" / split / f"{i:05d}.txt").write_text("\n".join(rows) + "\n")
    splits = "\n".join(f"{s}: images/{s}" for s in counts)
    (root / "data.yaml").write_text(f"path: {json.dumps(str(root.resolve()))}\n{splits}\n"
                                    f"names: [{', '.join(names)}]\n")
    marker.touch()
    return root


def run(data: Path, out: Path, **settings) -> dict:
    start = time.perf_counter()
    result = transfer.train(data, output=out, backbone="keras_mobilenet", weights="imagenet",
                            verbose=0, overwrite=True, **settings)
    seconds = time.perf_counter() - start
    test = result.metrics["test"]
    return {"map": test["map"], "map50": test["map50"], "seconds": seconds}


# ---- ours and the peer, each a fresh process ------------------------------------------------

OURS = '''
import json, sys
sys.path.insert(0, sys.argv[1])
import transfer

options = json.loads(sys.argv[2])
transfer.train(options.pop("data_dir"), **options)
'''


def run_ours(data: Path, out: Path, name: str, **settings) -> dict:
    """``transfer.train`` in a fresh process; its test metrics from ``metrics.json``."""
    options = {"data_dir": str(data), "output": str(out), "cache_dir": str(out) + "-cache",
               "verbose": 0, "overwrite": True, **settings}
    shutil.rmtree(options["cache_dir"], ignore_errors=True)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", OURS, str(REPO), json.dumps(options)],
                          check=False, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{done.stderr.strip()[-3000:]}\nbench_detection.py: our {name} run failed "
                 f"(exit {done.returncode}); its output is above")
    metrics = json.loads((out / "metrics.json").read_text())
    after = metrics["seconds"]["evaluation_and_export"]
    return {"map": metrics["test"]["map"], "map50": metrics["test"]["map50"],
            "seconds": seconds - after, "process": seconds}


#: part scratch's backbone: the peer's own, as fast to train here as the peer (docs/benchmarks.md)
SCRATCH_BACKBONE = "cspdarknet_n"

PEER_PINS = ("torch==2.14.1", "torchvision==0.29.1")  # the machine's local wheels
PEER_PACKAGE = "ultralytics==8.4.190"

# Run with the peer's python: YOLOv8n from its yaml, trained; what it saved and when.
PEER_TRAIN = '''
import json, sys, time
from ultralytics import YOLO, settings

options, report = json.loads(sys.argv[1]), sys.argv[2]
settings.update({"sync": False})
model = YOLO("yolov8n.yaml")
trained = []


def epoch_end(trainer):
    if trainer.epoch < trainer.epochs:  # final_eval calls it once more, at epochs
        trained.append(time.time())


model.add_callback("on_fit_epoch_end", epoch_end)
model.train(**options)
t = model.trainer
with open(report, "w") as f:
    json.dump({"trained": trained[-1], "epochs": len(trained), "best": str(t.best),
               "val": {"map": float(t.metrics["metrics/mAP50-95(B)"]),
                       "map50": float(t.metrics["metrics/mAP50(B)"])}}, f)
'''

# Run with the peer's python: best.pt's detections on the test images, and its own test mAP.
PEER_DETECT = '''
import json, sys
from ultralytics import YOLO

weights, paths, data, size, batch, out, report = sys.argv[1:]
model = YOLO(weights)
thresholds = {"conf": 0.001, "iou": 0.7, "max_det": 300}
detections = {}
for result in model.predict(source=json.load(open(paths)), imgsz=int(size), device="cpu",
                            stream=True, verbose=False, **thresholds):
    boxes = result.boxes
    detections[result.path] = {"boxes": boxes.xyxy.tolist(), "scores": boxes.conf.tolist(),
                               "classes": boxes.cls.int().tolist()}
own = model.val(data=data, split="test", imgsz=int(size), batch=int(batch), device="cpu",
                plots=False, workers=0, project=out, name="test", exist_ok=True, **thresholds)
with open(report, "w") as f:
    json.dump({"detections": detections,
               "own_test": {"map": float(own.box.map), "map50": float(own.box.map50)}}, f)
'''


def peer_python(venv: Path) -> Path:
    """The peer venv's python: torch and torchvision at ``PEER_PINS`` and Ultralytics; made on
    first use (a minute or two, about 6 GB), then reused."""
    python = venv / "bin" / "python"
    marker = venv / f".complete-{'-'.join((*PEER_PINS, PEER_PACKAGE))}"
    if marker.exists():
        return python
    print(f"creating the peer venv in {venv} ({', '.join((*PEER_PINS, PEER_PACKAGE))}; "
          f"once) ...", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # One command line, so the torch pins hold while Ultralytics' requirements are resolved.
    pip(python, "install", [*PEER_PINS, PEER_PACKAGE])
    marker.touch()
    return python


def peer_env(work: Path) -> dict[str, str]:
    """The environment of Ultralytics' processes: its settings and fonts in ``work/config``,
    with a TrueType font found here as its Arial.ttf, and nothing to download."""
    config = work / "config" / "Ultralytics"  # Ultralytics adds the last part to the variable
    if not (config / "Arial.ttf").exists():
        import matplotlib

        fonts = sorted(glob.glob(os.path.join(matplotlib.get_data_path(), "fonts", "ttf",
                                              "*.ttf")))
        fonts += sorted(glob.glob("/usr/share/fonts/**/*.ttf", recursive=True))
        if not fonts:
            sys.exit("bench_detection.py: no TrueType font on this machine to give Ultralytics "
                     "as its Arial.ttf (it would download one)")
        dejavu = [f for f in fonts if Path(f).name == "DejaVuSans.ttf"]
        config.mkdir(parents=True, exist_ok=True)
        shutil.copyfile((dejavu or fonts)[0], config / "Arial.ttf")
    env = {**os.environ, "YOLO_CONFIG_DIR": str(work / "config"), "YOLO_OFFLINE": "1"}
    for name in ("PYTHONPATH", "KERAS_HOME"):
        env.pop(name, None)
    return env


def peer_run(python: Path, what: str, args: list[str], env: dict[str, str], log: Path) -> None:
    with open(log, "w") as out:
        done = subprocess.run([str(python), *args], check=False, stdout=out,
                              stderr=subprocess.STDOUT, env=env)
    if done.returncode:
        tail = "\n".join(log.read_text().strip().splitlines()[-15:])
        sys.exit(f"{tail}\nbench_detection.py: {what} failed in the peer venv (exit "
                 f"{done.returncode}); the end of its output is above")


def run_peer(python: Path, data: Path, work: Path, args) -> dict:
    """YOLOv8n trained from scratch, then its detections on the test split scored by ours."""
    out = work / "peer"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for cache in (data / "labels").glob("*.cache"):  # its label caches: start cold
        cache.unlink()
    env = peer_env(work)
    options = {"data": str(data / "data.yaml"), "epochs": args.epochs, "imgsz": args.size,
               "batch": args.batch, "workers": args.peer_workers, "device": "cpu",
               "plots": False, "amp": False, "seed": args.seed, "val": True,
               "project": str(out), "name": "train", "exist_ok": True}
    report = out / "train.json"
    start = time.time()
    peer_run(python, "Ultralytics' training", ["-c", PEER_TRAIN, json.dumps(options),
                                               str(report)], env, out / "train.txt")
    process = time.time() - start
    trained = json.loads(report.read_text())
    test, names = _test_split(data)
    paths = out / "paths.json"
    paths.write_text(json.dumps([str(p) for p in test.paths]))
    found = out / "detect.json"
    peer_run(python, "Ultralytics' detection of the test images",
             ["-c", PEER_DETECT, trained["best"], str(paths), str(data / "data.yaml"),
              str(args.size), str(args.batch), str(out), str(found)], env, out / "detect.txt")
    detected = json.loads(found.read_text())
    scored = score(test, names, detected["detections"])
    return {"map": scored["map"], "map50": scored["map50"],
            "seconds": trained["trained"] - start, "process": process,
            "val_own": trained["val"], "test_own": detected["own_test"]}


def _test_split(data: Path):
    from transfer.tasks.detection import layouts
    from transfer.tasks.detection.yolo_layout import read_yaml

    names = read_yaml(data / "data.yaml")["names"]
    split, skipped = layouts.evaluation_split(data, names, split="test")
    if skipped:
        sys.exit(f"bench_detection.py: our reader left out {len(skipped)} test images "
                 f"({skipped[0]}...)")
    return split, names


def score(split, names, detections: dict[str, dict]) -> dict:
    """COCO metrics of ``detections`` (image path -> boxes in the image's pixels, scores,
    classes) on ``split``, by the evaluator our runs are scored with."""
    from transfer.tasks.detection.evaluation import DetectionEvaluator, letterbox_scale

    found = {str(Path(p).resolve()): d for p, d in detections.items()}
    side = 640  # any: boxes go in scaled to it and come back out in the image's pixels
    evaluator = DetectionEvaluator(names, image_size=side)
    for path, annotation in zip(split.paths, split.annotations):
        d = found[str(Path(path).resolve())]
        scale = letterbox_scale(annotation["size"], side)
        boxes = np.asarray(d["boxes"], np.float64).reshape(1, -1, 4) * scale
        evaluator.update({"boxes": boxes, "scores": np.asarray(d["scores"]).reshape(1, -1),
                          "classes": np.asarray(d["classes"]).reshape(1, -1),
                          "count": np.asarray([boxes.shape[1]])}, [annotation], [path])
    return evaluator.result()


def run_tflite(data: Path, run: Path, quantize: str) -> dict:
    """The run exported as a TFLite file (``quantize``: none or int8), run in LiteRT on each
    held-out image letterboxed as the model takes it, and scored; seconds: the export's."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from transfer.data.pipelines import resize_images
    from transfer.export import export

    out = run.parent / f"{run.name}-{quantize}.tflite"
    start = time.perf_counter()
    export(run, format="tflite", quantize=quantize, output=out, force=True)
    seconds = time.perf_counter() - start
    split, names = _test_split(data)
    runner = Interpreter(model_path=str(out)).get_signature_runner()
    size = json.loads((run / "contract.json").read_text())["image_size"]
    detections = {}
    for path, annotation in zip(split.paths, split.annotations):
        image = np.asarray(Image.open(path).convert("RGB"), np.float32)
        boxed = resize_images(tf.constant(image), size, "letterbox").numpy()
        got = runner(images=np.clip(np.round(boxed), 0, 255).astype(np.uint8)[None])
        n = int(got["num_detections"][0])
        scale = size / max(annotation["size"])
        detections[path] = {"boxes": got["boxes"][0, :n] / scale, "scores": got["scores"][0, :n],
                            "classes": got["classes"][0, :n]}
    result = score(split, names, detections)
    return {"map": result["map"], "map50": result["map50"], "seconds": seconds,
            "process": seconds}


# ---- the run --------------------------------------------------------------------------------

PARTS = ("losses", "fine-tune", "scratch", "peer", "modes", "cache", "policies", "yolov1",
         "int8")
#: part policies: (row, transfer.train options) on the ImageNet MobileNet-v1
POLICIES = (
    ("whole backbone, BatchNorm training, lr x 1", {}),
    ("whole backbone, BatchNorm frozen, lr x 1", {"fine_tune_batchnorm": "frozen"}),
    ("from conv_dw_7, BatchNorm frozen, lr x 1", {"unfreeze_from": "conv_dw_7",
                                                  "fine_tune_batchnorm": "frozen"}),
    ("from conv_dw_7, BatchNorm frozen, lr x 0.1", {"unfreeze_from": "conv_dw_7",
                                                    "fine_tune_batchnorm": "frozen",
                                                    "fine_tune_lr_factor": 0.1}),
)
PRESETS = {"issue": {"classes": 5, "objects": (1, 6), "object_px": (18, 110),
                     "image_px": (176, 288), "train": 800, "val": 200, "test": 300,
                     "epochs": 30, "size": 256}}


def _range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        pair = (int(low), int(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO-HI, got {text!r}") from None
    if not 0 < pair[0] <= pair[1]:
        raise argparse.ArgumentTypeError(f"expected 0 < LO <= HI, got {text!r}")
    return pair


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="issue: the comparison's reference data and schedule (flags given "
                             "as well override it)")
    parser.add_argument("--parts", default="losses,fine-tune",
                        help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--val", type=int, default=80)
    parser.add_argument("--test", type=int, default=150)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--fine-tune-epochs", type=int, default=6,
                        help="part fine-tune's second phase")
    parser.add_argument("--head-epochs", type=int, default=None,
                        help="part modes' fine-tune: head epochs, then the rest of --epochs of "
                             "the whole network (default: a third of --epochs, at least 1)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="the peer's training seed")
    parser.add_argument("--classes", type=int, default=4, choices=range(1, len(ANIMALS) + 1),
                        metavar=f"1..{len(ANIMALS)}")
    parser.add_argument("--objects", type=_range, default=(1, 3), metavar="LO-HI",
                        help="objects per image")
    parser.add_argument("--object-px", type=_range, default=None, metavar="LO-HI",
                        help="a silhouette's side in pixels (default: 20-60%% of the image's "
                             "height)")
    parser.add_argument("--image-px", type=_range, default=None, metavar="LO-HI",
                        help=f"each image's width and height, drawn (default: {WIDTH} x "
                             f"{HEIGHT})")
    parser.add_argument("--scratch-backbones", default="",
                        help="part scratch: comma-separated registry backbones trained from "
                             "scratch as well as the default")
    parser.add_argument("--peer-venv", type=Path, default=CACHE / "ultralytics-venv")
    parser.add_argument("--peer-workers", type=int, default=2,
                        help="Ultralytics' data-loader processes (its default on 2 cores)")
    parser.add_argument("--work", type=Path, default=None)
    known, _ = parser.parse_known_args()
    if known.preset:
        parser.set_defaults(**PRESETS[known.preset])
    args = parser.parse_args()
    args.parts = parse_parts(parser, args.parts, PARTS)
    return args


def main() -> None:
    args = parse_args()
    work = args.work or Path(tempfile.gettempdir()) / "bench-detection"
    spec = Spec(classes=args.classes, objects=args.objects, object_px=args.object_px,
                image_px=args.image_px)
    name = f"{args.train}-{args.val}-{args.test}{spec.tag()}"
    data = make_folder(work / f"data-{name}", {"train": args.train, "val": args.val,
                                                "test": args.test}, seed=0, spec=spec)
    common = {"image_size": args.size, "batch_size": args.batch, "seed": 42}
    parts = set(args.parts)
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
    if results:
        first = next(iter(results.values()))["seconds"]
        print(f"\nheld-out images: {args.test}; train {args.train}, val {args.val}, {args.size} px")
        print(f"{'run':<32} {'mAP50-95':>9} {'mAP50':>7} {'time':>7}")
        for key, row in results.items():
            print(f"{key:<32} {row['map']:>9.3f} {row['map50']:>7.3f} "
                  f"{row['seconds'] / first:>6.2f}x")
    compare(args, data, work, common, parts)


def compare(args, data: Path, work: Path, common: dict, parts: set[str]) -> None:
    """Parts scratch, peer and modes: fresh processes, one scorer, times as ratios."""
    rows: dict[str, dict] = {}
    runs = work / "runs"
    if "scratch" in parts:
        rows[f"ours, from scratch ({SCRATCH_BACKBONE})"] = run_ours(
            data, runs / "scratch", "from-scratch", backbone=SCRATCH_BACKBONE, weights="none",
            mode="full-retrain", epochs=args.epochs, **common)
        progress(rows)
        for backbone in filter(None, args.scratch_backbones.split(",")):
            rows[f"ours, from scratch ({backbone})"] = run_ours(
                data, runs / f"scratch-{backbone}", f"from-scratch {backbone}",
                backbone=backbone, weights="none", mode="full-retrain", epochs=args.epochs,
                **common)
            progress(rows)
    if "peer" in parts:
        python = peer_python(args.peer_venv)
        rows["Ultralytics YOLOv8n, from scratch"] = run_peer(python, data, work, args)
        progress(rows)
    head = args.head_epochs or max(1, args.epochs // 3)
    for mode, epochs in (("feature-extractor", {"epochs": args.epochs}),
                         ("fine-tune", {"epochs": head,
                                        "fine_tune_epochs": max(0, args.epochs - head)})):
        if "modes" in parts or (mode == "feature-extractor" and "cache" in parts):
            rows[f"ours, {mode} (ImageNet MobileNet-v1)"] = run_ours(
                data, runs / mode, mode, backbone="keras_mobilenet", weights="imagenet",
                mode=mode, **epochs, **common)
            progress(rows)
        if mode == "feature-extractor" and "cache" in parts:
            rows["ours, feature-extractor without the cache"] = run_ours(
                data, runs / f"{mode}-uncached", f"{mode} without the cache",
                backbone="keras_mobilenet", weights="imagenet", mode=mode,
                cache_features=False, **epochs, **common)
            progress(rows)
    if "policies" in parts:
        for row, policy in POLICIES:
            rows[f"ours, fine-tune, {row}"] = run_ours(
                data, runs / f"policy-{len(rows)}", f"fine-tune ({row})",
                backbone="keras_mobilenet", weights="imagenet", mode="fine-tune", epochs=head,
                fine_tune_epochs=max(0, args.epochs - head), **policy, **common)
            progress(rows)
    if "yolov1" in parts:
        rows["ours, YOLO v1 from scratch"] = run_ours(
            data, runs / "yolov1", "yolov1", model="yolov1", weights="none",
            mode="full-retrain", epochs=args.epochs, **common)
        progress(rows)
    if "int8" in parts:
        run = runs / "fine-tune"
        if not (run / "metrics.json").is_file():
            run_ours(data, run, "fine-tune", backbone="keras_mobilenet", weights="imagenet",
                     mode="fine-tune", epochs=head, fine_tune_epochs=max(0, args.epochs - head),
                     **common)
        for quantize in ("none", "float16", "int8"):
            try:
                rows[f"ours, fine-tune, TFLite {quantize}"] = run_tflite(data, run, quantize)
            except ZooError as exc:
                print(f"TFLite {quantize}: {exc}", flush=True)
                continue
            progress(rows)
    if not rows:
        return
    peer = rows.get("Ultralytics YOLOv8n, from scratch")
    base = peer or next(iter(rows.values()))
    print(f"\n{args.test} held-out images, {args.classes} classes; trained on {args.train}, "
          f"validated on {args.val}; {args.size} px, batch {args.batch}, {args.epochs} epochs "
          f"(fine-tune: {head} head + {max(0, args.epochs - head)})")
    print(f"| run | mAP50-95 | mAP50 | time / {'peer' if peer else 'first'} | "
          f"whole process / {'peer' if peer else 'first'} |")
    print("|---|---:|---:|---:|---:|")
    for key, row in rows.items():
        print(f"| {key} | {row['map']:.3f} | {row['map50']:.3f} | "
              f"{row['seconds'] / base['seconds']:.2f}x | "
              f"{row['process'] / base['process']:.2f}x |")
    if peer:
        print(f"Ultralytics' own val (multi-label NMS, its AP code): val split mAP50-95 "
              f"{peer['val_own']['map']:.3f}, mAP50 {peer['val_own']['map50']:.3f}; test split "
              f"mAP50-95 {peer['test_own']['map']:.3f}, mAP50 {peer['test_own']['map50']:.3f}")
    print("Time: from each process's start to its model trained after the last epoch; whole "
          "process: to its exit, with its final evaluation (ours: and export).")


def progress(rows: dict[str, dict]) -> None:
    key, row = list(rows.items())[-1]
    print(json.dumps({key: {k: round(v, 4) if isinstance(v, float) else v
                            for k, v in row.items()}}), flush=True)


if __name__ == "__main__":
    main()
