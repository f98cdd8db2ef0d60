"""``MODEL_CARD.md``: what a trained model is, how it was trained, how well it does, how to call it.

Everything comes from the run directory's own files through :class:`~transfer.rundir.RunDir`
(the config, the split, the metrics and the input contract), so the card can be rewritten at any
time without loading the model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from transfer.rundir import InputContract, RunDir, atomic_write
from transfer.serving import DEFAULT_TOP_K
from transfer.tasks import get_task


def write_model_card(run_dir: str | os.PathLike, *,
                     metrics: dict[str, Any] | None = None,
                     config: dict[str, Any] | None = None, split: dict[str, Any] | None = None,
                     contract: InputContract | None = None,
                     data_report: dict[str, Any] | None = None) -> Path:
    """Write ``MODEL_CARD.md`` into a run directory: data, training, metrics and export contracts.

    The end of a training run passes what it holds in memory; whatever is not given comes from
    the run directory's own files (``config.json``, ``split.json``, ``metrics.json``, the input
    contract in ``contract.json`` and ``data_report.json``), so the card can be rewritten at any
    time without loading the model.
    """
    run = RunDir.open(run_dir)
    config = run.read_json("config.json", {}) if config is None else config
    split = run.read_json("split.json", {}) if split is None else split
    metrics = run.metrics() if metrics is None else metrics
    contract = run.contract() if contract is None else contract
    if data_report is None:
        data_report = run.read_json("data_report.json", {})
    names, size, preprocessing = contract.class_names, contract.image_size, contract.preprocessing
    k = len(names)
    top_k = min(DEFAULT_TOP_K, k) if k else DEFAULT_TOP_K

    lines = [f"# Model card: {config.get('model', 'classifier')} on "
             f"{Path(split.get('root', '?')).name}", "",
             f"Run directory `{run.path}`, written by cnn-zoo.", "", "## Data", "",
             f"- data root: `{split.get('root', 'unknown')}`",
             f"- {k} classes, in label order (index: name); the outputs follow this order", ""]
    task = get_task(contract.task, **contract.task_options())
    lines += task.card_data(split, names, data_report)
    lines += ["", "## Training", "",
              f"- backbone: `{config.get('model', 'unknown')}`, weights: "
              f"`{config.get('weights')}`",
              f"- transfer mode: `{config.get('mode', 'unknown')}`; epochs "
              f"{config.get('epochs')}"
              + (f" + {config.get('fine_tune_epochs')} fine-tune epochs"
                 if config.get("mode") == "fine-tune" else "")
              + f", optimizer `{config.get('optimizer')}`, learning rate "
              f"{config.get('learning_rate')}, batch size {config.get('batch_size')}, "
              f"augmentation {_augmentation(config.get('augment'))}, seed "
              f"{config.get('seed')}",
              f"- input size: {size} x {size} RGB"
              + (f" (the backbone sees {contract.channels} channel)" if contract.channels == 1
                 else ""),
              f"- preprocessing mode: `{preprocessing}`, applied inside the model: every export "
              f"takes raw 0-255 RGB pixels"]

    val = metrics.get("val")
    lines += ["", "## Validation metrics", ""]
    if val:
        lines += task.card_metrics(val)
    else:
        lines.append("No metrics.json in the run directory.")

    s = f"{size}" if size else "size"
    outputs = task.card_outputs(k, top_k, s)
    lines += ["", "## Exports and their input contracts", "",
              "Class names are in label order above and in `class_names.json`.", "",
              "| export | signature | inputs | outputs |", "|---|---|---|---|",
              f"| SavedModel (`saved_model/`, `zoo export --format savedmodel`) | "
              f"`serving_default` = `serve_images` | `images`: uint8 `[batch, height, width, 3]`"
              f" RGB, any size (resized inside to {s} x {s}) | {outputs['savedmodel']} |",
              "| | `serve_bytes` | `image_bytes`: string `[batch]` of encoded JPEG / PNG / GIF / "
              "BMP / WebP files | as `serve_images` |",
              f"| | `class_names` | none | string `[{k}]` |",
              f"| Keras (`model.keras`, `zoo export --format keras`) | `model(x)` | float32 "
              f"`[batch, {s}, {s}, 3]` raw 0-255 RGB, already resized | {outputs['keras']} |",
              f"| TFLite / LiteRT (`zoo export --format tflite`, float32, float16 or int8) | "
              f"`serving_default` | `images`: uint8 `[1, {s}, {s}, 3]` raw RGB, resized "
              f"(bilinear) to {s} x {s} by the caller | {outputs['tflite']} |",
              f"| ONNX (`zoo export --format onnx`) | the model's one | `images`: uint8 "
              f"`[batch, {s}, {s}, 3]` raw RGB, resized as for TFLite | {outputs['onnx']}; "
              f"class names in the metadata (`class_names`) |",
              "", "Loading:", "", "```python",
              "import tensorflow as tf",
              f'model = tf.saved_model.load("{run.saved_model_dir}")',
              'out = model.signatures["serving_default"](images=tf.constant(uint8_batch))',
              "", "from ai_edge_litert.interpreter import Interpreter",
              'interpreter = Interpreter(model_path="model.tflite")',
              "", "import onnxruntime",
              'session = onnxruntime.InferenceSession("model.onnx")',
              'outputs = session.run(None, {"images": uint8_batch})',
              "", "import keras",
              'model = keras.saving.load_model("model.keras", safe_mode=True)', "```",
              "", "None of them needs this package: the `.keras` file is built from Keras's own "
              "layers (preprocessing included), the SavedModel, TFLite and ONNX files need only "
              "TensorFlow, LiteRT or ONNX Runtime.", ""]
    return atomic_write(run / "MODEL_CARD.md", "\n".join(lines))


def _augmentation(value) -> str:
    if value is True:  # config.json written before augmentation became a list
        return "on"
    return f"`{value}`" if value else "off"
