"""Image embeddings and exact nearest-neighbour search.

An embedding is the penultimate layer's output, L2-normalised: for a classifier trained by this
toolkit the backbone's pooled features (the input of ``head_dropout``), for a registry model the
input of its last dense layer (or the pooled last spatial layer when it has none). Search is an
exact cosine search with NumPy (one matrix product), fast enough for tens of thousands of images;
an approximate index (FAISS, Annoy) is left out on purpose.

An index is two files with one stem: ``INDEX.npz`` (the ``embeddings`` matrix) and
``INDEX.json`` (the model it came from, its input size, the image paths and their labels), so
``similar`` can embed a query with the same model.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from transfer import outputs
from transfer.errors import ConfigError, DataError
from transfer.plots import new_figure
from transfer.rundir import atomic_write
from transfer.viz.common import (
    VizModel,
    last_spatial_layer,
    list_images,
    load_for_viz,
    load_images,
    penultimate,
    write_json,
)
from transfer.viz.taps import tap_model

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Index:
    """L2-normalised embeddings ``(n, d)`` of images, and where they came from."""

    embeddings: np.ndarray
    paths: list[str]
    labels: list[str | None]
    source: str
    weights: str | None
    image_size: int
    layer: str


@dataclasses.dataclass(frozen=True)
class Match:
    """One neighbour: its rank (1 = nearest), cosine distance (1 - cosine similarity), file."""

    rank: int
    distance: float
    path: str
    label: str | None


def embedding_tap(model) -> tuple[object, str]:
    """A function ``images -> (n, d) features`` for the penultimate layer, and its name."""
    from keras import ops

    try:
        tap = tap_model(model, [penultimate(model)])
        name = f"{tap.paths[0]} (input)"
    except ConfigError:
        tap = tap_model(model, [last_spatial_layer(model)[0]])
        name = f"{tap.paths[0]} (average-pooled)"

    def features(images):
        out = tap(images)[0]
        if len(out.shape) == 4:
            out = ops.mean(out, axis=(1, 2))
        elif len(out.shape) > 2:
            out = ops.reshape(out, (out.shape[0], -1))
        return out

    return features, name


def embed_images(features_fn, images: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
    """L2-normalised ``(n, d)`` float32 embeddings of 0-255 images."""
    chunks = [np.asarray(features_fn(images[i:i + batch_size]), dtype=np.float32)
              for i in range(0, len(images), batch_size)]
    vectors = np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def index_paths(index: str | os.PathLike) -> tuple[Path, Path]:
    """``(INDEX.npz, INDEX.json)`` for an index named with or without either suffix."""
    path = Path(index)
    stem = path.with_suffix("") if path.suffix in (".npz", ".json") else path
    return stem.with_name(stem.name + ".npz"), stem.with_name(stem.name + ".json")


def build_index(source: str | os.PathLike, data_dir: str | os.PathLike,
                output: str | os.PathLike, *, weights: str | None = None,
                image_size: int | None = None, batch_size: int = 32,
                force: bool = False) -> Index:
    """Embed every image under ``data_dir`` and write ``output.npz`` + ``output.json``; an
    existing index is replaced only with ``force``, and only if the toolkit wrote it."""
    for path in index_paths(output):
        outputs.check_output(path, replace=force, what="index",
                             reads=[(data_dir, "the images")])
    loaded = load_for_viz(source, weights, image_size=image_size)
    paths, labels = list_images(data_dir)
    features_fn, layer = embedding_tap(loaded.model)
    chunks = []
    for start in range(0, len(paths), 256):  # decode in chunks to bound memory
        images = load_images(paths[start:start + 256], loaded.image_size)
        chunks.append(embed_images(features_fn, images, batch_size=batch_size))
    embeddings = np.concatenate(chunks)
    source_text = str(Path(source).resolve()) if Path(source).exists() else str(source)
    index = Index(embeddings, [str(Path(p).resolve()) for p in paths], labels, source_text,
                  weights, loaded.image_size, layer)
    npz_path, json_path = index_paths(output)
    npz_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(npz_path, lambda f: np.savez_compressed(
        f, embeddings=embeddings, written_by=np.array(outputs.SOFTWARE)))
    write_json({"source": index.source, "weights": weights,
                "image_size": index.image_size,
                "layer": layer, "dimensions": int(embeddings.shape[1]),
                "created": datetime.datetime.now().isoformat(timespec="seconds"),
                "paths": index.paths, "labels": labels}, json_path)
    log.info("indexed %d images (%d dimensions, %s) into %s", len(paths), embeddings.shape[1],
             layer, npz_path)
    return index


def load_index(index: str | os.PathLike) -> Index:
    npz_path, json_path = index_paths(index)
    if not npz_path.is_file() or not json_path.is_file():
        raise DataError(f"index {str(index)!r} needs both {npz_path.name} and {json_path.name} "
                        f"(written by 'zoo embed')")
    meta = json.loads(json_path.read_text())
    with np.load(npz_path) as data:
        embeddings = data["embeddings"].astype(np.float32)
    if len(embeddings) != len(meta["paths"]):
        raise DataError(f"index {str(npz_path)!r} holds {len(embeddings)} embeddings for "
                        f"{len(meta['paths'])} paths; rebuild it with 'zoo embed'")
    return Index(embeddings, meta["paths"], meta["labels"], meta["source"], meta.get("weights"),
                 int(meta["image_size"]), meta.get("layer", ""))


def search(index: Index, query: np.ndarray, k: int = 6) -> list[Match]:
    """The ``k`` nearest images to an L2-normalised query vector, nearest first (exact)."""
    if query.shape[-1] != index.embeddings.shape[1]:
        raise DataError(f"query has {query.shape[-1]} dimensions, the index "
                        f"{index.embeddings.shape[1]}")
    similarity = index.embeddings @ query
    k = min(k, len(similarity))
    nearest = np.argpartition(-similarity, k - 1)[:k] if k else np.array([], np.int64)
    nearest = nearest[np.argsort(-similarity[nearest], kind="stable")]
    return [Match(r + 1, float(max(0.0, 1.0 - similarity[i])), index.paths[i], index.labels[i])
            for r, i in enumerate(nearest)]


def similar(index: Index | str | os.PathLike, image: str | os.PathLike, *, k: int = 6,
            loaded: VizModel | None = None) -> tuple[list[Match], np.ndarray]:
    """The ``k`` images of an index nearest to an image file, and the query at model size.

    The query is embedded with the model the index was built with (``loaded`` to reuse one).
    """
    index = index if isinstance(index, Index) else load_index(index)
    loaded = loaded or load_for_viz(index.source, index.weights, image_size=index.image_size)
    if loaded.image_size != index.image_size:
        raise DataError(f"the model takes {loaded.image_size}px images but the index was built "
                        f"at {index.image_size}px")
    query = load_images([image], loaded.image_size)
    features_fn, _ = embedding_tap(loaded.model)
    vector = embed_images(features_fn, query)[0]
    return search(index, vector, k), query[0]


def similar_figure(query: np.ndarray, matches: Sequence[Match], image_size: int,
                   query_name: str = "query"):
    """A strip: the query, then its neighbours with their distances and labels."""
    images = load_images([m.path for m in matches], image_size) if matches else []
    n = len(matches) + 1
    fig = new_figure(1.6 * n + 0.2, 2.2)
    panels = [(query, f"{query_name}\n(query)")]
    panels += [(img, f"{m.rank}. d={m.distance:.4f}\n{m.label or Path(m.path).name}")
               for img, m in zip(images, matches)]
    for k, (img, caption) in enumerate(panels):
        ax = fig.add_axes(((0.1 + 1.6 * k) / (1.6 * n + 0.2), 0.04, 1.5 / (1.6 * n + 0.2),
                           1.5 / 2.2))
        ax.imshow(np.clip(img / 255.0, 0, 1), interpolation="nearest")
        ax.set_title(caption, fontsize=7, color="tab:blue" if k == 0 else "black")
        ax.set_axis_off()
    return fig
