"""``RUN_DIR/report.html``: one self-contained page about a training run.

Every image is inlined as a base64 PNG and the style sheet is inline, so the file can be mailed
or archived alone. Sections: a summary, training curves (``history.json``, phases marked), the
validation confusion matrix (``metrics.json``), the worst mistakes (``mistakes.png`` when the run
directory, or its ``evaluation/val/`` written by ``zoo evaluate``, has one; else computed on the
validation images of ``split.json``), the first layer's filters and Grad-CAM heatmaps of a few
validation images.

A section whose inputs are missing or fail is replaced by a note (and a logged warning), so the
report can be written at the end of any training run without putting the run at risk.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from transfer.errors import RunDirError
from transfer.viz.common import (
    VizModel,
    figure_png,
    label_of,
    load_for_viz,
    load_images,
    new_figure,
)

log = logging.getLogger(__name__)

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1000px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ddd; margin-top: 2em; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: left; }
th { color: #555; font-weight: normal; } img { max-width: 100%; }
.note { color: #777; font-style: italic; }
"""


def write_report(run_dir: str | os.PathLike, *, max_gradcam: int = 4,
                 max_mistakes: int = 8) -> Path:
    """Write ``run_dir/report.html`` and return its path.

    Args:
        run_dir: a run directory written by ``transfer.train`` (``model.keras`` at least).
        max_gradcam: validation images shown with Grad-CAM heatmaps.
        max_mistakes: misclassified validation images shown when there is no ``mistakes.png``.

    Raises:
        RunDirError: ``run_dir`` holds no ``model.keras``.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "model.keras").is_file():
        raise RunDirError(f"{str(run_dir)!r} is not a run directory: it has no model.keras")
    loaded = load_for_viz(run_dir)
    config = _read_json(run_dir / "config.json") or {}
    metrics = _read_json(run_dir / "metrics.json") or {}
    history = _read_json(run_dir / "history.json") or []
    val = _val_split(run_dir, loaded)

    parts = [f"<h1>Training report: {html.escape(run_dir.resolve().name)}</h1>",
             _summary(config, metrics, loaded)]
    sections: list[tuple[str, Callable[[], str]]] = [
        ("Training curves", lambda: _png_tag(_curves_png(history), "training curves")),
        ("Confusion matrix (validation)", lambda: _png_tag(
            _confusion_png(metrics["val"]["confusion_matrix"],
                           metrics["val"].get("class_names") or loaded.class_names),
            "confusion matrix")),
        ("Worst mistakes (validation)", lambda: _mistakes(run_dir, loaded, val, max_mistakes)),
        ("First-layer filters", lambda: _filters(loaded)),
        ("Grad-CAM on validation images", lambda: _gradcams(loaded, val, max_gradcam)),
    ]
    for title, build in sections:
        parts.append(f"<h2>{html.escape(title)}</h2>")
        try:
            parts.append(build())
        except Exception as exc:  # noqa: BLE001  - a failed section must not sink the report
            log.warning("report section %r skipped: %s", title, exc)
            parts.append(_note(f"not available: {exc}"))
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(run_dir.resolve().name)}: training report</title>"
            f"<style>{_STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")
    out = run_dir / "report.html"
    out.write_text(page, encoding="utf-8")
    log.debug("wrote %s", out)
    return out


def _read_json(path: Path):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        log.warning("%s is not valid JSON (%s); left out of the report", path, exc)
        return None


def _note(text: str) -> str:
    return f"<p class=\"note\">{html.escape(text)}</p>"


def _png_tag(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f"<img alt=\"{html.escape(alt)}\" src=\"data:image/png;base64,{data}\">"


def _summary(config: dict, metrics: dict, loaded: VizModel) -> str:
    rows = [("model", config.get("model")), ("mode", config.get("mode")),
            ("weights", config.get("weights") or "none"), ("image size", loaded.image_size),
            ("classes", ", ".join(loaded.class_names or []) or None)]
    val = metrics.get("val") or {}
    if val:
        rows += [("validation images", val.get("samples")),
                 ("top-1 accuracy", f"{val['top1_accuracy']:.4f}"),
                 (f"top-{val.get('top_k', 5)} accuracy", f"{val['top5_accuracy']:.4f}"),
                 ("loss", f"{val['loss']:.4f}" if val.get("loss") is not None else None)]
    test = metrics.get("test") or {}
    if test:
        rows.append(("test top-1 accuracy", f"{test['top1_accuracy']:.4f}"))
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                    for k, v in rows if v is not None)
    return f"<table>{cells}</table>"


def _val_split(run_dir: Path, loaded: VizModel) -> tuple[list[str], list[int]]:
    split = _read_json(run_dir / "split.json") or {}
    val = split.get("val") or {}
    pairs = [(p, int(y)) for p, y in zip(val.get("paths", []), val.get("labels", []))
             if Path(p).is_file()]
    if val.get("paths") and len(pairs) < len(val["paths"]):
        log.warning("%d of the %d validation images listed in split.json are missing",
                    len(val["paths"]) - len(pairs), len(val["paths"]))
    return [p for p, _ in pairs], [y for _, y in pairs]


# ---- figures ----------------------------------------------------------------------------------

def _curves_png(history: Sequence[dict]) -> bytes:
    """Loss and accuracy per epoch, training and validation, one shaded band per phase."""
    if not history:
        raise ValueError("history.json is missing or empty")
    epochs = [row["epoch"] for row in history]
    fig = new_figure(9.0, 3.4)
    panels = [("loss", "loss"), ("accuracy", "accuracy")]
    phases = []
    for row in history:
        if not phases or phases[-1][0] != row.get("phase"):
            phases.append([row.get("phase"), row["epoch"], row["epoch"]])
        phases[-1][2] = row["epoch"]
    shades = ("#f2f2f2", "#e3ecf7", "#f7ece3")
    for k, (key, label) in enumerate(panels):
        ax = fig.add_axes((0.07 + k * 0.5, 0.15, 0.4, 0.7))
        for i, (phase, first, last) in enumerate(phases):
            ax.axvspan(first - 0.5, last + 0.5, color=shades[i % len(shades)], zorder=0)
            ax.text((first + last) / 2, 1.01, str(phase), transform=ax.get_xaxis_transform(),
                    ha="center", va="bottom", fontsize=8, color="#555")
        for name, style in ((key, "-"), (f"val_{key}", "--")):
            values = [row.get(name) for row in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [np.nan if v is None else v for v in values], style, marker="o",
                        markersize=3, label="validation" if name.startswith("val_") else "train")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        if key == "accuracy":
            ax.set_ylim(-0.02, 1.02)
        if len(epochs) <= 20:
            ax.set_xticks(epochs)
    return figure_png(fig)


def _confusion_png(matrix: Sequence[Sequence[int]], class_names: Sequence[str] | None) -> bytes:
    """Rows true, columns predicted; each row coloured by its share, counts written in."""
    counts = np.asarray(matrix, dtype=np.int64)
    n = len(counts)
    names = list(class_names or [str(i) for i in range(n)])
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = min(10.0, 2.0 + 0.45 * n)
    fig = new_figure(side + 1.2, side)
    ax = fig.add_axes((0.22, 0.2, 0.68 * side / (side + 1.2), 0.68))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if shares[i, j] > 0.5 else "black")
    ticks = np.arange(n)
    ax.set_xticks(ticks, names if n <= 40 else [""] * n, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(ticks, names if n <= 40 else [""] * n, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    return figure_png(fig)


def _predict(loaded: VizModel, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    return np.concatenate([np.asarray(loaded.model(images[i:i + batch_size], training=False))
                           for i in range(0, len(images), batch_size)])


def _mistakes(run_dir: Path, loaded: VizModel, val: tuple[list[str], list[int]],
              limit: int) -> str:
    for existing in (run_dir / "mistakes.png", run_dir / "evaluation" / "val" / "mistakes.png"):
        if existing.is_file():
            return (_note(f"from {existing.relative_to(run_dir)}")
                    + _png_tag(existing.read_bytes(), "worst mistakes"))
    paths, labels = val
    if not paths:
        return _note("no validation images found (split.json missing, or the files moved)")
    paths, labels = paths[:1000], np.asarray(labels[:1000])
    images = load_images(paths, loaded.image_size)
    probabilities = _predict(loaded, images)
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    if not len(wrong):
        return _note(f"no mistakes on the {len(paths)} validation images")
    wrong = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:limit]
    columns = min(4, len(wrong))
    rows = int(np.ceil(len(wrong) / columns))
    fig = new_figure(2.3 * columns, 2.6 * rows)
    for k, i in enumerate(wrong):
        r, c = divmod(k, columns)
        ax = fig.add_axes((c / columns + 0.01, 1 - (r + 1) / rows + 0.02, 1 / columns - 0.02,
                           1 / rows - 0.12 / rows * 2))
        ax.imshow(np.clip(images[i] / 255.0, 0, 1), interpolation="nearest")
        ax.set_title(f"true {label_of(int(labels[i]), loaded.class_names)}\n"
                     f"pred {label_of(int(predicted[i]), loaded.class_names)} "
                     f"({probabilities[i, predicted[i]]:.2f})", fontsize=8)
        ax.set_axis_off()
    note = _note(f"{len(np.flatnonzero(predicted != labels))} of {len(paths)} validation images "
                 f"misclassified; the most confident mistakes first")
    return note + _png_tag(figure_png(fig), "worst mistakes")


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


def _gradcams(loaded: VizModel, val: tuple[list[str], list[int]], limit: int) -> str:
    from transfer.viz.gradcam import grad_cam, overlay

    paths, labels = val
    if not paths:
        return _note("no validation images found (split.json missing, or the files moved)")
    chosen, seen = [], set()
    for i, y in enumerate(labels):  # one image per class first, then the rest in order
        if y not in seen:
            chosen.append(i)
            seen.add(y)
    chosen += [i for i in range(len(paths)) if i not in chosen]
    chosen = chosen[:limit]
    images = load_images([paths[i] for i in chosen], loaded.image_size)
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
