"""The ONNX export against the SavedModel: agreement, export time, file size and speed.

One model per task on the ImageNet MobileNet-v1 (the classifier whole, the U-Net's and the
detector's encoder; their decoder and head random): ``zoo export --format onnx``'s conversion
(:func:`transfer.export.onnx_model`) against the SavedModel export of the same model, both
written to a temporary folder. On the same uint8 images at the model's size:

- agreement of ONNX Runtime with the serving function ``zoo predict`` runs (classification:
  top-1 equal and the largest probability difference; segmentation: pixels of the same class;
  detection: the same number of boxes and classes, the smallest IoU of a kept box). The
  detector keeps boxes down to score 0.001 (the evaluation threshold), so that its
  non-maximum suppression works on hundreds of boxes;
- speed: every batch through ONNX Runtime and through the SavedModel's ``serve_images``, each
  in a fresh process that imports only its runtime (ONNX Runtime without TensorFlow, as it is
  deployed; TensorFlow's idle thread pools in one process slowed ONNX Runtime 2-5x), the two
  alternating ``--rounds`` times after a warm-up batch; the ratio is of the medians
  (SavedModel time / ONNX time: above 1, ONNX Runtime is faster), wall and CPU time.

    python benchmarks/bench_onnx.py [--images 32] [--batch 8] [--rounds 3] [--size 224]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CLASSES = ("a", "b", "c")


def child(runtime: str, model: str, images: str, batch: int) -> None:
    """Time one pass over the images with one runtime alone; print ``{"wall", "cpu"}``."""
    data = np.load(images)
    batches = [data[i:i + batch] for i in range(0, len(data), batch)]
    if runtime == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        run = lambda b: session.run(None, {"images": b})  # noqa: E731
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        loaded = tf.saved_model.load(model)  # kept: its functions need its variables
        run = lambda b: {k: v.numpy() for k, v in  # noqa: E731
                         loaded.serve_images(tf.constant(b)).items()}
    run(batches[0])  # warm-up: the first call traces or plans
    wall, cpu = time.perf_counter(), time.process_time()
    for b in batches:
        run(b)
    print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}))


def timed_child(runtime: str, model: Path, images: Path, batch: int) -> tuple[float, float]:
    done = subprocess.run([sys.executable, __file__, "--child", runtime, str(model),
                           str(images), "--batch", str(batch)], capture_output=True, text=True,
                          check=False)
    if done.returncode:
        sys.exit(f"timing {runtime} failed: {done.stderr.strip().splitlines()[-1:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["wall"], result["cpu"]


def models(size: int):
    """``(task, model, contract)`` for each task."""
    import zoo
    from _common import weights_file
    from transfer.predict import pretrained_classifier
    from transfer.rundir import InputContract

    with_top = weights_file().with_name("mobilenet_1_0_224_tf.h5")
    classifier = pretrained_classifier("keras_mobilenet",
                                       weights=str(with_top) if with_top.is_file() else None)
    yield "classification", classifier.model, classifier.contract
    preprocessing = zoo.get_spec("keras_mobilenet").preprocessing
    segmenter = zoo.build_segmenter(backbone="keras_mobilenet", classes=len(CLASSES),
                                    input_shape=(size, size, 3), encoder_weights="imagenet")
    yield "segmentation", segmenter, InputContract(
        "segmentation", size, 3, preprocessing, CLASSES, {"ignore_index": 255})
    detector = zoo.build_detector(backbone="keras_mobilenet", classes=len(CLASSES),
                                  input_shape=(size, size, 3), encoder_weights="imagenet")
    yield "detection", detector, InputContract(
        "detection", size, 3, preprocessing, CLASSES,
        {"conf": 0.001, "iou": 0.45, "max_det": 300, "head": "detector", "image_size": size})


def images_like_photos(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth colour fields with a few bright discs: uint8 ``[n, size, size, 3]``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        base = sum(rng.uniform(0, 255, 3) * np.sin(f * xx + g * yy + p)[..., None] ** 2
                   for f, g, p in rng.uniform(0, 8, (3, 3)))
        image = base / 3 + rng.normal(0, 12, (size, size, 3))
        for _ in range(3):
            cy, cx, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.05, 0.2)
            image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 255, 3)
        out[i] = np.clip(image, 0, 255)
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    low, high = np.maximum(a[:, :2], b[:, :2]), np.minimum(a[:, 2:], b[:, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=1)
    area = np.prod(a[:, 2:] - a[:, :2], axis=1) + np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / (area - inter)


def agreement(task: str, got: dict, want: dict) -> str:
    if task == "classification":
        p, q = got["probabilities"], want["probabilities"]
        return (f"top-1 equal {np.mean(p.argmax(1) == q.argmax(1)):.4f}, largest probability "
                f"difference {np.abs(p - q).max():.1e}")
    if task == "segmentation":
        return f"pixels of the same class {np.mean(got['class_ids'] == want['class_ids']):.6f}"
    counts = want["num_detections"]
    same = bool((got["num_detections"] == counts).all()
                and (got["classes"] == want["classes"]).all())
    ious = [box_iou(got["boxes"][i, :n], want["boxes"][i, :n]) for i, n in enumerate(counts)]
    ious = np.concatenate(ious) if ious else np.ones(0)
    return (f"{int(counts.sum())} boxes kept ({counts.min()}-{counts.max()} per image), same "
            f"counts and classes: {same}, smallest IoU {ious.min() if len(ious) else 1:.6f}")


def timed(fn) -> float:
    wall = time.perf_counter()
    fn()
    return time.perf_counter() - wall


def size_of(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(
        p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--child", nargs=3, metavar=("RUNTIME", "MODEL", "IMAGES"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child, batch=args.batch)

    from _common import offline_keras_home, weights_file

    os.environ["KERAS_HOME"] = str(offline_keras_home(weights_file()))
    import onnxruntime as ort
    import tensorflow as tf

    from transfer.export import onnx_model
    from transfer.serving import ServingFunctions, export_saved_model

    print(f"{args.images} images in batches of {args.batch}, {args.rounds} rounds; "
          f"onnxruntime {ort.__version__}, TensorFlow {tf.__version__}")
    rows = []
    for task, model, contract in models(args.size):
        images = images_like_photos(args.images, contract.image_size)
        batches = [images[i:i + args.batch] for i in range(0, len(images), args.batch)]
        with tempfile.TemporaryDirectory(prefix="bench-onnx-") as scratch:
            scratch = Path(scratch)
            saved_dir, onnx_file = scratch / "saved_model", scratch / "model.onnx"
            np.save(scratch / "images.npy", images)
            sm_export = timed(lambda: export_saved_model(model, saved_dir, contract))
            holder = {}

            def write_onnx():
                holder["proto"] = onnx_model(model, contract)
                onnx_file.write_bytes(holder["proto"].SerializeToString())

            onnx_export = timed(write_onnx)
            opset = next(o.version for o in holder["proto"].opset_import if o.domain == "")
            session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
            names = [o.name for o in session.get_outputs()]
            serve = ServingFunctions(model, contract).serve_images
            got = {k: np.concatenate(v) for k, v in zip(names, zip(*[
                session.run(None, {"images": b}) for b in batches]))}
            want = [serve(tf.constant(b)) for b in batches]
            want = {k: np.concatenate([w[k].numpy() for w in want]) for k in names}
            times = {"onnx": [], "savedmodel": []}
            for _ in range(args.rounds):
                for runtime, path in (("onnx", onnx_file), ("savedmodel", saved_dir)):
                    times[runtime].append(timed_child(runtime, path, scratch / "images.npy",
                                                      args.batch))
            wall = {r: statistics.median(t[0] for t in ts) for r, ts in times.items()}
            cpu = {r: statistics.median(t[1] for t in ts) for r, ts in times.items()}
            rows.append((task, contract.image_size, opset, onnx_export, sm_export,
                         size_of(onnx_file), size_of(saved_dir),
                         wall["savedmodel"] / wall["onnx"], cpu["savedmodel"] / cpu["onnx"],
                         1000 * wall["onnx"] / len(images),
                         1000 * wall["savedmodel"] / len(images), agreement(task, got, want)))
        print(f"{task}: done", flush=True)

    print("\n| task | px | opset | export: ONNX / SavedModel | size: ONNX / SavedModel | "
          "speed-up of ONNX Runtime (wall, CPU) | ms per image: ONNX / SavedModel | agreement "
          "with `zoo predict`'s path |")
    print("|---|---:|---:|---|---|---|---|---|")
    for (task, px, opset, onnx_s, sm_s, onnx_b, sm_b, speed_wall, speed_cpu, onnx_ms, sm_ms,
         agree) in rows:
        print(f"| {task} | {px} | {opset} | {onnx_s:.1f} s / {sm_s:.1f} s | "
              f"{onnx_b / 1e6:.1f} MB / {sm_b / 1e6:.1f} MB | {speed_wall:.2f}x, "
              f"{speed_cpu:.2f}x | {onnx_ms:.1f} / {sm_ms:.1f} | {agree} |")


if __name__ == "__main__":
    main()
