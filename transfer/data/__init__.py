"""Image sources into checked, seeded, stratified splits and ``tf.data`` pipelines.

One module per step, each importing only the ones before it:

- :mod:`~transfer.data.reports`: :class:`DataReport` (what checking found, every skipped file
  with its reason) and class balance (:func:`class_weights`, :func:`imbalance_ratio`).
- :mod:`~transfer.data.checks`: every file decoded once by Pillow in a thread pool, results
  cached in SQLite, and the normalised pixels of an image (:func:`load_normalized`).
- :mod:`~transfer.data.splits`: :class:`Split`, :class:`ImageFolderData` and the seeded,
  stratified split of checked files.
- :mod:`~transfer.data.sources`: image folders, CSV files and TFDS datasets
  (:func:`load_source`), :func:`list_image_files`, the one walk of a folder for images, and
  :func:`folder_split`, a class folder labelled as a trained model's classes.
- :mod:`~transfer.data.pipelines`: decode, orient and resize into ``tf.data`` datasets
  (:func:`make_dataset`), the ops the exported model runs too.
- :mod:`~transfer.data.pairs`, :mod:`~transfer.data.masks`, :mod:`~transfer.data.augment`:
  segmentation: image/mask pairs in the usual layouts (:func:`looks_like_segmentation`,
  :func:`load_segmentation`), class-index masks (:func:`read_mask`, :func:`load_masks`),
  median frequency class weights (:func:`class_pixel_weights`) and the joint augmentation of
  images and masks (:func:`joint_augment`).

Every public name is importable from ``transfer.data`` itself.
"""

from transfer.data.augment import augment_batches, joint_augment

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
from transfer.data.masks import (
    DEFAULT_IGNORE_INDEX,
    NOTE_MASK_16BIT,
    NOTE_MASK_BINARY,
    NOTE_MASK_GRAY_RGB,
    NOTE_MASK_MAPPED,
    NOTE_MASK_RGB,
    NOTE_UNLISTED,
    NOTE_UNUSED_IMAGES,
    PET_CLASSES,
    VOC_CLASSES,
    Palette,
    class_pixel_weights,
    load_masks,
    pixel_frequencies,
    read_mask,
    read_palette,
    voc_colours,
)
from transfer.data.pairs import load_segmentation, looks_like_segmentation
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
    TFDS_PREFIX,
    changes_since,
    folder_split,
    is_imagenet,
    list_image_files,
    load_csv,
    load_image_folder,
    load_source,
    load_tfds,
    scan_class_folders,
)
from transfer.data.splits import (
    DEFAULT_MIN_PER_CLASS,
    SPLIT_FOLDERS,
    ImageFolderData,
    Split,
)

__all__ = [
    "CHECK_VERSION", "DEFAULT_IGNORE_INDEX", "DEFAULT_MIN_PER_CLASS", "IMAGE_SUFFIXES",
    "PILLOW_FORMATS", "SPLIT_FOLDERS", "SYSTEM_FILES", "SYSTEM_FOLDERS", "TFDS_PREFIX",
    "NOTE_16BIT", "NOTE_ALPHA", "NOTE_ANIMATION", "NOTE_CMYK", "NOTE_EXIF", "NOTE_GRAY",
    "NOTE_OTHER_MODE", "NOTE_PALETTE", "NOTE_PNG_END", "NOTE_SUFFIX",
    "NOTE_MASK_16BIT", "NOTE_MASK_BINARY", "NOTE_MASK_GRAY_RGB", "NOTE_MASK_MAPPED",
    "NOTE_MASK_RGB",
    "NOTE_UNLISTED", "NOTE_UNUSED_IMAGES", "PET_CLASSES", "VOC_CLASSES",
    "SKIP_COLOUR", "SKIP_CORRUPT", "SKIP_DUPLICATE", "SKIP_EMPTY", "SKIP_LABELS",
    "SKIP_LINKED", "SKIP_LOSSY_MASK", "SKIP_MASK_MODE", "SKIP_MISSING", "SKIP_NO_IMAGE",
    "SKIP_NO_MASK",
    "SKIP_NOT_IMAGE", "SKIP_OUTSIDE", "SKIP_SAME_STEM", "SKIP_SIZE_MISMATCH", "SKIP_SYSTEM",
    "SKIP_TOO_LARGE", "SKIP_TRUNCATED", "SKIP_UNREADABLE",
    "DataReport", "ImageFolderData", "Palette", "Split",
    "augment_batches", "check_files", "class_pixel_weights", "class_weights",
    "decode_and_resize", "decode_rgb", "default_cache_dir", "folder_split", "is_imagenet",
    "changes_since", "default_workers", "image_dataset", "imbalance_ratio", "joint_augment",
    "list_image_files", "load_csv", "load_image_folder", "load_masks", "load_normalized",
    "load_segmentation", "load_source", "load_tfds", "looks_like_segmentation", "make_dataset",
    "orient_image",
    "pixel_frequencies", "read_mask", "read_palette", "resize_images", "scan_class_folders",
    "split_loader", "voc_colours",
]
