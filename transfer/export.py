"""Exports that work outside the toolkit: a SavedModel taking raw images, with class names.

The SavedModel's endpoints:

- ``serving_default`` (alias of ``serve_images``): ``images``, uint8 ``[batch, height, width, 3]``
  of any size. Resizing and the backbone's preprocessing happen inside.
- ``serve_bytes``: ``image_bytes``, a string vector of encoded JPEG/PNG/GIF/BMP files (what TF
  Serving's REST users send as base64).
- ``class_names``: no input; the class names in label order.

Both serving endpoints return ``probabilities`` ``[batch, classes]``, ``top_scores``,
``top_indices`` and ``top_classes`` (strings) for the top ``k`` classes.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import keras
import tensorflow as tf

from transfer.data import decode_and_resize, resize_images
from transfer.errors import RunDirError

log = logging.getLogger(__name__)

DEFAULT_TOP_K = 5


class ServingFunctions:
    """The raw-image and encoded-bytes entry points, shared by export and ``predict``.

    ``predict`` in this process and the exported SavedModel run the same code, so they cannot
    disagree on resizing or preprocessing.
    """

    def __init__(self, model: keras.Model, class_names: Sequence[str], top_k: int = DEFAULT_TOP_K):
        self.model = model
        self.image_size = int(model.input_shape[1])
        self.class_names = list(class_names)
        self.top_k = max(1, min(top_k, len(self.class_names)))
        self._names = tf.constant(self.class_names)

    def _outputs(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = self.model(images, training=False)
        scores, indices = tf.math.top_k(probabilities, k=self.top_k)
        return {
            "probabilities": probabilities,
            "top_scores": scores,
            "top_indices": indices,
            "top_classes": tf.gather(self._names, indices),
        }

    def serve_images(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._outputs(resize_images(images, self.image_size))

    def serve_bytes(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        images = tf.map_fn(lambda b: decode_and_resize(b, self.image_size), image_bytes,
                           fn_output_signature=tf.TensorSpec((self.image_size, self.image_size, 3),
                                                             tf.float32))
        return self._outputs(images)

    def get_class_names(self) -> tf.Tensor:
        return self._names


def export_saved_model(model: keras.Model, path: str | os.PathLike, class_names: Sequence[str],
                       *, top_k: int = DEFAULT_TOP_K, force: bool = False) -> Path:
    """Write a SavedModel for plain TensorFlow and TF Serving, atomically.

    The model is written to a temporary sibling folder and renamed into place, so a failure leaves
    nothing half-written at ``path``. An existing ``path`` is replaced only with ``force=True``.
    """
    fns = ServingFunctions(model, class_names, top_k)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serve_images", fns.serve_images,
        input_signature=[tf.TensorSpec((None, None, None, 3), tf.uint8, name="images")])
    archive.add_endpoint(
        "serve_bytes", fns.serve_bytes,
        input_signature=[tf.TensorSpec((None,), tf.string, name="image_bytes")])
    archive.add_endpoint("class_names", fns.get_class_names, input_signature=[])
    with atomic_output(path, force=force) as tmp:
        archive.write_out(str(tmp), verbose=False)
    return Path(path)


class atomic_output:
    """Context manager yielding a temporary sibling path that is renamed to ``path`` on success."""

    def __init__(self, path: str | os.PathLike, *, force: bool = False):
        self.path = Path(path)
        self.force = force

    def __enter__(self) -> Path:
        if self.path.exists() and not self.force:
            raise RunDirError(f"{str(self.path)!r} already exists; pass --force to replace it")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp_dir = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                             dir=self.path.parent))
        return self.tmp_dir / self.path.name

    def __exit__(self, exc_type, exc, tb) -> None:
        written = self.tmp_dir / self.path.name
        try:
            if exc_type is None:
                if self.path.exists():
                    backup = self.tmp_dir / "previous"
                    os.rename(self.path, backup)
                os.rename(written, self.path)
        finally:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
