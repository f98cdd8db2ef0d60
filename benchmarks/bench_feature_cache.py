"""Feature-extractor mode: cached features vs the Keras-guide loop.

The Keras transfer-learning guide trains the head with the frozen backbone inside the model, so
every epoch runs the backbone over every image again. The toolkit runs it once, caches the pooled
features and trains the same head on them. Same data, same head, same epochs; prints the wall-time
ratio of the training parts and both validation accuracies.

    python benchmarks/bench_feature_cache.py [--images 2000] [--epochs 10] [--size 224]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import keras  # noqa: E402
from _common import make_jpeg_folder

import transfer  # noqa: E402
import zoo  # noqa: E402
from transfer.data import ImageFolderData, make_dataset  # noqa: E402
from zoo.layers import Preprocess  # noqa: E402


def keras_guide(folder: ImageFolderData, *, model: str, size: int, epochs: int, batch: int,
                weights):
    """The guide's loop: frozen base inside the model, ``training=False``, fit on images."""
    spec = zoo.get_spec(model)
    base = zoo.create_model(model, include_top=False, pooling="avg", weights=weights,
                            input_shape=(size, size, 3))
    base.trainable = False
    inputs = keras.Input((size, size, 3))
    x = Preprocess(spec.preprocessing)(inputs)
    x = base(x, training=False)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(folder.num_classes, activation="softmax")(x)
    guide = keras.Model(inputs, outputs)
    guide.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    train = make_dataset(folder.train, image_size=size, batch_size=batch, shuffle=True)
    val = make_dataset(folder.val, image_size=size, batch_size=batch)
    start, cpu = time.perf_counter(), time.process_time()
    history = guide.fit(train, validation_data=val, epochs=epochs, verbose=0)
    return (time.perf_counter() - start, time.process_time() - cpu,
            history.history["val_accuracy"][-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--model", default="keras_mobilenetv2")
    parser.add_argument("--seeds", type=int, default=3,
                        help="toolkit runs (different seeds) to show the accuracy's spread")
    parser.add_argument("--weights", default=None, help="imagenet where it can be downloaded")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "zoo-bench")
    args = parser.parse_args()
    data = make_jpeg_folder(args.data / f"jpeg{args.images}", images=args.images, size=args.size)

    ours = []  # seconds: training, end-to-end, end-to-end CPU, training CPU; accuracy
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as tmp:
            start, cpu = time.perf_counter(), time.process_time()
            result = transfer.train(data, output=Path(tmp) / "run", model=args.model,
                                    mode="feature-extractor", weights=args.weights,
                                    epochs=args.epochs, batch_size=args.batch,
                                    image_size=args.size, schedule="constant",
                                    early_stopping_patience=0, weight_decay=0, seed=seed,
                                    verbose=0)
            total, total_cpu = time.perf_counter() - start, time.process_time() - cpu
            folder = ImageFolderData.load(Path(tmp) / "run" / "split.json")
        ours.append((result.metrics["seconds"]["training"], total, total_cpu,
                     result.metrics["seconds"]["training_cpu"],
                     result.metrics["val"]["top1_accuracy"]))
        keras.backend.clear_session()
    ours_train, ours_total, ours_cpu, ours_train_cpu = (
        statistics.median(run[i] for run in ours) for i in range(4))
    accuracies = [run[4] for run in ours]
    guide_train, guide_cpu, guide_acc = keras_guide(folder, model=args.model, size=args.size,
                                         epochs=args.epochs, batch=args.batch,
                                         weights=args.weights)
    print(f"feature-extractor, {args.model} at {args.size}px, {args.images} images, "
          f"{args.epochs} epochs; toolkit runs with seeds 0-{args.seeds - 1} (median time)")
    print(f"  training time ratio (Keras-guide loop / cached features): "
          f"{guide_train / ours_train:.2f}x wall time, {guide_cpu / ours_train_cpu:.2f}x CPU "
          f"time")
    print(f"  end-to-end ratio incl. our data check, evaluation and SavedModel export: "
          f"{guide_train / ours_total:.2f}x wall time, {guide_cpu / ours_cpu:.2f}x CPU time "
          f"(CPU time does not count what other processes took from this one)")
    print(f"  validation accuracy: cached {statistics.mean(accuracies):.4f} (seeds: "
          f"{', '.join(f'{a:.4f}' for a in accuracies)}), guide {guide_acc:.4f}")

if __name__ == "__main__":
    main()
