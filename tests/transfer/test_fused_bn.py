"""BatchNormalization through TensorFlow's fused kernel: the same numbers as Keras's own path."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from transfer.fused_bn import fused_batchnorm


def _layer(**kwargs) -> keras.layers.BatchNormalization:
    layer = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3, **kwargs)
    layer.build((None, 5, 6, 3))
    rng = np.random.default_rng(0)
    for variable in layer.trainable_variables:
        variable.assign(rng.normal(size=variable.shape).astype("float32"))
    layer.moving_mean.assign([0.5, -1.0, 2.0])
    layer.moving_variance.assign([1.5, 0.25, 4.0])
    return layer


def _step(layer, x, training=True):
    """Output, gradients (input and weights) and moving statistics after one call."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        weight = tf.reshape(tf.range(3, dtype="float32") + 1.0, [1, 1, 1, 3])
        loss = tf.reduce_sum(tf.square(y - 0.5) * weight)  # no gradient vanishes by symmetry
    grads = tape.gradient(loss, [x, *layer.trainable_variables])
    return ([y.numpy()] + [g.numpy() for g in grads]
            + [layer.moving_mean.numpy(), layer.moving_variance.numpy()])


@pytest.mark.parametrize("center,scale", [(True, True), (False, False)])
def test_fused_training_step_equals_keras(center, scale):
    x = np.random.default_rng(1).normal(3.0, 2.0, size=(4, 5, 6, 3)).astype("float32")
    expected = _step(_layer(center=center, scale=scale), x)
    with fused_batchnorm():
        got = _step(_layer(center=center, scale=scale), x)
    assert len(got) == len(expected) == 3 + int(center) + int(scale) + 1
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    # moving variance took the biased batch variance, as Keras's does
    layer = _layer(center=center, scale=scale)
    with fused_batchnorm():
        layer(x, training=True)
    np.testing.assert_allclose(layer.moving_variance.numpy(),
                               0.9 * np.array([1.5, 0.25, 4.0]) + 0.1 * x.var(axis=(0, 1, 2)),
                               rtol=1e-5)


def test_fused_kernel_runs_only_where_it_computes_what_keras_does():
    x = tf.constant(np.ones((2, 4, 4, 3), "float32"))

    def ops(layer, **kwargs):
        graph = tf.function(lambda t: layer(t, **kwargs)).get_concrete_function(x).graph
        return {op.type for op in graph.get_operations()}

    with fused_batchnorm():
        assert "FusedBatchNormV3" in ops(_layer(), training=True)
        assert "FusedBatchNormV3" not in ops(_layer(), training=False)  # inference: Keras's
        frozen = _layer()
        frozen.trainable = False  # a frozen layer runs in inference mode, as in Keras
        assert "FusedBatchNormV3" not in ops(frozen, training=True)
        flat = keras.layers.BatchNormalization()  # 2-D input: Keras's path
        flat.build((None, 3))
        graph = tf.function(lambda t: flat(t, training=True)).get_concrete_function(
            tf.ones((2, 3))).graph
        assert "FusedBatchNormV3" not in {op.type for op in graph.get_operations()}
    assert "FusedBatchNormV3" not in ops(_layer(), training=True)  # outside the block


def test_keras_call_is_back_after_the_outermost_block_even_on_error():
    original = keras.layers.BatchNormalization.call
    with pytest.raises(RuntimeError):
        with fused_batchnorm():
            with fused_batchnorm():
                pass
            assert keras.layers.BatchNormalization.call is not original  # still inside one
            raise RuntimeError("training failed")
    assert keras.layers.BatchNormalization.call is original
