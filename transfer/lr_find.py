"""The learning-rate range test (Smith 2017; fastai's ``lr_find``).

The learning rate grows exponentially from ``start`` to ``end`` over a few hundred steps while
the (smoothed) training loss is recorded; the sweep stops early once the loss diverges. The
suggestion is the rate at the steepest descent of the smoothed loss, the rule fastai uses.
The model's weights are restored afterwards.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from pathlib import Path

import keras
import numpy as np

from transfer import data as data_lib
from transfer.config import TrainConfig, TransferMode
from transfer.errors import ConfigError
from transfer.model import backbone_info, build_classifier, set_trainable

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class LRFindResult:
    """Rates tried, smoothed losses, the suggestion, and the plot written (if any)."""

    learning_rates: list[float]
    losses: list[float]
    suggestion: float
    plot: Path | None = None


class _RangeTest(keras.callbacks.Callback):
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
            plot_path: str | os.PathLike | None = None, **overrides) -> LRFindResult:
    """Sweep the learning rate on the training split and suggest one.

    The sweep trains what the first phase of the configured mode trains (the head for
    feature-extractor and fine-tune, everything for full-retrain), with the configured optimizer.
    """
    config = (config or TrainConfig()).replace(**overrides)
    if not 0 < start < end:
        raise ConfigError(f"need 0 < start < end for the sweep, got start={start}, end={end}")
    info = backbone_info(config.model)
    size = config.image_size or info.default_size
    folder = data_lib.load_image_folder(data_dir, val_split=config.val_split, seed=config.seed)
    classifier = build_classifier(config.model, num_classes=folder.num_classes, mode=config.mode,
                                  image_size=size, weights=config.weights, dropout=config.dropout,
                                  weight_decay=config.weight_decay, seed=config.seed)
    set_trainable(classifier, "full" if config.mode is TransferMode.FULL_RETRAIN else "head")
    from transfer.optimizers import make_optimizer

    classifier.compile(optimizer=make_optimizer(config.optimizer, start,
                                                momentum=config.momentum,
                                                weight_decay=config.weight_decay),
                       loss=keras.losses.CategoricalCrossentropy(
                           label_smoothing=config.label_smoothing))
    import tensorflow as tf

    depth = folder.num_classes
    ds = data_lib.make_dataset(folder.train, image_size=size, batch_size=config.batch_size,
                               shuffle=True, seed=config.seed)
    ds = ds.map(lambda x, y: (x, tf.one_hot(y, depth))).repeat()
    saved = [np.array(w) for w in classifier.weights]
    sweep = _RangeTest(start, end, steps)
    classifier.fit(ds, steps_per_epoch=steps, epochs=1, shuffle=False, callbacks=[sweep],
                   verbose=0)
    classifier.set_weights(saved)
    rate = suggest(sweep.rates, sweep.losses)
    plot = Path(plot_path) if plot_path else None
    if plot:
        _plot(sweep.rates, sweep.losses, rate, plot)
    log.info("suggested learning rate %.2e (steepest descent of the smoothed loss)", rate)
    return LRFindResult(sweep.rates, sweep.losses, rate, plot)


def _plot(rates: list[float], losses: list[float], suggestion: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(rates, losses)
    ax.axvline(suggestion, color="tab:red", linestyle="--", label=f"suggested {suggestion:.1e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("smoothed training loss")
    ax.set_title("learning-rate range test")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
