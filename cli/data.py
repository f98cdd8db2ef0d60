"""``zoo data``: look at a data source before training on it."""

from __future__ import annotations

import json

import click

from cli.options import ConfigCommand, config_options


@click.group("data")
def data_group() -> None:
    """Check image folders, CSV files, TFDS datasets, mask and box folders."""


@data_group.command("check", cls=ConfigCommand)
@click.argument("source")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option("--cache-dir", type=click.Path(file_okay=False),
              help="Where check results are cached (default ~/.cache/cnn-zoo).")
@config_options("val_split", "test_split", "min_per_class", "drop_small_classes", "palette",
                "ignore_index")
@click.option("--tfds-data-dir", type=click.Path(file_okay=False),
              help="Local TFDS store for tfds:NAME (default $TFDS_DATA_DIR or "
                   "~/tensorflow_datasets).")
@click.option("--workers", type=click.IntRange(1, 1024), help="Checking threads.")
def check_command(source: str, as_json: bool, cache_dir: str | None, val_split: float,
                  test_split: float, min_per_class: int, drop_small_classes: bool,
                  palette: str | None, ignore_index: int, tfds_data_dir: str | None,
                  workers: int | None) -> None:
    """Check every file of SOURCE and report what training would use; change nothing.

    SOURCE is an image folder (one sub-folder per class, or train/ val/ test/ folders), a CSV
    file of 'path,label' rows, or tfds:NAME; or, for segmentation, a folder of image/mask pairs
    (images/ + masks/, Pascal VOC or Oxford-IIIT Pet); or, for detection, a YOLO, COCO or
    Pascal VOC folder of images and boxes. Exit status 0 when it is usable, 1 when not.
    """
    from transfer import TrainConfig
    from transfer.errors import DataError
    from transfer.tasks import DEFAULT_TASK, get_task, recognise

    config = TrainConfig(val_split=val_split, test_split=test_split, min_per_class=min_per_class,
                         drop_small_classes=drop_small_classes, palette=palette,
                         ignore_index=ignore_index)
    recognised = recognise(source)
    task = get_task(recognised[0] if recognised else DEFAULT_TASK, ignore_index=ignore_index)
    try:
        folder = task.load_data(source, config, cache_dir=cache_dir, tfds_data_dir=tfds_data_dir,
                                workers=workers, dry_run=True)
    except DataError as exc:
        if as_json:
            report = getattr(exc, "report", None)
            click.echo(json.dumps({"ok": False, "error": str(exc),
                                   **(report.to_dict() if report else {})},
                                  indent=1, ensure_ascii=False))
        raise  # the zoo group prints it as one line and exits with status 1
    report = folder.report
    if as_json:
        click.echo(json.dumps({"ok": True, **report.to_dict()}, indent=1,
                              ensure_ascii=False))
        return
    click.echo(report.summary())
    splits = ", ".join(f"{name} {len(split)}" for name, split in
                       (("train", folder.train), ("val", folder.val), ("test", folder.test))
                       if split is not None)
    click.echo(f"usable: {splits}")
