"""Joint augmentation of images and masks, on batches inside ``tf.data``: one random flip,
scale, crop and rotation per sample moves image and mask together (images bilinear, masks
nearest, pixels from outside the mask ``ignore_index``), then colour jitter on the image only.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Sequence

from transfer.errors import ConfigError
from transfer.tasks.segmentation.masks import DEFAULT_IGNORE_INDEX

log = logging.getLogger(__name__)

_COLOUR_STRENGTH = 0.2  # brightness, contrast and saturation factors drawn from 1 +- this






def _check_augment(scale: Sequence[float] | None, rotate: float, ignore_index: int) -> None:
    if scale is not None and (len(scale) != 2 or not 0 < scale[0] <= scale[1]):
        raise ConfigError(f"scale must be (low, high) with 0 < low <= high, or None; got "
                          f"{scale!r}")
    if not 0 <= rotate <= 180:
        raise ConfigError(f"rotate must be 0-180 degrees; got {rotate!r}")
    if not 0 <= ignore_index <= 255:
        raise ConfigError(f"ignore_index must be 0-255; got {ignore_index!r}")


def joint_augment(images, masks, seed, *, flip: bool = True,
                  scale: Sequence[float] | None = (0.75, 1.25), rotate: float = 10.0,
                  colour: bool = True, ignore_index: int = DEFAULT_IGNORE_INDEX):
    """Augment a batch of images and their masks together, deterministically from ``seed``.

    Each sample gets one transform: a left-right flip (p = 0.5), a zoom by a factor drawn
    uniformly from ``scale`` with a random crop of the output size (zooming out pads instead),
    and a rotation drawn uniformly from +-``rotate`` degrees. Images are sampled bilinearly
    (pixels from outside reflected), masks by nearest neighbour (pixels from outside are
    ``ignore_index``). Then, on the images only, brightness, contrast and saturation factors
    from 1 +- 0.2, clipped to 0-255. Stateless random ops only, so it runs inside
    ``tf.data.Dataset.map`` (graph mode) and a seed gives the same batch every time; the
    geometry does not depend on ``colour``.

    Args:
        images: float32 ``(b, h, w, 3)``, 0-255.
        masks: uint8 or int32 ``(b, h, w)`` class indices.
        seed: int32/int64 tensor of shape ``[2]``, e.g. a ``tf.data.Dataset.random`` pair.
        flip: random left-right flips.
        scale: ``(low, high)`` zoom factors (> 1 zooms in), or None for none.
        rotate: largest rotation, degrees (0: none).
        colour: colour jitter on the images.
        ignore_index: the mask value of pixels that came from outside the mask.

    Returns:
        ``(images, masks)`` with the input shapes and dtypes.
    """
    import tensorflow as tf

    _check_augment(scale, rotate, ignore_index)
    images = tf.convert_to_tensor(images, tf.float32)
    masks = tf.convert_to_tensor(masks)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 6)
    shape = tf.shape(images)
    b, h, w = shape[0], shape[1], shape[2]
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)

    def uniform(index: int, low: float = 0.0, high: float = 1.0, n: int = 1):
        return tf.random.stateless_uniform([b, n] if n > 1 else [b], seeds[index], low, high)

    mirror = (tf.where(uniform(0) < 0.5, -1.0, 1.0) if flip else tf.ones([b]))
    zoom = uniform(1, float(scale[0]), float(scale[1])) if scale is not None else tf.ones([b])
    angle = (uniform(2, -rotate, rotate) * (math.pi / 180.0) if rotate
             else tf.zeros([b]))
    # Crop offset: the sampled window moves by up to the slack between it and the image.
    shift = uniform(3, -1.0, 1.0, n=2)
    tx = shift[:, 0] * tf.abs(wf - wf / zoom) / 2
    ty = shift[:, 1] * tf.abs(hf - hf / zoom) / 2
    # Output pixel p maps to source point c + R(angle) F (p - c) / zoom + t (F: the mirror).
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    a0, a1 = cos * mirror, -sin
    b0, b1 = sin * mirror, cos
    cx, cy = (wf - 1) / 2, (hf - 1) / 2
    transforms = tf.stack([a0, a1, cx + tx - a0 * cx - a1 * cy,
                           b0, b1, cy + ty - b0 * cx - b1 * cy,
                           tf.zeros([b]), tf.zeros([b])], axis=1)
    warp = tf.raw_ops.ImageProjectiveTransformV3
    out_images = warp(images=images, transforms=transforms, output_shape=shape[1:3],
                      fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")
    out_masks = warp(images=masks[..., None], transforms=transforms, output_shape=shape[1:3],
                     fill_value=float(ignore_index), interpolation="NEAREST",
                     fill_mode="CONSTANT")[..., 0]
    if colour:
        out_images = _jitter(out_images, uniform(4, 1 - _COLOUR_STRENGTH,
                                                 1 + _COLOUR_STRENGTH, n=3))
    out_images = tf.ensure_shape(out_images, images.shape)
    out_masks = tf.ensure_shape(out_masks, masks.shape)
    return out_images, out_masks


def _jitter(images, factors):
    """Brightness, contrast, then saturation, each by its per-sample factor; clipped."""
    import tensorflow as tf

    brightness, contrast, saturation = (factors[:, i, None, None, None] for i in range(3))
    x = images * brightness
    mean = tf.reduce_mean(tf.image.rgb_to_grayscale(x), axis=[1, 2, 3], keepdims=True)
    x = (x - mean) * contrast + mean
    gray = tf.image.rgb_to_grayscale(x)
    x = (x - gray) * saturation + gray
    return tf.clip_by_value(x, 0.0, 255.0)


def augment_batches(dataset, *, seed: int, **options: Any):
    """Map :func:`joint_augment` over a batched ``(images, masks)`` dataset.

    Each batch gets its own seed from ``tf.data.Dataset.random(seed)``, new each epoch and the
    same for the same ``seed`` in every run. ``options`` are those of :func:`joint_augment`.
    """
    import tensorflow as tf

    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.zip(dataset, seeds).map(
        lambda batch, pair: joint_augment(batch[0], batch[1], pair, **options),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

