"""Trainable weights per mode and phase, counted exactly."""

import keras
import numpy as np
import pytest

from transfer import TransferMode, build_classifier, set_trainable
from transfer.errors import ConfigError
from transfer.tasks.classification.model import feature_model, head_model

# LeNet-5 without its top: C1 6*(25+1)=156, C3 16*(150+1)=2,416, C5 120*(400+1)=48,120.
LENET_BACKBONE = 156 + 2_416 + 48_120
HEAD_3 = 120 * 3 + 3


@pytest.fixture()
def lenet_classifier():
    return build_classifier("lenet5", num_classes=3, mode=TransferMode.FINE_TUNE)


def test_head_phase_trains_only_the_head(lenet_classifier):
    summary = set_trainable(lenet_classifier, "head")
    assert summary.trainable_weights == 2
    assert summary.trainable_params == HEAD_3
    assert summary.frozen_params == LENET_BACKBONE


def test_fine_tune_phase_unfreezes_from_block(lenet_classifier):
    summary = set_trainable(lenet_classifier, "fine-tune", blocks=("c1", "c3", "c5"),
                            unfreeze_from="c5")
    assert summary.trainable_weights == 4  # c5 kernel + bias, classifier kernel + bias
    assert summary.trainable_params == 48_120 + HEAD_3
    summary = set_trainable(lenet_classifier, "fine-tune", blocks=("c1", "c3", "c5"),
                            unfreeze_from="c3")
    assert summary.trainable_weights == 6
    with pytest.raises(ConfigError, match="unknown block 'c9'"):
        set_trainable(lenet_classifier, "fine-tune", blocks=("c1", "c3", "c5"),
                      unfreeze_from="c9")


def test_full_phase_trains_everything(lenet_classifier):
    summary = set_trainable(lenet_classifier, "full")
    assert summary.trainable_weights == 8
    assert summary.trainable_params == LENET_BACKBONE + HEAD_3
    assert summary.frozen_params == 0


def test_batchnorm_stays_frozen_and_in_inference_mode_when_fine_tuning():
    """A BN backbone: fine-tune unfreezes convs but never BN; training=False keeps stats fixed."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, use_bias=False, name="b1_conv")(inputs)
    x = keras.layers.BatchNormalization(name="b1_bn")(x)
    x = keras.layers.Conv2D(4, 3, use_bias=False, name="b2_conv")(x)
    x = keras.layers.BatchNormalization(name="b2_bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    backbone = keras.Model(inputs, x, name="backbone")
    image = keras.Input((16, 16, 3))
    y = backbone(image, training=False)
    y = keras.layers.Dropout(0.1, name="head_dropout")(y)
    y = keras.layers.Dense(2, activation="softmax", name="classifier")(y)
    model = keras.Model(image, y)

    summary = set_trainable(model, "fine-tune", blocks=("b1", "b2"), unfreeze_from="b2")
    assert summary.trainable_weights == 1 + 2  # b2_conv kernel; classifier kernel + bias
    assert not backbone.get_layer("b2_bn").trainable
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    moving_mean = backbone.get_layer("b2_bn").moving_mean.numpy().copy()
    x = np.random.default_rng(0).normal(5, 3, (8, 16, 16, 3)).astype("float32")
    model.fit(x, np.eye(2)[np.arange(8) % 2], epochs=1, verbose=0)
    np.testing.assert_array_equal(backbone.get_layer("b2_bn").moving_mean.numpy(), moving_mean)
    # 2 conv kernels, gamma + beta of both BN layers, classifier kernel + bias
    assert set_trainable(model, "full").trainable_weights == 2 + 4 + 2


@pytest.mark.parametrize("train_batchnorm", [False, True])
def test_fine_tune_batchnorm_frozen_or_training(train_batchnorm):
    """``fine_tune_batchnorm="train"``: the unfrozen blocks' BN layers train and normalise with
    batch statistics (their moving mean moves); earlier blocks' stay put either way."""
    model = build_classifier("keras_mobilenet", num_classes=2, mode=TransferMode.FINE_TUNE,
                             image_size=32, weights=None, train_batchnorm=train_batchnorm)
    backbone = model.get_layer("backbone")
    summary = set_trainable(model, "fine-tune", blocks=("conv_dw_13",),
                            unfreeze_from="conv_dw_13", train_batchnorm=train_batchnorm)
    # conv_dw_13 depthwise + conv_pw_13 kernels (+ gamma, beta of their 2 BN), the classifier
    assert summary.trainable_weights == 2 + 2 + (4 if train_batchnorm else 0)
    assert summary.batchnorm == ("train" if train_batchnorm else "frozen")
    top, below = backbone.get_layer("conv_pw_13_bn"), backbone.get_layer("conv_pw_12_bn")
    top_mean, below_mean = np.array(top.moving_mean), np.array(below.moving_mean)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    model.fit(x, np.eye(2)[np.arange(4) % 2], epochs=1, verbose=0)
    assert np.array_equal(np.array(top.moving_mean), top_mean) != train_batchnorm
    np.testing.assert_array_equal(np.array(below.moving_mean), below_mean)


def test_feature_and_head_models_share_weights_with_classifier(lenet_classifier):
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    composed = head_model(lenet_classifier)(feature_model(lenet_classifier)(x))
    np.testing.assert_allclose(composed, lenet_classifier(x, training=False), rtol=1e-6)


def test_classifier_rejects_too_small_images():
    with pytest.raises(ConfigError, match="below the minimum 32"):
        build_classifier("lenet5", num_classes=2, mode=TransferMode.FULL_RETRAIN, image_size=16)
