"""Every figure the toolkit writes: confusion matrices, mistake grids, training curves, the
learning-rate sweep, and the figure helpers the visualisations share.

Figures are drawn with matplotlib's Agg canvas, without pyplot, so no global backend is switched
and nothing is left open. Functions that draw return the figure; :func:`save_figure` writes a PNG
and :func:`figure_png` gives its bytes (for ``report.html``).
"""

from __future__ import annotations

import io
import logging
import math
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

MAX_MISTAKES = 16


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


def mistakes_figure(probabilities: np.ndarray, labels: np.ndarray, paths: Sequence[str],
                    class_names: Sequence[str], *, limit: int = MAX_MISTAKES) -> Figure:
    """A grid of the most confident mistakes, most confident first, drawn from the files with
    the pixels training saw (EXIF orientation applied, transparency on white)."""
    probabilities = np.asarray(probabilities)
    labels = np.asarray(labels, dtype=np.int64)
    predicted = probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, np.int64)
    confidence = probabilities.max(axis=1) if len(probabilities) else np.zeros(0)
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:limit]
    if not len(wrong):
        fig = new_figure(4.0, 1.5)
        fig.text(0.5, 0.5, f"no mistakes on {len(labels)} images", ha="center", va="center")
        return fig
    cols = min(4, len(wrong))
    rows = math.ceil(len(wrong) / cols)
    fig = new_figure(2.6 * cols, 2.9 * rows)
    for n, i in enumerate(wrong):
        ax = fig.add_subplot(rows, cols, n + 1)
        ax.imshow(thumbnail(paths[i]))
        ax.set_axis_off()
        ax.set_title(f"true: {class_names[labels[i]]}\n"
                     f"pred: {class_names[predicted[i]]} ({confidence[i]:.2f})",
                     fontsize=9, color="firebrick")
    fig.suptitle(f"most confident mistakes ({len(wrong)} shown of "
                 f"{int((predicted != labels).sum())})")
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


# ---- segmentation -----------------------------------------------------------------------------

#: colour of pixels that are not labelled (``ignore_index``) in masks and palette PNGs
IGNORE_COLOUR = (255, 255, 255)


def palette(num_classes: int) -> np.ndarray:
    """A fixed colour per class, ``(num_classes, 3)`` uint8: Pascal VOC's colour map.

    The bits of each class id are dealt out, three at a time, to the high bits of red, green and
    blue, so class 0 (background) is black, classes 0-20 get exactly VOC's colours, and every id
    below 2**24 gets a colour of its own.
    """
    if num_classes < 1:
        raise ValueError(f"a palette needs at least one class, got {num_classes}")
    return _voc_colours(num_classes)


def _voc_colours(num_classes: int) -> np.ndarray:
    ids = np.arange(num_classes, dtype=np.int64)
    colours = np.zeros((num_classes, 3), dtype=np.int64)
    for shift in range(7, -1, -1):
        for channel in range(3):
            colours[:, channel] |= ((ids >> channel) & 1) << shift
        ids = ids >> 3
    return colours.astype(np.uint8)


def colour_mask(mask: np.ndarray, palette: np.ndarray, ignore_index: int | None = 255
                ) -> np.ndarray:
    """The class map ``mask`` ``(h, w)`` in its classes' colours, ``(h, w, 3)`` uint8;
    ``ignore_index`` pixels are white."""
    mask = np.asarray(mask).astype(np.int64)
    table = np.asarray(palette, dtype=np.uint8)
    ignored = mask == ignore_index if ignore_index is not None else np.zeros(mask.shape, bool)
    ids = np.where(ignored, 0, mask)
    if ids.size and (ids.min() < 0 or ids.max() >= len(table)):
        raise ValueError(f"the mask holds class ids outside the palette's {len(table)} colours: "
                         f"{np.unique(ids[(ids < 0) | (ids >= len(table))])[:10]}")
    rgb = table[ids]
    rgb[ignored] = IGNORE_COLOUR
    return rgb


def overlay(image_uint8: np.ndarray, mask: np.ndarray, palette: np.ndarray, alpha: float = 0.5,
            *, ignore_index: int | None = 255) -> np.ndarray:
    """The image with its class map blended in, ``(h, w, 3)`` uint8: each pixel is
    ``(1 - alpha) * image + alpha * colour``; pixels at ``ignore_index`` keep the image."""
    image = np.asarray(image_uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    mask = np.asarray(mask)
    if image.shape[:2] != mask.shape or image.shape[-1] != 3:
        raise ValueError(f"expected an (h, w, 3) image and an (h, w) mask, got {image.shape} "
                         f"and {mask.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    colours = colour_mask(mask, palette, ignore_index).astype(np.float64)
    blended = (1.0 - alpha) * image.astype(np.float64) + alpha * colours
    if ignore_index is not None:
        blended[mask == ignore_index] = image[mask == ignore_index]
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def save_palette_png(mask: np.ndarray, path: str | os.PathLike, palette: np.ndarray) -> Path:
    """Write a class map as a palette ("P"-mode) PNG whose pixel values are the class ids.

    This is the format of Pascal VOC's ``SegmentationClass`` files: any viewer shows the colours,
    and ``np.asarray(PIL.Image.open(path))`` gives the ids back, 255 (not labelled) included,
    which the palette shows white. Ids without a colour of their own in ``palette`` continue
    VOC's colour map.
    """
    from PIL import Image

    mask = np.asarray(mask)
    table = np.asarray(palette, dtype=np.uint8)
    if mask.ndim != 2:
        raise ValueError(f"expected an (h, w) class map, got shape {mask.shape}")
    if len(table) > 255:
        raise ValueError(f"a palette PNG holds at most 255 classes besides 255 (not labelled), "
                         f"got {len(table)}")
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        raise ValueError(f"a palette PNG holds ids 0-255, the mask holds {mask.min()} to "
                         f"{mask.max()}")
    full = _voc_colours(256)
    full[:len(table)] = table
    full[255] = IGNORE_COLOUR
    image = Image.fromarray(mask.astype(np.uint8))
    image.putpalette(full.tobytes())
    return save_png(image_png(image), path)


def _as_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return image


def worst_figure(images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                 predicted: Sequence[np.ndarray], ious: Sequence[float | None],
                 class_names: Sequence[str], palette: np.ndarray, *, limit: int = 8,
                 ignore_index: int | None = 255, names: Sequence[str] | None = None) -> Figure:
    """The images segmented worst: one row per image, lowest mean IoU first, showing the image
    (0-255 RGB), its true class map and the predicted one, with a legend of the classes shown.

    Images whose IoU is ``None`` or NaN (nothing labelled) are left out. ``names`` (one per
    image, such as its file name) go into the row titles.
    """
    from matplotlib.patches import Patch

    scored = [i for i, iou in enumerate(ious) if iou is not None and math.isfinite(iou)]
    order = sorted(scored, key=lambda i: ious[i])[:limit]  # sorted is stable: ties keep order
    if not order:
        fig = new_figure(4.0, 1.5)
        fig.text(0.5, 0.5, f"no labelled pixels in {len(ious)} images", ha="center",
                 va="center")
        return fig
    shown: set[int] = set()
    panel = 2.4
    legend_h = 0.6
    h, w = np.asarray(labels[order[0]]).shape[:2]
    row_h = panel * min(max(h / w, 0.4), 1.6) + 0.4  # the image's aspect, and a title line
    fig = new_figure(3 * panel, len(order) * row_h + 0.5 + legend_h)
    for row, i in enumerate(order):
        truth = np.asarray(labels[i])
        guess = np.asarray(predicted[i])
        counted = truth != ignore_index if ignore_index is not None else np.ones(truth.shape,
                                                                                 bool)
        shown.update(np.unique(truth[counted]).tolist())
        shown.update(np.unique(guess).tolist())
        label = f"{names[i]}: " if names is not None else f"#{i}: "
        panels = ((_as_uint8(images[i]), wrap_title(f"{label}mean IoU {ious[i]:.3f}", panel, 9)),
                  (colour_mask(truth, palette, ignore_index), "truth"),
                  (colour_mask(guess, palette, None), "prediction"))
        for col, (picture, title) in enumerate(panels):
            ax = fig.add_subplot(len(order), 3, 3 * row + col + 1)
            ax.imshow(picture, interpolation="nearest")
            ax.set_title(title, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():  # a frame, so white (not labelled) edges show
                spine.set_edgecolor("#bbbbbb")
    table = np.asarray(palette, dtype=np.float64) / 255.0
    handles = [Patch(facecolor=table[k], edgecolor="#888", label=class_names[k])
               for k in sorted(shown)[:40] if k < len(class_names)]
    if ignore_index is not None:
        handles.append(Patch(facecolor="white", edgecolor="#888", label="not labelled"))
    fig.legend(handles=handles, loc="lower center", ncol=min(4, len(handles)), fontsize=8,
               frameon=False)
    fig.suptitle(f"lowest mean IoU: {len(order)} of {len(ious)} images")
    height = fig.get_figheight()
    fig.tight_layout(rect=(0, legend_h / height, 1, 1))
    return fig


def iou_bar_figure(per_class_iou: dict[str, float | None]) -> Figure:
    """IoU per class as horizontal bars, in class order, the mean marked; classes that occur in
    neither targets nor predictions (``None``) are labelled "absent"."""
    names = list(per_class_iou)
    values = [per_class_iou[n] for n in names]
    present = [v for v in values if v is not None]
    row = 0.3 if len(names) <= 40 else 0.18
    fig = new_figure(7.0, row * len(names) + 1.3)
    ax = fig.add_subplot()
    positions = np.arange(len(names))
    ax.barh(positions, [0.0 if v is None else v for v in values], color="tab:blue")
    fontsize = 9 if len(names) <= 40 else 7
    for y, v in zip(positions, values):
        ax.text(0.01 if v is None else v + 0.01, y, "absent" if v is None else f"{v:.3f}",
                va="center", fontsize=fontsize, color="#777" if v is None else "black")
    if present:
        mean = float(np.mean(present))
        ax.axvline(mean, color="tab:red", linestyle="--", label=f"mean {mean:.3f}")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(positions, labels=names, fontsize=fontsize)
    ax.invert_yaxis()  # first class on top
    ax.set_xlim(0.0, 1.12)
    ax.set_xlabel("IoU")
    ax.set_title(f"IoU per class ({len(present)} of {len(names)} classes present)")
    fig.tight_layout()
    return fig


def _compact(count: int) -> str:
    for unit, size in (("G", 10 ** 9), ("M", 10 ** 6), ("k", 10 ** 3)):
        if count >= size:
            value = count / size
            return f"{value:.0f}{unit}" if value >= 100 else f"{value:.1f}{unit}"
    return str(count)


def pixel_confusion_figure(confusion: np.ndarray, class_names: Sequence[str]) -> Figure:
    """:func:`confusion_figure` for pixel counts: cells read ``1.2M`` rather than ``1234567``,
    and the title counts pixels."""
    fig = confusion_figure(confusion, class_names)
    ax = fig.axes[0]
    for text in ax.texts:
        text.set_text(_compact(int(text.get_text())))
    confusion = np.asarray(confusion, dtype=np.int64)
    total = int(confusion.sum())
    accuracy = np.trace(confusion) / total if total else 0.0
    ax.set_title(f"confusion matrix: {total:,} pixels, pixel accuracy {accuracy:.3f}")
    return fig
