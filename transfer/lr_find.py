"""The learning-rate range test (Smith 2017; fastai's ``lr_find``), on the training loop itself.

The learning rate grows exponentially from ``start`` to ``end`` over a few hundred steps while
the (smoothed) training loss is recorded; the sweep stops early once the loss diverges. The
suggestion is the rate at the steepest descent of the smoothed loss, the rule fastai uses.
The sweep is a callback on the first phase of :class:`transfer.train.Trainer` (same model, same
data feeding, same loss and optimizer), and the model's weights are restored afterwards.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from transfer import outputs, plots
from transfer.config import TrainConfig
from transfer.distribute import make_strategy
from transfer.errors import ConfigError
from transfer.train import Trainer, resolve_config

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class LRFindResult:
    """Rates tried, smoothed losses, the suggestion, the plot written (if any), and the model
    (its weights restored to what they were before the sweep)."""

    learning_rates: list[float]
    losses: list[float]
    suggestion: float
    plot: Path | None = None
    model: keras.Model | None = None


class RangeTest(keras.callbacks.Callback):
    """Raises the learning rate exponentially each step and records the smoothed loss."""

    def __init__(self, start: float, end: float, steps: int, beta: float = 0.98):
        super().__init__()
        self.start, self.factor, self.beta = start, (end / start) ** (1 / max(1, steps - 1)), beta
        self.rates: list[float] = []
        self.losses: list[float] = []
        self._avg, self._best, self._step = 0.0, math.inf, 0

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate.assign(self.start * self.factor ** self._step)

    def on_train_batch_end(self, batch, logs=None):
        loss = float(logs["loss"])
        self._step += 1
        self._avg = self.beta * self._avg + (1 - self.beta) * loss
        smoothed = self._avg / (1 - self.beta ** self._step)
        self.rates.append(float(self.model.optimizer.learning_rate.numpy()))
        self.losses.append(smoothed)
        self._best = min(self._best, smoothed)
        if not math.isfinite(loss) or smoothed > 4 * self._best:
            self.model.stop_training = True


def suggest(rates: list[float], losses: list[float]) -> float:
    """The rate where the smoothed loss falls fastest (per unit of log learning rate)."""
    if len(rates) < 3:
        raise ConfigError("the learning-rate sweep was too short to suggest a rate; "
                          "use more steps or more images")
    log_rates = np.log10(np.asarray(rates))
    slopes = np.gradient(np.asarray(losses), log_rates)
    # Ignore the tail after the minimum, where the loss diverges.
    stop = int(np.argmin(losses)) + 1
    return float(rates[int(np.argmin(slopes[: max(stop, 2)]))])


def lr_find(data_dir: str | os.PathLike, *, config: TrainConfig | None = None,
            start: float = 1e-7, end: float = 10.0, steps: int = 200,
            plot_path: str | os.PathLike | None = None, force: bool = False,
            callbacks: Sequence[keras.callbacks.Callback] = (), **overrides) -> LRFindResult:
    """Sweep the learning rate on the training split and suggest one.

    The sweep trains what the first phase of the configured mode trains (the head for
    feature-extractor and fine-tune, on cached backbone features when training would use them;
    everything for full-retrain), with the configured optimizer and loss. ``callbacks`` run
    during the sweep, before the weights are restored. An existing ``plot_path`` is replaced
    only with ``force``, and only if the toolkit wrote it.
    """
    config = (config or TrainConfig()).replace(**overrides)
    if not 0 < start < end:
        raise ConfigError(f"need 0 < start < end for the sweep, got start={start}, end={end}")
    if plot_path:  # before the sweep, which takes minutes
        outputs.check_output(plot_path, replace=force, what="--plot",
                             reads=[(data_dir, "the data")])
    resolved = resolve_config(config, data_dir)
    config = resolved.config
    data = resolved.task.load_data(data_dir, config)
    trainer = Trainer(resolved, data, None, make_strategy(config.strategy), [], verbose=0)
    model = trainer.build()
    saved = [np.array(v) for v in model.variables]
    setup = trainer.setup_phase(0)
    with trainer.strategy.scope():
        trainer.compile(setup.model, start)
    per_epoch = math.ceil(len(data.train) / trainer.global_batch)
    sweep = RangeTest(start, end, steps)
    setup.model.fit(trainer.train_dataset(setup, 0, math.ceil(steps / per_epoch)),
                    steps_per_epoch=steps, epochs=1, shuffle=False,
                    callbacks=[sweep, *callbacks], verbose=0)
    for variable, value in zip(model.variables, saved):
        variable.assign(value)
    rate = suggest(sweep.rates, sweep.losses)
    plot = Path(plot_path) if plot_path else None
    if plot:
        plots.save_figure(plots.lr_sweep_figure(sweep.rates, sweep.losses, rate), plot)
    log.info("suggested learning rate %.2e (steepest descent of the smoothed loss)", rate)
    return LRFindResult(sweep.rates, sweep.losses, rate, plot, model)
