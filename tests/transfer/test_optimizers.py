"""Layer-wise (discriminative) learning rates: each variable's step is the plain optimizer's
step times its multiplier, exactly, and the optimizer survives a save and load."""

import keras
import numpy as np
import pytest

from transfer import TransferMode, build_classifier, set_trainable
from transfer.errors import ConfigError
from transfer.model import backbone_info, layer_lr_multipliers, resolve_unfreeze
from transfer.optimizers import LayerwiseAdam, make_optimizer


def _two_layer_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, name="low")(inputs)
    outputs = keras.layers.Dense(2, name="high")(x)
    return keras.Model(inputs, outputs)


def _one_step(optimizer):
    model = _two_layer_model()
    before = [np.array(v) for v in model.trainable_variables]
    x = np.random.default_rng(1).normal(size=(8, 4)).astype("float32")
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(x)))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply(grads, model.trainable_variables)
    return {v.path: np.array(v) - b for v, b in zip(model.trainable_variables, before)}


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_each_variable_steps_its_multiplier_times_the_plain_step(name):
    multipliers = {"low/kernel": 0.01, "low/bias": 0.01, "high/kernel": 0.1}
    plain = _one_step(make_optimizer(name, 0.05, momentum=0.9))
    layerwise = _one_step(make_optimizer(name, 0.05, momentum=0.9, lr_multipliers=multipliers))
    assert type(make_optimizer(name, 0.05, lr_multipliers=multipliers)).__name__.startswith(
        "Layerwise")
    for path, step in plain.items():
        if name == "adamw":  # decoupled decay follows the base rate, not the multiplier
            continue
        np.testing.assert_allclose(layerwise[path], step * multipliers.get(path, 1.0),
                                   rtol=1e-3, atol=1e-7)  # float32 (new - old)
    assert np.abs(plain["high/bias"]).max() > 0  # the unlisted variable moved at the full rate


def test_no_multipliers_gives_the_plain_keras_optimizer():
    assert type(make_optimizer("adam", 1e-3, lr_multipliers={})) is keras.optimizers.Adam
    assert type(make_optimizer("sgd", 1e-3, lr_multipliers={"a": 1.0})) is keras.optimizers.SGD


def test_layerwise_optimizer_round_trips_through_its_config():
    optimizer = LayerwiseAdam(1e-3, lr_multipliers={"low/kernel": 0.5})
    again = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(again, LayerwiseAdam) and again.lr_multipliers == {"low/kernel": 0.5}


@pytest.fixture(scope="module")
def resnet18():
    return build_classifier("resnet18", num_classes=3, mode=TransferMode.FINE_TUNE,
                            image_size=32)


def test_unfreeze_top_names_the_first_of_the_top_blocks():
    info = backbone_info("resnet18")  # blocks conv1 .. conv5
    assert resolve_unfreeze(info, unfreeze_top=2) == "conv4"
    assert resolve_unfreeze(info, unfreeze_top=5) == "conv1"
    assert resolve_unfreeze(info) == "conv5"  # the family's default
    assert resolve_unfreeze(info, unfreeze_from="conv3") == "conv3"
    with pytest.raises(ConfigError, match="between 1 and 5"):
        resolve_unfreeze(info, unfreeze_top=6)
    with pytest.raises(ConfigError, match="not both"):
        resolve_unfreeze(info, unfreeze_from="conv3", unfreeze_top=1)


def test_block_multipliers_are_geometric_from_the_first_unfrozen_block(resnet18):
    blocks = backbone_info("resnet18").blocks
    set_trainable(resnet18, "fine-tune", blocks=blocks, unfreeze_from="conv3")
    by_variable, by_block = layer_lr_multipliers(resnet18, blocks=blocks,
                                                 unfreeze_from="conv3", ratio=1000)
    assert by_block == pytest.approx({"conv3": 1e-3, "conv4": 1e-2, "conv5": 1e-1, "head": 1})
    assert by_variable["conv3_block1_1_conv/kernel"] == pytest.approx(1e-3)
    assert by_variable["conv4_block2_2_conv/kernel"] == pytest.approx(1e-2)
    assert by_variable["conv5_block1_0_conv/kernel"] == pytest.approx(1e-1)
    assert "classifier/kernel" not in by_variable  # the head keeps the full rate
    # Every trainable backbone variable has its multiplier; frozen ones need none.
    trainable = {v.path for v in resnet18.get_layer("backbone").trainable_variables}
    assert trainable <= set(by_variable)


def test_discriminative_lr_needs_fine_tune_mode():
    from transfer import TrainConfig

    with pytest.raises(ConfigError, match="discriminative_lr applies to the fine-tune phase"):
        TrainConfig(mode="full-retrain", discriminative_lr=10)
    with pytest.raises(ConfigError, match="discriminative_lr must be >= 1"):
        TrainConfig(discriminative_lr=0.5)
    with pytest.raises(ConfigError, match="cannot both be given"):
        TrainConfig(unfreeze_from="conv4", unfreeze_top=1)
