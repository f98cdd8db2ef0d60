"""Small serialisable layers of the zoo.

They are registered with Keras so that ``.keras`` files holding them load in safe mode once
``zoo`` is imported; SavedModel exports trace them and need nothing from this package.

The zoo's models preprocess with Keras's own layers (:func:`zoo._common.preprocess`), so that
their ``.keras`` files need only Keras. :class:`Preprocess` stays registered for the files saved
before that, which hold it.
"""

from __future__ import annotations

import keras
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
