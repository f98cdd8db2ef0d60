"""Object detection: boxes and their classes from YOLO, COCO or Pascal VOC layouts, an
anchor-free detector (or the paper's YOLO v1) on any registry backbone, COCO mAP through
pycocotools, and a SavedModel with the decoding and the non-maximum suppression inside."""

from __future__ import annotations

import logging
import types
from pathlib import Path
from typing import Any

import keras
import numpy as np

from transfer import plots
from transfer.errors import ConfigError
from transfer.model import encoder_split
from transfer.outputs import unique_stem
from transfer.tasks.base import Prediction, Task, present_numbers
from transfer.tasks.detection.augment import (
    AUGMENTATIONS,
    augment_boxes,
    mirror_boxes,
    pad_rows,
    target_rows,
)

log = logging.getLogger(__name__)

#: ``--model`` names that are detectors; any other registry name is the default detector's
#: backbone
DETECTOR = "detector"
YOLOV1 = "yolov1"
DETECTORS = (DETECTOR, YOLOV1)
#: what the SavedModel and ``zoo predict`` keep by default (Ultralytics' predict defaults)
SERVING_THRESHOLDS = types.MappingProxyType({"conf": 0.25, "iou": 0.45, "max_det": 300})
#: what evaluation keeps: COCO scores a ranked list, so a low score threshold
EVALUATION_THRESHOLDS = types.MappingProxyType({"conf": 0.001, "iou": 0.7, "max_det": 300})
#: the assignment and the box loss when ``--loss auto`` (see docs/detection.md)
DEFAULT_LOSS = "tal+ciou"


class DetectionTask(Task):
    """Boxes and a class per box, from a YOLO, COCO or Pascal VOC folder."""

    name = "detection"
    curve_metric = "map50"
    validates_in_callbacks = True  # Validation scores the loss and mAP from one pass
    needs_input_size = True  # boxes come back in each image's own pixels
    fit = "letterbox"
    layout_hint = ("a folder in YOLO (data.yaml, images/ + labels/), COCO "
                   "(annotations/instances_*.json) or Pascal VOC (JPEGImages/ + Annotations/) "
                   "layout")
    claim_order = 10  # after segmentation: a VOC root holding both reads as segmentation
    # Measured for boxes (bench_detection.py --parts policies, docs/detection.md): the whole
    # backbone at the head's rate with its BatchNorm frozen beat BatchNorm training (mAP50-95
    # 0.247 vs 0.193, seed 1: 0.255 vs 0.222), from conv_dw_7 (0.226) and classification's
    # lr x 0.1 (0.117), at batch 16.
    fine_tune_lr_factor = 1.0
    unfreeze_whole = True
    fine_tune_batchnorm = "frozen"
    # flip alone: scale, crop and mosaic each lowered the held-out mAP of a 16-epoch fine-tune
    # on 240 images (0.188 flip, 0.171 +crop, 0.163 +scale, 0.145 +scale,mosaic; docs/detection.md)
    augment = types.MappingProxyType({"fine-tune": "flip", "full-retrain": "flip"})
    prediction_files = "an image with its boxes drawn"
    serving_key = "boxes"
    tflite_outputs = ("boxes", "scores", "classes", "num_detections")
    onnx_outputs = tflite_outputs  # NMS inside, as ONNX's own NonMaxSuppression

    def __init__(self, *, conf: float | None = None, iou: float | None = None,
                 max_det: int | None = None, head: str = DETECTOR, image_size: int = 0,
                 **options: Any):
        super().__init__(**options)
        self.conf = SERVING_THRESHOLDS["conf"] if conf is None else float(conf)
        self.iou = SERVING_THRESHOLDS["iou"] if iou is None else float(iou)
        self.max_det = SERVING_THRESHOLDS["max_det"] if max_det is None else int(max_det)
        self.head = head
        self.image_size = int(image_size)

    @classmethod
    def from_config(cls, config):
        return cls(head=YOLOV1 if str(config.model) == YOLOV1 else DETECTOR,
                   image_size=config.image_size or 0)

    def contract_options(self):
        return {"conf": self.conf, "iou": self.iou, "max_det": self.max_det, "head": self.head,
                "image_size": self.image_size}

    # ---- data -------------------------------------------------------------------------------
    @classmethod
    def claims(cls, source, *, split=None):
        from transfer.tasks.detection import layouts

        return layouts.detection_layout(source)

    @classmethod
    def wanted_by(cls, config):
        import zoo

        model = str(config.model)
        return model in DETECTORS or (model in zoo.list_models()
                                      and zoo.get_spec(model).task == cls.name)

    def load_data(self, source, config, *, cache_dir=None, tfds_data_dir=None, workers=None,
                  dry_run=False):
        if str(source).startswith("tfds:"):
            raise ConfigError("detection reads YOLO, COCO or Pascal VOC folders, not tfds:NAME")
        from transfer.tasks.detection import layouts

        return layouts.load_detection(source, val_split=config.val_split,
                                      test_split=config.test_split, seed=config.seed,
                                      cache_dir=cache_dir, workers=workers, dry_run=dry_run)

    def evaluation_split(self, data_dir, class_names, *, split="val"):
        from transfer.tasks.detection import layouts

        return layouts.evaluation_split(data_dir, class_names, split=split)

    def targets(self, split, num_classes, image_size):
        import tensorflow as tf

        return tf.constant(encode_targets(split.annotations, image_size))

    def probe_targets(self, batch, num_classes, image_size, rng):
        corners = np.sort(rng.uniform(0, image_size, (batch, 4, 2, 2)), axis=2)
        boxes = corners.transpose(0, 1, 3, 2).reshape(batch, 4, 4)[..., [0, 2, 1, 3]]
        classes = rng.integers(0, num_classes, (batch, 4, 1))
        return np.concatenate([classes, boxes], axis=-1).astype(np.float32)

    def labels(self, split, image_size):
        labels = np.empty(len(split), dtype=object)
        for i, annotation in enumerate(split.annotations):
            labels[i] = annotation
        return labels

    def describe(self, data):
        boxes = sum(len(a["classes"]) for a in data.train.annotations)
        return (f"{data.num_classes} classes ({', '.join(data.class_names)}), "
                f"{len(data.train)} training images with {boxes} boxes, {len(data.val)} "
                f"validation images")

    def batch_fn(self, config):
        ops = set(filter(None, (config.augment or "").split(",")))
        if not ops:
            return None
        options = {op: op in ops for op in AUGMENTATIONS}

        def augment(batch, seed):
            images, targets = batch
            return augment_boxes(images, targets, seed, **options)

        return augment

    def view_fn(self, config, k):
        view = super().view_fn(config, k)
        if k or "mosaic" not in (config.augment or "").split(","):
            return view

        def padded(images, targets, step):  # the image itself, its rows as many as a mosaic's
            import tensorflow as tf

            rows = targets.shape[1] or tf.shape(targets)[1]
            return images, pad_rows(targets, target_rows(rows, mosaic=True))

        return padded

    # ---- model ------------------------------------------------------------------------------
    views_move_targets = True
    # NON_MAX_SUPPRESSION_V5 has no int8 kernel: the box decoding and NMS run on dequantised
    # float32 outputs, the network itself in int8
    tflite_int8_float_ops = True

    def mirror(self, images, targets):
        return mirror_boxes(images, targets)

    def backbone_name(self, config):
        if config.backbone:
            return config.backbone
        model = str(config.model)
        if model == YOLOV1:
            return YOLOV1
        return _default_backbone() if model == DETECTOR else model

    def check(self, config):
        import zoo

        ops = set(filter(None, (config.augment or "").split(",")))
        from transfer.config import DETECTION_LOSSES

        if config.loss != "auto" and config.loss not in DETECTION_LOSSES:
            raise ConfigError(f"--loss {config.loss} is a segmentation loss; detection takes "
                              f"{', '.join(DETECTION_LOSSES)}", field="loss")
        if config.loss != "auto" and str(config.model) == YOLOV1:
            raise ConfigError("yolov1 trains with its paper's loss; drop --loss", field="loss")
        unsupported = sorted(ops - set(AUGMENTATIONS))
        if unsupported:
            raise ConfigError(f"detection augments with {', '.join(AUGMENTATIONS)} only (a "
                              f"rotated box no longer fits its object; scenes are upright): "
                              f"drop {', '.join(unsupported)} from --augment", field="augment")
        model = str(config.model)
        if model == YOLOV1:
            if config.backbone:
                raise ConfigError("yolov1 is a whole network with its own backbone; drop "
                                  "--backbone", field="backbone")
            if config.mode.value != "full-retrain":
                raise ConfigError("yolov1 is a whole network: train it with --mode "
                                  "full-retrain (its backbone is its own, not a registry "
                                  "model's)", field="mode")
            if config.weights not in (None, "none"):
                raise ConfigError("yolov1 has no pretrained weights here; train it from scratch "
                                  "with --weights none", field="weights")
            if config.image_size and config.image_size % 64:
                raise ConfigError(f"yolov1's grid is its input / 64: --image-size must be a "
                                  f"multiple of 64 (448 in the paper), got {config.image_size}",
                                  field="image_size")
        backbone = self.backbone_name(config)
        if model != YOLOV1 and not (backbone.endswith(".keras") or "/" in backbone):
            spec = zoo.get_spec(backbone)
            if spec.task != "classification":
                raise ConfigError(f"{backbone!r} is a {spec.task} model; a detector's backbone "
                                  f"is a classification backbone (see 'zoo list')",
                                  field="backbone")
        if config.image_size and config.image_size % 32:
            raise ConfigError(f"detection needs --image-size a multiple of 32 (the deepest "
                              f"stride), got {config.image_size}", field="image_size")

    def fill_defaults(self, config, blocks):
        config = super().fill_defaults(config, blocks)
        if config.image_size and config.image_size % 32:
            size = max(32, round(config.image_size / 32) * 32)
            log.info("image size %d rounded to %d, a multiple of the detector's deepest "
                     "stride", config.image_size, size)
            config = config.replace(image_size=size)
        return config

    def build_model(self, config, *, num_classes, weights):
        import keras

        import zoo

        self.check(config)
        size = config.image_size
        self.image_size = size
        keras.utils.set_random_seed(config.seed)
        if config.model == YOLOV1:
            self.head = YOLOV1
            return zoo.create_model(YOLOV1, classes=num_classes, input_shape=(size, size, 3),
                                    weights=weights)
        self.head = DETECTOR
        return zoo.build_detector(backbone=self.backbone_name(config), classes=num_classes,
                                  input_shape=(size, size, 3), encoder_weights=weights)

    def output_classes(self, model):
        if self.head == YOLOV1:
            return None  # the grid's depth mixes boxes and classes; the loss checks it
        from zoo.detection import REG_MAX

        return int(model.output_shape[-1]) - 4 * REG_MAX

    def feature_split(self, model):
        return encoder_split(model)

    def epoch_callbacks(self, val, *, image_size, class_names):
        return [Validation(self, val, image_size, class_names)]

    def loss(self, config):
        if self.head == YOLOV1:
            from transfer.tasks.detection.yolov1_loss import YOLOv1Loss

            return YOLOv1Loss(config.image_size)
        from transfer.tasks.detection.loss import DetectionLoss

        assigner, box = (DEFAULT_LOSS if config.loss == "auto" else config.loss).split("+")
        return DetectionLoss(assigner=assigner, box_loss=box)

    def metrics(self, num_classes):
        return []

    # ---- evaluation -------------------------------------------------------------------------
    def postprocess(self, outputs, *, evaluating=False):
        thresholds = EVALUATION_THRESHOLDS if evaluating else {
            "conf": self.conf, "iou": self.iou, "max_det": self.max_det}
        if not self.image_size and self.head == YOLOV1:
            raise ConfigError("yolov1 outputs do not say the input size; the contract must")
        from transfer.tasks.detection.boxes import image_size_of

        size = self.image_size or image_size_of(outputs)
        if self.head == YOLOV1:
            from transfer.tasks.detection.yolov1_loss import decode_yolov1

            return decode_yolov1(outputs, size, **thresholds)
        from transfer.tasks.detection.decode import decode

        return decode(outputs, size, **thresholds)

    def evaluator(self, class_names, *, image_size=None):
        from transfer.tasks.detection.evaluation import DetectionEvaluator

        return DetectionEvaluator(class_names, image_size=image_size or self.image_size)

    def headline(self, metrics):
        return (f"mAP50-95 {_number(metrics.get('map'))}, mAP50 {_number(metrics.get('map50'))}"
                f", mAP75 {_number(metrics.get('map75'))}")

    def key_metrics(self, metrics):
        return present_numbers(metrics, (("map", "mAP50-95"), ("map50", "mAP50"),
                                         ("map75", "mAP75"), ("precision", "precision"),
                                         ("recall", "recall")))

    def trained_line(self, val):
        return (f"validation mAP50-95 {_number(val.get('map'))} (mAP50 "
                f"{_number(val.get('map50'))}) on {val['samples']} images")

    def evaluation_lines(self, result):
        from transfer.tasks.detection.evaluation import evaluation_lines

        return evaluation_lines(result)

    def report_sections(self, page):
        val = page.metrics.get("val") or {}

        def table():
            rows = "".join(
                f"<tr><td>{name}</td><td>{_number(row.get('ap'))}</td>"
                f"<td>{_number(row.get('ap50'))}</td><td>{row.get('boxes', 0)}</td></tr>"
                for name, row in (val.get("per_class") or {}).items() if row is not None)
            return (page.note(self.headline(val)) + "<table><tr><th>class</th><th>AP50-95</th>"
                    f"<th>AP50</th><th>boxes</th></tr>{rows}</table>")

        def existing(name, alt):
            def section():
                path = page.existing(name)
                if path is None:
                    return page.note(f"no {name} in the run directory")
                return page.png(path.read_bytes(), alt)
            return section

        return [("Average precision per class (validation)", table),
                ("Precision-recall curves (validation)", existing("pr_curves.png", "PR curves")),
                ("Images with the worst recall: true and predicted boxes",
                 existing("worst.png", "worst images")),
                ("Confusion matrix of matched boxes (validation)",
                 existing("confusion_matrix.png", "confusion matrix"))]

    # ---- the model card ---------------------------------------------------------------------
    def card_data(self, split, names, report):
        splits = [s for s in ("train", "val", "test") if s in split]
        counts = {s: np.bincount([c for a in split[s].get("annotations", [])
                                  for c in a["classes"]], minlength=len(names))
                  for s in splits}
        lines = ["| index | class | " + " | ".join(f"{s} boxes" for s in splits) + " |",
                 "|---:|---|" + "---:|" * len(splits)]
        for i, name in enumerate(names):
            lines.append(f"| {i} | {name} | "
                         + " | ".join(str(int(counts[s][i])) for s in splits) + " |")
        lines += ["", "Images: " + ", ".join(f"{s} {len(split[s]['paths'])}" for s in splits)
                  + "."]
        return lines

    def card_metrics(self, val):
        lines = [f"- {val['samples']} images, {val.get('boxes', 0)} boxes: {self.headline(val)}",
                 "", "| class | AP50-95 | AP50 | boxes |", "|---|---:|---:|---:|"]
        for name, row in (val.get("per_class") or {}).items():
            if row is not None:
                lines.append(f"| {name} | {_number(row.get('ap'))} | "
                             f"{_number(row.get('ap50'))} | {row.get('boxes', 0)} |")
        return lines

    def card_outputs(self, k, top_k, size):
        n = self.max_det
        return {"savedmodel": f"`boxes` float32 `[batch, {n}, 4]` (x0, y0, x1, y1 in the "
                              f"input's own pixels), `scores` float32 `[batch, {n}]`, "
                              f"`classes` int32 `[batch, {n}]` (-1: padding), `labels` string "
                              f"`[batch, {n}]`, `num_detections` int32 `[batch]`; non-maximum "
                              f"suppression inside (score >= {self.conf}, IoU {self.iou})",
                "keras": "the raw head outputs (decode with the SavedModel instead)",
                "tflite": f"`boxes` `[1, {n}, 4]` in the {size} x {size} letterboxed input's "
                          f"pixels, `scores`, `classes`, `num_detections`",
                "onnx": f"`boxes` float32 `[batch, {n}, 4]` in the {size} x {size} letterboxed "
                        f"input's pixels, `scores`, `classes` (-1: padding), `num_detections`"}

    # ---- prediction and serving -------------------------------------------------------------
    def predictions(self, paths, images, served, *, class_names, top_k, output_dir):
        from transfer.tasks.detection.drawing import draw_boxes

        results = {}
        for i, path in enumerate(paths):
            n = int(served["num_detections"][i])
            boxes = served["boxes"][i, :n].astype(float)
            scores = served["scores"][i, :n].astype(float)
            classes = served["classes"][i, :n].astype(int)
            labels = tuple(class_names[c] for c in classes)
            detections = [{"class": label, "score": round(float(s), 6),
                           "box": [round(float(v), 2) for v in box]}
                          for label, s, box in zip(labels, scores, boxes)]
            if output_dir is None:
                results[path] = Prediction(
                    path, labels, tuple(float(s) for s in scores),
                    details={"detections": detections},
                    arrays={"boxes": boxes, "scores": scores, "classes": classes})
                continue
            stem = unique_stem(output_dir, Path(path).stem, ("_boxes.png",))
            out = output_dir / f"{stem}_boxes.png"
            drawn = draw_boxes(images[i], boxes, labels, scores, class_ids=classes)
            plots.save_png(plots.image_png(drawn), out)
            results[path] = Prediction(path, labels, tuple(float(s) for s in scores),
                                       files=(str(out),),
                                       details={"detections": detections, "image": str(out)})
        return results

    def draw_frame(self, image, prediction):
        """The boxes with their class names and scores, as ``<stem>_boxes.png`` draws them."""
        from transfer.tasks.detection.drawing import draw_boxes

        arrays = prediction.arrays
        return draw_boxes(image, arrays["boxes"], prediction.labels, arrays["scores"],
                          class_ids=arrays["classes"])

    def csv_header(self, top_k):
        return ["path", "class", "score", "x0", "y0", "x1", "y1", "error"]

    def csv_rows(self, prediction, top_k):
        if prediction.error:
            return [[prediction.path, "", "", "", "", "", "", prediction.error]]
        return [[prediction.path, d["class"], f"{d['score']:.6f}", *(f"{v:.2f}" for v in
                                                                     d["box"]), ""]
                for d in prediction.details["detections"]]

    def serving_outputs(self, outputs, class_names, top_k, input_size):
        """The decoded boxes mapped back from the letterboxed input to each image's own
        pixels, with their class names."""
        import tensorflow as tf

        from transfer.data.pipelines import letterbox_scale

        sizes = tf.cast(tf.convert_to_tensor(input_size), tf.float32)
        if sizes.shape.rank == 1:
            sizes = tf.tile(sizes[None], [tf.shape(outputs["boxes"])[0], 1])
        scale = letterbox_scale(sizes, self.image_size)  # [batch]
        limits = tf.stack([sizes[:, 1], sizes[:, 0], sizes[:, 1], sizes[:, 0]], axis=-1)
        boxes = tf.minimum(outputs["boxes"] / scale[:, None, None], limits[:, None, :])
        valid = outputs["classes"] >= 0
        boxes = tf.where(valid[..., None], boxes, 0.0)
        labels = tf.where(valid, tf.gather(class_names, tf.maximum(outputs["classes"], 0)), "")
        return {"boxes": boxes, "scores": outputs["scores"], "classes": outputs["classes"],
                "labels": labels, "num_detections": outputs["count"]}


class Validation(keras.callbacks.Callback):
    """Each epoch's validation numbers from one pass over the validation batches: ``val_loss``
    (the compiled loss, as Keras's own validation averages it: per image) and ``val_map`` and
    ``val_map50``, the COCO mAP of the model being fit, scored in the letterboxed input's pixels
    (IoU does not change under the letterbox's one scale; only COCO's small/medium/large areas
    would). The task says :attr:`~transfer.tasks.base.Task.validates_in_callbacks`, so the fit
    runs no validation pass of its own."""

    def __init__(self, task, val, image_size, class_names):
        super().__init__()
        self.task, self.val = task, val
        self.image_size, self.class_names = int(image_size), tuple(class_names)
        self._step = self._step_model = None

    def step(self):
        """The model's forward pass, its loss, and the task's evaluation decoding and NMS as
        one ``tf.function``, traced for the model being fit and kept across epochs (eagerly,
        they cost more than the epoch's COCO scoring)."""
        import tensorflow as tf

        if self._step_model is not self.model:
            model, task = self.model, self.task

            @tf.function(reduce_retracing=True)
            def step(inputs, targets):
                raw = model(inputs, training=False)
                loss = model.compute_loss(x=inputs, y=targets, y_pred=raw, training=False)
                return task.postprocess(raw, evaluating=True), loss

            self._step, self._step_model = step, model
        return self._step

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        evaluator = self.task.evaluator(self.class_names, image_size=self.image_size)
        step = self.step()
        total = images = 0.0
        for inputs, targets in self.val:
            outputs, loss = step(inputs, targets)
            outputs = tf.nest.map_structure(np.asarray, outputs)
            labels = _annotations_of(np.asarray(targets), self.image_size)
            evaluator.update(outputs, labels, [""] * len(labels))
            total += float(loss) * len(labels)
            images += len(labels)
        result = evaluator.map_result()
        if logs is not None:
            logs["val_loss"] = total / images
            for key in ("map", "map50"):
                value = result.get(key)
                logs[f"val_{key}"] = float(value) if value is not None else 0.0


def _annotations_of(targets: np.ndarray, image_size: int) -> np.ndarray:
    """Training targets ``[n, M, 5]`` back to annotation dicts of ``image_size`` squares."""
    labels = np.empty(len(targets), dtype=object)
    for i, rows in enumerate(targets):
        rows = rows[rows[:, 0] >= 0]
        labels[i] = {"boxes": rows[:, 1:].tolist(), "classes": rows[:, 0].astype(int).tolist(),
                     "difficult": [False] * len(rows), "size": [image_size, image_size]}
    return labels


def encode_targets(annotations, image_size: int) -> np.ndarray:
    """``[images, max boxes, 5]`` rows ``(class, x0, y0, x1, y1)`` in the letterboxed model
    input's pixels; padding rows have class -1."""
    most = max([1, *(len(a["classes"]) for a in annotations)])
    out = np.zeros((len(annotations), most, 5), np.float32)
    out[..., 0] = -1
    for i, annotation in enumerate(annotations):
        k = len(annotation["classes"])
        if not k:
            continue
        height, width = annotation["size"]
        scale = image_size / max(height, width)
        out[i, :k, 0] = annotation["classes"]
        out[i, :k, 1:] = np.asarray(annotation["boxes"], np.float32).reshape(k, 4) * scale
    return out


def _default_backbone() -> str:
    from transfer.config import TrainConfig

    return TrainConfig().model


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


__all__ = ["DETECTORS", "DetectionTask", "Validation", "encode_targets"]
