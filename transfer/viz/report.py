"""``RUN_DIR/report.html``: one self-contained page about a training run.

Every image is inlined as a base64 PNG and the style sheet is inline, so the file can be mailed
or archived alone. Sections: a summary, training curves (``history.json``, phases marked), the
validation confusion matrix (``metrics.json``), the worst mistakes, the first layer's filters and
Grad-CAM heatmaps of a few validation images. At the end of training everything comes from memory
(the model, the metrics, the history and the validation predictions); ``zoo report RUN_DIR``
reads the same things from the run directory. Validation images are read by the training
pipeline (normalised copies, EXIF orientation), so the report shows the pixels the model saw.

A section whose inputs are missing or fail is replaced by a note (and a logged warning), so the
report can be written at the end of any training run without putting the run at risk.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from transfer import plots
from transfer.data import ImageFolderData, Split, image_dataset
from transfer.errors import DataError
from transfer.plots import figure_png, new_figure
from transfer.rundir import InputContract, RunDir, atomic_write
from transfer.tasks import Evaluator, Task, get_task
from transfer.viz.common import VizModel, label_of

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1000px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ddd; margin-top: 2em; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: left; }
th { color: #555; font-weight: normal; } img { max-width: 100%; }
.note { color: #777; font-style: italic; }
"""


def write_report(run_dir: str | os.PathLike, *, model: keras.Model | None = None,
                 contract: InputContract | None = None, metrics: dict[str, Any] | None = None,
                 history: list[dict[str, Any]] | None = None,
                 evaluation: Evaluator | None = None, config: dict[str, Any] | None = None,
                 val: Split | None = None, max_gradcam: int = 4,
                 max_mistakes: int = 8) -> Path:
    """Write ``run_dir/report.html`` and return its path.

    Args:
        run_dir: a run directory written by ``transfer.train``.
        model, contract, metrics, history, evaluation, config, val: what the end of a
            training run has in memory (the validation split's
            :class:`~transfer.tasks.Evaluator` among them); each one not given is read from the
            run directory (the evaluation is then computed on the validation split, when a
            section needs it).
        max_gradcam: validation images shown with Grad-CAM heatmaps.
        max_mistakes: misclassified validation images shown.

    Raises:
        RunDirError: ``run_dir`` holds no ``model.keras`` and no model was given.
    """
    run = RunDir(run_dir) if model is not None else RunDir.open(run_dir)
    model = model if model is not None else run.load_model()
    contract = contract or run.contract(model)
    metrics = metrics if metrics is not None else run.metrics()
    history = history if history is not None else run.history()
    config = run.read_json("config.json", {}) if config is None else config
    loaded = VizModel(model, list(contract.class_names), contract.image_size)
    val = _val_split(run) if val is None else val

    task = get_task(contract.task, **contract.task_options())
    page = ReportPage(run, loaded, contract, task, metrics, val, evaluation,
                      max_gradcam=max_gradcam, max_mistakes=max_mistakes)

    name = html.escape(run.path.resolve().name)
    parts = [f"<h1>Training report: {name}</h1>", _summary(config, metrics, loaded, task)]
    sections: list[tuple[str, Callable[[], str]]] = [
        ("Training curves", lambda: _png_tag(
            figure_png(plots.curves_figure(history, task.curve_metric)), "training curves")),
        *task.report_sections(page)]
    for title, build in sections:
        parts.append(f"<h2>{html.escape(title)}</h2>")
        try:
            parts.append(build())
        except Exception as exc:  # noqa: BLE001  - a failed section must not sink the report
            log.warning("report section %r skipped: %s", title, exc)
            parts.append(_note(f"not available: {exc}"))
    document = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{name}: training report</title>"
                f"<style>{_STYLE}</style></head><body>\n" + "\n".join(parts)
                + "\n</body></html>\n")
    out = atomic_write(run / "report.html", document)
    log.debug("wrote %s", out)
    return out


@dataclasses.dataclass
class ReportPage:
    """What a task's report sections (:meth:`transfer.tasks.Task.report_sections`) draw with:
    the run, its model, contract and metrics, the validation split and predictions, and the
    page's building blocks. Each section is a title and a function returning HTML."""

    run: RunDir
    loaded: VizModel
    contract: InputContract
    task: Task
    metrics: dict[str, Any]
    val: Split | None
    evaluation: Evaluator | None
    max_gradcam: int = 4
    max_mistakes: int = 8

    @staticmethod
    def note(text: str) -> str:
        """A line of grey italic text."""
        return _note(text)

    @staticmethod
    def figure(fig, alt: str) -> str:
        """A matplotlib figure, inlined as a PNG."""
        return _png_tag(figure_png(fig), alt)

    @staticmethod
    def png(data: bytes, alt: str) -> str:
        """PNG bytes, inlined."""
        return _png_tag(data, alt)

    def existing(self, name: str) -> Path | None:
        """A figure the run (or ``zoo evaluate`` on its validation split) already wrote."""
        for path in (self.run / name, self.run / "evaluation" / "val" / name):
            if path.is_file():
                return path
        return None

    def val_evaluation(self, limit: int = 1000) -> Evaluator | None:
        """The validation split's evaluator training had in memory, else one run on the first
        ``limit`` validation images; ``None`` without a validation split."""
        from transfer.evaluate import score_split

        if self.evaluation is not None:
            return self.evaluation
        if self.val is None or not len(self.val):
            return None
        evaluator = self.task.evaluator(self.contract.class_names,
                                        image_size=self.contract.image_size)
        score_split(self.loaded.model, _subset(self.val, list(range(min(limit, len(self.val))))),
                    evaluator, task=self.task)
        self.evaluation = evaluator
        return evaluator

    def filters(self) -> str:
        """The first convolution's filters."""
        return _filters(self.loaded)

    def gradcams(self) -> str:
        """Grad-CAM heatmaps of a few validation images, one per class first."""
        return _gradcams(self.loaded, self.val, self.max_gradcam)


def _note(text: str) -> str:
    return f"<p class=\"note\">{html.escape(text)}</p>"


def _png_tag(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f"<img alt=\"{html.escape(alt)}\" src=\"data:image/png;base64,{data}\">"


def _summary(config: dict, metrics: dict, loaded: VizModel, task: Task) -> str:
    rows = [("model", config.get("model")), ("mode", config.get("mode")),
            ("weights", config.get("weights") or "none"), ("image size", loaded.image_size),
            ("classes", ", ".join(loaded.class_names or []) or None)]
    for split, prefix in (("val", "validation"), ("test", "test")):
        rows += _metric_rows(metrics.get(split) or {}, prefix, task)
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                    for k, v in rows if v is not None)
    return f"<table>{cells}</table>"


def _metric_rows(split: dict, prefix: str, task: Task) -> list[tuple[str, Any]]:
    """The task's headline numbers of one split's metrics (those present)."""
    if not split:
        return []
    rows: list[tuple[str, Any]] = [(f"{prefix} images", split.get("samples"))]
    rows += [(f"{prefix} {label}", f"{value:.4f}") for label, value in task.key_metrics(split)]
    return rows


def _val_split(run: RunDir) -> Split | None:
    if not (run / "split.json").is_file():
        return None
    val = ImageFolderData.load(run / "split.json").val
    present = [i for i, (p, s) in enumerate(zip(val.paths, val.sources or val.paths))
               if Path(p).is_file() or Path(s).is_file()]
    if len(present) < len(val):
        log.warning("%d of the %d validation images listed in split.json are missing",
                    len(val) - len(present), len(val))
    return _subset(val, present)


def _subset(split: Split, keep: list[int]) -> Split:
    return split.subset(keep)


def _images(split: Split, image_size: int) -> np.ndarray:
    """The images of ``split`` as the training pipeline reads them, float32 0-255."""
    indexed = dataclasses.replace(split, labels=tuple(range(len(split))))
    images = [np.asarray(x) for x, _ in image_dataset(indexed, image_size=image_size)]
    if len(images) != len(split):
        raise DataError(f"{len(split) - len(images)} validation image(s) no longer decode")
    return np.stack(images).astype(np.float32)


def _filters(loaded: VizModel) -> str:
    from transfer.viz.filters import conv_filters, filter_grid

    filters = conv_filters(loaded.model)
    grid = filter_grid(filters)
    h, w = grid.shape[:2]
    scale = max(1.0, 300 / w)
    fig = new_figure(w * scale / 100, h * scale / 100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    kh, kw = filters.images.shape[1:3]
    caption = (f"{filters.layer}: {len(filters.images)} filters of {kh}x{kw}x"
               f"{filters.in_channels}, each normalised to its own range")
    return _note(caption) + _png_tag(figure_png(fig), "first-layer filters")


def _gradcams(loaded: VizModel, val: Split | None, limit: int) -> str:
    from transfer.viz.gradcam import grad_cam, overlay

    if val is None or not len(val):
        return _note("no validation images found (split.json missing, or the files moved)")
    labels = val.labels
    chosen, seen = [], set()
    for i, y in enumerate(labels):  # one image per class first, then the rest in order
        if y not in seen:
            chosen.append(i)
            seen.add(y)
    chosen += [i for i in range(len(labels)) if i not in chosen]
    chosen = chosen[:limit]
    images = _images(_subset(val, chosen), loaded.image_size)
    cam = grad_cam(loaded.model, images)
    n = len(chosen)
    fig = new_figure(2.2 * n, 4.6)
    for k, i in enumerate(chosen):
        probabilities = cam.probabilities[k]
        top = int(np.argmax(probabilities))
        for row, (data, caption) in enumerate((
                (images[k] / 255.0, f"true {label_of(labels[i], loaded.class_names)}"),
                (overlay(images[k], cam.heatmaps[k]),
                 f"pred {label_of(top, loaded.class_names)} ({probabilities[top]:.2f})"))):
            ax = fig.add_axes((k / n + 0.01, 0.52 - row * 0.5, 1 / n - 0.02, 0.4))
            ax.imshow(np.clip(data, 0, 1), interpolation="nearest")
            ax.set_title(caption, fontsize=8)
            ax.set_axis_off()
    return (_note(f"heatmaps from layer {cam.layer}, for the predicted class")
            + _png_tag(figure_png(fig), "Grad-CAM"))
