"""Transfer learning: any zoo model into a classifier for an image folder, in three modes."""

from transfer.config import TrainConfig, TransferMode
from transfer.errors import ConfigError, DataError, RunDirError, TrainingInterrupted
from transfer.export import export_saved_model
from transfer.model import build_classifier, set_trainable
from transfer.predict import Prediction, Predictor, predict
from transfer.train import TrainResult, resume, train

__all__ = [
    "ConfigError",
    "DataError",
    "Prediction",
    "Predictor",
    "RunDirError",
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "TransferMode",
    "build_classifier",
    "export_saved_model",
    "predict",
    "resume",
    "set_trainable",
    "train",
]
