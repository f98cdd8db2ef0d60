"""Image sources into checked, seeded, stratified splits and ``tf.data`` pipelines.

One module per step, each importing only the ones before it:

- :mod:`~transfer.data.reports`: :class:`DataReport` (what checking found, every skipped file
  with its reason) and class balance (:func:`class_weights`, :func:`imbalance_ratio`).
- :mod:`~transfer.data.checks`: every file decoded once by Pillow in a thread pool, results
  cached in SQLite, and the normalised pixels of an image (:func:`load_normalized`).
- :mod:`~transfer.data.splits`: :class:`Split`, :class:`ImageFolderData` and the seeded,
  stratified split of checked files.
- :mod:`~transfer.data.sources`: :func:`list_image_files`, the one walk of a folder for images
  (hidden and system files left out, symlinked copies used once), and :func:`changes_since`.
- :mod:`~transfer.data.pipelines`: decode, orient and resize into ``tf.data`` datasets
  (:func:`make_dataset`), the ops the exported model runs too.

Each task's own readers live in its package (:mod:`transfer.tasks.classification.sources`:
class folders, CSV files, TFDS; :mod:`transfer.tasks.segmentation.pairs`: image/mask pairs).
Every public name is importable from ``transfer.data`` itself.
"""

# Private helpers that benchmarks/bench_data.py calls directly, to time checking batch by batch.
from transfer.data.checks import (  # noqa: F401, E402
    _BATCH,
    CHECK_VERSION,
    NOTE_16BIT,
    NOTE_ALPHA,
    NOTE_ANIMATION,
    NOTE_CMYK,
    NOTE_EXIF,
    NOTE_GRAY,
    NOTE_OTHER_MODE,
    NOTE_PALETTE,
    NOTE_PNG_END,
    NOTE_SUFFIX,
    PILLOW_FORMATS,
    _check_batch,
    _stat_entry,
    check_files,
    default_cache_dir,
    default_workers,
    load_normalized,
)
from transfer.data.pipelines import (
    decode_and_resize,
    decode_rgb,
    image_dataset,
    make_dataset,
    orient_image,
    resize_images,
    split_loader,
)
from transfer.data.reports import (
    DROP_EMPTY_BOX,
    DROP_MALFORMED,
    DROP_OUTSIDE,
    DROP_UNKNOWN_CLASS,
    DROP_UNKNOWN_IMAGE,
    SKIP_ANNOTATION_SIZE,
    SKIP_BAD_ANNOTATION,
    SKIP_COLOUR,
    SKIP_CORRUPT,
    SKIP_DUPLICATE,
    SKIP_EMPTY,
    SKIP_LABELS,
    SKIP_LINKED,
    SKIP_LOSSY_MASK,
    SKIP_MASK_MODE,
    SKIP_MISSING,
    SKIP_NO_IMAGE,
    SKIP_NO_IMAGE_FOR_ANNOTATION,
    SKIP_NO_MASK,
    SKIP_NOT_IMAGE,
    SKIP_OUTSIDE,
    SKIP_SAME_STEM,
    SKIP_SIZE_MISMATCH,
    SKIP_SYSTEM,
    SKIP_TOO_LARGE,
    SKIP_TRUNCATED,
    SKIP_UNREADABLE,
    DataReport,
    class_weights,
    imbalance_ratio,
)
from transfer.data.sources import (
    IMAGE_SUFFIXES,
    SYSTEM_FILES,
    SYSTEM_FOLDERS,
    changes_since,
    list_image_files,
)
from transfer.data.splits import (
    DEFAULT_MIN_PER_CLASS,
    SPLIT_FOLDERS,
    ImageFolderData,
    Split,
    held_out,
)

__all__ = [
    "CHECK_VERSION", "DEFAULT_MIN_PER_CLASS", "IMAGE_SUFFIXES", "PILLOW_FORMATS", "SPLIT_FOLDERS",
    "SYSTEM_FILES", "SYSTEM_FOLDERS", "NOTE_16BIT", "NOTE_ALPHA", "NOTE_ANIMATION", "NOTE_CMYK",
    "NOTE_EXIF", "NOTE_GRAY", "NOTE_OTHER_MODE", "NOTE_PALETTE", "NOTE_PNG_END", "NOTE_SUFFIX",
    "SKIP_COLOUR", "SKIP_CORRUPT", "SKIP_DUPLICATE", "SKIP_EMPTY", "SKIP_LABELS", "SKIP_LINKED",
    "SKIP_LOSSY_MASK", "SKIP_MASK_MODE", "SKIP_MISSING", "SKIP_NO_IMAGE", "SKIP_NO_MASK",
    "SKIP_NOT_IMAGE", "SKIP_OUTSIDE", "SKIP_SAME_STEM", "SKIP_SIZE_MISMATCH", "SKIP_SYSTEM",
    "SKIP_TOO_LARGE", "SKIP_TRUNCATED", "SKIP_UNREADABLE", "DataReport", "ImageFolderData",
    "Split", "check_files", "class_weights", "decode_and_resize", "decode_rgb",
    "default_cache_dir", "changes_since", "default_workers", "image_dataset", "imbalance_ratio",
    "list_image_files", "load_normalized", "make_dataset", "orient_image", "resize_images",
    "split_loader",
    # Detection: annotation files and boxes; the seeded draw of splits not given.
    "DROP_EMPTY_BOX", "DROP_MALFORMED", "DROP_OUTSIDE", "DROP_UNKNOWN_CLASS", "DROP_UNKNOWN_IMAGE",
    "SKIP_ANNOTATION_SIZE", "SKIP_BAD_ANNOTATION", "SKIP_NO_IMAGE_FOR_ANNOTATION", "held_out",
]
