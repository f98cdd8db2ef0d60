"""The backbone-feature cache: a frozen backbone runs once over the images, the head trains on
its outputs.

Features are kept in memory when they fit in ``memory_cache_mb``, else written to
``RUN_DIR/features/*.npy`` and read back by memory map (reused by ``--resume``; the folder is
removed when the run finishes). Extraction runs the compiled feature model batch by batch, with a
progress bar.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np

from transfer import data as data_lib
from transfer.feeding import files_changed

log = logging.getLogger(__name__)


class FeatureCache:
    """Features of named splits under one feature model, computed once.

    Args:
        folder: where an on-disk cache goes (``RUN_DIR/features``), or ``None`` for memory only.
        memory_mb: features larger than this go to ``folder``.
        image_size: the side images are resized to.
        verbose: Keras verbosity of the progress bar (0: none).
    """

    def __init__(self, folder: Path | None, *, memory_mb: int, image_size: int,
                 verbose: int | str = "auto", fit: str = "stretch"):
        self.folder = folder
        self.memory_mb = memory_mb
        self.image_size = image_size
        self.fit = fit
        self.verbose = verbose
        self.arrays: dict[str, list[np.ndarray]] = {}
        self.targets: dict[str, Any] = {}  # per-view targets, when views move them
        self.size = 0  # bytes
        self.on_disk = False
        self.tag: str | None = None  # what the arrays hold

    def get(self, extractor: keras.Model, splits: dict[str, data_lib.Split], *,
            batch_size: int, views: dict[str, tuple[int, Callable | None]] | None = None,
            targets: dict[str, Any] | None = None, dtype: str = "float32",
            tag: str = "features", disk_budget: int | None = None
            ) -> dict[str, list[np.ndarray]] | None:
        """Outputs of ``extractor`` for every split, ``{name: [one array per output]}`` (a
        classifier's backbone has one output, a segmentation encoder one per tapped stride),
        each ``[views * items, *shape]`` in view-major split order (view ``k`` of item ``i`` at
        ``k * items + i``), computed ``batch_size`` images per forward pass.

        ``views``: ``{name: (K, make_view)}``, where ``make_view(k)`` gives view ``k`` as
        ``(images, targets, step) -> (images, targets)`` (:meth:`transfer.tasks.Task.view_fn`);
        a split not named has one view, the images themselves. ``targets``: ``{name: the
        split's targets}`` when a view moves them (a mirrored mask or box); the targets of each
        view are then kept in :attr:`targets`.
        ``dtype``: what the arrays store (float16 halves them; they are read as float32).
        ``tag`` names what is cached, so a resume never reuses another phase's cache. Returns
        ``None`` when the cache would be larger than ``disk_budget`` bytes (the caller then
        trains without it).
        """
        if self.arrays and self.tag == tag:
            return self.arrays
        if self.arrays:  # another phase's
            self.release()
        import tensorflow as tf

        self.tag = tag
        views = views or {}
        counts = {name: views.get(name, (1, None))[0] for name in splits}
        forward = tf.function(lambda x: extractor(x, training=False), reduce_retracing=True)
        shapes = [tuple(int(d) for d in output.shape[1:]) for output in extractor.outputs]
        per_item = sum(int(np.prod(shape)) for shape in shapes) * np.dtype(dtype).itemsize
        total = sum(len(split) * counts[name] for name, split in splits.items())
        self.size = total * per_item
        on_disk = self.folder is not None and self.size > self.memory_mb * 2**20
        self.on_disk = on_disk
        if on_disk and disk_budget is not None and self.size > disk_budget:
            return None
        done = self.folder / "complete.json" if self.folder is not None else None
        files = {name: [f"{name}_{k}.npy" for k in range(len(shapes))] for name in splits}
        record = {"tag": tag, "dtype": dtype, "shapes": {
            name: [[len(splits[name]) * counts[name], *shape] for shape in shapes]
            for name in splits}}
        if on_disk and done.is_file() and not targets:
            reused = self._reuse(files, record, done)
            if reused is not None:
                log.info("reusing the %s cached in %s", _what(tag), self.folder)
                self.arrays = reused
                return self.arrays
        if on_disk:
            self.folder.mkdir(exist_ok=True)
            log.info("caching the %s on disk in %s (%.2f GiB > memory_cache_mb)", _what(tag),
                     self.folder, self.size / 2**30)
        log.info("computing the %s once for %d images%s (%.1f MiB, %s)", _what(tag),
                 sum(len(s) for s in splits.values()),
                 f" x {max(counts.values())} views" if max(counts.values()) > 1 else "",
                 self.size / 2**20, dtype)
        progress = (keras.utils.Progbar(total, unit_name="image",
                                        verbose=1 if self.verbose in (1, "auto") else 2)
                    if self.verbose else None)
        self.targets = {}
        for name, split in splits.items():
            k_views, make_view = views.get(name, (1, None))
            n = len(split)
            outs = [np.lib.format.open_memmap(self.folder / f, mode="w+", dtype=dtype,
                                              shape=(n * k_views, *shape))
                    if on_disk else np.empty((n * k_views, *shape), dtype)
                    for f, shape in zip(files[name], shapes)]
            wanted = (targets or {}).get(name)
            kept = []
            for k in range(k_views):
                view = make_view(k) if make_view is not None else None
                filled = 0
                ds = data_lib.make_dataset(split, image_size=self.image_size,
                                           batch_size=batch_size, shuffle=False, cache=False,
                                           fit=self.fit)
                for step, (images, _) in enumerate(ds):
                    rows = None
                    if wanted is not None:
                        index = tf.range(filled, filled + tf.shape(images)[0])
                        rows = tf.nest.map_structure(lambda t: tf.gather(t, index), wanted)
                    if view is not None:
                        images, rows = view(images, rows, step)
                    if wanted is not None:
                        kept.append(tf.nest.map_structure(np.asarray, rows))
                    batch = forward(images)
                    batch = [np.asarray(b) for b in (batch if isinstance(batch, (list, tuple))
                                                     else [batch])]
                    if filled + len(batch[0]) <= n:
                        for out, part in zip(outs, batch):
                            out[k * n + filled:k * n + filled + len(part)] = part
                    filled += len(batch[0])
                    if progress:
                        progress.add(len(batch[0]))
                if filled != n:  # a file dropped: features and labels would misalign
                    raise files_changed(n - filled)
            if on_disk:
                for out in outs:
                    out.flush()
            self.arrays[name] = outs
            if wanted is not None:
                self.targets[name] = tf.nest.map_structure(lambda *r: np.concatenate(r), *kept)
        if on_disk:
            done.write_text(json.dumps(record))
        return self.arrays

    def _reuse(self, files: dict[str, list[str]], record: dict,
               done: Path) -> dict[str, list[np.ndarray]] | None:
        """The cached arrays, memory-mapped, or None when a file is missing, truncated, of the
        wrong shape or of another cache: the cache is then removed, to be computed again (it
        only saves time, so a damaged one must not stop a resume)."""
        try:
            found = json.loads(done.read_text())
            held = (found.get("tag"), found.get("dtype")) if "tag" in found else ("features",
                                                                                  "float32")
            if held != (record["tag"], record["dtype"]):
                raise ValueError(f"it holds {held[1]} {_what(held[0])}")
            arrays = {name: [np.load(self.folder / f, mmap_mode="r") for f in names]
                      for name, names in files.items()}
            shapes = {name: [list(a.shape) for a in got] for name, got in arrays.items()}
            if shapes != record["shapes"]:
                raise ValueError(f"shapes {shapes}, expected {record['shapes']}")
        except (OSError, ValueError, EOFError) as exc:
            log.warning("the %s cached in %s are damaged or stale (%s); computing them again",
                        _what(record["tag"]), self.folder,
                        str(exc).strip().splitlines()[0] if str(exc) else type(exc).__name__)
            shutil.rmtree(self.folder, ignore_errors=True)
            return None
        return arrays

    def release(self) -> None:
        """Forget the features and remove an on-disk cache."""
        self.arrays, self.targets, self.size, self.tag = {}, {}, 0, None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def _what(tag: str) -> str:
    return {"features": "backbone features", "boundary": "outputs below the unfreeze block"}.get(
        tag, tag)
