"""Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) on batches of one-hot labels."""

from __future__ import annotations

from typing import Callable


def mix_batch(mixup: float, cutmix: float) -> Callable | None:
    """Mixup and/or CutMix on one-hot batches; with both, each batch picks one at random."""
    if not mixup and not cutmix:
        return None
    import tensorflow as tf

    def beta(alpha, seed):
        a = tf.random.stateless_gamma([], seed=seed, alpha=alpha)
        b = tf.random.stateless_gamma([], seed=seed + 1, alpha=alpha)
        return a / (a + b)

    def apply(batch, seed):
        x, y = batch
        n = tf.shape(x)[0]
        perm = tf.random.experimental.stateless_shuffle(tf.range(n), seed=seed + 2)
        x2, y2 = tf.gather(x, perm), tf.gather(y, perm)
        use_cutmix = cutmix > 0 and (
            not mixup or tf.random.stateless_uniform([], seed=seed + 3) < 0.5)
        if use_cutmix:
            lam = beta(cutmix, seed + 4)
            h, w = tf.shape(x)[1], tf.shape(x)[2]
            cut = tf.sqrt(1.0 - lam)
            ch = tf.cast(tf.cast(h, tf.float32) * cut, tf.int32)
            cw = tf.cast(tf.cast(w, tf.float32) * cut, tf.int32)
            cy = tf.random.stateless_uniform([], seed=seed + 5, maxval=h, dtype=tf.int32)
            cx = tf.random.stateless_uniform([], seed=seed + 6, maxval=w, dtype=tf.int32)
            y0, y1 = tf.maximum(cy - ch // 2, 0), tf.minimum(cy + ch // 2, h)
            x0, x1 = tf.maximum(cx - cw // 2, 0), tf.minimum(cx + cw // 2, w)
            rows = tf.logical_and(tf.range(h) >= y0, tf.range(h) < y1)
            cols = tf.logical_and(tf.range(w) >= x0, tf.range(w) < x1)
            mask = tf.cast(tf.logical_and(rows[:, None], cols[None, :]), x.dtype)[None, :, :, None]
            area = tf.cast((y1 - y0) * (x1 - x0), tf.float32) / tf.cast(h * w, tf.float32)
            return x * (1 - mask) + x2 * mask, y * (1 - area) + y2 * area
        lam = beta(mixup, seed + 7)
        return x * lam + x2 * (1 - lam), y * lam + y2 * (1 - lam)

    return apply
