"""The end of a run: save the model, evaluate it, export it, and write the metrics, the figures,
the model card and the report once, from what is already in memory."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from typing import Any, Sequence

import keras

from transfer import checkpoint as ckpt
from transfer import data as data_lib
from transfer.card import write_model_card
from transfer.config import TrainConfig
from transfer.evaluate import score_split
from transfer.rundir import InputContract, RunDir
from transfer.serving import export_saved_model
from transfer.tasks import Predictions, Task
from transfer.viz.report import write_report

log = logging.getLogger(__name__)


@dataclasses.dataclass
class RunRecord:
    """What the phases leave for the end of the run."""

    config: TrainConfig
    contract: InputContract
    data: data_lib.ImageFolderData
    history: list[dict[str, Any]]
    phases: Sequence[Any]
    class_weight: dict[int, float] | None
    started: float
    started_cpu: float
    steps: dict[str, float] = dataclasses.field(default_factory=dict)  # seconds per step


class StepClock:
    """``with clock(name):`` adds the block's wall time to ``steps[name]``."""

    def __init__(self, steps: dict[str, float]):
        self.steps = steps

    @contextlib.contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.steps[name] = self.steps.get(name, 0.0) + time.perf_counter() - start


def save_plain(model: keras.Model, path) -> None:
    """``model`` as a ``.keras`` file without its compile state, so that plain Keras opens it
    with ``keras.saving.load_model(path)``: the toolkit's losses (detection's, Dice) and its
    optimizer with per-layer learning rates are classes of its own, which Keras outside the
    package cannot rebuild. Training state lives in the checkpoints, not here."""
    keras.Model(model.inputs, model.outputs, name=model.name).save(path)


def finish_run(run: RunDir, task: Task, model: keras.Model, record: RunRecord,
               val_predictions: Predictions | None = None, *,
               batch_size: int = 32) -> dict[str, Any]:
    """Write ``model.keras``, ``saved_model/``, the evaluation figures, ``MODEL_CARD.md``,
    ``report.html`` and ``metrics.json``, and mark the run finished.

    ``val_predictions`` are the model's outputs on the validation split when the caller already
    has them (from cached features); otherwise they are computed here, once, for the metrics,
    the figures and the report alike.
    """
    trained, trained_cpu = time.perf_counter(), time.process_time()
    steps = dict(record.steps)
    clock = StepClock(steps)
    with clock("save model.keras"):
        save_plain(model, run.model_path)
    data, names, size = record.data, record.contract.class_names, record.contract.image_size
    val = task.evaluator(names, image_size=size)
    with clock("evaluate val"):
        if val_predictions is not None:
            val.update(val_predictions.outputs, val_predictions.labels, val_predictions.paths)
        else:
            score_split(model, data.val, val, batch_size=batch_size,
                        truth=task.labels(data.val, size), task=task)
        metrics: dict[str, Any] = {"val": val.result()}
    if data.test is not None and len(data.test):
        with clock("evaluate test"):
            test = task.evaluator(names, image_size=size)
            score_split(model, data.test, test, batch_size=batch_size,
                        truth=task.labels(data.test, size), task=task)
            metrics["test"] = test.result()
    metrics["phases"] = [dataclasses.asdict(p) for p in record.phases]
    metrics["class_weights"] = record.class_weight
    with clock("export SavedModel"):
        export_saved_model(model, run.saved_model_dir, record.contract, force=True)
    with clock("figures"):
        val.write_artifacts(metrics["val"], run.path)
    # The card and the report from what is in memory, not from the files just written.
    config = record.config.to_dict()
    with clock("model card and report"):
        write_model_card(run.path, metrics=metrics, config=config, split=data.to_dict(),
                         contract=record.contract,
                         data_report=data.report.to_dict() if data.report is not None
                         else None)
        write_report(run.path, model=model, contract=record.contract, metrics=metrics,
                     history=record.history, evaluation=val, config=config, val=data.val)
    metrics["seconds"] = {"training": round(trained - record.started, 3),
                          # all of the process's threads; not slowed by other processes
                          "training_cpu": round(trained_cpu - record.started_cpu, 3),
                          "evaluation_and_export": round(time.perf_counter() - trained, 3),
                          # where the run's time went, step by step (wall clock)
                          "steps": {k: round(v, 3) for k, v in steps.items()}}
    run.write_metrics(metrics)
    ckpt.mark_finished(run.path)
    log.info("validation: %s", task.headline(metrics["val"]))
    return metrics
