"""``zoo viz ...``, ``zoo adversarial``, ``zoo embed``, ``zoo similar`` and ``zoo report``.

MODEL is a run directory, a ``.keras`` classifier trained by ``zoo train``, or a registry name
(built with ``--weights``, random by default so everything works offline). Figures go to
``--output``: by default the run directory when MODEL is one, else ``./viz``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from cli.options import BATCH_SIZE, COUNT, IMAGE_SIZE, SEED
from cli.weights import parse_weights, weights_option

EPSILONS = "0,1,2,4,8,16"


def model_options(func):
    """``--weights``, ``--image-size`` and ``--output``, shared by every command taking MODEL."""
    func = click.option(
        "--output", "-o", type=click.Path(file_okay=False),
        help="Folder for the figures [default: the run directory, else ./viz].")(func)
    func = click.option("--image-size", type=IMAGE_SIZE,
                        help="Registry models only: input size (default: the model's own).")(func)
    return weights_option("none")(func)


def _load(model: str, weights: str | None, image_size: int | None):
    from transfer.viz.common import load_for_viz

    return load_for_viz(model, parse_weights(weights), image_size=image_size)


def _output_dir(output: str | None, model: str) -> Path:
    from transfer.viz.common import run_dir_of

    if output:
        return Path(output)
    return run_dir_of(model) or Path("viz")


def _echo_paths(paths) -> None:
    for path in paths:
        click.echo(str(path))


@click.group("viz")
def viz() -> None:
    """Look inside a model: filters, feature maps, Grad-CAM, activation maximisation."""


@viz.command("filters")
@click.argument("model")
@click.option("--layer", help="Convolution layer (name or path); default: the first one.")
@model_options
def filters_command(model: str, layer: str | None, weights: str, image_size: int | None,
                    output: str | None) -> None:
    """Grid of the kernels of MODEL's first (or the named) convolution layer."""
    from transfer.viz.filters import plot_filters

    loaded = _load(model, weights, image_size)
    _echo_paths([plot_filters(loaded.model, _output_dir(output, model), layer)])


@viz.command("activations")
@click.argument("model")
@click.argument("image", type=click.Path(exists=True, dir_okay=False))
@click.option("--layer", help="Layer with a 4-D output; default: the first convolution.")
@click.option("--max-maps", type=COUNT, default=64, show_default=True)
@model_options
def activations_command(model: str, image: str, layer: str | None, max_maps: int, weights: str,
                        image_size: int | None, output: str | None) -> None:
    """Feature maps of a layer of MODEL for IMAGE, as a grid."""
    from transfer.viz.activations import plot_activations
    from transfer.viz.common import load_images

    loaded = _load(model, weights, image_size)
    x = load_images([image], loaded.image_size)[0]
    _echo_paths([plot_activations(loaded.model, x, _output_dir(output, model), layer=layer,
                                  name=Path(image).stem, max_maps=max_maps)])


@viz.command("gradcam")
@click.argument("model")
@click.argument("images", nargs=-1, required=True)
@click.option("--class", "label", help="Class to explain (name or index); default: predicted.")
@click.option("--layer", help="Spatial layer; default: the last one larger than 1x1.")
@model_options
def gradcam_command(model: str, images: tuple[str, ...], label: str | None, layer: str | None,
                    weights: str, image_size: int | None, output: str | None) -> None:
    """Grad-CAM heatmaps over IMAGES (files, folders or globs)."""
    from transfer.predict import expand_inputs
    from transfer.viz.common import load_images, num_classes, resolve_class
    from transfer.viz.gradcam import plot_gradcam

    loaded = _load(model, weights, image_size)
    paths = expand_inputs(images)
    class_index = resolve_class(label, loaded.class_names, num_classes(loaded.model))
    x = load_images(paths, loaded.image_size)
    names = _unique_stems(paths)
    _echo_paths(plot_gradcam(loaded.model, x, names, _output_dir(output, model),
                             class_names=loaded.class_names, class_index=class_index,
                             layer=layer))


def _unique_stems(paths: list[str]) -> list[str]:
    stems = [Path(p).stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [f"{Path(p).parent.name}_{Path(p).stem}" if stems.count(Path(p).stem) > 1
            else Path(p).stem for p in paths]


@viz.command("maximize")
@click.argument("model")
@click.option("--layer", help="Layer to excite (name or path); not needed with --class.")
@click.option("--channel", type=click.IntRange(0, COUNT.max), help="Channel (unit) of the layer.")
@click.option("--class", "label", help="Maximise this class's logit instead (name or index).")
@click.option("--image", type=click.Path(exists=True, dir_okay=False),
              help="DeepDream: amplify the layer in this image instead of starting from noise.")
@click.option("--steps", type=COUNT,
              help="Ascent steps [default: 64; DeepDream: 20 per octave].")
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True),
              help="Step in 0-255 pixel units [default: 6; DeepDream: 2].")
@click.option("--octaves", type=click.IntRange(1, 16), default=3, show_default=True,
              help="DeepDream scales.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@model_options
def maximize_command(model: str, layer: str | None, channel: int | None, label: str | None,
                     image: str | None, steps: int | None, learning_rate: float | None,
                     octaves: int, seed: int, weights: str, image_size: int | None,
                     output: str | None) -> None:
    """An image that excites a layer, a channel or a class of MODEL (or DeepDream on --image)."""
    if channel is not None and label is not None:
        raise click.UsageError("give --channel or --class, not both")
    if label is None and layer is None:
        raise click.UsageError("give --layer (optionally with --channel), or --class")
    if image and label is not None:
        raise click.UsageError("DeepDream (--image) amplifies a --layer, not a --class")
    from transfer.viz.common import load_images, num_classes, resolve_class, safe_name
    from transfer.viz.maximize import deep_dream, maximize, plot_maximized

    loaded = _load(model, weights, image_size)
    out = _output_dir(output, model)
    options = {"seed": seed}
    if steps:
        options["steps"] = steps
    if learning_rate:
        options["learning_rate"] = learning_rate
    what = "" if layer is None else safe_name(layer) + (
        f"_channel{channel}" if channel is not None else "")
    if image:
        x = load_images([image], loaded.image_size)[0]
        result = deep_dream(loaded.model, x, layer=layer, channel=channel, octaves=octaves,
                            **options)
        path = out / f"dream_{safe_name(Path(image).stem)}_{what}.png"
        _echo_paths([plot_maximized(result, path, original=x)])
        return
    class_index = (resolve_class(label, loaded.class_names, num_classes(loaded.model))
                   if label is not None else None)
    result = maximize(loaded.model, layer=layer, channel=channel, class_index=class_index,
                      **options)
    if class_index is not None:
        name = loaded.class_names[class_index] if loaded.class_names else str(class_index)
        if loaded.class_names:
            result = dataclasses.replace(result, target=f"class '{name}' logit")
        what = f"class_{safe_name(name)}"
    _echo_paths([plot_maximized(result, out / f"maximize_{what}.png")])


@click.command("adversarial")
@click.argument("model")
@click.argument("target", type=click.Path(exists=True))
@click.option("--eps", type=click.FloatRange(min=0), default=8.0, show_default=True,
              help="Perturbation for one image, in 0-255 pixel levels.")
@click.option("--class", "label", help="True class of the image (default: the prediction).")
@click.option("--epsilons", default=EPSILONS, show_default=True,
              help="With a DATA_DIR: comma-separated epsilons (0-255 pixel levels).")
@click.option("--max-images", type=COUNT, default=256, show_default=True,
              help="With a DATA_DIR: at most this many images (seeded subsample).")
@model_options
def adversarial_command(model: str, target: str, eps: float, label: str | None, epsilons: str,
                        max_images: int, weights: str, image_size: int | None,
                        output: str | None) -> None:
    """FGSM on an IMAGE (panel + JSON), or accuracy under FGSM on a DATA_DIR (plot + JSON).

    TARGET is an image file, or a folder with one sub-folder per class (its val/ when it holds
    train/ and val/).
    """
    from transfer.plots import save_figure
    from transfer.viz.adversarial import (
        adversarial_example,
        adversarial_figure,
        labelled_folder,
        robustness,
        robustness_figure,
    )
    from transfer.viz.common import (
        load_images,
        num_classes,
        resolve_class,
        safe_name,
        write_json,
    )

    loaded = _load(model, weights, image_size)
    out = _output_dir(output, model)
    if Path(target).is_dir():
        try:
            eps_list = [float(e) for e in epsilons.split(",") if e.strip()]
        except ValueError:
            raise click.BadParameter(f"expected numbers separated by commas, got {epsilons!r}",
                                     param_hint="--epsilons") from None
        images, labels, paths = labelled_folder(target, loaded.class_names, loaded.image_size,
                                                max_images=max_images)
        result = robustness(loaded.model, images, labels, epsilons=eps_list)
        written = [save_figure(robustness_figure(result), out / "robustness.png"),
                   write_json({**result, "data": str(target)}, out / "robustness.json")]
        _echo_paths(written)
        for e, accuracy in zip(result["epsilons"], result["accuracy"]):
            click.echo(f"eps {e:g}\taccuracy {accuracy:.4f}")
        return
    class_index = resolve_class(label, loaded.class_names, num_classes(loaded.model))
    x = load_images([target], loaded.image_size)[0]
    result = adversarial_example(loaded.model, x, eps=eps, label=class_index,
                                 class_names=loaded.class_names)
    stem = f"adversarial_{safe_name(Path(target).stem)}"
    summary = {k: result[k] for k in ("eps", "attacked_label", "linf", "before", "after")}
    written = [save_figure(adversarial_figure(result), out / f"{stem}.png"),
               write_json({"image": str(target), **summary}, out / f"{stem}.json")]
    _echo_paths(written)
    before, after = result["before"][0], result["after"][0]
    click.echo(f"before: {before['label']} {before['score']:.3f}\t"
               f"after: {after['label']} {after['score']:.3f}")


@click.command("embed")
@click.argument("model")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--output", "-o", "index", required=True,
              help="Index to write: INDEX.npz (embeddings) and INDEX.json (paths, labels).")
@weights_option("none")
@click.option("--image-size", type=IMAGE_SIZE,
              help="Registry models only: input size (default: the model's own).")
@click.option("--batch-size", type=BATCH_SIZE, default=32, show_default=True)
@click.option("--force", is_flag=True, help="Replace an existing index that zoo wrote.")
def embed_command(model: str, data_dir: str, index: str, weights: str, image_size: int | None,
                  batch_size: int, force: bool) -> None:
    """Embed every image under DATA_DIR with MODEL's penultimate layer into an index."""
    from transfer.viz.embed import build_index, index_paths

    built = build_index(model, data_dir, index, weights=parse_weights(weights),
                        image_size=image_size, batch_size=batch_size, force=force)
    _echo_paths(index_paths(index))
    click.echo(f"{len(built.paths)} images, {built.embeddings.shape[1]} dimensions "
               f"({built.layer})")


@click.command("similar")
@click.argument("index")
@click.argument("image", type=click.Path(exists=True, dir_okay=False))
@click.option("--k", "-k", type=COUNT, default=6, show_default=True)
@click.option("--output", "-o", type=click.Path(file_okay=False), default="viz",
              show_default=True, help="Folder for the PNG strip.")
@click.option("--json", "as_json", is_flag=True, help="Print the neighbours as JSON.")
def similar_command(index: str, image: str, k: int, output: str, as_json: bool) -> None:
    """The K images of INDEX (from 'zoo embed') nearest to IMAGE, printed and as a PNG strip."""
    from transfer.plots import save_figure
    from transfer.viz.common import safe_name
    from transfer.viz.embed import load_index, similar, similar_figure

    loaded_index = load_index(index)
    matches, query = similar(loaded_index, image, k=k)
    path = save_figure(similar_figure(query, matches, loaded_index.image_size,
                                      query_name=Path(image).name),
                       Path(output) / f"similar_{safe_name(Path(image).stem)}.png")
    if as_json:
        click.echo(json.dumps({"query": image, "figure": str(path),
                               "matches": [m.__dict__ for m in matches]}, ensure_ascii=False))
        return
    for m in matches:
        click.echo(f"{m.rank}\t{m.distance:.4f}\t{m.label or '-'}\t{m.path}")
    click.echo(str(path))


@click.command("report")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
def report_command(run_dir: str) -> None:
    """Write RUN_DIR/report.html: curves, confusion matrix, mistakes, filters, Grad-CAM."""
    from transfer.viz.report import write_report

    click.echo(str(write_report(run_dir)))
