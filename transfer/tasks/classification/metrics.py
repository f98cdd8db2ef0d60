"""Classification metrics from predicted probabilities: loss, top-1/top-5 accuracy and error,
per-class precision/recall/F1, their macro and weighted averages, and the confusion matrix.

Task-neutral numbers over arrays, so the evaluator and the classification task both use them.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from transfer.errors import DataError


def classification_metrics(probabilities: np.ndarray, labels: np.ndarray,
                           class_names: Sequence[str]) -> dict:
    """Metrics of predicted class probabilities against integer labels.

    Returns a JSON-ready dict: ``loss`` (mean cross-entropy), ``top1_accuracy``,
    ``top5_accuracy`` (top-k with k = min(5, classes)), ``top1_error``, ``top5_error``,
    ``per_class`` precision/recall/F1/support, ``macro`` and ``weighted`` averages, and the
    ``confusion_matrix`` (rows: true class, columns: predicted class).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n, k = probabilities.shape
    if n == 0:
        raise DataError("no samples to evaluate")
    eps = 1e-12
    loss = float(-np.mean(np.log(np.clip(probabilities[np.arange(n), labels], eps, 1.0))))
    predicted = probabilities.argmax(axis=1)
    top_k = min(5, k)
    top_idx = np.argsort(-probabilities, axis=1)[:, :top_k]
    top1 = float(np.mean(predicted == labels))
    top5 = float(np.mean((top_idx == labels[:, None]).any(axis=1)))

    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = {}
    for i, name in enumerate(class_names):
        tp = confusion[i, i]
        predicted_i = confusion[:, i].sum()
        support = confusion[i, :].sum()
        precision = tp / predicted_i if predicted_i else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": float(precision), "recall": float(recall),
                           "f1": float(f1), "support": int(support)}
    supports = np.array([c["support"] for c in per_class.values()], dtype=np.float64)

    def average(key: str, weights: np.ndarray | None) -> float:
        values = np.array([c[key] for c in per_class.values()])
        if weights is None:
            return float(values.mean())
        return float((values * weights).sum() / weights.sum()) if weights.sum() else 0.0

    return {
        "samples": int(n),
        "loss": loss if math.isfinite(loss) else None,
        "top1_accuracy": top1,
        "top5_accuracy": top5,
        "top1_error": 1.0 - top1,
        "top5_error": 1.0 - top5,
        "top_k": top_k,
        "per_class": per_class,
        "macro": {key: average(key, None) for key in ("precision", "recall", "f1")},
        "weighted": {key: average(key, supports) for key in ("precision", "recall", "f1")},
        "confusion_matrix": confusion.tolist(),
        "class_names": list(class_names),
    }
