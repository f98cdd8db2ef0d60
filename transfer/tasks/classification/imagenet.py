"""The ImageNet classes of a pretrained registry classifier: their labels, and metrics reduced to
the classes a folder holds."""

from __future__ import annotations

import numpy as np

from transfer.tasks.classification.metrics import per_class_rows


def imagenet_labels() -> list[str]:
    """The ImageNet class names, a name two classes share followed by its WordNet id
    (``"crane (n02012849)"``), so that per-class rows keyed by name stay apart."""
    import zoo

    classes = zoo.imagenet_classes()
    counts: dict[str, int] = {}
    for c in classes:
        counts[c.name] = counts.get(c.name, 0) + 1
    return [c.name if counts[c.name] == 1 else f"{c.name} ({c.wnid})" for c in classes]


def present_classes(metrics: dict) -> dict:
    """ImageNet metrics reduced to the classes present in the data.

    Top-1/top-5 and the loss stay over the 1000 classes. ``per_class`` keeps the classes with
    images (keyed by :func:`imagenet_labels`), ``macro`` averages over them (``weighted`` is
    unchanged: absent classes weigh nothing), and ``confusion_matrix`` covers the classes
    present or predicted, named in ``confusion_classes``.
    """
    confusion = np.asarray(metrics["confusion_matrix"], dtype=np.int64)
    labels = imagenet_labels()
    support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    present = np.flatnonzero(support)
    shown = np.flatnonzero(support + predicted)
    return {**metrics, **per_class_rows(confusion, {int(i): labels[i] for i in present}),
            "confusion_matrix": confusion[np.ix_(shown, shown)].tolist(),
            "confusion_classes": [labels[i] for i in shown]}
