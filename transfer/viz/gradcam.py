"""Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization"): where in the image the evidence for a class lies.

The class score's gradient with respect to the feature maps of a spatial layer (by default the
last one larger than 1x1, nested backbones included) is averaged per channel; the channel-weighted
sum of the maps, through a ReLU and min-max scaled to [0, 1], is the heatmap. The score is the
class logit when the model ends in a dense softmax layer (softmax probabilities saturate and their
gradients vanish).

The heatmap is brought to image size by placing each cell at the centre of its receptive field,
computed exactly through convolutions and pooling (``Geometry``): a plain resize would stretch
the maps of ``valid``-padded networks such as LeNet-5 over the whole image.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from transfer.errors import ConfigError
from transfer.plots import new_figure, save_figure
from transfer.viz.common import (
    final_dense,
    label_of,
    last_spatial_layer,
    normalise,
    safe_name,
)
from transfer.viz.taps import Geometry, tap_model

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class GradCam:
    """Heatmaps of a batch of images.

    Attributes:
        heatmaps: ``(n, size, size)`` in [0, 1], aligned with the images.
        maps: ``(n, h, w)`` in [0, 1], at the layer's resolution.
        class_indices: ``(n,)`` the class each heatmap explains.
        probabilities: ``(n, classes)`` the model's predictions.
        layer: path of the layer the maps come from.
    """

    heatmaps: np.ndarray
    maps: np.ndarray
    class_indices: np.ndarray
    probabilities: np.ndarray
    layer: str


def grad_cam(model, images: np.ndarray, *, class_index: int | Sequence[int] | None = None,
             layer: str | None = None) -> GradCam:
    """Grad-CAM heatmaps for raw 0-255 images.

    Args:
        model: a classifier taking raw 0-255 RGB images (see ``load_for_viz``).
        images: ``(n, size, size, 3)`` 0-255 pixels.
        class_index: the class to explain, one for all or one per image; default: each image's
            predicted class.
        layer: a spatial layer (path or unique name); default: the last one larger than 1x1.
    """
    import tensorflow as tf

    images = np.asarray(images, dtype=np.float32)
    path = layer or last_spatial_layer(model)[0]
    dense = final_dense(model)
    use_logits = dense is not None and getattr(dense[1].activation, "__name__", "") == "softmax"
    tap = tap_model(model, [path, (dense[0], "input")] if use_logits else [path])
    x = tf.convert_to_tensor(images)
    with tf.GradientTape() as tape:
        outputs = tap(x)
        features, probabilities = outputs[0], outputs[-1]
        if len(features.shape) != 4:
            raise ConfigError(f"layer {tap.paths[0]!r} has no spatial output "
                              f"({tuple(features.shape)}); Grad-CAM needs a 4-D layer")
        if use_logits:
            kernel, bias = dense[1].kernel, dense[1].bias
            scores = tf.matmul(outputs[1], kernel) + (bias if bias is not None else 0.0)
        else:
            scores = probabilities
        if class_index is None:
            chosen = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        else:
            chosen = tf.broadcast_to(tf.constant(class_index, tf.int32), [len(images)])
        target = tf.reduce_sum(tf.gather(scores, chosen, batch_dims=1))
    grads = tape.gradient(target, features)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cams = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1)).numpy()
    flat = cams.max(axis=(1, 2)) <= cams.min(axis=(1, 2))
    if np.any(flat):
        log.warning("Grad-CAM found no localised evidence for %d image(s) at layer %s",
                    int(np.sum(flat)), tap.paths[0])
    # Min-max rather than max alone: the ReLU'd map often has a high floor (evidence spread over
    # the whole image) that would otherwise wash the whole overlay out.
    maps = normalise(cams, axis=(1, 2))
    size = images.shape[1]
    heatmaps = np.stack([upsample(m, tap.geometries[0], size) for m in maps]) if len(maps) else (
        np.zeros((0, size, size), np.float32))
    return GradCam(np.clip(heatmaps, 0, 1), maps, chosen.numpy(), np.asarray(probabilities),
                   tap.paths[0])


def upsample(cam: np.ndarray, geometry: Geometry | None, size: int) -> np.ndarray:
    """Bilinear upsampling of an ``(h, w)`` map to ``(size, size)``, cells at their centres.

    Outside the outermost cell centres the edge values are held. Without a known geometry the
    cells are spread evenly over the image (what an image resize does).
    """
    h, w = cam.shape
    if geometry is None:
        geometry = Geometry((size / h - 1) / 2, size / h, (size / w - 1) / 2, size / w)
    rows = _interpolation_matrix(size, geometry.y0, geometry.sy, h)
    cols = _interpolation_matrix(size, geometry.x0, geometry.sx, w)
    return (rows @ cam @ cols.T).astype(np.float32)


def _interpolation_matrix(size: int, start: float, step: float, n: int) -> np.ndarray:
    centres = start + step * np.arange(n)
    pixels = np.arange(size, dtype=np.float64)
    eye = np.eye(n)
    return np.stack([np.interp(pixels, centres, eye[i]) for i in range(n)], axis=1)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """A 0-255 image with a jet-coloured heatmap blended on top, ``(size, size, 3)`` in [0, 1]."""
    from matplotlib import colormaps

    colour = colormaps["jet"](np.clip(heatmap, 0, 1))[..., :3]
    return np.clip((1 - alpha) * image / 255.0 + alpha * colour, 0, 1).astype(np.float32)


def plot_gradcam(model, images: np.ndarray, names: Sequence[str], output_dir: str | os.PathLike,
                 *, class_names: Sequence[str] | None = None,
                 class_index: int | None = None, layer: str | None = None) -> list[Path]:
    """Write ``gradcam_<name>.png`` per image (image, heatmap, overlay) and return the paths."""
    cam = grad_cam(model, images, class_index=class_index, layer=layer)
    paths = []
    for i, name in enumerate(names):
        fig = gradcam_figure(images[i], cam, i, class_names, title=name)
        paths.append(save_figure(fig, Path(output_dir) / f"gradcam_{safe_name(name)}.png"))
    return paths


def gradcam_figure(image: np.ndarray, cam: GradCam, i: int,
                   class_names: Sequence[str] | None, *, title: str = ""):
    """Three panels: the image, the heatmap, the overlay; the prediction in the title."""
    probabilities = cam.probabilities[i]
    top = int(np.argmax(probabilities))
    explained = int(cam.class_indices[i])
    fig = new_figure(7.5, 2.9)
    panels = [(np.clip(image / 255.0, 0, 1), title or "image"),
              (cam.heatmaps[i], f"Grad-CAM ({cam.layer})"),
              (overlay(image, cam.heatmaps[i]), f"for '{label_of(explained, class_names)}'")]
    for k, (data, caption) in enumerate(panels):
        ax = fig.add_axes((0.02 + k * 0.33, 0.05, 0.3, 0.72))
        ax.imshow(data, cmap="jet" if data.ndim == 2 else None, vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_title(caption, fontsize=8)
        ax.set_axis_off()
    fig.suptitle(f"predicted {label_of(top, class_names)} ({probabilities[top]:.2f}); "
                 f"explaining {label_of(explained, class_names)} "
                 f"({probabilities[explained]:.2f})", fontsize=10, y=0.97)
    return fig
