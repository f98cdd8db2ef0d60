"""Exceptions raised by the zoo. The CLI turns each into one clean line and a non-zero exit."""


class ZooError(Exception):
    """Base class of every error the toolkit raises on purpose."""


class UnknownModelError(ZooError, KeyError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WeightsError(ZooError):
    """Weights that cannot be found, downloaded or matched to the architecture."""


class InputShapeError(ZooError, ValueError):
    """An input shape the architecture cannot take."""
