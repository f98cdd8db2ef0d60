"""The serving functions: raw images or encoded bytes in, the task's outputs out.

``zoo predict`` in this process and the exported SavedModel run this same code, so they cannot
disagree on decoding, resizing or preprocessing. The SavedModel's endpoints:

- ``serving_default`` (alias of ``serve_images``): ``images``, uint8 ``[batch, height, width, 3]``
  of any size. Resizing and the backbone's preprocessing happen inside.
- ``serve_bytes``: ``image_bytes``, a string vector of encoded JPEG/PNG/GIF/BMP files (what TF
  Serving's REST users send as base64). They are decoded as training reads files
  (:func:`transfer.data.decode_rgb`: accurate-DCT JPEGs, transparency composited on white),
  except that TensorFlow's decoders do not apply the EXIF orientation: send photos already
  upright (or decoded, to ``serve_images``) when their files carry one.
- ``class_names``: no input; the class names in label order.

For classification both serving endpoints return ``probabilities`` ``[batch, classes]``,
``top_scores``, ``top_indices`` and ``top_classes`` (strings) for the top ``k`` classes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import keras
import tensorflow as tf

from transfer import outputs
from transfer.data import decode_and_resize, resize_images
from transfer.rundir import InputContract, atomic_output
from transfer.tasks import get_task

DEFAULT_TOP_K = 5


class ServingFunctions:
    """The raw-image and encoded-bytes entry points of a model under its input contract."""

    def __init__(self, model: keras.Model, contract: InputContract, top_k: int = DEFAULT_TOP_K):
        self.model = model
        self.contract = contract
        self.task = get_task(contract.task, **contract.task_options())
        self.image_size = contract.image_size
        self.class_names = list(contract.class_names)
        self.top_k = max(1, min(top_k, len(self.class_names)))
        self._names = tf.constant(self.class_names)

    def _outputs(self, images: tf.Tensor, input_size: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = self.task.postprocess(self.model(images, training=False))
        return self.task.serving_outputs(outputs, self._names, self.top_k, input_size)

    def serve_images(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._outputs(resize_images(images, self.image_size, self.task.fit),
                             tf.shape(images)[1:3])

    def serve_bytes(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        images = tf.map_fn(lambda b: decode_and_resize(b, self.image_size, self.task.fit),
                           image_bytes,
                           fn_output_signature=tf.TensorSpec((self.image_size, self.image_size, 3),
                                                             tf.float32))
        sizes = None
        if self.task.needs_input_size:  # each image's own (height, width)
            sizes = tf.map_fn(
                lambda b: tf.shape(tf.io.decode_image(b, channels=3, expand_animations=False))[:2],
                image_bytes, fn_output_signature=tf.TensorSpec((2,), tf.int32))
        return self._outputs(images, sizes)

    def get_class_names(self) -> tf.Tensor:
        return self._names


def export_saved_model(model: keras.Model, path: str | os.PathLike,
                       contract: InputContract | Sequence[str], *, top_k: int = DEFAULT_TOP_K,
                       force: bool = False) -> Path:
    """Write a SavedModel for plain TensorFlow and TF Serving, atomically.

    ``contract`` is the run's :class:`~transfer.rundir.InputContract`, or just the class names of
    a classifier (the rest is read from the model).

    The model is written to a temporary sibling folder and renamed into place, so a failure leaves
    nothing half-written at ``path``. An existing ``path`` is replaced only with ``force=True``.
    """
    if not isinstance(contract, InputContract):
        contract = InputContract.of_model(model, contract)
    fns = ServingFunctions(model, contract, top_k)
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
        outputs.mark_folder(tmp, "savedmodel")
    return Path(path)
