"""The model zoo: classic CNN builders and keras.applications wrappers behind one registry."""

from zoo import layers  # noqa: F401  (registers the serialisable layers)
from zoo._common import leaf_layers, walk_layers
from zoo.errors import InputShapeError, UnknownModelError, WeightsError, ZooError
from zoo.imagenet import ImageNetClass, imagenet_class, imagenet_class_names, imagenet_classes
from zoo.registry import ModelSpec, create_model, get_spec, list_models, register_model

# Importing a family module registers its builders.
from zoo import lenet  # noqa: E402,F401  isort: skip
from zoo import applications  # noqa: E402,F401  isort: skip
from zoo import alexnet, densenet, googlenet, nin, resnet, unet, vgg  # noqa: E402,F401  isort: skip
from zoo import cspdarknet, fcn, segnet  # noqa: E402,F401  isort: skip
from zoo import yolov1  # noqa: E402,F401  isort: skip
from zoo.taps import Taps, get_taps  # noqa: E402  isort: skip
from zoo.segmentation import build_segmenter  # noqa: E402  isort: skip
from zoo.detection import build_detector  # noqa: E402  isort: skip

__all__ = [
    "ImageNetClass",
    "InputShapeError",
    "ModelSpec",
    "Taps",
    "UnknownModelError",
    "WeightsError",
    "ZooError",
    "build_detector",
    "build_segmenter",
    "create_model",
    "get_spec",
    "imagenet_class",
    "imagenet_class_names",
    "imagenet_classes",
    "leaf_layers",
    "get_taps",
    "list_models",
    "register_model",
    "walk_layers",
]
