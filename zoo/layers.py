"""Small serialisable layers of the zoo.

They are registered with Keras so that ``.keras`` files holding them load in safe mode once
``zoo`` is imported; SavedModel exports trace them and need nothing from this package.

The zoo's models preprocess with Keras's own layers (:func:`zoo._common.preprocess`), so that
their ``.keras`` files need only Keras. :class:`Preprocess` stays registered for the files saved
before that, which hold it.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

# ImageNet statistics in RGB order, on the 0-255 scale (as in keras.applications.imagenet_utils).
_IMAGENET_MEAN = (123.675, 116.28, 103.53)
_IMAGENET_STD = (58.395, 57.12, 57.375)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="zoo")
class Preprocess(keras.layers.Layer):
    """Turn raw 0-255 RGB pixels into what a backbone expects (kept for older ``.keras`` files).

    Registry models no longer use it: they start with Keras's own layers of the same function
    (:func:`zoo._common.preprocess`), which load without this package.

    The mode is data, as in ``keras.applications.imagenet_utils.preprocess_input``:

    - ``"caffe"``: RGB to BGR, then subtract the ImageNet mean per channel (no scaling).
    - ``"tf"``: scale to [-1, 1].
    - ``"torch"``: scale to [0, 1], then normalise with ImageNet mean and std.
    - ``"unit"``: scale to [0, 1].
    - ``"none"``: pass through (the backbone rescales internally, e.g. EfficientNet).

    With ``channels=1`` the RGB input is first converted to luma (ITU-R BT.601 weights, as
    ``tf.image.rgb_to_grayscale``), for backbones with a one-channel input such as LeNet-5.
    """

    def __init__(self, mode: str = "torch", channels: int = 3, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("caffe", "tf", "torch", "unit", "none"):
            raise ValueError(f"unknown preprocessing mode {mode!r}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels!r}")
        self.mode = mode
        self.channels = channels

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.channels == 1 and x.shape[-1] == 3:
            weights = ops.convert_to_tensor([0.2989, 0.5870, 0.1140], dtype=x.dtype)
            x = ops.sum(x * weights, axis=-1, keepdims=True)
        if self.mode == "caffe":
            if self.channels == 3:
                x = ops.flip(x, axis=-1)
                mean = _CAFFE_MEAN_BGR
            else:
                mean = (sum(_CAFFE_MEAN_BGR) / 3,)
            return x - ops.convert_to_tensor(mean, dtype=x.dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean, std = _IMAGENET_MEAN, _IMAGENET_STD
            if self.channels == 1:
                mean, std = (sum(mean) / 3,), (sum(std) / 3,)
            return (x - ops.convert_to_tensor(mean, dtype=x.dtype)) / ops.convert_to_tensor(
                std, dtype=x.dtype
            )
        if self.mode == "unit":
            return x / 255.0
        return x

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.channels)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "channels": self.channels}


@keras.saving.register_keras_serializable(package="zoo")
class LocalResponseNormalization(keras.layers.Layer):
    """Cross-channel local response normalisation (Krizhevsky et al. 2012, section 3.3).

    ``b = a / (k + alpha / n * sum_{j in window} a_j^2) ** beta``, with the window of ``n``
    adjacent channels centred on each channel. With the paper's ``alpha`` divided by ``n`` this is
    Caffe's and PyTorch's convention (``torch.nn.LocalResponseNorm``).
    Written with ``keras.ops`` so it runs on every backend.
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def call(self, inputs):
        squared = ops.square(inputs)
        half = self.size // 2
        padded = ops.pad(squared, [[0, 0], [0, 0], [0, 0], [half, self.size - 1 - half]])
        channels = inputs.shape[-1]
        window = sum(padded[..., i : i + channels] for i in range(self.size))
        return inputs / ops.power(self.k + self.alpha / self.size * window, self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "size": self.size, "alpha": self.alpha,
                "beta": self.beta, "k": self.k}


@keras.saving.register_keras_serializable(package="zoo")
class MaxPoolingWithArgmax2D(keras.layers.Layer):
    """Max pooling that also returns where each maximum came from (SegNet's "pooling indices").

    Windows are ``pool_size`` x ``pool_size`` with stride ``pool_size`` (non-overlapping). Sizes
    that the window does not divide are padded as ``padding="same"`` pads in Keras and
    TensorFlow (half the missing rows on top, rounded down); for 2x2 windows that is one row at
    the bottom, Caffe's ceil-mode pooling: a 45-row map pools to 23 rows.

    Returns ``[pooled, indices]``. ``indices`` (int32) has the format of
    ``tf.nn.max_pool_with_argmax(..., include_batch_in_index=False)``: the flat position
    ``(y * width + x) * channels + c`` of the maximum in the (unpadded) input of one image. Ties go
    to the first position in row-major order within the window, as in TensorFlow's kernel.

    Written with ``keras.ops`` (reshape, argmax, gather), not ``tf.nn.max_pool_with_argmax``:
    that op has no XLA kernel (so ``jit_compile=True`` and TPUs fail) and exists on TensorFlow
    only. The gradient flows to the selected position only, as max pooling's does.
    """

    def __init__(self, pool_size: int = 2, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(pool_size, int) or isinstance(pool_size, bool) or pool_size < 1:
            raise ValueError(f"pool_size must be a positive integer, got {pool_size!r}")
        self.pool_size = pool_size

    def call(self, inputs):
        k = self.pool_size
        _, height, width, channels = _dims(inputs)
        pad_h, pad_w = (-height) % k, (-width) % k
        top, left = pad_h // 2, pad_w // 2
        x = ops.pad(inputs, [[0, 0], [top, pad_h - top], [left, pad_w - left], [0, 0]],
                    constant_values=float("-inf"))
        rows, cols = (height + pad_h) // k, (width + pad_w) // k
        # (batch, rows, k, cols, k, channels) -> one window per trailing axis of k*k values
        x = ops.reshape(x, (-1, rows, k, cols, k, channels))
        x = ops.reshape(ops.transpose(x, (0, 1, 3, 5, 2, 4)), (-1, rows, cols, channels, k * k))
        window = ops.cast(ops.argmax(x, axis=-1), "int32")
        pooled = ops.take_along_axis(x, window[..., None], axis=-1)[..., 0]
        y = ops.reshape(ops.arange(rows, dtype="int32"), (1, -1, 1, 1)) * k + window // k - top
        x_pos = (ops.reshape(ops.arange(cols, dtype="int32"), (1, 1, -1, 1)) * k + window % k
                 - left)
        c = ops.reshape(ops.arange(channels, dtype="int32"), (1, 1, 1, -1))
        return [pooled, (y * width + x_pos) * channels + c]

    def compute_output_spec(self, inputs):
        batch, height, width, channels = inputs.shape
        k = self.pool_size
        shape = (batch, None if height is None else -(-height // k),
                 None if width is None else -(-width // k), channels)
        return [keras.KerasTensor(shape, dtype=self.compute_dtype),
                keras.KerasTensor(shape, dtype="int32")]

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size}


@keras.saving.register_keras_serializable(package="zoo")
class MaxUnpooling2D(keras.layers.Layer):
    """Place each value back where :class:`MaxPoolingWithArgmax2D` found it; zeros elsewhere.

    Called on ``[updates, indices]`` or ``[updates, indices, like]``. The output is ``like``'s
    height and width when given (the map that was pooled: it says whether an odd size was
    padded, as Caffe's ``upsample_h``/``upsample_w`` do), else ``pool_size`` times the input's.

    The indices must come from non-overlapping ``pool_size`` windows (this layer's partner, or
    ``tf.nn.max_pool_with_argmax`` with ``ksize == strides`` and
    ``include_batch_in_index=False``): each value then lands inside its own window, so the
    unpooling is a one-hot expansion of each value over its window, with no scatter, which keeps
    it deterministic and XLA-compilable on every backend.
    """

    def __init__(self, pool_size: int = 2, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(pool_size, int) or isinstance(pool_size, bool) or pool_size < 1:
            raise ValueError(f"pool_size must be a positive integer, got {pool_size!r}")
        self.pool_size = pool_size

    def call(self, inputs):
        updates, indices = inputs[0], inputs[1]
        k = self.pool_size
        _, rows, cols, channels = _dims(updates)
        if len(inputs) > 2:
            _, height, width, _ = _dims(inputs[2])
        else:
            height, width = rows * k, cols * k
        top, left = (rows * k - height) // 2, (cols * k - width) // 2  # the pooling's padding
        indices = ops.cast(indices, "int32")
        y = indices // (width * channels) + top
        x = (indices // channels) % width + left
        window = (y % k) * k + x % k
        out = updates[..., None] * ops.one_hot(window, k * k, dtype=updates.dtype)
        out = ops.reshape(out, (-1, rows, cols, channels, k, k))
        out = ops.reshape(ops.transpose(out, (0, 1, 4, 2, 5, 3)),
                          (-1, rows * k, cols * k, channels))
        return out[:, top:top + height, left:left + width, :]

    def compute_output_spec(self, inputs):
        batch, rows, cols, channels = inputs[0].shape
        if len(inputs) > 2:
            height, width = inputs[2].shape[1:3]
        else:
            k = self.pool_size
            height = None if rows is None else rows * k
            width = None if cols is None else cols * k
        return keras.KerasTensor((batch, height, width, channels), dtype=self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size}


def _dims(x):
    """Batch, height, width and channels: Python ints where static, tensors where not."""
    dynamic = ops.shape(x)
    return tuple(static if static is not None else dynamic[i]
                 for i, static in enumerate(x.shape))


@keras.saving.register_keras_serializable(package="zoo")
class BilinearKernel(keras.initializers.Initializer):
    """Kernel of a transposed convolution that upsamples each channel bilinearly.

    FCN's initialisation of its upsampling layers (Long et al. 2015, section 4.2; the
    reference's ``surgery.upsample_filt``): channel ``i`` maps to channel ``i`` through the
    separable kernel ``(1 - |i - center| / factor)`` with ``factor = (size + 1) // 2``; a kernel
    of ``2 * s`` with stride ``s`` interpolates by ``s``. Input and output channels must match.
    """

    def __call__(self, shape, dtype=None):
        height, width, out_channels, in_channels = shape
        if out_channels != in_channels:
            raise ValueError(f"a bilinear kernel maps each channel to itself; input and output "
                             f"channels differ in kernel shape {tuple(shape)}")
        kernel = np.zeros(shape, dtype="float64")
        profile = np.outer(_bilinear_profile(height), _bilinear_profile(width))
        for channel in range(in_channels):
            kernel[:, :, channel, channel] = profile
        return ops.convert_to_tensor(kernel, dtype=dtype or "float32")

    def get_config(self):
        return {}


def _bilinear_profile(size: int) -> np.ndarray:
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    return 1 - np.abs(np.arange(size) - center) / factor
