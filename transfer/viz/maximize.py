"""Activation maximisation and DeepDream: images that excite a unit, a channel or a class.

:func:`maximize` starts from grey noise and climbs the gradient of the objective in raw 0-255
pixel space, with the regularisers of Yosinski et al. 2015 ("Understanding Neural Networks
Through Deep Visualization"): random jitter before each step, L2 decay towards grey, a Gaussian
blur every few steps and, just before each blur, the pixels contributing least
(|pixel x gradient|, below a percentile) reset to grey. Pixels are clipped to 0-255 after each
step. Steps are normalised by the gradient's standard deviation, so ``learning_rate`` is in pixel
units.

:func:`deep_dream` (Mordvintsev et al. 2015) amplifies what a layer sees in a given image,
over octaves: it starts at a small scale and keeps the detail it added when moving to the next.
Its objective is the mean squared activation (as in the original DeepDream), which amplifies
whatever the layer already responds to, whatever its sign. The model's input size is fixed, so
each octave is resized to it inside the differentiated function.

Defaults are sized for small models on a CPU (seconds); raise ``steps`` for bigger ones.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np

from transfer.errors import ConfigError
from transfer.plots import new_figure, save_figure, wrap_title
from transfer.viz.common import final_dense, normalise
from transfer.viz.taps import tap_model

log = logging.getLogger(__name__)

GREY = 128.0


@dataclasses.dataclass(frozen=True)
class Maximized:
    """The optimised ``(size, size, 3)`` image (0-255 floats) and the objective per step."""

    image: np.ndarray
    objective: list[float]
    target: str


def _objective(model, layer: str | None, channel: int | None, class_index: int | None,
               squared: bool = False):
    """A differentiable ``images -> score per image`` and a description of it."""
    import tensorflow as tf

    if class_index is not None:
        dense = final_dense(model)
        softmax = dense is not None and getattr(dense[1].activation, "__name__", "") == "softmax"
        n_classes = model.output_shape[-1]
        if not 0 <= class_index < n_classes:
            raise ConfigError(f"class {class_index} is out of range (0 to {n_classes - 1})")
        if softmax:
            path, dense_layer = dense
            tap = tap_model(model, [(path, "input")])

            def class_logit(x):
                features = tap(x)[0]
                logits = tf.matmul(features, dense_layer.kernel)
                if dense_layer.bias is not None:
                    logits = logits + dense_layer.bias
                return logits[:, class_index]

            return class_logit, f"class {class_index} logit"

        def class_output(x):
            return model(x, training=False)[:, class_index]

        return class_output, f"class {class_index} output"
    if layer is None:
        raise ConfigError("give a layer (and optionally a channel) or a class to maximise")
    tap = tap_model(model, [layer])
    path = tap.paths[0]
    shape = tap.model.outputs[0].shape
    channels = shape[-1]
    if channel is not None and not 0 <= channel < channels:
        raise ConfigError(f"channel {channel} is out of range: layer {path!r} has {channels} "
                          f"channels (0 to {channels - 1})")
    axes = tuple(range(1, len(shape) - 1))

    def layer_mean(x):
        activation = tap(x)[0]
        if squared:
            activation = tf.square(activation)
        if channel is not None:
            activation = activation[..., channel]
            return tf.reduce_mean(activation, axis=axes) if axes else activation
        return tf.reduce_mean(activation, axis=tuple(range(1, len(shape))))

    what = f"{path} channel {channel}" if channel is not None else f"{path} (all channels)"
    if squared:
        what = f"{what}, squared"
    return layer_mean, what


def _gradient_fn(objective):
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def gradient(x, size):
        with tf.GradientTape() as tape:
            tape.watch(x)
            resized = tf.image.resize(x, size) if x.shape[1] != size[0] else x
            score = tf.reduce_sum(objective(resized))
        return score, tape.gradient(score, x)

    return gradient


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of an ``(h, w, c)`` image, edges reflected."""
    if sigma <= 0:
        return image
    radius = max(1, int(round(3 * sigma)))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    out = np.pad(image, ((radius, radius), (0, 0), (0, 0)), mode="reflect")
    out = sum(kernel[i] * out[i:i + image.shape[0]] for i in range(len(kernel)))
    out = np.pad(out, ((0, 0), (radius, radius), (0, 0)), mode="reflect")
    return sum(kernel[i] * out[:, i:i + image.shape[1]] for i in range(len(kernel)))


def maximize(model, *, layer: str | None = None, channel: int | None = None,
             class_index: int | None = None, steps: int = 64, learning_rate: float = 6.0,
             jitter: int = 4, l2_decay: float = 0.01, blur_every: int = 4,
             blur_sigma: float = 0.5, clip_percentile: float = 10.0,
             seed: int = 0) -> Maximized:
    """Gradient ascent from noise on a layer's channel (or the whole layer) or a class logit.

    Args:
        model: a model taking raw 0-255 RGB images (see ``load_for_viz``).
        layer: a layer path or unique name (ignored with ``class_index``).
        channel: the channel (last axis) to maximise; default: the mean of all channels.
        class_index: maximise this class's logit instead of a layer.
        steps: ascent steps.
        learning_rate: step size in 0-255 pixel units (per gradient standard deviation).
        jitter: random shift of up to this many pixels before each step.
        l2_decay: fraction of the distance to grey removed after each step.
        blur_every: blur every this many steps (0: never).
        blur_sigma: standard deviation of that blur, in pixels.
        clip_percentile: pixels whose contribution |(x - grey) * gradient| is below this
            percentile are reset to grey before each blur (0: off).
        seed: seed of the noise and the jitter.
    """
    import tensorflow as tf

    objective, what = _objective(model, layer, channel, class_index)
    size = model.input_shape[1]
    rng = np.random.default_rng(seed)
    x = (GREY + rng.normal(0.0, 20.0, (size, size, 3))).clip(0, 255).astype(np.float32)
    gradient = _gradient_fn(objective)
    history = []
    target = tf.constant([size, size])
    for step in range(steps):
        dy, dx = rng.integers(-jitter, jitter + 1, size=2) if jitter else (0, 0)
        shifted = np.roll(x, (dy, dx), axis=(0, 1))
        score, grad = gradient(tf.constant(shifted[None]), target)
        grad = np.roll(grad.numpy()[0], (-dy, -dx), axis=(0, 1))
        history.append(float(score))
        regularise = not blur_every or (step + 1) % blur_every == 0
        if clip_percentile > 0 and regularise and step < steps - 1:
            # Only right before a blur (which smooths the reset pixels into their
            # neighbourhood) and never at the last step: isolated grey specks otherwise remain.
            contribution = np.abs((x - GREY) * grad).sum(axis=-1)
            x[contribution < np.percentile(contribution, clip_percentile)] = GREY
        x = x + learning_rate * grad / (grad.std() + 1e-8)
        x = GREY + (x - GREY) * (1.0 - l2_decay)
        if blur_every and regularise:
            x = gaussian_blur(x, blur_sigma)
        x = np.clip(x, 0, 255).astype(np.float32)
    log.info("maximised %s: objective %.4g -> %.4g in %d steps", what,
             history[0] if history else float("nan"), history[-1] if history else float("nan"),
             steps)
    return Maximized(x, history, what)


def deep_dream(model, image: np.ndarray, *, layer: str, channel: int | None = None,
               steps: int = 20, octaves: int = 3, octave_scale: float = 1.4,
               learning_rate: float = 2.0, jitter: int = 4, seed: int = 0) -> Maximized:
    """Amplify what ``layer`` (or one of its channels) responds to in ``image``, over octaves.

    Args:
        model: a model taking raw 0-255 RGB images (see ``load_for_viz``).
        image: a ``(size, size, 3)`` image of 0-255 pixels at the model's input size.
        layer: a layer path or unique name.
        channel: amplify only this channel.
        steps: ascent steps per octave.
        octaves: number of scales, the last one the model's input size.
        octave_scale: size ratio between octaves.
        learning_rate: step size in 0-255 pixel units (per mean absolute gradient).
        jitter: random shift of up to this many pixels before each step.
        seed: seed of the jitter.
    """
    import tensorflow as tf

    objective, what = _objective(model, layer, channel, None, squared=True)
    size = model.input_shape[1]
    image = np.asarray(image, dtype=np.float32)
    bases = [image]
    for _ in range(octaves - 1):
        smaller = max(8, int(round(bases[-1].shape[0] / octave_scale)))
        bases.append(tf.image.resize(bases[-1], (smaller, smaller)).numpy())
    gradient = _gradient_fn(objective)
    target = tf.constant([size, size])
    rng = np.random.default_rng(seed)
    detail = np.zeros_like(bases[-1])
    history = []
    for base in reversed(bases):
        if detail.shape != base.shape:
            detail = tf.image.resize(detail, base.shape[:2]).numpy()
        x = base + detail
        for _ in range(steps):
            dy, dx = rng.integers(-jitter, jitter + 1, size=2) if jitter else (0, 0)
            shifted = np.roll(x, (dy, dx), axis=(0, 1))
            score, grad = gradient(tf.constant(shifted[None]), target)
            grad = np.roll(grad.numpy()[0], (-dy, -dx), axis=(0, 1))
            history.append(float(score))
            x = np.clip(x + learning_rate * grad / (np.abs(grad).mean() + 1e-8), 0, 255)
        detail = x - base
    log.info("dreamed %s: objective %.4g -> %.4g", what, history[0], history[-1])
    return Maximized(x.astype(np.float32), history, what)


def plot_maximized(result: Maximized, output_path: str | os.PathLike, *,
                   original: np.ndarray | None = None) -> Path:
    """The optimised image (contrast-stretched to the full range), after the original if any."""
    panels = []
    if original is not None:
        panels.append((np.clip(original / 255.0, 0, 1), "original"))
        panels.append((np.clip(result.image / 255.0, 0, 1), "dream"))
    else:
        panels.append((normalise(result.image), "contrast-stretched"))
    fig = new_figure(3.2 * len(panels) + 0.2, 4.0)
    for k, (data, caption) in enumerate(panels):
        ax = fig.add_axes(((0.1 + 3.2 * k) / (3.2 * len(panels) + 0.2), 0.03, 3.0 /
                           (3.2 * len(panels) + 0.2), 3.0 / 4.0))
        ax.imshow(data, interpolation="nearest" if data.shape[0] < 96 else "antialiased")
        ax.set_title(caption, fontsize=8)
        ax.set_axis_off()
    gain = (f"; objective {result.objective[0]:.3g} -> {result.objective[-1]:.3g}"
            if result.objective else "")
    fig.text(0.5, 0.995, wrap_title(f"{result.target}{gain}", 3.2 * len(panels), 9),
             ha="center", va="top", fontsize=9)
    return save_figure(fig, output_path)

