"""The ``zoo`` command: a thin Click layer over the ``zoo`` and ``transfer`` Python APIs.

Commands parse options, build a config, call the API and print. Heavy imports (TensorFlow,
Keras) happen inside the commands so ``zoo --help`` is instant. Every error the library raises on
purpose (``ZooError``) becomes one line on stderr and exit status 1.
"""

from __future__ import annotations

import json
import logging
import os
import sys

import click

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MODES = ("feature-extractor", "fine-tune", "full-retrain")


class ZooGroup(click.Group):
    """Turns the library's own errors into one clean line and a non-zero exit."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            from zoo.errors import ZooError  # imported late: it pulls in TensorFlow

            if isinstance(exc, ZooError):
                raise click.ClickException(str(exc)) from None
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with file descriptor 2 captured.

    TensorFlow's C++ runtime prints start-up notices (oneDNN, CUDA probing) before its logging
    is configured, so no environment variable silences them. What was captured is replayed if the
    import fails, so real errors stay visible.
    """
    if "tensorflow" in sys.modules:
        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # probes CUDA, which logs too
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(message)s", stream=sys.stderr, force=True)
    for noisy in ("tensorflow", "absl", "h5py", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@click.group(cls=ZooGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log debugging detail.")
@click.version_option(package_name="cnn-zoo")
def main(verbose: bool) -> None:
    """Classic CNNs and keras.applications models, and transfer learning on image folders."""
    _setup_logging(verbose)
    if not verbose:
        _import_tensorflow_quietly()


def _human(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


@main.command("list")
@click.argument("pattern", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--source", type=click.Choice(["classic", "keras"]), help="Only this kind.")
@click.option("--stats/--no-stats", default=None,
              help="Build each model to count parameters and MACs (default: on with a pattern).")
def list_command(pattern: str | None, as_json: bool, source: str | None,
                 stats: bool | None) -> None:
    """List the registered models matching PATTERN (fnmatch, e.g. 'resnet*')."""
    from zoo import get_spec, list_models
    from zoo.info import model_info

    names = list_models(pattern, source=source)
    if not names:
        raise click.ClickException(f"no model matches {pattern!r}; run 'zoo list' to see all")
    with_stats = stats if stats is not None else bool(pattern) or len(names) <= 5
    rows = [model_info(name, with_stats=with_stats) for name in names]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    header = f"{'name':<22} {'params':>8} {'MACs':>8} {'input':>11} {'min':>4}  {'source':<7} paper"
    click.echo(header)
    for row in rows:
        params = _human(row["params_total"]) if "params_total" in row else "-"
        macs = _human(row["macs"]) if row.get("macs") else "-"
        h, w, c = row["default_input_shape"]
        click.echo(f"{row['name']:<22} {params:>8} {macs:>8} {f'{h}x{w}x{c}':>11} "
                   f"{row['min_input_size']:>4}  {row['source']:<7} {get_spec(row['name']).paper}")
    if not with_stats:
        click.echo("(parameters and MACs: give a pattern, --stats, or 'zoo info NAME')", err=True)


@main.command("info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info_command(name: str, as_json: bool) -> None:
    """Everything the registry knows about model NAME, with counted parameters and MACs."""
    from zoo.info import model_info

    row = model_info(name, with_stats=True)
    if as_json:
        click.echo(json.dumps(row, indent=2))
        return
    width = max(len(k) for k in row)
    for key, value in row.items():
        if isinstance(value, int) and key.startswith(("params", "macs")):
            value = f"{value:,}"
        elif isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value) or "-"
        click.echo(f"{key:<{width}}  {value}")


def _weights_option(value: str | None) -> str | None:
    return None if value in (None, "none", "None") else value


@main.command("train")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--model", "-m", "model_name", default="keras_mobilenetv2", show_default=True,
              help="Registry name (see 'zoo list') or a .keras model trained earlier.")
@click.option("--mode", type=click.Choice(MODES), default="fine-tune", show_default=True)
@click.option("--weights", default="imagenet", show_default=True,
              help="'imagenet', 'none' (random init) or a weights file.")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False),
              help="Run directory to create.")
@click.option("--epochs", type=click.IntRange(min=0), default=10, show_default=True,
              help="Epochs of the head (or of everything in full-retrain).")
@click.option("--fine-tune-epochs", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--image-size", type=click.IntRange(min=8), help="Default: the model's own.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--optimizer", type=click.Choice(["adam", "adamw", "sgd"]), default="adam",
              show_default=True)
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), default=1e-3,
              show_default=True)
@click.option("--unfreeze-from", help="Fine-tune from this block on (see 'zoo info').")
@click.option("--val-split", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.2, show_default=True)
@click.option("--augment/--no-augment", default=False, show_default=True,
              help="Random flips, crops and colour changes while training.")
@click.option("--class-weights", type=click.Choice(["auto", "on", "off"]), default="auto",
              show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing run directory.")
def train_command(data_dir: str, model_name: str, mode: str, weights: str, output: str,
                  epochs: int, fine_tune_epochs: int, image_size: int | None, batch_size: int,
                  optimizer: str, learning_rate: float, unfreeze_from: str | None,
                  val_split: float, augment: bool, class_weights: str, seed: int,
                  overwrite: bool) -> None:
    """Train a classifier on DATA_DIR (one sub-folder per class) and export it."""
    import transfer

    config = transfer.TrainConfig(
        model=model_name, mode=mode, weights=_weights_option(weights), epochs=epochs,
        fine_tune_epochs=fine_tune_epochs, image_size=image_size, batch_size=batch_size,
        optimizer=optimizer, learning_rate=learning_rate, unfreeze_from=unfreeze_from,
        val_split=val_split, augment=augment, class_weights=class_weights, seed=seed)
    result = transfer.train(data_dir, output=output, config=config, overwrite=overwrite,
                            verbose=1 if sys.stdout.isatty() else 2)
    val = result.metrics["val"]
    click.echo(f"validation accuracy {val['top1_accuracy']:.4f} "
               f"(top-{val['top_k']} {val['top5_accuracy']:.4f}) on {val['samples']} images; "
               f"run directory {result.run_dir}")


@main.command("predict")
@click.argument("source", type=click.Path(exists=True))
@click.argument("images", nargs=-1, required=True)
@click.option("--top-k", "-k", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def predict_command(source: str, images: tuple[str, ...], top_k: int, batch_size: int,
                    as_json: bool) -> None:
    """Top-k classes for IMAGES (files, folders or globs) from a run directory or model."""
    from transfer.predict import Predictor, expand_inputs

    paths = expand_inputs(images)
    predictor = Predictor(source, top_k=top_k)
    failed = 0
    for p in predictor.predict_files(paths, batch_size=batch_size):
        failed += bool(p.error)
        if as_json:
            click.echo(json.dumps(p.to_dict(), ensure_ascii=False))
        elif p.error:
            click.echo(f"{p.path}\tERROR: {p.error}")
        else:
            top = "  ".join(f"{label} {score:.3f}" for label, score in zip(p.labels, p.scores))
            click.echo(f"{p.path}\t{top}")
    if failed:
        click.echo(f"{failed} of {len(paths)} file(s) could not be read", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
