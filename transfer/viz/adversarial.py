"""Adversarial examples with the fast gradient sign method (Goodfellow et al. 2015, "Explaining
and Harnessing Adversarial Examples").

``x_adv = clip(x + eps * sign(grad_x loss(x, y)), 0, 255)``, on raw 0-255 pixels, so ``eps`` is
in pixel levels (8 means every pixel moves by at most 8 of 255). The loss is the cross-entropy
computed from logits when the model ends in a dense softmax layer (saturated probabilities give
zero gradients, hence no attack at all); ``y`` is the true label when known, else the model's own
prediction.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from transfer.errors import DataError
from transfer.plots import new_figure
from transfer.viz.common import (
    label_of,
    list_images,
    load_images,
    num_classes,
)
from transfer.viz.taps import class_scores_fn

log = logging.getLogger(__name__)

EPSILONS = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0)


def fgsm(model, images: np.ndarray, labels: Sequence[int] | None = None, *, eps: float = 8.0,
         scores_fn=None) -> tuple[np.ndarray, np.ndarray]:
    """Adversarial images and the sign of the gradient (the perturbation's direction).

    Args:
        model: a classifier taking raw 0-255 RGB images (see ``load_for_viz``).
        images: ``(n, size, size, 3)`` 0-255 pixels.
        labels: the true classes; default: the model's predictions.
        eps: the perturbation's size, in 0-255 pixel levels.
        scores_fn: a ``class_scores_fn(model)`` result, to reuse over several calls.

    Returns:
        ``(adversarial, sign)``: the images moved by ``eps * sign`` and clipped to 0-255, and
        the ``(n, size, size, 3)`` sign in {-1, 0, 1}.
    """
    import tensorflow as tf

    scores_fn = scores_fn or class_scores_fn(model)
    fn, kind = scores_fn
    x = tf.convert_to_tensor(np.asarray(images, dtype=np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        scores, probabilities = fn(x)
        if labels is None:
            y = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        else:
            y = tf.constant(np.asarray(labels, dtype=np.int32))
        if kind == "logits":
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=scores)
        else:
            picked = tf.gather(probabilities, y, batch_dims=1)
            loss = -tf.math.log(tf.clip_by_value(picked, 1e-12, 1.0))
        loss = tf.reduce_sum(loss)
    sign = tf.sign(tape.gradient(loss, x)).numpy()
    adversarial = np.clip(np.asarray(images, np.float32) + eps * sign, 0, 255).astype(np.float32)
    return adversarial, sign


def top_predictions(probabilities: np.ndarray, class_names: Sequence[str] | None,
                    k: int = 3) -> list[dict]:
    order = np.argsort(-probabilities)[:k]
    return [{"label": label_of(int(i), class_names), "index": int(i),
             "score": float(probabilities[i])} for i in order]


def adversarial_example(model, image: np.ndarray, *, eps: float = 8.0,
                        label: int | None = None, class_names: Sequence[str] | None = None,
                        top_k: int = 3) -> dict:
    """FGSM on one image: the arrays and the top predictions before and after.

    Returns a dict with ``original``, ``adversarial`` (0-255 floats), ``perturbation``
    (``adversarial - original``), and JSON-ready ``eps``, ``attacked_label``, ``before``,
    ``after`` (top-k predictions) and ``linf`` (largest pixel change).
    """
    num_classes(model)
    image = np.asarray(image, dtype=np.float32)
    scores_fn = class_scores_fn(model)
    before = np.asarray(model(image[None], training=False))[0]
    target = int(np.argmax(before)) if label is None else int(label)
    adversarial, _ = fgsm(model, image[None], [target], eps=eps, scores_fn=scores_fn)
    after = np.asarray(model(adversarial, training=False))[0]
    k = min(top_k, len(before))
    return {
        "original": image, "adversarial": adversarial[0], "perturbation": adversarial[0] - image,
        "eps": float(eps), "attacked_label": label_of(target, class_names),
        "before": top_predictions(before, class_names, k),
        "after": top_predictions(after, class_names, k),
        "linf": float(np.abs(adversarial[0] - image).max()),
    }


def adversarial_figure(result: dict):
    """Original, perturbation (amplified to the full range), adversarial; predictions below."""
    eps = result["eps"]
    amplified = 0.5 + result["perturbation"] / (2 * eps) if eps > 0 else (
        np.full_like(result["original"], 0.5))
    panels = [(result["original"] / 255.0, "original", result["before"]),
              (np.clip(amplified, 0, 1), f"perturbation x{127.5 / max(eps, 1e-9):.0f}", None),
              (result["adversarial"] / 255.0, f"adversarial (eps {eps:g}/255)", result["after"])]
    fig = new_figure(8.4, 3.9)
    for k, (data, caption, top) in enumerate(panels):
        ax = fig.add_axes((0.02 + k * 0.33, 0.28, 0.3, 0.6))
        ax.imshow(np.clip(data, 0, 1), interpolation="nearest")
        ax.set_title(caption, fontsize=9)
        ax.set_axis_off()
        if top:
            text = "\n".join(f"{p['label']}: {p['score']:.3f}" for p in top)
            fig.text(0.02 + k * 0.33 + 0.15, 0.24, text, ha="center", va="top", fontsize=8,
                     family="monospace")
    fig.suptitle(f"FGSM against '{result['attacked_label']}'", fontsize=10, y=0.98)
    return fig


def labelled_folder(data_dir: str | os.PathLike, class_names: Sequence[str] | None,
                    image_size: int, *, max_images: int = 256,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images of a class-folder tree with labels in the model's class order.

    A folder holding ``train/`` and ``val/`` is read from ``val/``. More than ``max_images``
    images are subsampled (seeded, every class kept in proportion).

    Raises:
        DataError: images outside class folders, or folders that name no class of the model.
    """
    root = Path(data_dir)
    if (root / "train").is_dir() and (root / "val").is_dir():
        root = root / "val"
    paths, folders = list_images(root)
    if any(f is None for f in folders):
        raise DataError(f"{str(root)!r} holds images outside class sub-folders; expected one "
                        f"sub-folder per class")
    names = list(class_names) if class_names else None
    unknown = sorted({f for f in folders if (f not in names if names else not f.isdigit())})
    if unknown:
        expected = (f"the model's classes ({', '.join(names)})" if names
                    else "class indices (the model has no class names)")
        raise DataError(f"class folder(s) {', '.join(unknown)} in {str(root)!r} are not "
                        f"{expected}")
    labels = np.array([names.index(f) if names else int(f) for f in folders], dtype=np.int64)
    if len(paths) > max_images:
        keep = np.sort(np.random.default_rng(seed).permutation(len(paths))[:max_images])
        paths = [paths[i] for i in keep]
        labels = labels[keep]
        log.info("using %d of the images in %s", max_images, root)
    return load_images(paths, image_size), labels, paths


def robustness(model, images: np.ndarray, labels: Sequence[int], *,
               epsilons: Sequence[float] = EPSILONS, batch_size: int = 32) -> dict:
    """Accuracy under FGSM (against the true labels) at each epsilon (0-255 scale)."""
    num_classes(model)
    labels = np.asarray(labels, dtype=np.int64)
    scores_fn = class_scores_fn(model)
    signs = []
    for start in range(0, len(images), batch_size):
        _, sign = fgsm(model, images[start:start + batch_size], labels[start:start + batch_size],
                       eps=0.0, scores_fn=scores_fn)
        signs.append(sign)
    sign = np.concatenate(signs) if signs else np.zeros_like(images)
    accuracy = []
    for eps in epsilons:
        correct = 0
        for start in range(0, len(images), batch_size):
            batch = np.clip(images[start:start + batch_size] + eps * sign[start:start + batch_size],
                            0, 255)
            predicted = np.argmax(np.asarray(model(batch, training=False)), axis=-1)
            correct += int(np.sum(predicted == labels[start:start + batch_size]))
        accuracy.append(correct / max(1, len(images)))
    return {"epsilons": [float(e) for e in epsilons], "accuracy": accuracy,
            "samples": int(len(images))}


def robustness_figure(result: dict, title: str = ""):
    """Accuracy against epsilon, epsilons evenly spaced on the axis."""
    fig = new_figure(5.2, 3.6)
    ax = fig.add_axes((0.13, 0.15, 0.82, 0.72))
    positions = np.arange(len(result["epsilons"]))
    ax.plot(positions, result["accuracy"], marker="o", color="tab:red")
    for x, y in zip(positions, result["accuracy"]):
        ax.annotate(f"{y:.2f}", (x, y), textcoords="offset points", xytext=(0, 6),
                    ha="center", fontsize=8)
    ax.set_xticks(positions, [f"{e:g}" for e in result["epsilons"]])
    ax.set_xlabel("FGSM epsilon (0-255 pixel levels)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.1)
    ax.grid(alpha=0.3)
    ax.set_title(title or f"accuracy under FGSM ({result['samples']} images)", fontsize=10)
    return fig
