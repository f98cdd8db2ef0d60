"""The view cache: what stays frozen is computed once per view of each image, for any task.

A frozen part of a model is a fixed function of its input. Two caches use that, through one
mechanism (:class:`transfer.features.FeatureCache` stores, :func:`transfer.feeding.epoch_dataset`
picks a view):

- the head phase: the frozen backbone's features (every task's :meth:`~transfer.tasks.Task.
  feature_split`);
- the fine-tune phase: the output of the layers below the block fine-tuning unfreezes from, at
  the boundary (and the taps a decoder takes from below it), with the unfrozen blocks and the
  head training on it (:func:`boundary_split`). It computes exactly what the whole model does on
  the same view: the frozen layers below the boundary run in inference mode in both.

With augmentation, each image has ``K`` views (``TrainConfig.cache_views``): the image itself
and its mirror when the augmentation is flips alone (every outcome of a flip, so the cache is
exact), else the image and ``K - 1`` views drawn once from the task's augmentation. Each epoch
takes one view per image, chosen by ``(seed, epoch)`` (:func:`epoch_views`), so a resumed run
sees the views an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from typing import TYPE_CHECKING

import keras

from transfer.model import frozen_part

if TYPE_CHECKING:
    from transfer.config import TrainConfig

log = logging.getLogger(__name__)

#: the accuracy that mirroring may cost a probe on the frozen features before fine-tuning drops
#: flips (``TrainConfig.mirror_check``). Measured with the ImageNet MobileNet-v1 at 128 px, a
#: ridge probe trained on 2,400 images and scored on 600 and their mirrors: MNIST digits lose
#: 0.073 (0.867 -> 0.793), Animal-MNIST silhouettes 0.008 (0.947 -> 0.938).
MIRROR_HARM = 0.03

#: views per image when the augmentation is more than flips (the image and K - 1 drawn views);
#: see docs/training.md, "The view cache", for the measurement behind it
SAMPLED_VIEWS = 4


def augment_ops(config: TrainConfig) -> set[str]:
    return set(filter(None, (config.augment or "").split(",")))


def view_count(config: TrainConfig) -> int:
    """``K``: ``config.cache_views``, or for ``"auto"`` 1 without augmentation, 2 (the image and
    its mirror) with flips alone, :data:`SAMPLED_VIEWS` otherwise."""
    if config.cache_views != "auto":
        return int(config.cache_views)
    ops = augment_ops(config)
    if not ops:
        return 1
    return 2 if ops == {"flip"} else SAMPLED_VIEWS


def exact_views(config: TrainConfig) -> bool:
    """Whether the views are every outcome of the augmentation (none, or flips alone with
    both views), so training on them is training on the augmentation itself."""
    ops = augment_ops(config)
    return not ops or (ops == {"flip"} and view_count(config) == 2)


def mirror_check_runs(given: TrainConfig, config: TrainConfig) -> bool:
    """Whether the mirror check runs: ``config.mirror_check`` is ``"auto"``, the user left the
    augmentation to the task (``given.augment`` unset), which made it flips alone, in
    fine-tune mode, with the cache on (the check reads the cached features)."""
    from transfer.config import TransferMode

    return (config.mirror_check == "auto" and given.augment is None
            and augment_ops(config) == {"flip"} and config.mode is TransferMode.FINE_TUNE
            and config.cache_features)


def check_views(config: TrainConfig) -> None:
    """Refuse one view with augmentation on: the cache would hold the images unaugmented."""
    from transfer.config import TransferMode
    from transfer.errors import ConfigError

    if (config.mode is not TransferMode.FULL_RETRAIN and config.cache_features
            and augment_ops(config) and config.cache_views == 1):
        raise ConfigError(f"cache_views 1 would train without the augmentation "
                          f"({config.augment}); give 2 or more views, or turn the cache off "
                          f"(--no-cache-features)", field="cache_views")


def epoch_views(seed, epoch, num_items: int, views: int):
    """The view each item takes in ``epoch``: ``[num_items]`` int64 in ``[0, views)``, a
    stateless function of ``(seed, epoch)``."""
    import tensorflow as tf

    seed = tf.cast(seed, tf.int64)
    epoch = tf.cast(epoch, tf.int64)
    return tf.random.stateless_uniform([num_items], seed=tf.stack([seed, epoch + 7_919_000]),
                                       minval=0, maxval=views, dtype=tf.int64)


@dataclasses.dataclass
class Cut:
    """A model cut in two for a cache: ``lower`` (raw images to the cached tensors, frozen, run
    in inference mode) and ``upper`` (the cached tensors to the model's outputs, training),
    sharing layers with the model."""

    lower: keras.Model
    upper: keras.Model



def boundary_split(model: keras.Model, head: keras.Model, *,
                   unfreeze_from: str | None) -> Cut | str:
    """The model cut below block ``unfreeze_from`` of its frozen part, or why it cannot be.

    ``head``: the task's head on the frozen part's outputs (:meth:`Task.feature_split`). The
    cached tensors are those that layers from the block on take from layers below it, and the
    frozen part's outputs that come from below it (a decoder's skip taps), in that order.
    """
    backbone = frozen_part(model)
    if backbone is None:
        return "the model has no backbone or encoder"
    if unfreeze_from is None:
        return "fine-tuning unfreezes the whole backbone, so nothing below it stays frozen"
    layers = list(backbone.layers)
    start = next((i for i, layer in enumerate(layers) if layer.name.startswith(unfreeze_from)),
                 None)
    if start is None or isinstance(layers[start - 1] if start else None, keras.Model):
        return f"block {unfreeze_from!r} is not a layer of a flat backbone"
    if any(isinstance(layer, keras.Model) for layer in layers):
        return "the backbone nests models, so its layers cannot be cut at a block"
    if not any(layer.weights for layer in layers[:start]):
        return f"no layer below block {unfreeze_from!r} stays frozen"
    below = {id(layer) for layer in layers[:start]}
    boundary: list = []
    seen: set[int] = set()

    def add(tensor) -> None:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            boundary.append(tensor)

    for layer in layers[start:]:
        for node in layer._inbound_nodes:
            for tensor in node.input_tensors:
                producer = tensor._keras_history.operation
                if id(producer) in below:
                    add(tensor)
    outputs = list(backbone.outputs)
    low = [t for t in outputs if id(t._keras_history.operation) in below]
    for tensor in low:
        add(tensor)
    if not boundary:
        return f"no layer of {backbone.name!r} from block {unfreeze_from!r} on takes a tensor"
    call = backbone._inbound_nodes[0]
    training = call.arguments.kwargs.get("training")
    below_model = keras.Model(backbone.inputs, boundary, name="below_boundary")
    image = keras.Input(model.input_shape[1:], name="image")
    x = image
    if call.input_tensors[0] is not model.inputs[0]:  # augmentation (inactive), an adapter
        x = keras.Model(model.inputs, call.input_tensors[0], name="before_backbone")(
            x, training=False)
    cut = below_model(x, training=False)
    lower = keras.Model(image, cut, name="lower")

    cached = [keras.Input(tuple(t.shape[1:]), name=f"boundary_{i}")
              for i, t in enumerate(boundary)]
    by_id = {id(t): c for t, c in zip(boundary, cached)}
    high = [t for t in outputs if id(t) not in by_id]
    inputs_of_high = [t for t in boundary if id(t) not in {id(x) for x in low}]
    if high:
        above = keras.Model(inputs_of_high, high, name="above_boundary")
        computed = above([by_id[id(t)] for t in inputs_of_high], training=training)
        computed = computed if isinstance(computed, (list, tuple)) else [computed]
    else:
        computed = []
    it = iter(computed)
    taps = [by_id[id(t)] if id(t) in by_id else next(it) for t in outputs]
    out = head(taps if len(taps) > 1 else taps[0])
    return Cut(lower, keras.Model(cached, out, name="upper"))


def disk_budget(folder) -> int:
    """Bytes an on-disk cache may take in ``folder``'s file system: half of what is free."""
    probe = folder
    while probe is not None and not probe.exists():
        probe = probe.parent if probe.parent != probe else None
    return shutil.disk_usage(probe or ".").free // 2


__all__ = ["SAMPLED_VIEWS", "Cut", "boundary_split", "check_views", "disk_budget",
           "epoch_views",
           "exact_views", "view_count"]
