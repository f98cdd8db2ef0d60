"""Segmentation's figures: class colours, palette PNGs and overlays, the worst images, per-class
IoU bars and the pixel confusion matrix."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from transfer.plots import confusion_figure, image_png, new_figure, save_png, wrap_title

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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
