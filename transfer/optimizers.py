"""Optimizers: SGD with momentum, Adam, AdamW, each optionally with layer-wise learning rates.

Discriminative (layer-wise) learning rates, as in ULMFiT (Howard & Ruder 2018) and fastai's
``fit(lr=slice(lo, hi))``: when fine-tuning, the earliest unfrozen block moves slowest, since its
generic features need the least change, and each later block moves faster, up to the full
learning rate at the top block and the head. The learning rate itself (and so its schedule:
halving on a plateau, cosine, one-cycle) stays one number; each variable's update uses it times
a fixed multiplier.
"""

from __future__ import annotations

from typing import Any, Mapping

import keras


class _LayerwiseLR:
    """Mixin for a Keras optimizer: ``lr_multipliers`` maps variable paths to a factor on the
    learning rate; variables not named use the learning rate as it is."""

    def __init__(self, *args: Any, lr_multipliers: Mapping[str, float] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lr_multipliers = {str(k): float(v) for k, v in (lr_multipliers or {}).items()}
        self._multiplier_by_index: list[float] = []

    def build(self, variables) -> None:
        super().build(variables)
        self._multiplier_by_index = [self.lr_multipliers.get(v.path, 1.0) for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        multiplier = self._multiplier_by_index[self._get_variable_index(variable)]
        if multiplier != 1.0:
            learning_rate = learning_rate * multiplier
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "lr_multipliers": dict(self.lr_multipliers)}


@keras.saving.register_keras_serializable(package="cnn_zoo")
class LayerwiseSGD(_LayerwiseLR, keras.optimizers.SGD):
    """SGD (with momentum) with per-variable learning-rate multipliers."""


@keras.saving.register_keras_serializable(package="cnn_zoo")
class LayerwiseAdam(_LayerwiseLR, keras.optimizers.Adam):
    """Adam with per-variable learning-rate multipliers."""


@keras.saving.register_keras_serializable(package="cnn_zoo")
class LayerwiseAdamW(_LayerwiseLR, keras.optimizers.AdamW):
    """AdamW with per-variable learning-rate multipliers (weight decay follows the base LR)."""


_PLAIN = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam,
          "adamw": keras.optimizers.AdamW}
_LAYERWISE = {"sgd": LayerwiseSGD, "adam": LayerwiseAdam, "adamw": LayerwiseAdamW}


def make_optimizer(name: str, learning_rate: float, *, momentum: float = 0.9,
                   weight_decay: float = 0.0,
                   lr_multipliers: Mapping[str, float] | None = None
                   ) -> keras.optimizers.Optimizer:
    """SGD with momentum, Adam, or AdamW (decoupled weight decay).

    Args:
        name: ``"sgd"``, ``"adam"`` or ``"adamw"``.
        learning_rate: the base learning rate (a float; schedules change it during training).
        momentum: SGD's momentum.
        weight_decay: AdamW's decoupled weight decay (``1e-4`` when 0 is given).
        lr_multipliers: variable path -> factor on the learning rate, for layer-wise learning
            rates (see :func:`transfer.model.layer_lr_multipliers`); ``None`` or empty gives the
            plain Keras optimizer.
    """
    kwargs: dict[str, Any] = {}
    if name == "sgd":
        kwargs["momentum"] = momentum
    elif name == "adamw":
        kwargs["weight_decay"] = weight_decay or 1e-4
    if lr_multipliers and any(m != 1.0 for m in lr_multipliers.values()):
        return _LAYERWISE[name](learning_rate, lr_multipliers=lr_multipliers, **kwargs)
    return _PLAIN[name](learning_rate, **kwargs)
