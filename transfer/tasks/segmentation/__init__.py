"""Semantic segmentation: a class per pixel, from image/mask pairs.

:mod:`~.task` plugs it into the engine; :mod:`~.pairs` finds the pairs in their layouts,
:mod:`~.masks` reads the masks, :mod:`~.augment` transforms images and masks together,
:mod:`~.metrics` holds the losses and IoU metrics, :mod:`~.figures` the colours, overlays and
figures.
"""

from transfer.tasks.segmentation.task import DECODERS, PLAIN_UNET, SegmentationTask

__all__ = ["DECODERS", "PLAIN_UNET", "SegmentationTask"]
