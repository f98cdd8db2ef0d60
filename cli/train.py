"""``zoo train``: parse options into a TrainConfig and call ``transfer.train`` / ``resume``."""

from __future__ import annotations

import sys

import click

from cli.options import COUNT, ConfigCommand, config_options
from cli.weights import custom_objects_option, import_custom_objects


@click.command("train", cls=ConfigCommand)
@click.argument("data_dir", required=False)
@config_options("model", "trust_model", "mode", "weights", "task", "backbone")
@click.option("--output", "-o", type=click.Path(file_okay=False),
              help="Run directory to create.")
@click.option("--resume", "resume_dir", type=click.Path(exists=True, file_okay=False),
              help="Continue an interrupted run directory from its last finished epoch.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run directory.")
@config_options("epochs", "fine_tune_epochs", "image_size", "batch_size", "optimizer",
                "learning_rate", "fine_tune_lr_factor", "fine_tune_batchnorm", "schedule",
                "warmup_epochs", "lr_patience", "early_stopping_patience", "weight_decay",
                "dropout", "label_smoothing", "unfreeze_from", "unfreeze_top", "discriminative_lr",
                "val_split", "test_split", "min_per_class", "drop_small_classes")
@click.option("--cache-dir", type=click.Path(file_okay=False),
              help="Cache of image checks and normalised images (default ~/.cache/cnn-zoo).")
@click.option("--tfds-data-dir", type=click.Path(file_okay=False),
              help="Local TensorFlow Datasets store, for DATA_DIR = tfds:NAME.")
@config_options("augment", "mixup", "cutmix", "class_weights", "loss", "ignore_index",
                "palette", "bn_momentum", "cache_features", "cache_views", "cache_dtype",
                "mirror_check", "memory_cache_mb", "precision", "jit", "strategy", "seed",
                "deterministic")
@custom_objects_option()
def train_command(data_dir: str | None, output: str | None, resume_dir: str | None,
                  overwrite: bool, cache_dir: str | None, tfds_data_dir: str | None,
                  custom_objects: tuple[str, ...], **options) -> None:
    """Train a classifier, a segmenter or a detector on DATA_DIR and export it.

    DATA_DIR is a folder with one sub-folder per class (or train/ val/ [test/] folders laid out
    so), a CSV file of path,label rows, or tfds:NAME. For segmentation it holds images/ and
    masks/ (or train/ val/ [test/] laid out so, Pascal VOC, or Oxford-IIIT Pet); for detection
    it is a YOLO (data.yaml, images/ + labels/), COCO JSON or Pascal VOC XML folder. The task
    is read off the layout and the model (--task states it).

    \b
    zoo train photos/ --model keras_mobilenetv2 --mode fine-tune --output runs/photos
    zoo train scenes/ --model unet --backbone keras_mobilenetv2 --output runs/scenes
    zoo train boxes/ --backbone keras_mobilenetv2 --output runs/boxes
    zoo train --resume runs/photos      # after a crash, a kill or Ctrl-C
    """
    import transfer

    ctx = click.get_current_context()
    explicit = [name for name in options
                if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT]
    verbose = 1 if sys.stdout.isatty() else 2
    import_custom_objects(custom_objects)  # also with --resume: the layers are not saved
    try:
        if resume_dir:
            if data_dir or output:
                raise click.UsageError("--resume takes the run directory alone; the data and "
                                       "settings come from its config.json and split.json")
            given = [p for p in ctx.command.params if p.name in {*explicit, "cache_dir",
                                                                 "tfds_data_dir", "overwrite"}
                     and ctx.get_parameter_source(p.name)
                     is not click.core.ParameterSource.DEFAULT]
            if given:
                raise click.UsageError(
                    f"{given[0].opts[0]} cannot change a resumed run: --resume continues with "
                    f"the settings of its config.json; drop {given[0].opts[0]}, or train a new "
                    f"run with --output")
            result = transfer.resume(resume_dir, verbose=verbose)
        else:
            if not data_dir:
                raise click.UsageError("missing DATA_DIR (or --resume RUN_DIR)")
            if not output:
                raise click.UsageError("missing option '--output' (the run directory to create)")
            config = transfer.TrainConfig(**options)
            result = transfer.train(data_dir, output=output, config=config, overwrite=overwrite,
                                    verbose=verbose, cache_dir=cache_dir,
                                    tfds_data_dir=tfds_data_dir, explicit=explicit)
    except transfer.TrainingInterrupted as exc:
        click.echo(f"Interrupted: {exc}", err=True)
        sys.exit(130)
    click.echo(f"{result.task.trained_line(result.metrics['val'])}; run directory "
               f"{result.run_dir}")


@click.command("lr-find", cls=ConfigCommand)
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
# The sweep runs at one fixed batch size, so 'auto' is not offered.
@config_options("model", "trust_model", "mode", "weights", "image_size", "batch_size",
                "optimizer", numbers_only=("batch_size",), help={"batch_size": "Images per step."})
@click.option("--steps", type=click.IntRange(10, COUNT.max), default=200, show_default=True)
@click.option("--start", type=click.FloatRange(min=0, min_open=True), default=1e-7,
              show_default=True)
@click.option("--end", type=click.FloatRange(min=0, min_open=True), default=10.0,
              show_default=True)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default="lr_find.png",
              show_default=True)
@click.option("--force", is_flag=True, help="Replace an existing --plot that zoo wrote.")
@config_options("seed")
@custom_objects_option()
def lr_find_command(data_dir: str, steps: int, start: float, end: float, plot_path: str,
                    force: bool, custom_objects: tuple[str, ...], **options) -> None:
    """Sweep the learning rate on DATA_DIR and suggest one (plot written as PNG)."""
    import transfer
    from transfer.lr_find import lr_find

    import_custom_objects(custom_objects)
    config = transfer.TrainConfig(**options)
    result = lr_find(data_dir, config=config, start=start, end=end, steps=steps,
                     plot_path=plot_path, force=force)
    click.echo(f"suggested learning rate: {result.suggestion:.2e} "
               f"({len(result.learning_rates)} steps; plot {result.plot})")
