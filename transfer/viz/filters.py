"""The kernels of a convolution layer as a grid of small images.

Each filter is min-max normalised on its own, so weak and strong filters are equally readable.
A filter reading 3 channels is shown in colour (RGB; for ``caffe`` preprocessing, whose first
convolution reads BGR, the channels are flipped back to RGB); one reading 1 channel in grey. A
filter reading more than 3 channels (any layer after the first) is shown as the mean of its
kernels over the input channels, in grey: the channel-mean is what a uniform input would see, and
unlike "the first 3 channels" it does not depend on the arbitrary order of the channels.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np

from transfer.errors import ConfigError
from transfer.plots import image_figure, save_figure
from transfer.viz.common import (
    conv_layers,
    find_layer,
    first_conv_layer,
    is_conv,
    normalise,
    tile,
    upscale,
    walk_layers,
)

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Filters:
    """Normalised kernels ``(n, kh, kw, 1 or 3)`` in [0, 1], and how they were made."""

    images: np.ndarray
    layer: str
    in_channels: int
    shown: str  # "rgb", "grey" or "channel-mean"


def conv_filters(model, layer: str | None = None) -> Filters:
    """The kernels of the first (or the named) 2-D convolution, normalised per filter."""
    if layer is None:
        path, conv = first_conv_layer(model)
    else:
        path, conv = find_layer(model, layer)
        if not is_conv(conv):
            names = ", ".join(p for p, _ in conv_layers(model)[:20])
            raise ConfigError(f"layer {path!r} is a {type(conv).__name__}, not a 2-D "
                              f"convolution; convolution layers: {names}")
    kernel = np.asarray(conv.kernel.numpy(), dtype=np.float32)  # (kh, kw, in, out)
    kernel = np.transpose(kernel, (3, 0, 1, 2))  # (out, kh, kw, in)
    in_channels = kernel.shape[-1]
    if in_channels == 3:
        if _reads_bgr(model):
            kernel = kernel[..., ::-1]
        shown = "rgb"
    elif in_channels == 1:
        shown = "grey"
    else:
        kernel = kernel.mean(axis=-1, keepdims=True)
        shown = "channel-mean"
    images = normalise(kernel, axis=(1, 2, 3))
    return Filters(images, path, in_channels, shown)


def _reads_bgr(model) -> bool:
    """Whether the first convolution sees BGR: the zoo's caffe-mode preprocessing reorders the
    channels (``preprocess_bgr``); older classifiers held a ``preprocess`` layer in caffe mode."""
    for _, layer in walk_layers(model):
        if layer.name == "preprocess_bgr":
            return True
        if layer.name == "preprocess":
            return getattr(layer, "mode", None) == "caffe" and getattr(layer, "channels", 3) == 3
    return False


def filter_grid(filters: Filters, *, tile_size: int = 32, max_filters: int = 256) -> np.ndarray:
    """The filters as one ``(H, W, 3)`` grid image in [0, 1], white lines between them."""
    images = filters.images[:max_filters]
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return tile(upscale(images, tile_size), gap=2, fill=1.0)


def plot_filters(model, output_dir: str | os.PathLike, layer: str | None = None) -> Path:
    """Write ``filters_<layer>.png`` into ``output_dir`` and return its path."""
    from transfer.viz.common import safe_name

    filters = conv_filters(model, layer)
    n = len(filters.images)
    grid = filter_grid(filters)
    shown = {"rgb": "RGB", "grey": "grey", "channel-mean": "mean over input channels"}
    more = f", first 256 of {n}" if n > 256 else ""
    kh, kw = filters.images.shape[1:3]
    title = (f"{filters.layer}: {n} filters {kh}x{kw}x{filters.in_channels} "
             f"({shown[filters.shown]}{more}), each normalised")
    fig = image_figure(grid, title, min_width=360)
    return save_figure(fig, Path(output_dir) / f"filters_{safe_name(filters.layer)}.png")
