"""Box-aware augmentation of detection batches inside ``tf.data``: mosaic, scale, crop, a
horizontal flip and colour jitter, the boxes moved with the pixels.

Targets stay the padded ``[B, M, 5]`` rows ``(class, x0, y0, x1, y1)`` in the letterboxed
square's pixels (class -1: padding). A box that the geometry pushes mostly out of the image is
dropped (its row becomes padding); with ``mosaic`` the rows grow to ``4 * M`` so that no tile's
box is lost (:func:`target_rows`).

Every random draw is stateless, from the seed pair the engine passes with each batch
(:func:`transfer.feeding.epoch_dataset`), so a batch is the same every time it is made (a
resumed run sees the batches an uninterrupted one would) and it all runs in graph mode.

Why not Keras's box-aware layers (``keras.layers.RandomZoom``, ``RandomTranslation``, ``RandomCrop``
with a ``{"images", "bounding_boxes"}`` dict, Keras 3.15), measured before this was written:

- They draw from their own ``SeedGenerator``, a variable stepped on each call:
  ``get_random_transformation(data, seed=...)`` refuses a seed tensor ("Argument `seed` must be
  either an integer or an instance of `SeedGenerator`"), so no per-batch stateless pair reaches
  them. In a parallel ``tf.data`` map two batches drew the same zoom, a second pass over the
  dataset drew other zooms, and a fresh layer with the same seed did not repeat the first pass:
  a resumed run could not replay its batches.
- ``clip_to_image_size`` drops only boxes of zero area: a box clipped to a 0.5 px sliver keeps
  its class.
- ``RandomZoom`` zooms about the centre and ``RandomTranslation`` shifts: two resamplings and
  two clips for one scale-and-move; ``RandomCrop`` cuts one window for the whole batch, and
  none at the input's own size (it cannot crop and resize back).
- ``keras.utils.bounding_boxes.affine_transform`` takes one scale for both axes (a crop that
  changes the aspect ratio is two) and translations in fractions of ``size - 1``.

Their geometry was right (pixel extents and boxes agreed within a pixel), so what is used here is
Keras's: ``keras.ops.image.affine_transform`` warps the images (one resampling for the whole
scale, crop and shift) and ``keras.utils.bounding_boxes.clip_to_image_size`` clips the boxes;
the draws, the box arithmetic (one multiply-add per coordinate) and the stricter drop rule are
here.
"""

from __future__ import annotations

#: the operations of ``--augment`` that detection applies, in the order they run
AUGMENTATIONS = ("mosaic", "scale", "crop", "flip", "colour")
#: ``scale`` zooms by a factor drawn from this range (< 1: out, the rest letterbox grey)
SCALE_RANGE = (0.5, 1.5)
#: ``crop`` keeps this fraction of each side (drawn per axis) and resizes it back
CROP_RANGE = (0.5, 1.0)
#: the fraction of a batch's images that ``mosaic`` replaces by four half-size tiles
MOSAIC_FRACTION = 0.5
#: a moved box is kept if both its sides are at least this many pixels...
MIN_SIDE = 2.0
#: ... and at least this fraction of its area is still inside the image
MIN_VISIBLE = 0.2
_PAD = (-1.0, 0.0, 0.0, 0.0, 0.0)


def target_rows(rows: int, *, mosaic: bool) -> int:
    """The rows of the augmented targets for ``rows`` before: a mosaic holds four images'."""
    return 4 * rows if mosaic else rows


def pad_rows(targets, rows: int):
    """``[B, M, 5]`` targets with padding rows added up to ``rows``."""
    import tensorflow as tf

    targets = tf.convert_to_tensor(targets, tf.float32)
    extra = rows - tf.shape(targets)[1]
    return tf.concat([targets, tf.tile(tf.constant([[_PAD]]), [tf.shape(targets)[0], extra, 1])],
                     axis=1)


def augment_boxes(images, targets, seed, *, flip: bool = False, scale: bool = False,
                  crop: bool = False, mosaic: bool = False, colour: bool = False):
    """Augment a batch of letterboxed images and their boxes together.

    In this order, each op's draws independent of the others':

    - ``mosaic``: :data:`MOSAIC_FRACTION` of the images become a 2 x 2 mosaic: the image itself
      (top left) and three others of the batch (top right, bottom left, bottom right), each at
      half size, their boxes halved and moved with them; the rows grow to ``4 * M``.
    - ``scale``: a zoom by a factor from :data:`SCALE_RANGE`; zoomed out, the image lands at a
      random place on letterbox grey; zoomed in, a random window of it fills the square.
    - ``crop``: a random window of :data:`CROP_RANGE` of each side, resized back.
    - Boxes are clipped to the image; one left with a side under :data:`MIN_SIDE` px or under
      :data:`MIN_VISIBLE` of its (moved) area becomes a padding row.
    - ``flip``: a left-right mirror of half the images, their boxes mirrored.
    - ``colour``: a brightness shift (+-25) and a contrast factor (0.8-1.2) per image.

    Args:
        images: float32 ``[B, H, W, 3]``, 0-255 (H and W even for ``mosaic``).
        targets: float32 ``[B, M, 5]`` rows ``(class, x0, y0, x1, y1)`` in pixels of
            ``images``; class -1: padding.
        seed: a stateless seed pair, shape ``[2]`` (int32 or int64).

    Returns:
        ``(images, targets)``: images of the same shape, targets ``[B, M', 5]`` with ``M'``
        :func:`target_rows`; padding rows are ``(-1, 0, 0, 0, 0)``.
    """
    import tensorflow as tf

    images = tf.convert_to_tensor(images, tf.float32)
    targets = tf.convert_to_tensor(targets, tf.float32)
    if mosaic:
        images, targets = _mosaic(images, targets, _stream(seed, 1))
    if scale or crop:
        images, targets = _zoom(images, targets, _stream(seed, 2), scale=scale, crop=crop)
    if flip:
        images, targets = _flip(images, targets, seed)
    if colour:
        images = _colour(images, seed)
    return images, targets


def _stream(seed, index: int):
    """An independent seed pair for one op (the flip and colour keep ``seed`` itself)."""
    import tensorflow as tf

    return tf.random.experimental.stateless_fold_in(seed, index)


def _uniform(shape, seed, low: float = 0.0, high: float = 1.0):
    import tensorflow as tf

    return tf.random.stateless_uniform(shape, seed=seed, minval=low, maxval=high)


def _mosaic(images, targets, seed):
    import tensorflow as tf

    n = tf.shape(images)[0]
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    rows = targets.shape[1] if targets.shape[1] is not None else tf.shape(targets)[1]
    seeds = tf.random.experimental.stateless_split(seed, 2)
    chosen = _uniform([n], seeds[0]) < MOSAIC_FRACTION
    others = tf.random.stateless_uniform([n, 3], seed=seeds[1], minval=0, maxval=n,
                                         dtype=tf.int32)
    tiles = tf.concat([tf.range(n)[:, None], others], axis=1)  # [B, 4]: TL, TR, BL, BR
    half = tf.nn.avg_pool2d(images, 2, 2, "VALID")  # each image at half size, 2 x 2 means
    quarter = tf.gather(half, tiles)  # [B, 4, H/2, W/2, 3]
    canvas = tf.concat([tf.concat([quarter[:, 0], quarter[:, 1]], axis=2),
                        tf.concat([quarter[:, 2], quarter[:, 3]], axis=2)], axis=1)
    hx, hy = tf.cast(width // 2, tf.float32), tf.cast(height // 2, tf.float32)
    shift = tf.stack([[0.0, 0.0], [hx, 0.0], [0.0, hy], [hx, hy]])  # [4, 2] per quadrant
    tiled = tf.gather(targets, tiles)  # [B, 4, M, 5]
    classes = tiled[..., :1]
    boxes = tiled[..., 1:] / 2 + tf.tile(shift, [1, 2])[None, :, None, :]
    tiled = tf.where(classes >= 0, tf.concat([classes, boxes], axis=-1), _PAD)
    tiled = tf.reshape(tiled, [n, 4 * rows, 5])
    padded = pad_rows(targets, 4 * rows)
    images = tf.where(chosen[:, None, None, None], canvas, images)
    targets = tf.where(chosen[:, None, None], tiled, padded)
    return images, targets


def _zoom(images, targets, seed, *, scale: bool, crop: bool):
    """One affine warp per image, ``x' = s x + t`` per axis (pixel-edge coordinates, as the
    boxes are), for the scale and the crop together; boxes moved, clipped and dropped."""
    import keras
    import tensorflow as tf

    from transfer.data.pipelines import LETTERBOX_FILL

    n = tf.shape(images)[0]
    size = tf.cast(tf.stack([tf.shape(images)[2], tf.shape(images)[1]]), tf.float32)  # (w, h)
    seeds = tf.random.experimental.stateless_split(seed, 4)
    factor = tf.ones([n, 2])
    offset = tf.zeros([n, 2])
    if scale:  # the same factor on both axes; the slack between image and square, at random
        s = tf.tile(_uniform([n, 1], seeds[0], *SCALE_RANGE), [1, 2])
        factor, offset = s, size * (1.0 - s) * _uniform([n, 2], seeds[1])
    if crop:  # a window of each side, anywhere inside: zoom in by its inverse
        c = 1.0 / _uniform([n, 2], seeds[2], *CROP_RANGE)
        factor, offset = factor * c, offset * c + size * (1.0 - c) * _uniform([n, 2], seeds[3])
    # The warp maps each output pixel index p to the input index (p + 0.5 - t) / s - 0.5.
    sx, sy, tx, ty = factor[:, 0], factor[:, 1], offset[:, 0], offset[:, 1]
    zero = tf.zeros([n])
    transform = tf.stack([1.0 / sx, zero, (0.5 - tx) / sx - 0.5,
                          zero, 1.0 / sy, (0.5 - ty) / sy - 0.5, zero, zero], axis=1)
    images = keras.ops.image.affine_transform(images, transform, interpolation="bilinear",
                                              fill_mode="constant", fill_value=LETTERBOX_FILL)
    boxes = targets[..., 1:] * tf.tile(factor, [1, 2])[:, None] + tf.tile(offset, [1, 2])[:, None]
    return images, clip_and_drop(targets[..., :1], boxes, size)


def clip_and_drop(classes, boxes, size):
    """``[B, M, 5]`` targets of ``boxes`` (moved, not clipped) clipped to the ``(w, h)`` image;
    boxes too thin or too little inside become padding rows."""
    import keras
    import tensorflow as tf

    clipped = keras.utils.bounding_boxes.clip_to_image_size(
        {"boxes": boxes, "labels": classes[..., 0]}, height=size[1], width=size[0],
        bounding_box_format="xyxy")
    inside, labels = clipped["boxes"], clipped["labels"]
    w, h = inside[..., 2] - inside[..., 0], inside[..., 3] - inside[..., 1]
    moved = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    keep = ((labels >= 0) & (w >= MIN_SIDE) & (h >= MIN_SIDE)
            & (w * h >= MIN_VISIBLE * moved))
    return tf.where(keep[..., None], tf.concat([labels[..., None], inside], axis=-1), _PAD)


def mirror_boxes(images, targets):
    """Images mirrored left to right, and their padded targets ``[B, M, 5]`` (class, x0, y0,
    x1, y1 in the image's pixels) with them; padding rows (class -1) stay as they are."""
    import tensorflow as tf

    size = tf.cast(tf.shape(images)[2], targets.dtype)
    classes, x0, y0, x1, y1 = tf.unstack(targets, axis=-1)
    flipped = tf.stack([classes, size - x1, y0, size - x0, y1], axis=-1)
    return images[:, :, ::-1], tf.where((classes >= 0)[..., None], flipped, targets)


def _flip(images, targets, seed):
    import tensorflow as tf

    mirror = _uniform([tf.shape(images)[0]], seed) < 0.5
    mirrored, flipped = mirror_boxes(images, targets)
    return (tf.where(mirror[:, None, None, None], mirrored, images),
            tf.where(mirror[:, None, None], flipped, targets))


def _colour(images, seed):
    import tensorflow as tf

    n = tf.shape(images)[0]
    brightness = _uniform([n, 1, 1, 1], seed + 1, -25.0, 25.0)
    contrast = _uniform([n, 1, 1, 1], seed + 2, 0.8, 1.2)
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    return tf.clip_by_value((images - mean) * contrast + mean + brightness, 0.0, 255.0)


__all__ = ["AUGMENTATIONS", "augment_boxes", "clip_and_drop", "mirror_boxes", "pad_rows",
           "target_rows"]
