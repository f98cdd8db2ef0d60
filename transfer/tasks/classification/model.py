"""The classifier: a backbone and a new head (global pooling, dropout, a dense softmax layer),
taking raw 0-255 RGB pixels at a fixed size. Layer names are fixed (``"backbone"``,
``"head_dropout"``, ``"classifier"``) so that freezing and the feature cache find the parts."""

from __future__ import annotations

import keras

import zoo
from transfer.config import Augment, TransferMode
from transfer.errors import ConfigError
from transfer.model import (
    BACKBONE,
    LEGACY_PREPROCESS,
    RGB_ADAPTER,
    _is_model_file,
    augmentation,
    backbone_info,
    build_backbone,
    rgb_adapter,
)
from zoo.errors import ZooError

#: the head's layers, in order, after the backbone's pooled features
HEAD_LAYERS = ("head_dropout", "classifier")


def build_classifier(model: str, *, num_classes: int, mode: TransferMode,
                     image_size: int | None = None, weights: str | None = None,
                     dropout: float = 0.2, weight_decay: float = 0.0, augment: str = "",
                     seed: int = 42, train_batchnorm: bool = False,
                     trust_model: bool = False) -> keras.Model:
    """Backbone + new head taking raw 0-255 RGB images of ``image_size``.

    In feature-extractor and fine-tune modes the backbone is called with ``training=False``, so
    its BatchNormalization layers stay in inference mode whatever ``trainable`` says; in
    full-retrain mode, and in fine-tune with ``train_batchnorm``, it is called plainly, so they
    normalise with batch statistics while they are trainable (frozen layers run in inference
    mode in Keras 3, so the head phase is unchanged). A ``.keras`` ``model`` with code in it
    (a Lambda layer) loads only with ``trust_model``.
    """
    info = backbone_info(model, trust_model=trust_model)
    if not _is_model_file(model) and zoo.get_spec(model).task != "classification":
        raise ConfigError(f"model {model!r} is a {zoo.get_spec(model).task} model and cannot "
                          f"be a classifier backbone")
    size = image_size or info.default_size
    if size < info.min_size:
        raise ConfigError(f"image size {size} is below the minimum {info.min_size} of "
                          f"backbone {info.name!r}")
    keras.utils.set_random_seed(seed)
    backbone = build_backbone(model, image_size=size, weights=weights, trust_model=trust_model)
    backbone.name = BACKBONE  # a public contract for freezing and feature extraction

    inputs = keras.Input((size, size, 3), name="image")
    augment = Augment().parse(augment)  # True/False or a policy name, as TrainConfig takes
    augmenter = augmentation(seed, augment) if augment else None
    x = augmenter(inputs) if augmenter is not None else inputs
    adapter = rgb_adapter(info.channels)
    if adapter is not None:
        x = adapter(x)
    if mode is TransferMode.FULL_RETRAIN or (mode is TransferMode.FINE_TUNE and train_batchnorm):
        x = backbone(x)
    else:
        x = backbone(x, training=False)
    if len(x.shape) != 2:
        raise ZooError(f"backbone {info.name!r} does not end in pooled features: {x.shape}")
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    regularizer = keras.regularizers.L2(weight_decay) if weight_decay else None
    # float32 output even under a mixed-precision policy, for a numerically stable softmax.
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classifier",
                                 kernel_regularizer=regularizer, dtype="float32")(x)
    return keras.Model(inputs, outputs, name=f"{info.name}_classifier")


def head_model(classifier: keras.Model) -> keras.Model:
    """The head alone, on pooled features, sharing its layers (and weights) with ``classifier``."""
    feature_dim = classifier.get_layer(BACKBONE).output.shape[-1]
    features = keras.Input((feature_dim,), name="features")
    x = features
    for name in HEAD_LAYERS:
        x = classifier.get_layer(name)(x)
    return keras.Model(features, x, name="head")


def feature_model(classifier: keras.Model) -> keras.Model:
    """Raw images to pooled backbone features (preprocessing included, augmentation skipped)."""
    image = keras.Input(classifier.input_shape[1:], name="image")
    x = image
    for name in (LEGACY_PREPROCESS, RGB_ADAPTER):
        if any(layer.name == name for layer in classifier.layers):
            x = classifier.get_layer(name)(x)
    x = classifier.get_layer(BACKBONE)(x, training=False)
    return keras.Model(image, x, name="features")
