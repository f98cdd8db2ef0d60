"""``tf.data`` pipelines from a :class:`~transfer.data.splits.Split`: decode, orient, resize.

**Decoding for training.** Where TensorFlow decodes the original file to exactly the
normalised pixels (:func:`~transfer.data.checks.load_normalized`), training reads the file
itself: RGB or grayscale JPEGs (with libjpeg's accurate integer DCT, which Pillow uses;
TensorFlow's default fast DCT differs by up to 12 levels) and 8-bit RGB or grayscale PNGs
without transparency, with the EXIF orientation applied by TensorFlow ops. These are nearly all
photos. Every other usable file (transparency, palette, 16-bit, CMYK, GIF, BMP, TIFF, WebP, a
PNG without its end chunk) is normalised once into a lossless PNG in the cache directory
(``~/.cache/cnn-zoo/images`` by default), which TensorFlow decodes exactly. Then comes bilinear
``tf.image.resize``, the op the exported model runs on raw pixels, so training sees what the
exported model sees for the normalised image. Caching every image instead would cost disk (a
12 MP photo is 36 MB as raw pixels) and a write per file for no gain in pixels.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from transfer.data.checks import _save_png, load_normalized
from transfer.data.splits import Split
from transfer.errors import DataError

log = logging.getLogger(__name__)


def decode_rgb(contents):
    """Encoded image bytes to uint8 RGB as :func:`~transfer.data.checks.load_normalized` reads
    them, as far as TensorFlow ops can: JPEGs with the accurate DCT (as Pillow decodes them),
    transparency composited on white with Pillow's integer arithmetic, the first frame of a GIF.
    EXIF orientation is not read here (see :func:`orient_image`)."""
    import tensorflow as tf

    def other():
        return tf.cond(tf.strings.substr(contents, 0, 4) == b"GIF8",
                       lambda: tf.io.decode_image(contents, channels=3, expand_animations=False),
                       lambda: composite_on_white(tf.io.decode_image(
                           contents, channels=4, expand_animations=False)))

    return tf.cond(
        tf.io.is_jpeg(contents),
        lambda: tf.io.decode_jpeg(contents, channels=3, dct_method="INTEGER_ACCURATE"),
        other)


def composite_on_white(rgba):
    """uint8 RGBA to RGB over a white background, bit for bit as Pillow's ``alpha_composite``
    (7 extra bits of precision, divisions by 255 rounded by shifts)."""
    import tensorflow as tf

    rgba = tf.cast(rgba, tf.int32)
    rgb, alpha = rgba[..., :3], rgba[..., 3:]
    x = 128 * (rgb * alpha + 255 * (255 - alpha)) + (0x80 << 7)
    x = tf.bitwise.right_shift(tf.bitwise.right_shift(x, 8) + x, 8)
    return tf.cast(tf.bitwise.right_shift(x, 7), tf.uint8)


def orient_image(image, orientation):
    """Apply an EXIF orientation (1-8) as ``ImageOps.exif_transpose`` does."""
    import tensorflow as tf

    transpose = tf.image.transpose
    branches = [
        lambda: image,                                   # 0: not an orientation
        lambda: image,                                   # 1: as stored
        lambda: tf.image.flip_left_right(image),         # 2: mirrored
        lambda: tf.image.rot90(image, 2),                # 3: upside down
        lambda: tf.image.flip_up_down(image),            # 4: mirrored upside down
        lambda: transpose(image),                        # 5: transposed
        lambda: tf.image.rot90(image, 3),                # 6: rotated 90 clockwise to view
        lambda: tf.image.rot90(transpose(image), 2),     # 7: transversed
        lambda: tf.image.rot90(image, 1),                # 8: rotated 90 counter-clockwise
    ]
    return tf.switch_case(tf.clip_by_value(tf.cast(orientation, tf.int32), 0, 8), branches)


#: how an image is brought to the model's square size: ``stretch`` resizes it to the square;
#: ``letterbox`` keeps its aspect ratio, scales its longer side to the square's and fills the
#: rest (below and to the right) with :data:`LETTERBOX_FILL`, so a box's corners map back to
#: the image's own pixels by one scale (:func:`letterbox_scale`). A task names its own.
FITS = ("stretch", "letterbox")
LETTERBOX_FILL = 114.0  # the grey of YOLO's letterbox


def decode_and_resize(contents, image_size: int, fit: str = "stretch"):
    """Encoded image bytes to a float32 ``(size, size, 3)`` tensor of 0-255 pixels."""
    return resize_images(decode_rgb(contents), image_size, fit)


def resize_images(images, image_size: int, fit: str = "stretch"):
    """Bilinear resize of uint8 or float 0-255 images, one image or a batch of one size, to
    the square ``image_size`` as ``fit`` says (:data:`FITS`); the same op in training and
    serving."""
    import tensorflow as tf

    images = tf.cast(images, tf.float32)
    if fit == "stretch":
        return tf.image.resize(images, (image_size, image_size), method="bilinear")
    if fit != "letterbox":
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    shape = tf.shape(images)
    height, width = shape[-3], shape[-2]
    scale = letterbox_scale(tf.stack([height, width]), image_size)
    new = tf.maximum(1, tf.cast(tf.round(tf.cast(tf.stack([height, width]), tf.float32) * scale),
                                tf.int32))
    new = tf.minimum(new, image_size)
    resized = tf.image.resize(images, new, method="bilinear")
    pad = tf.stack([image_size - new[0], image_size - new[1]])
    rank = len(images.shape)
    paddings = ([[0, 0]] if rank == 4 else []) + [[0, pad[0]], [0, pad[1]], [0, 0]]
    padded = tf.pad(resized - LETTERBOX_FILL, paddings) + LETTERBOX_FILL
    return tf.ensure_shape(padded, [None] * (rank - 3) + [image_size, image_size, 3])


def letterbox_scale(sizes, image_size: int):
    """The scale ``image_size / max(height, width)`` of images of ``sizes`` (``[..., 2]``:
    height, width) letterboxed to ``image_size``: model pixels = image pixels x scale."""
    import tensorflow as tf

    sizes = tf.cast(sizes, tf.float32)
    return float(image_size) / tf.reduce_max(sizes, axis=-1)


def _ensure_normalized(split: Split) -> None:
    """Re-create normalised PNGs that were removed from the cache since the check."""
    for path, source in zip(split.paths, split.sources):
        if source != path and not os.path.exists(source):
            from PIL import Image

            log.info("re-creating the normalised copy of %s", path)
            _save_png(Image.fromarray(load_normalized(path)), Path(source))


def split_loader(split: Split, *, image_size: int, fit: str = "stretch"):
    """A function ``i -> image`` (float32, resized) for an int tensor index into ``split``.

    For pipelines that index a split themselves; it reads the same sources and applies the same
    orientations as :func:`image_dataset`.
    """
    import tensorflow as tf

    _ensure_normalized(split)
    sources = tf.constant(list(split.sources or split.paths))
    if not any(o != 1 for o in split.orientations):
        return lambda i: decode_and_resize(tf.io.read_file(tf.gather(sources, i)), image_size,
                                           fit)
    orientations = tf.constant(list(split.orientations), tf.int32)
    return lambda i: resize_images(orient_image(decode_rgb(tf.io.read_file(tf.gather(sources, i))),
                                                tf.gather(orientations, i)), image_size, fit)


def image_dataset(split: Split, *, image_size: int, fit: str = "stretch"):
    """An unbatched ``tf.data.Dataset`` of ``(image, label)``, in split order.

    Reads each file's source (the file, or its normalised PNG), decodes it as Pillow does,
    applies its EXIF orientation and resizes bilinearly. A file that fails to decode anyway
    (changed since the check) is dropped with a logged warning instead of ending training.
    """
    import tensorflow as tf

    if not split.paths:
        raise DataError("cannot build a dataset from an empty split")
    load = split_loader(split, image_size=image_size, fit=fit)
    labels = tf.constant(list(split.labels), tf.int32)
    ds = tf.data.Dataset.range(len(split))
    ds = ds.map(lambda i: (load(i), tf.gather(labels, i)), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True)
    return ds.ignore_errors(log_warning=True)


def make_dataset(split: Split, *, image_size: int, batch_size: int, shuffle: bool = False,
                 seed: int = 42, cache: bool = True, cache_max_bytes: int = 2 << 30,
                 fit: str = "stretch"):
    """A batched ``tf.data.Dataset`` of ``(images, labels)`` from a split.

    Decoding runs in parallel. With ``cache``, decoded images are kept in memory after the first
    epoch when they fit in ``cache_max_bytes`` (float32 pixels); larger splits are decoded again
    each epoch rather than filling memory. Shuffling happens after the cache, so each epoch
    sees a new order.
    """
    import tensorflow as tf

    ds = image_dataset(split, image_size=image_size, fit=fit)
    if cache:
        needed = len(split) * image_size * image_size * 3 * 4
        if needed <= cache_max_bytes:
            ds = ds.cache()
        else:
            log.info("not caching decoded images in memory: %.1f GiB > %.1f GiB",
                     needed / 2**30, cache_max_bytes / 2**30)
    if shuffle:
        ds = ds.shuffle(len(split.paths), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
