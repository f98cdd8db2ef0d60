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
    return {
        "samples": int(n),
        "loss": loss if math.isfinite(loss) else None,
        "top1_accuracy": top1,
        "top5_accuracy": top5,
        "top1_error": 1.0 - top1,
        "top5_error": 1.0 - top5,
        "top_k": top_k,
        **per_class_rows(confusion, dict(enumerate(class_names))),
        "confusion_matrix": confusion.tolist(),
        "class_names": list(class_names),
    }


def per_class_rows(confusion: np.ndarray, rows: dict[int, str]) -> dict:
    """``per_class`` precision, recall, F1 and support of the classes ``rows`` names (index in
    the confusion matrix: name), and their ``macro`` and support-``weighted`` averages; the one
    place these are computed."""
    confusion = np.asarray(confusion, dtype=np.int64)
    predicted, support = confusion.sum(axis=0), confusion.sum(axis=1)
    per_class = {}
    for i, name in rows.items():
        tp = confusion[i, i]
        precision = tp / predicted[i] if predicted[i] else 0.0
        recall = tp / support[i] if support[i] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": float(precision), "recall": float(recall),
                           "f1": float(f1), "support": int(support[i])}
    weights = np.array([c["support"] for c in per_class.values()], dtype=np.float64)

    def average(key: str, weighted: bool) -> float:
        values = np.array([c[key] for c in per_class.values()])
        if not weighted:
            return float(values.mean())
        return float((values * weights).sum() / weights.sum()) if weights.sum() else 0.0

    return {"per_class": per_class,
            "macro": {key: average(key, False) for key in ("precision", "recall", "f1")},
            "weighted": {key: average(key, True) for key in ("precision", "recall", "f1")}}
