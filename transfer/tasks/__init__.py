"""Tasks: what a kind of model learns, plugged into the one task-neutral training core.

A :class:`Task` supplies everything that is particular to it: the data reader, the model's head
(or decoder), the loss and metrics, how targets are encoded for the epoch loop, how evaluation
summarises predictions (and which figures it draws), and which outputs the SavedModel serves.
The phase plan, the epoch loop, checkpoints, resume, strategies and the run directory are shared.
"""

from __future__ import annotations

from transfer.errors import ConfigError
from transfer.tasks.base import Predictions, Task
from transfer.tasks.classification import ClassificationTask

TASKS: dict[str, Task] = {task.name: task for task in (ClassificationTask(),)}


def get_task(name: str) -> Task:
    """The task registered under ``name``."""
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}") from None


__all__ = ["TASKS", "ClassificationTask", "Predictions", "Task", "get_task"]
