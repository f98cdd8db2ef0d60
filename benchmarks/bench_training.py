"""Training-step benchmarks, each a ratio measured in one run:

1. fine-tune overhead: the toolkit's fine-tune phase vs a bare ``model.fit`` of the same model,
   same trainable set and optimizer, on in-memory tensors (target: overhead <= 5%);
2. input pipeline vs model: images/s of the toolkit's training pipeline alone (decoding from
   files every epoch, and from the in-memory cache) vs the model's training images/s
   (target: pipeline >= 3x the model);
3. precision and XLA: training images/s of mixed_bfloat16 and of XLA vs float32, and whether
   accuracy holds on a small task.

    python benchmarks/bench_training.py [--images 512] [--size 224] [--epochs 3] [--parts 1,2,3]
        [--precision-size 64] [--precision-images 600] [--precision-epochs 6]
        [--precision-mode fine-tune|full-retrain]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _common import make_jpeg_folder

import transfer  # noqa: E402
from transfer.data import ImageFolderData, decode_and_resize, make_dataset  # noqa: E402,E501
from transfer.model import backbone_info, set_trainable  # noqa: E402
from transfer.tasks.classification.model import build_classifier  # noqa: E402
from transfer.optimizers import make_optimizer  # noqa: E402
from transfer.tasks.classification.sources import load_image_folder


class EpochTimes(keras.callbacks.Callback):
    """Wall time of each epoch, from its start to the next one's (or the end of training), so
    whatever runs after the epoch (validation, every callback, checkpoints) is counted too."""

    def __init__(self):
        super().__init__()
        self.times: list[float] = []
        self._start: float | None = None

    def on_epoch_begin(self, epoch, logs=None):
        now = time.perf_counter()
        if self._start is not None:
            self.times.append(now - self._start)
        self._start = now

    def on_train_end(self, logs=None):
        if self._start is not None:
            self.times.append(time.perf_counter() - self._start)
            self._start = None


def steady(times: list[float]) -> float:
    """Median epoch time, leaving out the first epoch (tracing and warm-up)."""
    return statistics.median(times[1:]) if len(times) > 1 else times[0]


def fine_tune_overhead(data: Path, model: str, size: int, batch: int, epochs: int) -> None:
    """Our whole fine-tune epoch (pipeline, validation, callbacks, per-epoch checkpoint) vs
    ``model.fit`` of the same model, trainable set and optimizer on in-memory data, fed the
    fastest plain-Keras way measured here (tensors through tf.data, or NumPy arrays)."""
    ours_times = EpochTimes()
    with tempfile.TemporaryDirectory() as tmp:
        transfer.train(data, output=Path(tmp) / "run", model=model, mode="fine-tune",
                       weights=None, epochs=0, fine_tune_epochs=epochs, batch_size=batch,
                       image_size=size, early_stopping_patience=0, verbose=0,
                       callbacks=[ours_times])
        folder = ImageFolderData.load(Path(tmp) / "run" / "split.json")
    keras.backend.clear_session()
    info = backbone_info(model)

    def tensors(split):
        x = np.concatenate([np.asarray(b) for b, _ in make_dataset(
            split, image_size=size, batch_size=64, cache=False)])
        return x, np.eye(folder.num_classes, dtype="float32")[np.asarray(split.labels)]

    x, y = tensors(folder.train)
    xv, yv = tensors(folder.val)
    bare = {}
    for feed in ("tf.data", "numpy"):
        classifier = build_classifier(model, num_classes=folder.num_classes,
                                      mode=transfer.TransferMode.FINE_TUNE, image_size=size)
        set_trainable(classifier, "fine-tune", blocks=info.blocks,
                      unfreeze_from=info.default_unfreeze)
        classifier.compile(make_optimizer("adam", 1e-4), keras.losses.CategoricalCrossentropy(),
                           metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"),
                                    keras.metrics.TopKCategoricalAccuracy(
                                        k=5, name="top5_accuracy")])
        times = EpochTimes()
        if feed == "numpy":
            classifier.fit(x, y, validation_data=(xv, yv), batch_size=batch, epochs=epochs,
                           verbose=0, callbacks=[times])
        else:
            train = (tf.data.Dataset.from_tensor_slices((tf.constant(x), tf.constant(y)))
                     .shuffle(len(x), seed=0).batch(batch).prefetch(tf.data.AUTOTUNE))
            val = (tf.data.Dataset.from_tensor_slices((tf.constant(xv), tf.constant(yv)))
                   .batch(batch).prefetch(tf.data.AUTOTUNE))
            classifier.fit(train, validation_data=val, epochs=epochs, verbose=0,
                           callbacks=[times])
        bare[feed] = steady(times.times)
        keras.backend.clear_session()
    fastest = min(bare, key=bare.get)
    ratio = steady(ours_times.times) / bare[fastest]
    print(f"1. fine-tune epoch, {model} at {size}px, {len(folder.train)} training + "
          f"{len(folder.val)} validation images, median of epochs 2-{epochs}: toolkit / bare "
          f"model.fit ({fastest}, the faster feed; numpy / tf.data = "
          f"{bare['numpy'] / bare['tf.data']:.3f}) = {ratio:.3f} "
          f"(overhead {100 * (ratio - 1):+.1f}%)")


def pipeline_vs_model(data: Path, model: str, size: int, batch: int) -> None:
    """images/s of pipeline variants (one shuffled epoch each) vs the model's training images/s.

    The toolkit's choices are the ones marked: parallel decode and prefetch when reading files,
    and a per-batch gather from memory when the decoded set fits in ``memory_cache_mb``.
    """
    folder = load_image_folder(data, val_split=0.2, seed=0)
    split, n = folder.train, len(folder.train)
    labels = tf.one_hot(tf.constant(split.labels), folder.num_classes)
    paths = tf.constant(split.paths)
    images = tf.constant(np.concatenate([np.asarray(b) for b, _ in make_dataset(
        split, image_size=size, batch_size=64, cache=False)]))

    def from_file(i):
        return decode_and_resize(tf.io.read_file(tf.gather(paths, i)), size), tf.gather(labels, i)

    def from_memory(i):
        return tf.gather(images, i), tf.gather(labels, i)

    def variant(fetch, *, parallel: bool, prefetch: bool, batched: bool):
        index = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=[0, 0])
        calls = tf.data.AUTOTUNE if parallel else None
        ds = tf.data.Dataset.from_tensor_slices(index)
        ds = (ds.batch(batch).map(fetch, num_parallel_calls=calls) if batched
              else ds.map(fetch, num_parallel_calls=calls).batch(batch))
        return ds.prefetch(tf.data.AUTOTUNE) if prefetch else ds

    def rate(ds) -> float:
        """Median images/s of three passes (one pass is a fraction of a second)."""
        rates = []
        for _ in range(3):
            start = time.perf_counter()
            count = sum(int(x.shape[0]) for x, _ in ds)
            rates.append(count / (time.perf_counter() - start))
        return statistics.median(rates)

    variants = {
        "files, sequential decode": (from_file, False, False, False),
        "files, parallel decode": (from_file, True, False, False),
        "files, parallel decode + prefetch (toolkit)": (from_file, True, True, False),
        "memory, per-image gather + prefetch": (from_memory, True, True, False),
        "memory, per-batch gather + prefetch (toolkit)": (from_memory, True, True, True),
    }
    rates = {}
    for name, (fetch, parallel, prefetch, batched) in variants.items():
        rates[name] = rate(variant(fetch, parallel=parallel, prefetch=prefetch, batched=batched))

    classifier = build_classifier(model, num_classes=folder.num_classes,
                                  mode=transfer.TransferMode.FINE_TUNE, image_size=size)
    info = backbone_info(model)
    set_trainable(classifier, "fine-tune", blocks=info.blocks,
                  unfreeze_from=info.default_unfreeze)
    classifier.compile(make_optimizer("adam", 1e-4), "categorical_crossentropy")
    xb, yb = images[:batch], labels[:batch]
    classifier.train_on_batch(xb, yb)  # trace
    steps = max(3, 96 // batch)
    start = time.perf_counter()
    for _ in range(steps):
        classifier.train_on_batch(xb, yb)
    model_rate = steps * batch / (time.perf_counter() - start)
    print(f"2. input pipeline vs {model} fine-tune training at {size}px ({n} images, batch "
          f"{batch}): pipeline images/s / model images/s")
    for name, value in rates.items():
        print(f"   {name:<48} {value / model_rate:6.1f}x")


def precision_and_xla(data: Path, size: int, batch: int, epochs: int, mode: str) -> None:
    """ResNet-18 with mixed_bfloat16 and with XLA vs float32. In fine-tune mode (one head
    epoch, then conv3-conv5 train with BatchNorm frozen) validation runs the network exactly as
    training does; after a few epochs from scratch in full-retrain mode, BatchNorm's moving
    averages still lag and make validation accuracy a poor judge of the arithmetic."""
    rows = {}
    phase = {"fine-tune": dict(epochs=1, fine_tune_epochs=epochs, unfreeze_from="conv3"),
             "full-retrain": dict(epochs=epochs)}[mode]
    for name, overrides in (("float32", {}), ("mixed_bfloat16", {"precision": "mixed_bfloat16"}),
                            ("XLA", {"jit": True})):
        times = EpochTimes()
        with tempfile.TemporaryDirectory() as tmp:
            result = transfer.train(data, output=Path(tmp) / "run", model="resnet18",
                                    mode=mode, weights=None, batch_size=batch, image_size=size,
                                    seed=1, early_stopping_patience=0, verbose=0,
                                    callbacks=[times], **phase, **overrides)
        # The epochs of the last phase, less its first (tracing, XLA compilation).
        last = times.times[-epochs:]
        rows[name] = (steady(last), result.history[-1]["loss"],
                      result.metrics["val"]["loss"], result.metrics["val"]["top1_accuracy"])
        keras.backend.clear_session()
    base_time = rows["float32"][0]
    print(f"3. resnet18 {mode} at {size}px, {epochs} epochs, seed 1: speed (median of the last "
          f"phase's epochs 2-{epochs}) vs float32; final training loss, validation loss and "
          f"accuracy")
    for name, (seconds, loss, val_loss, acc) in rows.items():
        print(f"   {name:>14}: {base_time / seconds:.2f}x   loss {loss:.3f}   val_loss "
              f"{val_loss:.3f}   val accuracy {acc:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--model", default="keras_mobilenetv2")
    parser.add_argument("--parts", default="1,2,3",
                        help="which measurements to run: 1 fine-tune overhead, 2 pipeline, "
                             "3 precision/XLA")
    parser.add_argument("--precision-size", type=int, default=64,
                        help="image size of the precision/XLA runs (ResNet-18, full-retrain)")
    parser.add_argument("--precision-images", type=int, default=600)
    parser.add_argument("--precision-epochs", type=int, default=6)
    parser.add_argument("--precision-mode", choices=["fine-tune", "full-retrain"],
                        default="fine-tune")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "zoo-bench")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    data = make_jpeg_folder(args.data / f"jpeg{args.images}", images=args.images, size=args.size)
    if "1" in parts:
        fine_tune_overhead(data, args.model, args.size, args.batch, args.epochs)
        keras.backend.clear_session()
    if "2" in parts:
        pipeline_vs_model(data, args.model, args.size, args.batch)
        keras.backend.clear_session()
    if "3" in parts:
        size, images = args.precision_size, args.precision_images
        small = make_jpeg_folder(args.data / f"jpeg{images}-{size}", images=images, size=size)
        precision_and_xla(small, size, args.batch, args.precision_epochs, args.precision_mode)

if __name__ == "__main__":
    main()
