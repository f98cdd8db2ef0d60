"""BatchNormalization's training step as TensorFlow's one fused kernel, while the engine trains.

Keras 3 computes a BatchNormalization layer's training step on TensorFlow from separate ops: the
batch's mean and variance (``tf.nn.moments``: a mean, a squared difference, another mean), then
the normalisation (``tf.nn.batch_normalization``), and as many again backwards. TensorFlow has
one kernel for the whole of it, ``FusedBatchNormV3``, and its gradient. On this project's CPU
they are most of a detector's step outside its convolutions: a MobileNet-v2 detector's training
step at 256 px, batch 16, took 1.37 s unfused and 0.95 s fused.

:func:`fused_batchnorm` swaps the kernel in for the layers it can compute exactly as Keras does
(4-D, channels last, trained this step, no mask, renorm or synchronisation), for as long as its
``with`` block lasts: the model stays plain Keras (what is saved names
``keras.layers.BatchNormalization``), inference keeps Keras's own path, and the moving statistics
take the batch's biased variance as Keras's do (the kernel returns the unbiased one). Outputs,
gradients and moving statistics equal Keras's to float32 round-off (``tests/transfer/
test_fused_bn.py``). Other backends, and layers it does not cover, run Keras's own ``call``.
"""

from __future__ import annotations

import contextlib
import threading

import keras

_LOCK = threading.Lock()
_DEPTH = 0
_ORIGINAL = keras.layers.BatchNormalization.call


def _fusable(layer, inputs, training, mask) -> bool:
    return bool(training) and layer.trainable and mask is None and not layer.renorm \
        and not getattr(layer, "synchronized", False) and len(inputs.shape) == 4 \
        and layer.axis in (3, -1)


def _fused_call(self, inputs, training=None, mask=None):
    if not _fusable(self, inputs, training, mask):
        return _ORIGINAL(self, inputs, training=training, mask=mask)
    import tensorflow as tf

    x = tf.cast(inputs, "float32")  # Keras computes BatchNormalization in float32 too
    channels = int(x.shape[-1])
    scale = tf.cast(self.gamma, "float32") if self.scale else tf.ones([channels])
    offset = tf.cast(self.beta, "float32") if self.center else tf.zeros([channels])
    empty = tf.constant([], "float32")
    y, mean, unbiased, *_ = tf.raw_ops.FusedBatchNormV3(
        x=x, scale=scale, offset=offset, mean=empty, variance=empty, epsilon=self.epsilon,
        exponential_avg_factor=1.0, data_format="NHWC", is_training=True)
    # The kernel's variance has Bessel's correction; Keras's moving variance takes the biased one.
    count = tf.cast(tf.size(x, out_type=tf.int64) // channels, "float32")
    variance = unbiased * (count - 1.0) / count
    momentum = self.momentum
    self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
    self.moving_variance.assign(self.moving_variance * momentum + variance * (1.0 - momentum))
    return tf.cast(y, self.compute_dtype)


@contextlib.contextmanager
def fused_batchnorm():
    """Inside the block, BatchNormalization layers train through TensorFlow's fused kernel
    (TensorFlow backend only; elsewhere, and for layers it does not cover, nothing changes).
    Nested blocks are fine; Keras's own ``call`` is back when the outermost one ends."""
    global _DEPTH
    if keras.backend.backend() != "tensorflow":
        yield
        return
    with _LOCK:
        _DEPTH += 1
        keras.layers.BatchNormalization.call = _fused_call
    try:
        yield
    finally:
        with _LOCK:
            _DEPTH -= 1
            if _DEPTH == 0:
                keras.layers.BatchNormalization.call = _ORIGINAL
