"""Model metadata for listings: the registry's facts plus counted parameters and MACs."""

from __future__ import annotations

import math
from typing import Any

from zoo.registry import create_model, get_spec
from zoo.taps import TABLE, get_taps


def model_info(name: str, *, with_stats: bool = True) -> dict[str, Any]:
    """Registry metadata of ``name``; with ``with_stats``, build it (random weights, default input,
    the spec's default classes) and count parameters and MACs."""
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
        import keras

        from zoo.macs import count_macs

        model = create_model(name, weights=None)
        row["params_trainable"] = sum(math.prod(w.shape) for w in model.trainable_weights)
        row["params_total"] = int(model.count_params())
        row["macs"] = int(count_macs(model))
        del model
        keras.backend.clear_session()
    return row


def _taps(name: str) -> list[str]:
    """``"stride: layer"`` per feature tap (``zoo.get_taps``); empty for non-backbones."""
    if name not in TABLE:
        return []
    taps = get_taps(name)
    return [f"{stride}: {layer}" + (" (approximate)" if stride in taps.approximate else "")
            for stride, layer in taps.as_dict().items()]
