"""``zoo train``: parse options into a TrainConfig and call ``transfer.train`` / ``resume``."""

from __future__ import annotations

import sys

import click

MODES = ("feature-extractor", "fine-tune", "full-retrain")


class _BatchSize(click.ParamType):
    name = "INTEGER|auto"

    def convert(self, value, param, ctx):
        if value == "auto" or isinstance(value, int):
            return value
        try:
            number = int(value)
        except ValueError:
            number = 0
        if number < 1:
            self.fail(f"{value!r} is neither a positive integer nor 'auto'", param, ctx)
        return number


BATCH_SIZE = _BatchSize()


def _weights(value: str | None) -> str | None:
    return None if value in (None, "none", "None") else value


@click.command("train")
@click.argument("data_dir", required=False)
@click.option("--model", "-m", "model_name", default="keras_mobilenetv2", show_default=True,
              help="Registry name (see 'zoo list') or a .keras model trained earlier.")
@click.option("--mode", type=click.Choice(MODES), default="fine-tune", show_default=True)
@click.option("--weights", default="imagenet", show_default=True,
              help="'imagenet', 'none' (random init) or a weights file.")
@click.option("--output", "-o", type=click.Path(file_okay=False),
              help="Run directory to create.")
@click.option("--resume", "resume_dir", type=click.Path(exists=True, file_okay=False),
              help="Continue an interrupted run directory from its last finished epoch.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run directory.")
@click.option("--epochs", type=click.IntRange(min=0), default=10, show_default=True,
              help="Epochs of the head (or of everything in full-retrain).")
@click.option("--fine-tune-epochs", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--image-size", type=click.IntRange(min=8), help="Default: the model's own.")
@click.option("--batch-size", type=BATCH_SIZE, default="32", show_default=True,
              help="Per replica, or 'auto': the largest that fits in memory.")
@click.option("--optimizer", type=click.Choice(["adam", "adamw", "sgd"]), default="adam",
              show_default=True)
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), default=1e-3,
              show_default=True)
@click.option("--fine-tune-lr-factor", type=click.FloatRange(0, 1, min_open=True), default=0.1,
              show_default=True, help="Fine-tuning runs at lr times this.")
@click.option("--schedule", type=click.Choice(["plateau", "cosine", "onecycle", "constant"]),
              default="plateau", show_default=True,
              help="plateau: halve the LR when val loss stops improving.")
@click.option("--warmup-epochs", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--lr-patience", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--patience", "early_stopping_patience", type=click.IntRange(min=0), default=5,
              show_default=True, help="Early-stopping patience; 0 disables it.")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=1e-4, show_default=True)
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.2,
              show_default=True)
@click.option("--label-smoothing", type=click.FloatRange(0, 1, max_open=True), default=0.0,
              show_default=True)
@click.option("--unfreeze-from", help="Fine-tune from this block on (see 'zoo info').")
@click.option("--unfreeze-top", type=click.IntRange(min=1),
              help="Fine-tune the top N blocks (instead of --unfreeze-from).")
@click.option("--discriminative-lr", type=click.FloatRange(min=1), default=1.0,
              show_default=True,
              help="Layer-wise LRs when fine-tuning: the earliest unfrozen block trains this many "
                   "times slower than the head, geometrically spaced; 1 disables.")
@click.option("--val-split", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.2, show_default=True)
@click.option("--test-split", type=click.FloatRange(0, 1, max_open=True), default=0.0,
              show_default=True, help="Fraction held out for a final test evaluation.")
@click.option("--min-per-class", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--drop-small-classes", is_flag=True,
              help="Drop classes below --min-per-class instead of stopping.")
@click.option("--cache-dir", type=click.Path(file_okay=False),
              help="Cache of image checks and normalised images (default ~/.cache/cnn-zoo).")
@click.option("--tfds-data-dir", type=click.Path(file_okay=False),
              help="Local TensorFlow Datasets store, for DATA_DIR = tfds:NAME.")
@click.option("--augment/--no-augment", default=False, show_default=True,
              help="Random flips, crops, rotations and colour changes while training.")
@click.option("--mixup", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Mixup alpha; 0 disables it.")
@click.option("--cutmix", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="CutMix alpha; 0 disables it.")
@click.option("--class-weights", type=click.Choice(["auto", "on", "off"]), default="auto",
              show_default=True)
@click.option("--cache-features/--no-cache-features", default=True, show_default=True,
              help="Feature-extractor: run the frozen backbone once and train on its features.")
@click.option("--memory-cache-mb", type=click.IntRange(min=0), default=2048, show_default=True,
              help="Keep decoded images and backbone features in memory up to this size; "
                   "beyond it images are decoded each epoch and features cached on disk.")
@click.option("--precision", type=click.Choice(["float32", "mixed_float16", "mixed_bfloat16"]),
              default="float32", show_default=True)
@click.option("--jit/--no-jit", default=False, show_default=True, help="Compile with XLA.")
@click.option("--strategy", type=click.Choice(["default", "mirrored", "multiworker", "tpu"]),
              default="default", show_default=True,
              help="tf.distribute strategy; multiworker reads TF_CONFIG.")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--deterministic", is_flag=True, help="Deterministic TensorFlow ops (slower).")
def train_command(data_dir: str | None, output: str | None, resume_dir: str | None,
                  overwrite: bool, model_name: str, weights: str, cache_dir: str | None,
                  tfds_data_dir: str | None, **options) -> None:
    """Train a classifier on DATA_DIR and export it.

    DATA_DIR is a folder with one sub-folder per class (or train/ val/ [test/] folders laid out
    so), a CSV file of path,label rows, or tfds:NAME.

    \b
    zoo train photos/ --model keras_mobilenetv2 --mode fine-tune --output runs/photos
    zoo train --resume runs/photos      # after a crash, a kill or Ctrl-C
    """
    import transfer

    verbose = 1 if sys.stdout.isatty() else 2
    try:
        if resume_dir:
            if data_dir or output:
                raise click.UsageError("--resume takes the run directory alone; the data and "
                                       "settings come from its config.json and split.json")
            result = transfer.resume(resume_dir, verbose=verbose)
        else:
            if not data_dir:
                raise click.UsageError("missing DATA_DIR (or --resume RUN_DIR)")
            if not output:
                raise click.UsageError("missing option '--output' (the run directory to create)")
            config = transfer.TrainConfig(model=model_name, weights=_weights(weights), **options)
            result = transfer.train(data_dir, output=output, config=config, overwrite=overwrite,
                                    verbose=verbose, cache_dir=cache_dir,
                                    tfds_data_dir=tfds_data_dir)
    except transfer.TrainingInterrupted as exc:
        click.echo(f"Interrupted: {exc}", err=True)
        sys.exit(130)
    val = result.metrics["val"]
    click.echo(f"validation accuracy {val['top1_accuracy']:.4f} "
               f"(top-{val['top_k']} {val['top5_accuracy']:.4f}) on {val['samples']} images; "
               f"run directory {result.run_dir}")


@click.command("lr-find")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--model", "-m", "model_name", default="keras_mobilenetv2", show_default=True)
@click.option("--mode", type=click.Choice(MODES), default="fine-tune", show_default=True)
@click.option("--weights", default="imagenet", show_default=True)
@click.option("--image-size", type=click.IntRange(min=8))
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--optimizer", type=click.Choice(["adam", "adamw", "sgd"]), default="adam",
              show_default=True)
@click.option("--steps", type=click.IntRange(min=10), default=200, show_default=True)
@click.option("--start", type=click.FloatRange(min=0, min_open=True), default=1e-7,
              show_default=True)
@click.option("--end", type=click.FloatRange(min=0, min_open=True), default=10.0,
              show_default=True)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default="lr_find.png",
              show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
def lr_find_command(data_dir: str, model_name: str, weights: str, steps: int, start: float,
                    end: float, plot_path: str, **options) -> None:
    """Sweep the learning rate on DATA_DIR and suggest one (plot written as PNG)."""
    import transfer
    from transfer.lr_find import lr_find

    config = transfer.TrainConfig(model=model_name, weights=_weights(weights), **options)
    result = lr_find(data_dir, config=config, start=start, end=end, steps=steps,
                     plot_path=plot_path)
    click.echo(f"suggested learning rate: {result.suggestion:.2e} "
               f"({len(result.learning_rates)} steps; plot {result.plot})")
