"""Every figure the toolkit writes: confusion matrices, mistake grids, training curves, the
learning-rate sweep, and the figure helpers the visualisations share.

Figures are drawn with matplotlib's Agg canvas, without pyplot, so no global backend is switched
and nothing is left open. Functions that draw return the figure; :func:`save_figure` writes a PNG
and :func:`figure_png` gives its bytes (for ``report.html``).
"""

from __future__ import annotations

import io
import logging
import os
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from transfer import outputs
from transfer.rundir import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from PIL import Image

log = logging.getLogger(__name__)



# ---- helpers ----------------------------------------------------------------------------------

def new_figure(width: float, height: float) -> Figure:
    """A matplotlib figure drawn with Agg, without pyplot's global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure) -> bytes:
    """The figure as PNG bytes, marked as the toolkit's (:mod:`transfer.outputs`)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": outputs.SOFTWARE})
    return buffer.getvalue()


def image_png(image: Image.Image | np.ndarray, **options) -> bytes:
    """An image as PNG bytes, marked as the toolkit's (:mod:`transfer.outputs`)."""
    from PIL import Image, PngImagePlugin

    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", outputs.SOFTWARE)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, **options)
    return buffer.getvalue()


def save_png(data: bytes, path: str | os.PathLike) -> Path:
    """Write PNG bytes to ``path``, never over a file the toolkit did not write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    outputs.check_file(path)
    atomic_write(path, data)
    log.debug("wrote %s", path)
    return path


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    return save_png(figure_png(fig), path)


def wrap_title(text: str, width_inches: float, fontsize: float = 10) -> str:
    """Wrap a title to the figure's width (about 0.55 em per character)."""
    chars = max(12, int(width_inches * 72 / (0.55 * fontsize)))
    return "\n".join(textwrap.wrap(text, chars, break_on_hyphens=False, break_long_words=True))


def image_figure(image: np.ndarray, title: str | None = None, *, cmap: str | None = None,
                 min_width: int = 320) -> Figure:
    """One image shown pixel for pixel (scaled up to ``min_width``), with an optional title."""
    h, w = image.shape[:2]
    scale = max(1.0, min_width / w)
    width, height = w * scale / 100, h * scale / 100
    margin = 0.1
    title = wrap_title(title, width + 2 * margin) if title else ""
    title_h = 0.2 * (title.count("\n") + 1) + 0.15 if title else 0.0
    fig_w, fig_h = width + 2 * margin, height + 2 * margin + title_h
    fig = new_figure(fig_w, fig_h)
    ax = fig.add_axes((margin / fig_w, margin / fig_h, width / fig_w, height / fig_h))
    ax.imshow(image, cmap=cmap, interpolation="nearest", vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        fig.text(0.5, 1 - 0.08 / fig_h, title, ha="center", va="top", fontsize=10)
    return fig


# ---- evaluation -------------------------------------------------------------------------------

def confusion_figure(confusion: np.ndarray, class_names: Sequence[str]) -> Figure:
    """Counts in each cell, colours by the share of the true class (rows sum to 1)."""
    confusion = np.asarray(confusion, dtype=np.int64)
    k = len(class_names)
    rows = confusion.sum(axis=1, keepdims=True)
    share = np.divide(confusion, rows, out=np.zeros(confusion.shape, dtype=np.float64),
                      where=rows > 0)
    side = min(max(4.0, 0.45 * k + 2.5), 30.0)
    fig = new_figure(side + 1.0, side)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set_xticks(range(k), labels=list(class_names), rotation=45, ha="right",
                  rotation_mode="anchor")
    ax.set_yticks(range(k), labels=list(class_names))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    total = int(confusion.sum())
    accuracy = np.trace(confusion) / total if total else 0.0
    ax.set_title(f"confusion matrix: {total} images, top-1 accuracy {accuracy:.3f}")
    if k <= 40:  # beyond that the numbers would be unreadable; the colours still tell
        size = 10 if k <= 10 else max(4, 10 - (k - 10) // 5)
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=size,
                        color="white" if share[i, j] > 0.5 else "black")
    fig.tight_layout()
    return fig


def thumbnail(path: str, side: int = 160) -> np.ndarray:
    from PIL import Image

    from transfer.data import load_normalized

    try:  # the pixels training saw: EXIF orientation applied, transparency on white
        image = Image.fromarray(load_normalized(path))
    except Exception:  # noqa: BLE001  - a file that vanished since prediction: draw a blank
        return np.full((side, side, 3), 255, dtype=np.uint8)
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return np.asarray(image)


# ---- training ---------------------------------------------------------------------------------

def curves_figure(history: Sequence[dict], metric: str = "accuracy") -> Figure:
    """Loss and ``metric`` per epoch, training and validation, one shaded band per phase."""
    if not history:
        raise ValueError("the history is empty")
    epochs = [row["epoch"] for row in history]
    fig = new_figure(9.0, 3.4)
    phases: list[list] = []
    for row in history:
        if not phases or phases[-1][0] != row.get("phase"):
            phases.append([row.get("phase"), row["epoch"], row["epoch"]])
        phases[-1][2] = row["epoch"]
    shades = ("#f2f2f2", "#e3ecf7", "#f7ece3")
    for k, key in enumerate(("loss", metric)):
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
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        if key != "loss":
            ax.set_ylim(-0.02, 1.02)
        if len(epochs) <= 20:
            ax.set_xticks(epochs)
    return fig


def lr_sweep_figure(rates: Sequence[float], losses: Sequence[float], suggestion: float) -> Figure:
    """The learning-rate range test: smoothed loss against the rate, the suggestion marked."""
    fig = new_figure(6, 4)
    ax = fig.add_subplot()
    ax.plot(rates, losses)
    ax.axvline(suggestion, color="tab:red", linestyle="--", label=f"suggested {suggestion:.1e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("smoothed training loss")
    ax.set_title("learning-rate range test")
    ax.legend()
    fig.tight_layout()
    return fig
