"""``zoo evaluate`` and ``zoo export``: parse options, call ``transfer``, print.

Added to the ``zoo`` group in :mod:`cli.main`. Heavy imports happen inside the commands.
"""

from __future__ import annotations

import json

import click

from cli.options import BATCH_SIZE
from cli.weights import (
    ModelSource,
    custom_objects_option,
    import_custom_objects,
    resolve_weights,
    trust_model_option,
    weights_option,
)

FORMATS = ("savedmodel", "keras", "tflite", "onnx")
QUANTIZATIONS = ("none", "float16", "int8")


@click.command("evaluate")
@click.argument("source", metavar="RUN_DIR_OR_MODEL", type=ModelSource())
@click.argument("data_dir", required=False, type=click.Path(exists=True, file_okay=False))
@weights_option("imagenet")
@click.option("--split", type=click.Choice(["val", "test", "train"]), default="val",
              show_default=True,
              help="Saved split to evaluate without DATA_DIR (or sub-folder of a split DATA_DIR).")
@click.option("--output", "-o", "output_dir", type=click.Path(file_okay=False),
              help="Folder for metrics.json and the plots (default: RUN_DIR/evaluation/...).")
@click.option("--batch-size", type=BATCH_SIZE, default=32, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@trust_model_option()
@custom_objects_option()
def evaluate_command(source: str, data_dir: str | None, weights: str | None, split: str,
                     output_dir: str | None, batch_size: int, as_json: bool,
                     trust_model: bool, custom_objects: tuple[str, ...]) -> None:
    """Evaluate a run directory, .keras model or registry model on DATA_DIR, or on its saved
    split.

    DATA_DIR holds one sub-folder per class, named as the model's classes (segmentation:
    images/ and masks/; detection: a YOLO, COCO or VOC folder, its --split read). For a
    registry model (a pretrained ImageNet classifier built with --weights) the sub-folders are
    ImageNet class names or WordNet ids ('Egyptian cat/', 'n02124075/'); top-1/top-5 are over
    the 1000 classes, the rows over the classes present. Writes metrics.json and the task's
    figures: confusion_matrix.png and mistakes.png (segmentation: worst.png, the worst-segmented
    images; detection: pr_curves.png, worst.png, confusion_matrix.png).
    """
    from transfer.evaluate import evaluate
    from transfer.tasks import get_task

    weights = resolve_weights(source, weights)
    import_custom_objects(custom_objects)
    result = evaluate(source, data_dir, output_dir=output_dir, split=split,
                      batch_size=batch_size, weights=weights, trust_model=trust_model)
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    for line in get_task(result["task"]).evaluation_lines(result):
        click.echo(line)
    if result["unreadable"]:
        click.echo(f"{len(result['unreadable'])} file(s) could not be read and were left out",
                   err=True)
    click.echo("wrote " + ", ".join(str(p) for p in result["artifacts"].values()))


@click.command("export")
@click.argument("source", metavar="RUN_DIR_OR_MODEL", type=ModelSource())
@weights_option("imagenet")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="savedmodel",
              show_default=True)
@click.option("--quantize", type=click.Choice(QUANTIZATIONS), default="none", show_default=True,
              help="TFLite only: float16 weights, or full-integer int8.")
@click.option("--output", "-o", required=True, type=click.Path(),
              help="Folder (savedmodel) or file (.keras, .tflite, .onnx) to write.")
@click.option("--calibration-data", type=click.Path(exists=True),
              help="int8: folder of images to calibrate on (default: the run's training "
                   "images; required for a registry model or a lone .keras file).")
@click.option("--opset", type=int, default=None,
              help="ONNX only: the ONNX opset (default: the converter's; printed).")
@click.option("--force", is_flag=True, help="Replace an existing output.")
@trust_model_option()
@custom_objects_option()
def export_command(source: str, weights: str | None, fmt: str, quantize: str, output: str,
                   calibration_data: str | None, opset: int | None, force: bool,
                   trust_model: bool, custom_objects: tuple[str, ...]) -> None:
    """Export a run directory, .keras model or registry model as a SavedModel, a .keras file, a
    TFLite model or an ONNX model (see MODEL_CARD.md).

    A registry name exports the pretrained classifier built with --weights, with the serving
    signatures of a trained run (serving_default = serve_images, serve_bytes, class_names) and
    the ImageNet names as its classes for 1000-class models.
    """
    from transfer.export import export, onnx_opset

    weights = resolve_weights(source, weights)
    import_custom_objects(custom_objects)
    path = export(source, format=fmt, quantize=quantize, output=output, force=force,
                  calibration_data=calibration_data, weights=weights, opset=opset,
                  trust_model=trust_model)
    size = path.stat().st_size if path.is_file() else sum(
        p.stat().st_size for p in path.rglob("*") if p.is_file())
    variant = f" ({'float32' if quantize == 'none' else quantize})" if fmt == "tflite" else ""
    if fmt == "onnx":
        variant = f" (opset {onnx_opset(path)})"
    click.echo(f"exported {fmt}{variant} to {path} ({size:,} bytes)")
