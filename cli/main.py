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

from cli.options import BATCH_SIZE, COUNT, IMAGE_SIZE
from cli.weights import (
    ModelSource,
    custom_objects_option,
    import_custom_objects,
    resolve_weights,
    trust_model_option,
    weights_option,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class ZooGroup(click.Group):
    """Turns every error into one clean line and a non-zero exit, never a traceback.

    The library's own errors (``ZooError``) say what to do; a file system error names the path
    and the system's reason; anything else is a bug, reported in one line that asks for ``-v``,
    with which the traceback is shown.
    """

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            raise click.ClickException(_one_line(exc, ctx)) from None
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)


def _one_line(exc: Exception, ctx: click.Context) -> str:
    """The message of an error that reached the command line."""
    if "zoo.errors" in sys.modules:  # loaded with TensorFlow; a ZooError needs both
        from zoo.errors import ZooError

        if isinstance(exc, ZooError):
            return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename!r}: " if exc.filename else ""
        return f"{where}{exc.strerror.lower()}; check the path and its permissions"
    if ctx.find_root().params.get("verbose"):
        raise exc
    detail = " ".join(str(exc).split())[:300] or "no message"
    return (f"unexpected {type(exc).__name__}: {detail}. This is a bug in zoo; run the command "
            f"again with 'zoo -v ...' for the traceback, and report it")


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
    # The ONNX converter's progress lines are noise, and its errors for an operation it cannot
    # convert come again, in one line, as the ExportError that follows them.
    logging.getLogger("tf2onnx").setLevel(logging.DEBUG if verbose else logging.CRITICAL)


# Commands that import TensorFlow only when they need it, so that they can answer instantly.
_LAZY_TENSORFLOW = ("list",)


@click.group(cls=ZooGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log debugging detail.")
@click.version_option(package_name="cnn-zoo")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Classic CNNs and keras.applications models, and transfer learning on image folders."""
    _setup_logging(verbose)
    if not verbose and ctx.invoked_subcommand not in _LAZY_TENSORFLOW:
        _import_tensorflow_quietly()


def _human(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _stored_rows() -> dict | None:
    """The rows of ``zoo/stats.json`` (registry facts and counts at the defaults), or ``None``.

    The file is found without importing ``zoo``, whose import pulls in Keras and TensorFlow
    (seconds); reading it takes milliseconds.
    """
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("zoo")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "stats.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))["models"]
    except (OSError, ValueError, KeyError):
        return None


def _counted_rows(pattern: str | None, source: str | None, count: bool,
                  input_size: int | None, classes: int | None) -> list[dict]:
    """Rows from the registry itself; with ``count``, each model is built and counted."""
    if not click.get_current_context().find_root().params.get("verbose"):
        _import_tensorflow_quietly()
    from zoo import get_spec, list_models
    from zoo.errors import ZooError
    from zoo.info import model_info

    rows = []
    for name in list_models(pattern, source=source):
        shape = None
        if input_size is not None:
            shape = (input_size, input_size, get_spec(name).channels)
        try:
            rows.append(model_info(name, with_stats=count, input_shape=shape, classes=classes))
        except ZooError as exc:  # e.g. a size this model cannot take: the others still count
            rows.append({**model_info(name, with_stats=False), "error": str(exc)})
    return rows


@main.command("list")
@click.argument("pattern", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--source", type=click.Choice(["classic", "keras"]), help="Only this kind.")
@click.option("--stats", is_flag=True,
              help="Count parameters and MACs by building each model (minutes for all of them) "
                   "instead of reading the stored counts; implied by --input-size and --classes.")
@click.option("--input-size", type=IMAGE_SIZE,
              help="Count at this square input size (builds each model).")
@click.option("--classes", type=COUNT,
              help="Count with this many classes (builds each model).")
def list_command(pattern: str | None, as_json: bool, source: str | None, stats: bool,
                 input_size: int | None, classes: int | None) -> None:
    """List the registered models matching PATTERN (fnmatch, e.g. 'resnet*').

    Parameters and MACs at each model's default input size and classes are read from the table
    stored with the package, so listing is instant; --stats counts them by building the models,
    at another --input-size or with other --classes if given.
    """
    import fnmatch

    count = stats or input_size is not None or classes is not None
    stored = None if count else _stored_rows()
    if stored is None:
        rows = _counted_rows(pattern, source, count, input_size, classes)
    else:
        rows = [row for name, row in sorted(stored.items())
                if (not pattern or fnmatch.fnmatch(name, pattern.lower()))
                and (not source or row["source"] == source)]
    if not rows:
        raise click.ClickException(f"no model matches {pattern!r}; run 'zoo list' to see all")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    header = f"{'name':<22} {'params':>8} {'MACs':>8} {'input':>11} {'min':>4}  {'source':<7} paper"
    click.echo(header)
    for row in rows:
        params = _human(row["params_total"]) if "params_total" in row else "-"
        macs = _human(row["macs"]) if row.get("macs") else "-"
        h, w, c = row.get("stats_input_shape") or row["default_input_shape"]
        click.echo(f"{row['name']:<22} {params:>8} {macs:>8} {f'{h}x{w}x{c}':>11} "
                   f"{row['min_input_size']:>4}  {row['source']:<7} {row['paper']}")
    for row in rows:
        if "error" in row:
            error = row["error"]
            named = error if error.startswith(row["name"]) else f"{row['name']}: {error}"
            click.echo(f"not counted: {named}", err=True)


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


@main.command("predict")
@click.argument("source", metavar="RUN_DIR_OR_MODEL", type=ModelSource())
@click.argument("images", nargs=-1, required=True)
@weights_option("imagenet")
@click.option("--top-k", "-k", type=COUNT, default=5, show_default=True)
@click.option("--batch-size", type=BATCH_SIZE, default=32, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--csv", "as_csv", is_flag=True,
              help="CSV with a header: path, label_1, score_1, ..., error.")
@click.option("--output", "-o", "output_dir", type=click.Path(),
              help="Segmentation: folder for each image's mask (palette PNG of class ids) and "
                   "overlay; detection: for each image with its boxes drawn. For a video: the "
                   "video to write, with each frame's prediction drawn on it (and OUTPUT.jsonl "
                   "beside it).")
@click.option("--every", type=COUNT, default=1, show_default=True,
              help="Video: predict every Nth frame; the others are written unchanged.")
@click.option("--conf", type=click.FloatRange(0, 1), default=None,
              help="Detection: the lowest score a box is kept at (default: the run's, 0.25).")
@click.option("--iou", type=click.FloatRange(0, 1), default=None,
              help="Detection: boxes of a class overlapping more than this are suppressed "
                   "(default: the run's, 0.45).")
@trust_model_option()
@custom_objects_option()
def predict_command(source: str, images: tuple[str, ...], weights: str | None, top_k: int,
                    batch_size: int, as_json: bool, as_csv: bool,
                    output_dir: str | None, every: int, conf: float | None, iou: float | None,
                    trust_model: bool, custom_objects: tuple[str, ...]) -> None:
    """Top-k classes for IMAGES (files, folders or globs) from a model.

    RUN_DIR_OR_MODEL is a run directory, a .keras file, a SavedModel folder, or a registry name
    (see 'zoo list'): a pretrained classifier built with --weights, whose classes are the
    ImageNet names for 1000-class models ('zoo predict keras_mobilenet cat.jpg').

    A segmentation model writes a mask and an overlay per image into --output, and prints the
    classes found with the share of the image each covers (--json: per-image class areas).

    With more than 20 files and the output going to a file or pipe, a progress bar is drawn on
    stderr.

    A video (.mp4, .mov, .mkv, .webm, .avi) is predicted frame by frame into the video --output
    names: each frame with its top classes, mask overlay or boxes drawn, at the source's frame
    rate, and one JSON line per predicted frame in OUTPUT.jsonl ('zoo predict RUN clip.mp4 -o
    out.mp4'). With --every N, every Nth frame is predicted and the others are written
    unchanged, so the frame count and rate stay the source's.
    """
    import contextlib
    import csv

    from transfer.predict import Predictor, expand_inputs, nothing_predicted
    from transfer.video import is_video

    if as_json and as_csv:
        raise click.UsageError("--json and --csv are exclusive; choose one")
    weights = resolve_weights(source, weights)
    import_custom_objects(custom_objects)
    options = {name: value for name, value in (("conf", conf), ("iou", iou))
               if value is not None}
    if any(is_video(image) for image in images):
        _predict_video(source, images, output_dir, every=every, top_k=top_k,
                       batch_size=batch_size, as_json=as_json or as_csv, weights=weights,
                       options=options, trust_model=trust_model)
        return
    if every != 1:
        raise click.UsageError("--every applies to a video; drop it for images")
    paths = expand_inputs(images)
    predictor = Predictor(source, top_k=top_k, output_dir=output_dir, weights=weights,
                          options=options, trust_model=trust_model)
    writer = csv.writer(click.get_text_stream("stdout"), lineterminator="\n") if as_csv else None
    # A bar is worth drawing for many files, and only when the results do not scroll it away.
    show_progress = len(paths) > 20 and not sys.stdout.isatty()
    bar = (click.progressbar(length=len(paths), label=f"predicting {len(paths)} files",
                             file=sys.stderr) if show_progress else contextlib.nullcontext())

    def emit(p) -> None:
        if writer:
            writer.writerows(predictor.task.csv_rows(p, predictor.top_k))
        elif as_json:
            click.echo(json.dumps(p.to_dict(), ensure_ascii=False))
        elif not p.error:  # files skipped are named on stderr, after the results
            top = "  ".join(f"{label} {score:.3f}" for label, score in zip(p.labels, p.scores))
            click.echo(f"{p.path}\t{top}" + (f"\t-> {p.files[0]}" if p.files else ""))

    # Failures before the first success are held back: when nothing at all can be read, the
    # command fails with one line instead of printing rows of errors.
    failed, held, predicted = [], [], False
    with bar:
        progress = bar.update if show_progress else None
        for p in predictor.predict_files(paths, batch_size=batch_size, progress=progress):
            if p.error:
                failed.append(p)
                if not predicted:
                    held.append(p)
                    continue
            elif not predicted:
                predicted = True
                if writer:
                    writer.writerow(predictor.task.csv_header(predictor.top_k))
                for waiting in held:
                    emit(waiting)
            emit(p)
    if not predicted:
        raise nothing_predicted(failed)
    if failed:
        if not (writer or as_json):
            for p in failed:
                click.echo(f"skipped {p.path}: {p.error}", err=True)
        click.echo(f"{len(failed)} of {len(paths)} file(s) could not be read and were skipped",
                   err=True)


def _predict_video(source: str, images: tuple[str, ...], output: str | None, *, every: int,
                   top_k: int, batch_size: int, as_json: bool, weights: str | None,
                   options: dict, trust_model: bool) -> None:
    """``zoo predict RUN clip.mp4 --output out.mp4``: checked before the model loads."""
    import contextlib

    from transfer.predict import Predictor
    from transfer.video import check_video_output, predict_video, probe_video

    if len(images) != 1:
        raise click.UsageError("a video is predicted alone: pass one video, or images only")
    if as_json:
        raise click.UsageError("--json and --csv apply to images; a video's per-frame results "
                               "are written to OUTPUT.jsonl beside its --output video")
    if output is None:
        raise click.UsageError("a video needs --output, the video to write (e.g. out.mp4)")
    info = probe_video(images[0])
    check_video_output(images[0], output)
    predictor = Predictor(source, top_k=top_k, weights=weights, options=options,
                          trust_model=trust_model, per_image_files=False)
    label = f"predicting {images[0]}"
    bar = (click.progressbar(length=info.frames, label=label, file=sys.stderr)
           if info.frames else contextlib.nullcontext())
    with bar:
        result = predict_video(predictor, images[0], output, every=every,
                               batch_size=batch_size,
                               progress=bar.update if info.frames else None)
    click.echo(f"wrote {result.output} ({result.frames} frames at {float(result.rate):g} fps, "
               f"{result.predicted} predicted) and {result.results}")


# Commands of other areas live in their own modules and are added here, one line each.
from cli.train import lr_find_command, train_command  # noqa: E402

main.add_command(train_command)
main.add_command(lr_find_command)
from cli.evaluate import evaluate_command, export_command  # noqa: E402

main.add_command(evaluate_command)
main.add_command(export_command)
from cli.viz import (  # noqa: E402
    adversarial_command,
    embed_command,
    report_command,
    similar_command,
    viz,
)

main.add_command(viz)
main.add_command(adversarial_command)
main.add_command(embed_command)
main.add_command(similar_command)
main.add_command(report_command)

from cli.data import data_group  # noqa: E402

main.add_command(data_group)


if __name__ == "__main__":  # pragma: no cover
    main()
