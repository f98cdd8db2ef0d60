"""Tasks: what a kind of model learns, each one package plugged into the one task-neutral engine.

A :class:`Task` supplies everything that is particular to it: the layouts it reads
(:meth:`Task.claims`), the data reader, the model's head (or decoder), the losses and metrics,
how targets are encoded, how raw outputs become results (:meth:`Task.postprocess`), streaming
evaluation and its figures (:class:`Evaluator`), what the CLI prints, its report and model-card
sections, predictions and the SavedModel's outputs. The phase plan, the epoch loop, checkpoints,
resume, strategies and the run directory are shared. This module is the registry: the engine
reaches a concrete task only through it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Iterable

from transfer.errors import ConfigError
from transfer.tasks.base import Evaluator, Prediction, Predictions, Task
from transfer.tasks.classification import ClassificationTask
from transfer.tasks.detection.task import DetectionTask
from transfer.tasks.segmentation import SegmentationTask

if TYPE_CHECKING:
    from transfer.config import TrainConfig

TASKS: dict[str, type[Task]] = {task.name: task
                                for task in (ClassificationTask, SegmentationTask, DetectionTask)}


#: the task of a run whose model options and data claim no task
DEFAULT_TASK = "classification"


def recognise(source: str | os.PathLike, *, split: str | None = None
              ) -> tuple[str, str] | None:
    """``(task name, layout in words)`` of the first task, in :attr:`Task.claim_order`, that
    claims ``source`` as one of its layouts; ``None`` when none does."""
    for task in sorted(TASKS.values(), key=lambda task: task.claim_order):
        layout = task.claims(source, split=split)
        if layout is not None:
            return task.name, layout
    return None


def task_for(config: TrainConfig, data: str | os.PathLike) -> str:
    """The task ``task="auto"`` means: the one the model options name
    (:meth:`Task.wanted_by`), else the one whose layout ``data`` has, else
    :data:`DEFAULT_TASK`."""
    if config.task != "auto":
        return config.task
    for task in sorted(TASKS.values(), key=lambda task: task.claim_order):
        if task.wanted_by(config):
            return task.name
    recognised = recognise(data)
    return recognised[0] if recognised else DEFAULT_TASK


def served_task(outputs: Iterable[str]) -> str:
    """The task whose SavedModel serves ``outputs`` (the output names of ``serve_images``)."""
    names = set(outputs)
    for task in TASKS.values():
        if task.serving_key in names:
            return task.name
    raise ConfigError(f"the SavedModel's outputs ({', '.join(sorted(names))}) are not those of "
                      f"any task's export; export it again with 'zoo export'")


def task_of(config: TrainConfig) -> Task:
    """The task a resolved config trains, with the options the config gives it
    (:meth:`Task.from_config`)."""
    return get_task(config.task) if config.task not in TASKS else \
        TASKS[config.task].from_config(config)


def get_task(name: str, **options: Any) -> Task:
    """A task registered under ``name``, with its options (segmentation: ``ignore_index``)."""
    try:
        task = TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}") from None
    return task(**options)


__all__ = ["DEFAULT_TASK", "TASKS", "ClassificationTask", "DetectionTask", "Evaluator",
           "Prediction", "Predictions", "SegmentationTask", "Task", "get_task", "recognise",
           "served_task", "task_for", "task_of"]
