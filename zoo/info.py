"""Model metadata for listings: the registry's facts plus counted parameters and MACs."""

from __future__ import annotations

import math
from typing import Any

from zoo.registry import create_model, get_spec
from zoo.taps import TABLE, get_taps


def model_info(name: str, *, with_stats: bool = True,
               input_shape: tuple[int, int, int] | None = None,
               classes: int | None = None) -> dict[str, Any]:
    """Registry metadata of ``name``; with ``with_stats``, build it (random weights, with its top)
    and count parameters and MACs (see :mod:`zoo.stats`).

    Args:
        name: registry name.
        with_stats: build the model and add ``params_total``, ``params_trainable``, ``macs``
            and the ``stats_input_shape`` and ``stats_classes`` they were counted at.
        input_shape: count at this ``(height, width, channels)``; the model's default if ``None``.
        classes: count with this many classes; the spec's ``default_classes`` if ``None``.

    The counts at the defaults are also stored (:func:`zoo.stats.stored`), which needs no build.
    """
    spec = get_spec(name)
    row: dict[str, Any] = {
        "name": spec.name,
        "family": spec.family,
        "source": spec.source,
        "task": spec.task,
        "paper": spec.paper,
        "year": spec.year,
        "default_input_shape": list(spec.default_input_shape),
        "min_input_size": spec.min_input_size,
        "fixed_input_size": spec.fixed_input_size,
        "default_classes": spec.default_classes,
        "preprocessing": spec.preprocessing,
        "pretrained": list(spec.pretrained),
        "blocks": list(spec.blocks),
        "default_unfreeze": spec.default_unfreeze,
        "feature_taps": _taps(name),
    }
    if with_stats:
        row.update(compute(name, input_shape=input_shape, classes=classes))
    return row


def count(model) -> dict[str, int]:
    """Parameters (all and trainable) and MACs of a built model."""
    from zoo.macs import count_macs

    return {
        "params_total": int(model.count_params()),
        "params_trainable": int(sum(math.prod(w.shape) for w in model.trainable_weights)),
        "macs": int(count_macs(model)),
    }


def compute(name: str, *, input_shape: tuple[int, int, int] | None = None,
            classes: int | None = None) -> dict[str, Any]:
    """Build ``name`` (random weights, with its top) and count it.

    Args:
        name: registry name.
        input_shape: ``(height, width, channels)``; the model's default when ``None``.
        classes: outputs of the classifier; the spec's ``default_classes`` when ``None``.

    Returns:
        The counts, and the ``stats_input_shape`` and ``stats_classes`` they were taken at.
    """
    import keras

    spec = get_spec(name)
    model = create_model(name, weights=None, input_shape=input_shape, classes=classes)
    try:
        return {"stats_input_shape": list(model.input_shape[1:]),
                "stats_classes": spec.default_classes if classes is None else classes,
                **count(model)}
    finally:
        del model
        keras.backend.clear_session()


def _taps(name: str) -> list[str]:
    """``"stride: layer"`` per feature tap (``zoo.get_taps``); empty for non-backbones."""
    if name not in TABLE:
        return []
    taps = get_taps(name)
    return [f"{stride}: {layer}" + (" (approximate)" if stride in taps.approximate else "")
            for stride, layer in taps.as_dict().items()]
