"""``--batch-size auto``: the largest batch that fits in memory, found by a short probe.

The probe runs single training steps on synthetic images at doubling batch sizes, with the model
and trainable set of the run's first phase. On an accelerator, an out-of-memory error
(``ResourceExhaustedError``) backs the search off to the last size that worked. On a CPU an
out-of-memory condition kills the process instead of raising, so there the probe measures how much
the process's peak memory grows per image and stops before the next doubling would pass a budget
(a fraction of the memory available now).
"""

from __future__ import annotations

import dataclasses
import logging
import resource
import sys
from typing import Callable

import keras
import numpy as np

from transfer.errors import ConfigError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BatchProbe:
    """The chosen batch size and what the probe saw."""

    batch_size: int
    tried: tuple[int, ...]
    reason: str


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _available_bytes() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil comes with tensorflow-datasets
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def probe_batch_size(model: keras.Model,
                     targets: Callable[[int, np.random.Generator], np.ndarray], *,
                     start: int = 8, maximum: int = 1024, memory_fraction: float = 0.6,
                     on_accelerator: bool | None = None) -> BatchProbe:
    """Find the largest power-of-two batch in ``[start, maximum]`` that trains without OOM.

    ``model`` must be compiled with the optimizer, loss and trainable set of the real run;
    ``targets(batch, rng)`` makes a batch of the task's training targets
    (:meth:`transfer.tasks.Task.probe_targets`).
    """
    import tensorflow as tf

    if on_accelerator is None:
        on_accelerator = bool(tf.config.list_logical_devices("GPU")
                              or tf.config.list_logical_devices("TPU"))
    shape = model.input_shape[1:]
    budget = _available_bytes() * memory_fraction
    baseline = _peak_rss_bytes()
    tried: list[int] = []
    best, size, per_image = None, start, None
    rng = np.random.default_rng(0)
    while size <= maximum:
        x = rng.uniform(0, 255, (size, *shape)).astype("float32")
        y = targets(size, rng)
        try:
            model.train_on_batch(x, y)
        except tf.errors.ResourceExhaustedError:
            tried.append(size)
            reason = f"out of memory at {size}"
            break
        tried.append(size)
        best = size
        peak = _peak_rss_bytes()
        if not on_accelerator:
            growth = max(peak - baseline, 1)
            per_image = growth / size
            if per_image * size * 2 > budget:
                reason = (f"next doubling would need about {per_image * size * 2 / 2**30:.1f} GiB "
                          f"of the {budget / 2**30:.1f} GiB budget")
                break
        size *= 2
    else:
        reason = f"reached the maximum of {maximum}"
    if best is None:
        raise ConfigError(f"batch_size=auto: even a batch of {start} does not fit in memory "
                          f"({reason}); use a smaller --image-size or model")
    log.info("batch size auto: %d (tried %s; %s)", best, ", ".join(map(str, tried)), reason)
    return BatchProbe(best, tuple(tried), reason)
