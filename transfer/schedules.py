"""Learning-rate schedules and the training policy of a phase (plateau halving, early stopping).

Because the step comes from ``optimizer.iterations``, which a checkpoint restores, a resumed run
continues the schedule exactly where it stopped.
"""

from __future__ import annotations

import math
from typing import Any

import keras


def cosine_with_warmup(step: int, *, peak: float, total: int, warmup: int,
                       floor: float = 0.0) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then cosine decay to ``floor``."""
    if warmup and step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * progress))


def one_cycle(step: int, *, peak: float, total: int, pct_start: float = 0.3,
              div_factor: float = 25.0, final_div_factor: float = 1e4) -> float:
    """Smith's one-cycle policy as in fastai/PyTorch: cosine up to ``peak``, cosine down."""
    start, end = peak / div_factor, peak / div_factor / final_div_factor
    up = max(1, int(total * pct_start))
    if step < up:
        return start + (peak - start) * 0.5 * (1 - math.cos(math.pi * step / up))
    progress = min(1.0, (step - up) / max(1, total - up))
    return end + (peak - end) * 0.5 * (1 + math.cos(math.pi * progress))


class StepSchedule(keras.callbacks.Callback):
    """Sets the learning rate before every step from ``optimizer.iterations``.

    ``first_step`` is the optimizer step at which this phase began, so a schedule spans only its
    phase even when the optimizer counts on from an earlier one.
    """

    def __init__(self, kind: str, *, peak: float, total_steps: int, warmup_steps: int = 0):
        super().__init__()
        self.kind, self.peak = kind, peak
        self.total_steps, self.warmup_steps = total_steps, warmup_steps

    def rate(self, step: int) -> float:
        if self.kind == "cosine":
            return cosine_with_warmup(step, peak=self.peak, total=self.total_steps,
                                      warmup=self.warmup_steps)
        if self.kind == "onecycle":
            return one_cycle(step, peak=self.peak, total=self.total_steps)
        raise ValueError(f"unknown schedule {self.kind!r}")

    def on_train_batch_begin(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        self.model.optimizer.learning_rate.assign(self.rate(step))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate.numpy())


def resolve_schedule(config) -> str:
    """The schedule a run uses: ``config.schedule``, with ``"auto"`` decided by the mode.

    Fine-tune gets cosine decay after a linear warm-up in each phase. Its second phase starts
    with a fresh optimizer over newly unfrozen layers; at full rate, Adam's first steps (each
    about the learning rate in size, whatever the gradient) cost accuracy at the switch, and a
    warm-up avoids that. ``benchmarks/bench_policy.py`` measured it against the plateau policy,
    the Keras guide's and fastai's on two datasets far from ImageNet. The one-phase modes keep
    plateau halving, which needs no epoch count to be right.
    """
    from transfer.config import TransferMode

    if config.schedule != "auto":
        return config.schedule
    return "cosine" if config.mode is TransferMode.FINE_TUNE else "plateau"


def policy_callbacks(config, *, monitor: str, learning_rate: float, steps: int,
                     warmup_steps: int) -> tuple[list[keras.callbacks.Callback], Any, Any]:
    """The training policy of one phase as callbacks: the learning-rate schedule (halved on a
    plateau of ``monitor``, or cosine/one-cycle over ``steps``) and early stopping with the best
    weights restored.

    Returns:
        ``(callbacks, plateau, early)``; the last two are the resumable callbacks (or ``None``),
        whose state goes into checkpoints.
    """
    from transfer.checkpoint import ResumableEarlyStopping, ResumableReduceLROnPlateau

    callbacks: list[keras.callbacks.Callback] = []
    plateau = early = None
    schedule = resolve_schedule(config)
    if schedule == "plateau":
        plateau = ResumableReduceLROnPlateau(monitor=monitor, factor=0.5,
                                             patience=config.lr_patience, min_lr=1e-7)
        callbacks.append(plateau)
    elif schedule in ("cosine", "onecycle"):
        callbacks.append(StepSchedule(schedule, peak=learning_rate, total_steps=steps,
                                      warmup_steps=min(warmup_steps, steps // 2)))
    if config.early_stopping_patience > 0:
        early = ResumableEarlyStopping(monitor=monitor, patience=config.early_stopping_patience,
                                       restore_best_weights=True)
        callbacks.append(early)
    return callbacks, plateau, early
