"""Exceptions of the transfer package; all are ZooError, which the CLI turns into one line."""

from zoo.errors import ZooError


class ConfigError(ZooError, ValueError):
    """A training configuration value that is out of range or unknown.

    Attributes:
        field: the TrainConfig field to blame, when there is one (the CLI names its option).
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DataError(ZooError):
    """A data folder, file or split that cannot be used; the message names it."""


class RunDirError(ZooError):
    """A run directory that is missing, incomplete, or would be overwritten."""


class TrainingInterrupted(ZooError):
    """Training stopped by Ctrl-C; the last finished epoch, if any, is checkpointed."""


class ExportError(ZooError):
    """A model that an export format cannot take: its converter is not installed, or the model
    holds an operation the format has no counterpart for."""
