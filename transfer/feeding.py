"""Data feeding for the epoch loop: per-epoch ordered batches, the one memory cache, mixup/CutMix.

Every batch of every epoch depends only on ``(seed, epoch)``, so a resumed run sees exactly the
batches an uninterrupted run would. Decoded images are held in memory (:class:`ImageFeed`) when
the split fits in what is left of ``memory_cache_mb``; otherwise each epoch decodes them again
from their files. Targets are encoded by the task (one-hot class vectors for classification).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from typing import Any, Callable

import numpy as np

from transfer import data as data_lib
from transfer.errors import DataError
from transfer.views import epoch_views


def files_changed(count: int) -> DataError:
    return DataError(f"{count} image(s) no longer decode (changed since they were checked); "
                     f"run 'zoo data check' on the data and train again")


def epoch_dataset(num_items: int, fetch: Callable, *, seed: int, start_epoch: int,
                  end_epoch: int, batch_size: int, shuffle: bool,
                  batch_fn: Callable | None = None, batched: bool = False, views: int = 1):
    """Batches for epochs ``[start_epoch, end_epoch)``; each epoch's order is a stateless
    permutation of ``(seed, epoch)``, so it is the same whether or not the run was resumed.
    With ``views`` > 1 (the view cache, :mod:`transfer.views`) each item ``i`` is fetched as
    ``k * num_items + i``, its view ``k`` also a function of ``(seed, epoch)``.

    ``fetch`` maps an item index to ``(x, y)``, or with ``batched`` a vector of indices to a
    batch: in-memory data is then gathered once per batch, not copied item by item and again
    into the batch. ``batch_fn(batch, seed_pair)`` may transform each batch (mixup/CutMix) with a
    seed that also depends only on the epoch and batch number.
    """
    import tensorflow as tf

    seed_t = tf.constant(seed, tf.int64)

    def one_epoch(epoch):
        index = tf.range(num_items, dtype=tf.int64)
        if shuffle:
            index = tf.random.experimental.stateless_shuffle(index, seed=tf.stack([seed_t, epoch]))
        if views > 1:
            index = tf.gather(epoch_views(seed_t, epoch, num_items, views), index) * num_items \
                + index
        ds = tf.data.Dataset.from_tensor_slices(index)
        if batched:
            ds = ds.batch(batch_size).map(fetch, num_parallel_calls=tf.data.AUTOTUNE,
                                          deterministic=True)
        else:
            ds = (ds.map(fetch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                  .batch(batch_size))
        if batch_fn is not None:
            ds = ds.enumerate().map(
                lambda i, b: batch_fn(b, tf.stack([seed_t, epoch * 1_000_003 + i])),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds

    batches = (end_epoch - start_epoch) * math.ceil(num_items / batch_size)
    return (tf.data.Dataset.range(start_epoch, end_epoch).flat_map(one_epoch)
            .apply(tf.data.experimental.assert_cardinality(batches))
            .prefetch(tf.data.AUTOTUNE))


def take(targets, i):
    """Rows ``i`` of the targets: a tensor indexed by position, or a nest of them (targets of
    any length per image, padded to one length: a detector's boxes and their count)."""
    import tensorflow as tf

    return tf.nest.map_structure(lambda t: tf.gather(t, i), targets)


def fetch_arrays(xs: list[np.ndarray], targets, *, items: int | None = None) -> Callable:
    """A batched fetch (index vector -> (inputs, targets)) for :func:`epoch_dataset`: each
    array of ``xs`` (one per model input) gathered from a constant, or read from a
    memory-mapped array on disk, as float32 whatever it stores. ``items``: the targets are one
    per item while ``xs`` hold several views of each (index ``k * items + i``), so the targets
    are taken at ``index % items``."""
    import tensorflow as tf

    def gather(x):
        if not isinstance(x, np.memmap):
            constant = tf.constant(x)
            return lambda i: tf.cast(tf.gather(constant, i), tf.float32)

        def read(i):
            rows = tf.numpy_function(lambda index: np.asarray(x[index], np.float32), [i],
                                     tf.float32, stateful=False)
            rows.set_shape([None, *x.shape[1:]])
            return rows

        return read

    readers = [gather(x) for x in xs]

    def label(i):
        return take(targets, i if items is None else i % items)

    if len(readers) == 1:
        return lambda i: (readers[0](i), label(i))
    return lambda i: (tuple(read(i) for read in readers), label(i))


class ImageFeed:
    """Decoded images of the splits, held in memory up to ``memory_mb`` (the one memory cache).

    Args:
        image_size: the side images are resized to.
        memory_mb: how much decoded float32 pixels may be held, over all splits.
        encode: the task's targets of a split, ``split -> targets`` (a tensor, or a nest of
            padded tensors, indexed by position: one-hot classes, class maps).
    """

    def __init__(self, image_size: int, memory_mb: int, encode: Callable, fit: str = "stretch"):
        self.image_size = image_size
        self.fit = fit
        self.memory_mb = memory_mb
        self.encode = encode
        self._images: dict[tuple[str, ...], Any] = {}

    def fetch(self, split: data_lib.Split) -> tuple[Callable, bool]:
        """``(fetch, batched)`` for :func:`epoch_dataset`: index vector -> (images, targets)
        gathered from memory when the decoded split fits, else index -> (image, target) decoded
        from its file every epoch."""
        import tensorflow as tf

        size = self.image_size
        targets = self.encode(split)
        key = tuple(split.paths)
        if key not in self._images:
            held = sum(int(np.prod(x.shape)) * 4 for x in self._images.values())
            if held + len(split) * size * size * 3 * 4 <= self.memory_mb * 2**20:
                self._images[key] = tf.constant(decode_all(split, size, self.fit))
        if key in self._images:
            images = self._images[key]
            return (lambda i: (tf.gather(images, i), take(targets, i))), True
        load = data_lib.split_loader(split, image_size=size, fit=self.fit)
        return (lambda i: (load(i), take(targets, i))), False

    def evaluation_dataset(self, split: data_lib.Split, *, batch_size: int, seed: int):
        """One pass over ``split`` in order: from memory when it fits, else decoded from the
        files (a file that no longer decodes is dropped with a warning)."""
        fetch, batched = self.fetch(split)
        if batched:
            return epoch_dataset(len(split), fetch, seed=seed, start_epoch=0, end_epoch=1,
                                 batch_size=batch_size, shuffle=False, batched=True)
        import tensorflow as tf

        targets = self.encode(split)
        # Labels replaced by positions, so targets of any kind are looked up by position.
        indexed = dataclasses.replace(split, labels=tuple(range(len(split))))
        return (data_lib.image_dataset(indexed, image_size=self.image_size, fit=self.fit)
                .map(lambda x, i: (x, take(targets, i)))
                .batch(batch_size).prefetch(tf.data.AUTOTUNE))

    def clear(self) -> None:
        self._images.clear()


def decode_all(split: data_lib.Split, image_size: int, fit: str = "stretch") -> np.ndarray:
    """Every image of ``split``, decoded and resized, as one float32 array in split order."""
    ds = data_lib.make_dataset(split, image_size=image_size, batch_size=64, shuffle=False,
                               cache=False, fit=fit)
    images = np.concatenate([np.asarray(x) for x, _ in ds])
    if len(images) != len(split):  # a file dropped: images and labels would misalign
        raise files_changed(len(split) - len(images))
    return images


@contextlib.contextmanager
def unknown_length_ok():
    """Image datasets have no known length (a file that no longer decodes is dropped rather than
    ending the run), and Keras warns when such a dataset ends ("Your input ran out of data");
    here that end is expected."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Your input ran out of data")
        yield
