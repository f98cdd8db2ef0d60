"""Tasks: what a kind of model learns, plugged into the one task-neutral training core.

A :class:`Task` supplies everything that is particular to it: the data reader, the model's head
(or decoder), the loss and metrics, how targets are encoded for the epoch loop, how evaluation
summarises predictions (and which figures it draws), and which outputs the SavedModel serves.
The phase plan, the epoch loop, checkpoints, resume, strategies and the run directory are shared.
"""

from __future__ import annotations

from typing import Any

from transfer.errors import ConfigError
from transfer.tasks.base import Predictions, Task
from transfer.tasks.classification import ClassificationTask
from transfer.tasks.segmentation import SegmentationTask

TASKS: dict[str, type[Task]] = {task.name: task
                                for task in (ClassificationTask, SegmentationTask)}


def get_task(name: str, **options: Any) -> Task:
    """A task registered under ``name``, with its options (segmentation: ``ignore_index``)."""
    try:
        task = TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}") from None
    return task(**options)


__all__ = ["TASKS", "ClassificationTask", "Predictions", "SegmentationTask", "Task", "get_task"]
