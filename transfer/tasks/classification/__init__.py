"""Classification: one label per image, from class folders, CSV files or TFDS datasets.

:mod:`~.task` plugs it into the engine; :mod:`~.sources` reads the data, :mod:`~.metrics`
scores it, :mod:`~.figures` draws the mistakes, :mod:`~.imagenet` handles pretrained ImageNet
classifiers.
"""

from transfer.tasks.classification.task import ClassificationTask

__all__ = ["ClassificationTask"]
