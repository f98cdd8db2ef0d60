"""One registry for every architecture: classic builders and keras.applications wrappers alike.

A builder is registered with :func:`register_model`, keyed by its function name, together with a
frozen :class:`ModelSpec` of metadata. Everything else in the toolkit (the CLI, the transfer
package) looks models up here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from typing import TYPE_CHECKING, Any, Callable

from zoo.errors import UnknownModelError, ZooError

if TYPE_CHECKING:
    import keras

PREPROCESSING_MODES = ("caffe", "tf", "tf128", "torch", "unit", "none")
TASKS = ("classification", "segmentation", "detection")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Metadata of one registered architecture.

    Attributes:
        name: registry key, the builder's function name (``"resnet50"``).
        builder: the keyword-only builder with the Keras applications signature.
        family: family the model belongs to (``"resnet"``); groups models in listings.
        paper: short reference of the paper that defines the architecture.
        year: year of that paper.
        default_input_shape: ``(height, width, channels)`` the model was designed for.
        min_input_size: smallest height/width the builder accepts.
        fixed_input_size: ``True`` when only ``default_input_shape`` works (e.g. with a flatten
            head, or NASNet's ImageNet weights).
        preprocessing: what the model's first layers do to the raw 0-255 pixels it takes (and
            so what the bare network, built with ``include_preprocessing=False``, expects); one
            of ``"caffe"`` (RGB to BGR, ImageNet mean subtracted), ``"tf"`` (scaled to [-1, 1]),
            ``"tf128"`` (``x / 128 - 1``: EfficientNetV2-S/M/L), ``"torch"`` (scaled to [0, 1]
            then ImageNet mean/std), ``"unit"`` (scaled to [0, 1]) or ``"none"`` (nothing to
            add: the network's own layers rescale, as in EfficientNet v1).
        pretrained: names of weight sets the builder can download (``("imagenet",)``).
        blocks: ordered names of the backbone's blocks, as layer-name prefixes; "unfreeze from
            block N" refers to these.
        default_unfreeze: block from which fine-tuning unfreezes by default.
        source: ``"classic"`` for the zoo's own builders, ``"keras"`` for keras.applications.
        task: what the whole model does, one of :data:`TASKS`: ``"classification"`` (a
            backbone with a classifier top), ``"segmentation"`` (a per-pixel map) or
            ``"detection"`` (boxes; YOLO v1's grid).
        default_classes: classes of the reference configuration (1000 for ImageNet models).
    """

    name: str
    builder: Callable[..., keras.Model]
    family: str
    paper: str
    year: int
    default_input_shape: tuple[int, int, int]
    min_input_size: int
    fixed_input_size: bool = False
    preprocessing: str = "torch"
    pretrained: tuple[str, ...] = ()
    blocks: tuple[str, ...] = ()
    default_unfreeze: str | None = None
    source: str = "classic"
    task: str = "classification"
    default_classes: int = 1000

    def __post_init__(self) -> None:
        if self.preprocessing not in PREPROCESSING_MODES:
            raise ValueError(
                f"{self.name}: preprocessing must be one of {PREPROCESSING_MODES}, "
                f"got {self.preprocessing!r}"
            )
        if self.task not in TASKS:
            raise ValueError(f"{self.name}: task must be one of {TASKS}, got {self.task!r}")
        if self.default_unfreeze is not None and self.default_unfreeze not in self.blocks:
            raise ValueError(
                f"{self.name}: default_unfreeze {self.default_unfreeze!r} is not one of its "
                f"blocks {self.blocks}"
            )

    @property
    def channels(self) -> int:
        return self.default_input_shape[-1]


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(**metadata: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a builder under its function name, with :class:`ModelSpec` metadata.

    Example::

        @register_model(family="lenet", paper="LeCun et al. 1998", year=1998,
                        default_input_shape=(32, 32, 1), min_input_size=32, fixed_input_size=True)
        def lenet5(*, include_top=True, weights=None, ...): ...
    """

    def decorator(builder: Callable[..., Any]) -> Callable[..., Any]:
        name = metadata.pop("name", builder.__name__)
        add_spec(ModelSpec(name=name, builder=builder, **metadata))
        return builder

    return decorator


def add_spec(spec: ModelSpec) -> ModelSpec:
    """Add a ready-made spec (used for table-driven registrations)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _ensure_loaded() -> None:
    # Importing the package registers every family module.
    import zoo  # noqa: F401


def get_spec(name: str) -> ModelSpec:
    """Return the spec of a registered model; unknown names suggest close matches."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name.lower(), list(_REGISTRY), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}.{hint} Run 'zoo list' to see the registered models."
        ) from None


def list_models(pattern: str | None = None, *, source: str | None = None,
                task: str | None = None) -> list[str]:
    """Names of registered models, sorted, optionally filtered by an fnmatch pattern."""
    _ensure_loaded()
    names = sorted(_REGISTRY)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern.lower())]
    if source:
        names = [n for n in names if _REGISTRY[n].source == source]
    if task:
        names = [n for n in names if _REGISTRY[n].task == task]
    return names


def create_model(
    name: str,
    *,
    classes: int | None = None,
    input_shape: tuple[int, int, int] | None = None,
    weights: str | None = None,
    include_top: bool = True,
    pooling: str | None = None,
    classifier_activation: str | None = "softmax",
    include_preprocessing: bool = True,
) -> keras.Model:
    """Build a registered model by name.

    Every model takes raw 0-255 pixels: its first layers (named ``preprocess_*``, Keras's own
    weightless layers) apply the spec's ``preprocessing`` mode.

    Args:
        name: registry key (see :func:`list_models`).
        classes: number of output classes (output channels for segmentation models); defaults
            to the spec's ``default_classes``.
        input_shape: ``(height, width, channels)``; defaults to the spec's.
        weights: ``None`` for random initialisation, a weight-set name such as ``"imagenet"``,
            or a path to a ``.weights.h5``, ``.h5`` or ``.keras`` file.
        include_top: whether to include the classification head.
        pooling: ``None``, ``"avg"`` or ``"max"`` when ``include_top=False``.
        classifier_activation: activation of the top layer.
        include_preprocessing: start with the preprocessing layers (the default); ``False``
            gives the bare network, which expects input preprocessed in the spec's mode. Both
            have the same weights, and a weight file of one loads into the other.

    Raises:
        UnknownModelError: the name is not registered.
        ZooError: the arguments do not fit the model (the message says why).
    """
    spec = get_spec(name)
    classes = spec.default_classes if classes is None else classes
    if pooling not in (None, "avg", "max"):
        raise ZooError(f"pooling must be None, 'avg' or 'max', got {pooling!r}")
    if classes < 1:
        raise ZooError(f"classes must be a positive integer, got {classes!r}")
    return spec.builder(
        include_top=include_top,
        weights=weights,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        include_preprocessing=include_preprocessing,
    )
