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

    def get(self, extractor: keras.Model, splits: dict[str, data_lib.Split], *,
            batch_size: int) -> dict[str, list[np.ndarray]]:
        """Features of every split, ``{name: [one float32 array per extractor output]}`` (a
        classifier's backbone has one output, a segmentation encoder one per tapped stride),
        each ``[items, *feature_shape]`` in split order, computed ``batch_size`` images per
        forward pass."""
        if self.arrays:
            return self.arrays
        import tensorflow as tf

        forward = tf.function(lambda x: extractor(x, training=False), reduce_retracing=True)
        shapes = [tuple(int(d) for d in output.shape[1:]) for output in extractor.outputs]
        per_item = sum(int(np.prod(shape)) for shape in shapes) * 4
        total = sum(len(split) for split in splits.values())
        on_disk = self.folder is not None and total * per_item > self.memory_mb * 2**20
        done = self.folder / "complete.json" if self.folder is not None else None
        files = {name: [f"{name}_{k}.npy" for k in range(len(shapes))] for name in splits}
        if on_disk and done.is_file():
            expected = {name: [(len(splits[name]), *shape) for shape in shapes]
                        for name in splits}
            reused = self._reuse(files, expected)
            if reused is not None:
                log.info("reusing the backbone features cached in %s", self.folder)
                self.arrays = reused
                return self.arrays
        if on_disk:
            self.folder.mkdir(exist_ok=True)
            log.info("caching backbone features on disk in %s (%.2f GiB > memory_cache_mb)",
                     self.folder, total * per_item / 2**30)
        log.info("extracting backbone features once for %d images", total)
        progress = (keras.utils.Progbar(total, unit_name="image",
                                        verbose=1 if self.verbose in (1, "auto") else 2)
                    if self.verbose else None)
        for name, split in splits.items():
            outs = [np.lib.format.open_memmap(self.folder / f, mode="w+", dtype="float32",
                                              shape=(len(split), *shape))
                    if on_disk else np.empty((len(split), *shape), np.float32)
                    for f, shape in zip(files[name], shapes)]
            filled = 0
            ds = data_lib.make_dataset(split, image_size=self.image_size,
                                       batch_size=batch_size, shuffle=False, cache=False,
                                       fit=self.fit)
            for images, _ in ds:
                batch = forward(images)
                batch = [np.asarray(b) for b in (batch if isinstance(batch, (list, tuple))
                                                 else [batch])]
                if filled + len(batch[0]) <= len(split):
                    for out, part in zip(outs, batch):
                        out[filled:filled + len(part)] = part
                filled += len(batch[0])
                if progress:
                    progress.add(len(batch[0]))
            if filled != len(split):  # a file dropped: features and labels would misalign
                raise files_changed(len(split) - filled)
            if on_disk:
                for out in outs:
                    out.flush()
            self.arrays[name] = outs
        if on_disk:
            done.write_text(json.dumps({n: [list(a.shape) for a in arrays]
                                        for n, arrays in self.arrays.items()}))
        return self.arrays

    def _reuse(self, files: dict[str, list[str]],
               expected: dict[str, list[tuple[int, ...]]]) -> dict[str, list[np.ndarray]] | None:
        """The cached features, memory-mapped, or None when a file is missing, truncated or of
        the wrong shape: the cache is then removed, to be extracted again (it only saves
        time, so a damaged one must not stop a resume)."""
        try:
            arrays = {name: [np.load(self.folder / f, mmap_mode="r") for f in names]
                      for name, names in files.items()}
            shapes = {name: [a.shape for a in found] for name, found in arrays.items()}
            if shapes != expected:
                raise ValueError(f"shapes {shapes}, expected {expected}")
        except (OSError, ValueError, EOFError) as exc:
            log.warning("the backbone features cached in %s are damaged (%s); extracting them "
                        "again", self.folder, str(exc).strip().splitlines()[0] if str(exc)
                        else type(exc).__name__)
            shutil.rmtree(self.folder, ignore_errors=True)
            return None
        return arrays

    def release(self) -> None:
        """Forget the features and remove an on-disk cache."""
        self.arrays = {}
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
