"""Classification's figures beyond the shared confusion matrix: the most confident mistakes."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import numpy as np

from transfer.plots import new_figure, thumbnail

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: the most confident mistakes drawn in ``mistakes.png``
MAX_MISTAKES = 16


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


def draw_labels(image: np.ndarray, labels: Sequence[str], scores: Sequence[float]) -> np.ndarray:
    """``image`` (uint8 or float 0-255, ``[height, width, 3]``) with its top classes written in
    its top-left corner, one ``name score`` per line on a dark band; a new uint8 array."""
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(np.clip(np.round(np.asarray(image, np.float32)), 0, 255)
                             .astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    top = 2
    for label, score in zip(labels, scores):
        text = f"{label} {score:.2f}"
        left, upper, right, bottom = draw.textbbox((4, top), text)
        draw.rectangle((left - 2, upper - 1, right + 2, bottom + 1), fill=(0, 0, 0))
        draw.text((4, top), text, fill=(255, 255, 255))
        top = bottom + 3
    return np.asarray(canvas)
