"""Semantic segmentation: image/mask pairs, an encoder-decoder on any registry backbone (or a
whole registry segmentation model), per-pixel losses with an ignore index, IoU metrics, and
serving outputs at the input's own resolution."""

from __future__ import annotations

import logging
import types
from pathlib import Path
from typing import Any

import numpy as np

from transfer import plots
from transfer.data import Split
from transfer.errors import ConfigError, DataError
from transfer.model import encoder_split
from transfer.outputs import unique_stem
from transfer.tasks.base import Evaluator, Prediction, Task, present_numbers
from transfer.tasks.segmentation import figures as seg_figures
from transfer.tasks.segmentation import metrics as seg_metrics
from transfer.tasks.segmentation.augment import joint_augment
from transfer.tasks.segmentation.masks import (
    DEFAULT_IGNORE_INDEX,
    class_pixel_weights,
    load_masks,
    pixel_frequencies,
)
from transfer.tasks.segmentation.pairs import load_segmentation, looks_like_segmentation

log = logging.getLogger(__name__)

#: ``--model`` names that put a decoder on ``--backbone``; other names are whole registry models
DECODERS = ("unet", "fpn")
#: the registry model ``--model unet`` means without a backbone: the paper's layout, padded
PLAIN_UNET = "unet_same"
DEFAULT_LOSS = "ce+dice"


class SegmentationTask(Task):
    """A class per pixel, from ``images/`` + ``masks/`` folders (or Pascal VOC, Oxford Pets)."""

    name = "segmentation"
    curve_metric = "mean_iou"
    needs_input_size = True
    # Telling shapes filled with photo textures apart needs the whole encoder to move: in
    # bench_segmentation (128 px, 8 + 8 epochs, MobileNet-v1, one head phase, then each
    # policy), the encoder from conv_dw_7 at lr x 0.1 reached 0.558 held-out mIoU, from
    # conv_dw_7 with discriminative rates (x 10) 0.614, the whole encoder at lr x 0.5 0.624,
    # at lr x 1 0.640, at lr x 2 0.621; at 224 px the whole encoder at lr x 1 reached 0.769
    # (the old policy: 0.652). With the encoder's BatchNorm frozen, validation fell from 0.58
    # to 0.24 mIoU at the switch (the encoder moves at 1e-3 under statistics it no longer
    # matches); letting BatchNorm train removed the drop (0.57 -> 0.58) and reached 0.794.
    fine_tune_lr_factor = 1.0
    unfreeze_whole = True
    fine_tune_batchnorm = "train"
    # Mirrored scenes are as likely as the originals, and masks mirror with them; the same
    # decoder phase, then the encoder with BatchNorm training and flips: 0.794 -> 0.800. From
    # scratch, these defaults (flips in both phases) reached 0.801 at 224 px.
    augment = types.MappingProxyType({"fine-tune": "flip", "full-retrain": "flip"})
    layout_hint = "a folder of images/ + masks/"

    def __init__(self, *, ignore_index: int | None = None, **options: Any):
        super().__init__(**options)
        # None: the default 255, binary 0/255 masks read as 0/1 (transfer.data.load_segmentation)
        self.ignore_index = DEFAULT_IGNORE_INDEX if ignore_index is None else ignore_index
        self.pixel_weights: list[float] | None = None

    @classmethod
    def from_config(cls, config):
        return cls(ignore_index=config.ignore_index)

    def contract_options(self):
        return {"ignore_index": self.ignore_index}

    # ---- data -------------------------------------------------------------------------------
    @classmethod
    def claims(cls, source, *, split=None):
        root = Path(source)
        if not looks_like_segmentation(root):
            return None
        if (root / "JPEGImages").is_dir() and (root / "SegmentationClass").is_dir():
            return "JPEGImages/ + SegmentationClass/"
        if (root / "annotations" / "trimaps").is_dir() and not (root / "masks").is_dir():
            return "images/ + annotations/trimaps/"
        return "images/ + masks/"

    @classmethod
    def wanted_by(cls, config):
        import zoo

        model = str(config.model)
        return ((model in DECODERS and not Path(model).suffix)
                or (model in zoo.list_models() and zoo.get_spec(model).task == cls.name))

    def load_data(self, source, config, *, cache_dir=None, tfds_data_dir=None, workers=None,
                  dry_run=False):
        if str(source).startswith("tfds:"):
            raise ConfigError("segmentation reads image/mask folders (images/ + masks/, Pascal "
                              "VOC or Oxford-IIIT Pet layouts), not tfds:NAME")
        return load_segmentation(
            source, val_split=config.val_split, test_split=config.test_split, seed=config.seed,
            palette=config.palette, ignore_index=config.ignore_index, cache_dir=cache_dir,
            workers=workers, dry_run=dry_run)

    def evaluation_split(self, data_dir, class_names, *, split="val"):
        """All the usable pairs of a folder (or of its ``split`` folder when it is laid out in
        ``train/ val/ test/``); its class names, if it names them, must be the model's."""
        root = Path(data_dir)
        presplit = (root / "train").is_dir() and (root / split).is_dir()
        # Masks are read as training read them: with the default ignore index, binary 0/255
        # masks are 0/1.
        default = self.ignore_index == DEFAULT_IGNORE_INDEX
        data = load_segmentation(root, val_split=0.5, seed=0,
                                           ignore_index=None if default else self.ignore_index)
        names = tuple(data.class_names)
        if names != tuple(class_names) and not all(n.startswith("class_") for n in names):
            raise DataError(f"the classes of {str(root)!r} ({', '.join(names)}) are not the "
                            f"model's ({', '.join(class_names)})")
        parts = ([getattr(data, split)] if presplit else
                 [s for s in (data.train, data.val, data.test) if s is not None])
        columns = [tuple(v for part in parts for v in getattr(part, column))
                   for column in ("paths", "labels", "sources", "orientations", "masks")]
        paths, _, sources, orientations, masks = columns
        return (Split(paths, tuple(range(len(paths))), sources, orientations, masks),
                [path for path, _ in data.report.skipped])

    def targets(self, split, num_classes, image_size):
        import tensorflow as tf

        return tf.constant(self.labels(split, image_size))

    def probe_targets(self, batch, num_classes, image_size, rng):
        return rng.integers(0, num_classes, (batch, image_size, image_size)).astype(np.uint8)

    def labels(self, split, image_size):
        return load_masks(split, image_size, ignore_index=self.ignore_index)

    def describe(self, data):
        return (f"{data.num_classes} classes ({', '.join(data.class_names)}), "
                f"{len(data.train)} training and {len(data.val)} validation image/mask pairs")

    def loss_weights(self, config, split, num_classes):
        """``None`` for ``fit``: per-pixel class weights (median-frequency balancing) go into
        the loss itself, when ``class_weights`` is on, or when it is auto, the classes' pixel
        counts are imbalanced and the loss has no Dice term. Dice already averages over the
        classes, so a rare class counts as much as the background; weighting its pixels on top
        of that cost 3.7 points of held-out mIoU in bench_segmentation's frozen-encoder run
        (0.576 -> 0.539)."""
        frequencies = pixel_frequencies(self.labels(split, config.image_size),
                                                  num_classes, ignore_index=self.ignore_index)
        present = [f for f in frequencies if f > 0]
        ratio = max(present) / min(present) if present else 1.0
        loss = self.loss_name(config)
        auto = config.class_weights == "auto" and ratio > config.imbalance_threshold
        self.pixel_weights = None
        if auto and "dice" in loss:
            log.info("pixel class weights off: the classes are imbalanced (largest/smallest "
                     "class = %.1f) but the %s loss balances them already", ratio, loss)
        elif auto or config.class_weights == "on":
            self.pixel_weights = class_pixel_weights(frequencies)
            log.info("pixel class weights on (largest/smallest class = %.1f): %s", ratio,
                     [round(w, 3) for w in self.pixel_weights])
        return None

    def batch_fn(self, config):
        if not config.augment:
            return None
        ops = set(config.augment.split(","))
        options = {"flip": "flip" in ops, "rotate": 10.0 if "rotate" in ops else 0.0,
                   "scale": (0.75, 1.25) if ops & {"crop", "scale"} else None,
                   "colour": "colour" in ops, "ignore_index": self.ignore_index}

        def augment(batch, seed):
            images, masks = batch
            return joint_augment(images, masks, seed, **options)

        return augment

    views_move_targets = True

    def mirror(self, images, targets):
        return images[:, :, ::-1], targets[:, :, ::-1]

    # ---- model ------------------------------------------------------------------------------
    def backbone_name(self, config):
        if config.backbone:
            return config.backbone
        return PLAIN_UNET if config.model == "unet" else config.model

    def check(self, config):
        """The model, backbone and mode fit together (before anything is written)."""
        from transfer.config import SEGMENTATION_LOSSES

        if config.loss != "auto" and config.loss not in SEGMENTATION_LOSSES:
            raise ConfigError(f"--loss {config.loss} is a detection loss; segmentation takes "
                              f"{', '.join(SEGMENTATION_LOSSES)}", field="loss")
        import zoo

        ops = (config.augment or "").split(",")
        if "vflip" in ops:
            raise ConfigError("augment: vflip is for classification; segmentation flips "
                              "images and masks horizontally ('flip')", field="augment")
        if "mosaic" in ops:
            raise ConfigError("augment: mosaic is for detection; drop it from --augment",
                              field="augment")
        if config.backbone:
            if config.model not in DECODERS:
                raise ConfigError(f"--backbone needs --model {' or '.join(DECODERS)} (a decoder "
                                  f"to put on it), got --model {config.model!r}",
                                  field="backbone")
            zoo.get_taps(config.backbone)  # a backbone without taps says so, naming itself
            return
        name = self.backbone_name(config)
        spec = zoo.get_spec(name)
        if spec.task != "segmentation":
            models = ", ".join(zoo.list_models(task="segmentation"))
            raise ConfigError(f"model {config.model!r} is a {spec.task} model; for segmentation "
                              f"give --model unet|fpn --backbone {config.model}, or a "
                              f"segmentation model ({models})", field="model")
        if config.mode.value != "full-retrain":
            raise ConfigError(f"{name} is a whole segmentation network without a pretrained "
                              f"encoder to freeze; use --mode full-retrain, or --model unet|fpn "
                              f"--backbone NAME for the {config.mode.value} mode", field="mode")

    def build_model(self, config, *, num_classes, weights):
        import keras

        import zoo

        self.check(config)
        size = config.image_size
        keras.utils.set_random_seed(config.seed)
        if config.backbone:
            return zoo.build_segmenter(decoder=config.model, backbone=config.backbone,
                                       classes=num_classes, input_shape=(size, size, 3),
                                       encoder_weights=weights)
        return zoo.create_model(self.backbone_name(config), classes=num_classes,
                                input_shape=(size, size, 3), weights=weights)

    def feature_split(self, model):
        return encoder_split(model)

    @staticmethod
    def loss_name(config) -> str:
        return DEFAULT_LOSS if config.loss == "auto" else config.loss

    def loss(self, config):
        return seg_metrics.make_loss(self.loss_name(config),
                                     num_classes=None, ignore_index=self.ignore_index,
                                     class_weights=self.pixel_weights)

    def metrics(self, num_classes):
        return seg_metrics.segmentation_metrics_for_compile(num_classes, self.ignore_index)

    # ---- evaluation -------------------------------------------------------------------------
    def evaluator(self, class_names, *, image_size=None):
        return SegmentationEvaluator(class_names, ignore_index=self.ignore_index)

    def headline(self, metrics: dict[str, Any]) -> str:
        return (f"mean IoU {metrics['mean_iou']:.4f}, pixel accuracy "
                f"{metrics['pixel_accuracy']:.4f}, Dice {metrics['dice']:.4f}")

    def key_metrics(self, metrics):
        return present_numbers(metrics, (("mean_iou", "mean IoU"),
                                         ("pixel_accuracy", "pixel accuracy"), ("dice", "Dice"),
                                         ("loss", "loss")))

    def trained_line(self, val):
        return (f"validation mean IoU {val['mean_iou']:.4f} (pixel accuracy "
                f"{val['pixel_accuracy']:.4f}) on {val['samples']} images")

    def evaluation_lines(self, result):
        lines = [f"mean IoU {result['mean_iou']:.4f}, pixel accuracy "
                 f"{result['pixel_accuracy']:.4f}, Dice {result['dice']:.4f} on "
                 f"{result['samples']} images ({result['data']})",
                 f"{'class':<20} {'IoU':>7} {'Dice':>7}"]
        for name, iou in result["per_class_iou"].items():
            dice = result["per_class_dice"].get(name)
            lines.append(f"{name:<20} {'absent' if iou is None else f'{iou:.3f}':>7} "
                         f"{'' if dice is None else f'{dice:.3f}':>7}")
        return lines

    def report_sections(self, page):
        """IoU per class, the pixel confusion matrix, and the worst-segmented validation
        images with their overlays (``worst.png``, drawn at the end of training or by
        ``zoo evaluate``)."""
        val = page.metrics.get("val") or {}

        def worst():
            existing = page.existing("worst.png")
            if existing is None:
                return page.note("no worst.png in the run directory")
            return page.png(existing.read_bytes(), "worst-segmented images")

        return [
            ("IoU per class (validation)", lambda: page.note(
                f"mean IoU {val['mean_iou']:.4f}, pixel accuracy {val['pixel_accuracy']:.4f}, "
                f"Dice {val['dice']:.4f}") + page.figure(
                seg_figures.iou_bar_figure(val["per_class_iou"]), "IoU per class")),
            ("Confusion matrix over pixels (validation)", lambda: page.figure(
                seg_figures.pixel_confusion_figure(val["confusion_matrix"],
                                                   page.contract.class_names),
                "confusion matrix")),
            ("Worst-segmented validation images: image, truth, prediction", worst),
        ]

    # ---- the model card ---------------------------------------------------------------------
    def card_data(self, split, names, report):
        splits = [s for s in ("train", "val", "test") if s in split]
        frequencies = report.get("pixel_frequencies") or {}
        lines = ["| index | class | pixel frequency (train) |", "|---:|---|---:|"]
        for i, name in enumerate(names):
            share = frequencies.get(name)
            lines.append(f"| {i} | {name} | {share:.4f} |" if share is not None
                         else f"| {i} | {name} | |")
        lines += ["", "Image/mask pairs: " + ", ".join(f"{s} {len(split[s]['paths'])}"
                                                        for s in splits)
                  + f"; mask value {self.ignore_index} is ignored (unlabelled)."]
        return lines

    def card_metrics(self, val):
        lines = [f"- {val['samples']} images, {val['pixels']:,} labelled pixels: mean IoU "
                 f"{val['mean_iou']:.4f}, pixel accuracy {val['pixel_accuracy']:.4f}, Dice "
                 f"{val['dice']:.4f}", "", "| class | IoU | Dice |", "|---|---:|---:|"]
        for name, iou in val["per_class_iou"].items():
            dice = val["per_class_dice"].get(name)
            lines.append(f"| {name} | {'absent' if iou is None else f'{iou:.3f}'} | "
                         f"{'' if dice is None else f'{dice:.3f}'} |")
        return lines

    def card_outputs(self, k, top_k, size):
        return {"savedmodel": f"`class_ids` uint8 `[batch, height, width]` and `probabilities` "
                              f"float32 `[batch, height, width, {k}]` at the input's own size; "
                              f"`sizes` int32 `[batch, 2]`",
                "keras": f"probabilities `[batch, {size}, {size}, {k}]`",
                "tflite": f"`probabilities` float32 `[1, {size}, {size}, {k}]`",
                "onnx": f"`class_ids` uint8 `[batch, {size}, {size}]` and `probabilities` "
                        f"float32 `[batch, {size}, {size}, {k}]`"}

    # ---- prediction and serving -------------------------------------------------------------
    prediction_files = "a mask and an overlay"
    serving_key = "class_ids"
    onnx_outputs = ("class_ids", "probabilities")

    def predictions(self, paths, images, served, *, class_names, top_k, output_dir):
        """Write each image's mask (a palette PNG of class ids, ``<stem>_mask.png``) and
        overlay (``<stem>_overlay.png``) into ``output_dir`` (``None``: nothing written); its
        classes ranked by the share of pixels they cover."""
        ids, sizes = served["class_ids"], served["sizes"]
        colours = seg_figures.palette(len(class_names))
        results = {}
        for i, path in enumerate(paths):
            height, width = sizes[i]
            mask = ids[i, :height, :width]
            counts = np.bincount(mask.ravel(), minlength=len(class_names))
            order = [c for c in np.argsort(-counts, kind="stable") if counts[c]]
            labels = tuple(class_names[c] for c in order)
            areas = tuple(float(counts[c] / mask.size) for c in order)
            if output_dir is None:
                results[path] = Prediction(path, labels, areas,
                                           details={"areas": dict(zip(labels, areas))},
                                           arrays={"mask": mask})
                continue
            stem = unique_stem(output_dir, Path(path).stem, ("_mask.png", "_overlay.png"))
            files = (output_dir / f"{stem}_mask.png", output_dir / f"{stem}_overlay.png")
            seg_figures.save_palette_png(mask, files[0], colours)
            plots.save_png(plots.image_png(seg_figures.overlay(images[i], mask, colours)),
                           files[1])
            results[path] = Prediction(
                path, labels, areas, files=tuple(str(f) for f in files),
                details={"areas": dict(zip(labels, areas)), "mask": str(files[0]),
                         "overlay": str(files[1])})
        return results

    def draw_frame(self, image, prediction):
        """The mask in the palette's colours over the frame, as the overlay PNGs are drawn."""
        mask = prediction.arrays["mask"]
        # the palette's colours depend on the class id alone, so the ids present suffice
        colours = seg_figures.palette(int(mask.max()) + 1 if mask.size else 1)
        return seg_figures.overlay(image, mask, colours)

    def serving_outputs(self, outputs, class_names, top_k, input_size):
        """``class_ids`` (uint8 ``[batch, height, width]``) and ``probabilities`` (float32
        ``[batch, height, width, classes]``) at each input's own size. For encoded images of
        several sizes the maps are padded to the largest with ``ignore_index`` (class ids) and
        0 (probabilities); ``sizes`` ``[batch, 2]`` says each image's own height and width."""
        import tensorflow as tf

        size = tf.convert_to_tensor(input_size)
        if size.shape.rank == 1:
            probabilities = tf.image.resize(outputs, size, method="bilinear")
            batch = tf.shape(outputs)[0]
            sizes = tf.tile(size[None], [batch, 1])
        else:
            sizes = size
            height, width = tf.reduce_max(sizes[:, 0]), tf.reduce_max(sizes[:, 1])

            def one(args):
                probs, hw = args
                resized = tf.image.resize(probs[None], hw, method="bilinear")[0]
                return tf.pad(resized, [[0, height - hw[0]], [0, width - hw[1]], [0, 0]])

            probabilities = tf.map_fn(one, (outputs, sizes),
                                      fn_output_signature=tf.TensorSpec(
                                          (None, None, outputs.shape[-1]), tf.float32))
        ids = tf.cast(tf.argmax(probabilities, axis=-1), tf.uint8)
        if size.shape.rank != 1:
            rows = tf.range(tf.shape(ids)[1])[None, :, None] < sizes[:, 0, None, None]
            cols = tf.range(tf.shape(ids)[2])[None, None, :] < sizes[:, 1, None, None]
            ids = tf.where(rows & cols, ids, tf.constant(self.ignore_index, tf.uint8))
        return {"class_ids": ids, "probabilities": probabilities, "sizes": sizes}


def _resized(path: str, size: int) -> np.ndarray:
    """An image as training saw it (EXIF orientation applied), resized to the model's size."""
    from PIL import Image

    from transfer.data import load_normalized

    image = Image.fromarray(load_normalized(path)).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image)


class SegmentationEvaluator(Evaluator):
    """Pixel counts, the loss's sum and each image's IoU, batch by batch
    (:class:`~transfer.tasks.segmentation.metrics.SegmentationScore`), and the
    :data:`WORST` images with the lowest IoU for ``worst.png``: a split of any size is
    scored in the memory of one batch."""

    #: the images drawn in ``worst.png``
    WORST = 8

    def __init__(self, class_names, *, ignore_index):
        super().__init__(class_names)
        self.ignore_index = ignore_index
        self.score = seg_metrics.SegmentationScore(class_names, ignore_index=ignore_index)
        # (sort key, position, path, truth, prediction, IoU) of the worst images so far
        self._worst: list[tuple] = []

    def update(self, outputs, labels, paths):
        outputs, labels = np.asarray(outputs), np.asarray(labels)
        predicted = outputs.argmax(-1)
        start = len(self.score.per_image_iou)
        self.score.update(predicted, labels, outputs)
        for i, iou in enumerate(self.score.per_image_iou[start:]):
            value = np.nan if iou is None else iou
            key = 2.0 if np.isnan(value) else value  # images without counted pixels last
            path = paths[i] if i < len(paths) else None
            self._worst.append((key, start + i, path, labels[i], predicted[i], value))
        self._worst.sort(key=lambda w: (w[0], w[1]))
        del self._worst[self.WORST:]

    def result(self):
        return self.score.result()

    def write_artifacts(self, metrics, out_dir):
        """``confusion_matrix.png`` over pixels and ``worst.png``: the images with the lowest
        IoU as image, truth and prediction side by side."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = {"confusion_matrix": out / "confusion_matrix.png", "worst": out / "worst.png"}
        plots.save_figure(seg_figures.pixel_confusion_figure(metrics["confusion_matrix"],
                                                             self.class_names),
                          written["confusion_matrix"])
        worst = [w for w in self._worst if w[2] is not None]
        size = worst[0][3].shape[0] if worst else 0
        images = np.stack([_resized(w[2], size) for w in worst]) if worst else \
            np.zeros((0, 1, 1, 3), np.uint8)
        fig = seg_figures.worst_figure(
            images, np.stack([w[3] for w in worst]) if worst else np.zeros((0, 1, 1)),
            np.stack([w[4] for w in worst]) if worst else np.zeros((0, 1, 1)),
            np.asarray([w[5] for w in worst]), self.class_names,
            seg_figures.palette(len(self.class_names)), ignore_index=self.ignore_index)
        plots.save_figure(fig, written["worst"])
        return written
