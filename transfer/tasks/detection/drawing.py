"""Boxes drawn onto an image, with their class names and scores (``zoo predict``)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: one colour per class, cycled (Tableau 10)
COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


def draw_boxes(image: np.ndarray, boxes: np.ndarray, labels: Sequence[str],
               scores: Sequence[float] | None = None, *,
               class_ids: Sequence[int] | None = None) -> np.ndarray:
    """``image`` (uint8 or float 0-255, ``[height, width, 3]``) with each box outlined in its
    class's colour and labelled ``name score`` above its top-left corner; a new uint8 array."""
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(np.clip(np.round(np.asarray(image, np.float32)), 0, 255)
                             .astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    width = max(1, round(max(canvas.size) / 300))
    names = sorted(set(labels))
    for k, (box, label) in enumerate(zip(np.asarray(boxes, np.float32).reshape(-1, 4), labels)):
        index = class_ids[k] if class_ids is not None else names.index(label)
        colour = COLOURS[index % len(COLOURS)]
        x0, y0, x1, y1 = (float(v) for v in box)
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=width)
        text = label if scores is None else f"{label} {scores[k]:.2f}"
        left, top, right, bottom = draw.textbbox((x0, y0), text)
        lift = bottom - top + 2
        draw.rectangle((x0, y0 - lift, x0 + right - left + 4, y0), fill=colour)
        draw.text((x0 + 2, y0 - lift), text, fill=(255, 255, 255))
    return np.asarray(canvas)
