"""Feature maps of one layer for one image, as a grid beside the image.

Each map is min-max normalised on its own (viridis: dark low, yellow high); a map that is
constant over the image (a dead unit) stays dark. Only the first ``max_maps`` channels are drawn.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from transfer.errors import ConfigError
from transfer.plots import new_figure, save_figure
from transfer.viz.common import (
    first_conv_layer,
    normalise,
    safe_name,
    tile,
    upscale,
)
from transfer.viz.taps import tap_model

log = logging.getLogger(__name__)


def feature_maps(model, image: np.ndarray, layer: str | None = None) -> tuple[np.ndarray, str]:
    """The ``(h, w, channels)`` output of a layer (default: the first convolution) for an image.

    Args:
        model: a model taking raw 0-255 RGB images (see ``load_for_viz``).
        image: one ``(size, size, 3)`` image of 0-255 pixels.
        layer: a layer path or unique name; its output must be 4-D.
    """
    path = first_conv_layer(model)[0] if layer is None else layer
    tap = tap_model(model, [path])
    maps = np.asarray(tap(image[None])[0])[0]
    if maps.ndim != 3:
        raise ConfigError(f"layer {tap.paths[0]!r} has a {maps.ndim}-D output per image, not "
                          f"feature maps (height, width, channels); choose a convolution, "
                          f"pooling or activation layer")
    return maps, tap.paths[0]


def activation_grid(maps: np.ndarray, *, max_maps: int = 64, tile_size: int = 48) -> np.ndarray:
    """Feature maps as one ``(H, W, 3)`` RGB grid in [0, 1] (viridis, per-map normalised)."""
    from matplotlib import colormaps

    chosen = np.transpose(maps[..., :max_maps], (2, 0, 1))  # (n, h, w)
    coloured = colormaps["viridis"](normalise(chosen, axis=(1, 2)))[..., :3].astype(np.float32)
    return tile(upscale(coloured, tile_size), gap=2, fill=1.0)


def plot_activations(model, image: np.ndarray, output_dir: str | os.PathLike, *,
                     layer: str | None = None, name: str = "image",
                     max_maps: int = 64) -> Path:
    """Write ``activations_<name>_<layer>.png``: the image, then the grid of feature maps."""
    maps, path = feature_maps(model, image, layer)
    grid = activation_grid(maps, max_maps=max_maps)
    gh, gw = grid.shape[:2]
    scale = max(1.0, 360 / gw)
    side = 2.2
    width = side + gw * scale / 100 + 0.4
    height = max(side + 0.3, gh * scale / 100) + 0.6
    fig = new_figure(width, height)
    ax = fig.add_axes((0.2 / width, (height - 0.5 - side) / height, side / width, side / height))
    ax.imshow(np.clip(image / 255.0, 0, 1), interpolation="nearest")
    ax.set_title(name, fontsize=9)
    ax.set_axis_off()
    ax = fig.add_axes(((side + 0.3) / width, (height - 0.5 - gh * scale / 100) / height,
                       gw * scale / 100 / width, gh * scale / 100 / height))
    ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    shown = min(max_maps, maps.shape[-1])
    more = f", first {shown}" if shown < maps.shape[-1] else ""
    fig.suptitle(f"{path}: {maps.shape[-1]} maps of {maps.shape[0]}x{maps.shape[1]}{more} "
                 f"(each normalised)", fontsize=10, y=1 - 0.15 / height)
    out = Path(output_dir) / f"activations_{safe_name(name)}_{safe_name(path)}.png"
    return save_figure(fig, out)
