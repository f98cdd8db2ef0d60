"""Transfer learning: any zoo model into a classifier, segmenter or detector for a folder of the
user's images, in three modes (feature-extractor, fine-tune, full-retrain)."""

from transfer.config import TrainConfig, TransferMode
from transfer.errors import (ConfigError, DataError, ExportError, RunDirError,
                             TrainingInterrupted)
from transfer.model import set_trainable
from transfer.predict import Prediction, Predictor, predict
from transfer.rundir import InputContract, RunDir
from transfer.serving import export_saved_model
from transfer.tasks import Task, get_task
from transfer.tasks.classification.model import build_classifier
from transfer.train import TrainResult, resume, train

__all__ = [
    "ConfigError",
    "InputContract",
    "DataError",
    "ExportError",
    "Prediction",
    "Predictor",
    "RunDir",
    "RunDirError",
    "TrainConfig",
    "Task",
    "TrainResult",
    "TrainingInterrupted",
    "TransferMode",
    "build_classifier",
    "export_saved_model",
    "get_task",
    "predict",
    "resume",
    "set_trainable",
    "train",
]
