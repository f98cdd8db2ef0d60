"""ImageNet-1k class names and WordNet ids, shipped with the package: nothing is downloaded.

The 1,000 classes are in Keras's class-index order (the sorted WordNet ids, as every
``keras.applications`` ImageNet classifier outputs them): index 285 is ``"Egyptian cat"``
(``n02124075``), 967 ``"espresso"`` (``n07920052``). Each class's name is the first of the
ImageNet synonyms; see ``zoo/data/README.md`` for where the data come from.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.resources
import json

from zoo.errors import ZooError

_DATA = "data/imagenet_classes.json"


@dataclasses.dataclass(frozen=True)
class ImageNetClass:
    """One ImageNet-1k class.

    Attributes:
        index: output index of an ImageNet classifier (0-999).
        wnid: WordNet id, e.g. ``"n02124075"``.
        name: a human-readable name, the first synonym (``"Egyptian cat"``).
        synonyms: every ImageNet synonym of the class, ``name`` first.
    """

    index: int
    wnid: str
    name: str
    synonyms: tuple[str, ...]


@functools.cache
def imagenet_classes() -> tuple[ImageNetClass, ...]:
    """The 1,000 ImageNet-1k classes in class-index order."""
    text = importlib.resources.files("zoo").joinpath(_DATA).read_text(encoding="utf-8")
    return tuple(ImageNetClass(row["index"], row["wnid"], row["name"], tuple(row["synonyms"]))
                 for row in json.loads(text))


def imagenet_class_names() -> list[str]:
    """The 1,000 class names in class-index order (``names[285] == "Egyptian cat"``)."""
    return [c.name for c in imagenet_classes()]


def imagenet_class(key: int | str) -> ImageNetClass:
    """Look a class up by index, WordNet id or name.

    Names match case-insensitively, with ``_`` read as a space (Keras's
    ``decode_predictions`` writes ``"Egyptian_cat"``). A class's own name is matched first, then
    its other synonyms.

    Raises:
        ZooError: no class matches (close names are suggested), or a name names several classes
            (``"crane"`` is a bird and a machine); the message lists their WordNet ids.
    """
    classes = imagenet_classes()
    if isinstance(key, int) and not isinstance(key, bool):
        if 0 <= key < len(classes):
            return classes[key]
        raise ZooError(f"ImageNet class index must be 0-{len(classes) - 1}, got {key}")
    if not isinstance(key, str):
        raise ZooError(f"ImageNet class key must be an index, a WordNet id or a name, "
                       f"got {key!r}")
    by_wnid = _by_wnid()
    if key in by_wnid:
        return by_wnid[key]
    wanted = _normalise(key)
    for candidates in ([c for c in classes if _normalise(c.name) == wanted],
                       [c for c in classes if wanted in map(_normalise, c.synonyms)]):
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            listed = ", ".join(f"{c.index} {c.wnid} ({', '.join(c.synonyms)})"
                               for c in candidates)
            raise ZooError(f"ImageNet class name {key!r} is ambiguous: {listed}. Use the index "
                           f"or the WordNet id.")
    close = difflib.get_close_matches(wanted, [_normalise(c.name) for c in classes], n=3)
    hint = f" Did you mean {', '.join(repr(n) for n in close)}?" if close else ""
    raise ZooError(f"no ImageNet class is named {key!r} or has that WordNet id.{hint}")


@functools.cache
def _by_wnid() -> dict[str, ImageNetClass]:
    return {c.wnid: c for c in imagenet_classes()}


def _normalise(name: str) -> str:
    return name.replace("_", " ").strip().casefold()
