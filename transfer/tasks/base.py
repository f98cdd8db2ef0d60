"""The task interface: the one place that says what a task is."""

from __future__ import annotations

import abc
import dataclasses
import os
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from transfer.config import TrainConfig
    from transfer.data import ImageFolderData, Split


@dataclasses.dataclass(frozen=True)
class Predictions:
    """The model's outputs on the readable images of a split, with their labels and paths."""

    outputs: np.ndarray
    labels: np.ndarray
    paths: tuple[str, ...]
    unreadable: tuple[str, ...] = ()

    @property
    def probabilities(self) -> np.ndarray:  # the name classification callers know
        return self.outputs


@dataclasses.dataclass(frozen=True)
class Prediction:
    """What a model predicted for one image, or the reason it could not be read.

    ``labels`` and ``scores`` are ranked, best first: the top-k classes and their
    probabilities, or (segmentation) the classes present and the share of the pixels each
    covers. ``files`` are what the task wrote for the image (a mask and an overlay), and
    ``details`` the task's JSON form of the prediction when it is not a ranked list.
    ``arrays`` are the task's arrays behind it (a class map, boxes) for :meth:`Task.draw_frame`;
    they are not part of its JSON form.
    """

    path: str
    labels: tuple[str, ...] = ()
    scores: tuple[float, ...] = ()
    error: str | None = None
    files: tuple[str, ...] = ()
    details: Mapping[str, Any] | None = None
    arrays: Mapping[str, np.ndarray] | None = dataclasses.field(default=None, compare=False,
                                                                 repr=False)

    def to_dict(self) -> dict:
        if self.error:
            return {"path": self.path, "error": self.error}
        if self.details is not None:
            return {"path": self.path, **self.details}
        return {"path": self.path,
                "predictions": [{"label": l, "score": s} for l, s in zip(self.labels, self.scores)]}

    def csv_row(self, top_k: int) -> list[str]:
        """``path, label_1, score_1, ..., label_k, score_k, error``; see
        :meth:`Task.csv_header`."""
        cells = [self.path]
        for rank in range(top_k):
            if rank < len(self.labels):
                cells += [self.labels[rank], f"{self.scores[rank]:.6f}"]
            else:
                cells += ["", ""]
        return cells + [self.error or ""]


class Evaluator(abc.ABC):
    """Streaming evaluation of one split: :meth:`update` per batch of the model's
    (post-processed) outputs, :meth:`result` at the end, then the figures. A task keeps what
    its metrics and figures need (counts, the worst images), not every output, unless they
    are small (a classifier's probabilities)."""

    def __init__(self, class_names: Sequence[str]):
        self.class_names = tuple(class_names)

    @abc.abstractmethod
    def update(self, outputs: np.ndarray, labels: Any, paths: Sequence[str]) -> None:
        """Add a batch: the outputs of ``paths``' images and their ground truth (as
        :meth:`Task.labels` gives it, indexed like ``outputs``)."""

    @abc.abstractmethod
    def result(self) -> dict[str, Any]:
        """The JSON-ready metrics of every batch added."""

    def write_artifacts(self, metrics: dict[str, Any],
                        out_dir: str | os.PathLike) -> dict[str, Path]:
        """The evaluation figures, as PNG files in ``out_dir``; their paths by name."""
        return {}


class Task(abc.ABC):
    """What one task supplies to the training core, evaluation and serving."""

    #: registry key, also written into the run's input contract
    name: str
    #: the quantity early stopping and the plateau schedule watch
    monitor: str = "val_loss"
    #: the metric drawn beside the loss in the training curves
    curve_metric: str = "accuracy"
    #: whether :meth:`epoch_callbacks` compute every validation number, ``val_loss`` included,
    #: in their own pass over the validation batches; the fit then runs no pass of its own (one
    #: forward pass of the validation images per epoch instead of two)
    validates_in_callbacks: bool = False
    #: whether the serving outputs depend on each input's original size
    needs_input_size: bool = False
    #: how images reach the model's square size, in training, evaluation and serving alike
    #: (:data:`transfer.data.pipelines.FITS`: ``stretch``, or ``letterbox`` keeping the aspect
    #: ratio)
    fit: str = "stretch"
    #: fine-tune's second phase when the config leaves it unset: the learning rate times this
    fine_tune_lr_factor: float = 0.1
    #: ... and from the backbone's first block (True) or from the model's own default block
    unfreeze_whole: bool = False
    #: ... with the unfrozen BatchNorm layers in inference mode ("frozen") or training ("train")
    fine_tune_batchnorm: str = "frozen"
    #: the augmentation when the config leaves it unset, by mode (operations of AUGMENT_OPS; a
    #: mode not named: none). Feature-extractor mode is best left out: without augmentation the
    #: frozen backbone's features are computed once and cached.
    augment: Mapping[str, str] = types.MappingProxyType({})
    #: the label smoothing of the loss when the config leaves it unset, by mode (not named: 0)
    label_smoothing: Mapping[str, float] = types.MappingProxyType({})
    #: the data this task reads, in words, for messages ("pass DATA_DIR, <layout_hint>")
    layout_hint: str = "a folder of this task's layout"
    #: what ``predict`` writes per image, in words (segmentation: "a mask and an overlay"), or
    #: ``None`` when a prediction is numbers only
    prediction_files: str | None = None
    #: the SavedModel output that tells this task's exports apart (:func:`served_task`)
    serving_key: str = ""
    #: the SavedModel outputs a TFLite export keeps (LiteRT returns no strings)
    tflite_outputs: tuple[str, ...] = ("probabilities",)
    #: the SavedModel outputs an ONNX export keeps (numbers only: the class names go into the
    #: file's metadata)
    onnx_outputs: tuple[str, ...] = ("probabilities",)
    #: the order in which tasks are asked whether they claim a data folder: a task whose
    #: layout is specific (segmentation's images/ + masks/) before one that takes any folder of
    #: sub-folders (classification)
    claim_order: int = 0

    def __init__(self, **options: Any):
        """Options a task does not use are ignored, so callers can pass the contract's."""

    @classmethod
    def from_config(cls, config: TrainConfig) -> Task:
        """The task with the options a training config gives it (segmentation: the ignore
        index)."""
        return cls()

    # ---- data -------------------------------------------------------------------------------
    @classmethod
    def claims(cls, source: str | os.PathLike, *, split: str | None = None) -> str | None:
        """The layout of ``source`` this task reads, in words (``"images/ + masks/"``), or
        ``None`` when it is not one of this task's layouts. ``split``: a folder laid out in
        ``train/ val/ test/`` is judged by that split's folder. The task registry asks the
        tasks in :attr:`claim_order` (:func:`transfer.tasks.recognise`); ``zoo train`` with
        ``task="auto"``, ``zoo data check`` and ``zoo evaluate`` use its answer."""
        return None

    @classmethod
    def wanted_by(cls, config: TrainConfig) -> bool:
        """Whether the model options alone mean this task (a decoder named as ``--model``, a
        ``--backbone``, a registry model of this task), whatever the data looks like."""
        return False

    @abc.abstractmethod
    def load_data(self, source: str | os.PathLike, config: TrainConfig, *,
                  cache_dir: str | os.PathLike | None = None,
                  tfds_data_dir: str | os.PathLike | None = None,
                  workers: int | None = None, dry_run: bool = False) -> ImageFolderData:
        """Read, check and split the user's data (files skipped are in its report);
        ``dry_run``: check and report only, writing nothing (``zoo data check``)."""

    @abc.abstractmethod
    def evaluation_split(self, data_dir: str | os.PathLike, class_names: Sequence[str], *,
                         split: str = "val") -> tuple[Split, list[str]]:
        """The usable items of a folder to evaluate a trained model on, labelled as the model's
        classes, and the files left out (a folder laid out in ``train/ val/ test/`` is read from
        its ``split``)."""

    @abc.abstractmethod
    def targets(self, split: Split, num_classes: int, image_size: int) -> Any:
        """Training targets of ``split``, indexed by position: a tensor, or a nest of tensors
        (a dict keyed by model output) when an image has targets of its own length, padded to
        one length (boxes ``[n, max_boxes, 4]`` with a count or a padding class), which the
        loss reads as such."""

    @abc.abstractmethod
    def probe_targets(self, batch: int, num_classes: int, image_size: int,
                      rng: np.random.Generator) -> np.ndarray:
        """Random training targets of the shape and type :meth:`targets` gives, for a batch
        of ``batch`` images (``batch_size="auto"`` trains a few steps on them)."""

    @abc.abstractmethod
    def labels(self, split: Split, image_size: int) -> np.ndarray:
        """The ground truth of ``split`` for evaluation, indexed by position."""

    @abc.abstractmethod
    def describe(self, data: ImageFolderData) -> str:
        """One line about the data, for the run log."""

    def batch_fn(self, config: TrainConfig) -> Callable | None:
        """A transform of each training batch ``(batch, seed_pair) -> batch`` (mixup, joint
        augmentation), or ``None``."""
        return None

    #: whether the int8 TFLite file keeps float32 ops where LiteRT has no int8 kernel (a
    #: detector's NMS); otherwise every op is int8 and the conversion fails on one that is not
    tflite_int8_float_ops: bool = False

    #: whether a view of an image moves its targets with it (a mirrored mask or box), so the
    #: view cache keeps the targets of each view
    views_move_targets: bool = False

    def cache_refusal(self, config: TrainConfig) -> str | None:
        """Why the view cache (:mod:`transfer.views`) cannot stand in for what this config
        does to each batch, or ``None`` when it can."""
        return None

    def view_fn(self, config: TrainConfig, k: int) -> Callable:
        """View ``k`` of the training images for the view cache, as
        ``(images, targets, step) -> (images, targets)`` on batches in split order (``step``:
        the batch's number): 0 the images themselves; with flips alone, 1 their mirror
        (:meth:`mirror`); else the task's augmentation (:meth:`batch_fn`) drawn with a seed of
        ``(config.seed, k, step)``, the same on every call."""
        import tensorflow as tf

        if k == 0:
            return lambda images, targets, step: (images, targets)
        if set(filter(None, (config.augment or "").split(","))) == {"flip"}:
            return lambda images, targets, step: self.mirror(images, targets)
        augment = self.batch_fn(config)

        def view(images, targets, step):
            seed = tf.constant([config.seed, 1_000_003 * (k + 1) + step], tf.int64)
            return augment((images, targets), seed)

        return view

    #: whether :meth:`mirror_scores` judges whether mirrored images still look like their
    #: labels (classification: a mirrored 2 is no 2)
    judges_mirrors: bool = False

    def mirror_scores(self, train_features: np.ndarray, train: Split,
                      val_features: np.ndarray, mirrored_features: np.ndarray,
                      val: Split) -> tuple[np.ndarray, np.ndarray] | None:
        """A probe trained on the frozen features of the training images, scored on the
        validation images and on their mirrors: ``(plain, mirrored)``, whether it is right on
        each image, or ``None`` for a task that does not judge."""
        return None

    def mirror(self, images: tf.Tensor, targets: Any) -> tuple[tf.Tensor, Any]:
        """A batch and its targets mirrored left to right (a class label does not move)."""
        return images[:, :, ::-1], targets

    def loss_weights(self, config: TrainConfig, split: Split,
                     num_classes: int) -> dict[int, float] | None:
        """Per-class weights of the loss for ``fit``, or ``None``."""
        return None

    # ---- model ------------------------------------------------------------------------------
    def check(self, config: TrainConfig) -> None:
        """Refuse a config this task cannot train, before anything is written."""

    def fill_defaults(self, config: TrainConfig, blocks: Sequence[str]) -> TrainConfig:
        """``config`` with this task's training policy in the fields it leaves unset
        (``augment`` and ``label_smoothing`` for its mode, ``fine_tune_lr_factor``,
        ``fine_tune_batchnorm``; ``unfreeze_from`` when :attr:`unfreeze_whole` and neither
        block option is given), so ``config.json`` records what runs."""
        changes: dict[str, Any] = {}
        if config.augment is None:
            changes["augment"] = self.augment.get(config.mode.value, "")
        if config.label_smoothing is None:
            changes["label_smoothing"] = self.label_smoothing.get(config.mode.value, 0.0)
        if config.fine_tune_lr_factor is None:
            changes["fine_tune_lr_factor"] = self.fine_tune_lr_factor
        if config.fine_tune_batchnorm == "auto":
            changes["fine_tune_batchnorm"] = self.fine_tune_batchnorm
        if (self.unfreeze_whole and blocks and config.unfreeze_from is None
                and config.unfreeze_top is None):
            changes["unfreeze_from"] = blocks[0]
        return config.replace(**changes) if changes else config

    def contract_options(self) -> dict[str, Any]:
        """The task's own settings the input contract carries (``task_options`` in
        ``contract.json``): what reading the model's outputs depends on, given back to the
        task's constructor when a run is loaded (segmentation: ``ignore_index``)."""
        return {}

    def backbone_name(self, config: TrainConfig) -> str:
        """The registry model (or ``.keras`` file) whose metadata decides the input contract,
        the blocks and the unfreezing defaults."""
        return config.model
    @abc.abstractmethod
    def build_model(self, config: TrainConfig, *, num_classes: int,
                    weights: str | None) -> keras.Model:
        """Backbone plus this task's head, taking raw 0-255 RGB images."""

    def output_classes(self, model: keras.Model) -> int | None:
        """The number of classes ``model``'s outputs are for (checked against a run's class
        names when it is loaded): the width of its last axis, for a classifier or segmenter."""
        return int(model.output_shape[-1])

    @abc.abstractmethod
    def feature_split(self, model: keras.Model) -> tuple[keras.Model, keras.Model]:
        """``(features, head)``: the frozen part that can be computed once, and the part that
        trains on its outputs, sharing layers with ``model``."""

    def epoch_callbacks(self, val: Any, *, image_size: int,
                        class_names: Sequence[str]) -> list:
        """Keras callbacks that add the task's own validation numbers to each epoch's logs
        (so the history, the curves and early stopping see them), from ``val``, the batches
        of (inputs, targets) the fit validates on: the model being fit runs on those inputs,
        which are cached features when the backbone's are."""
        return []

    @abc.abstractmethod
    def loss(self, config: TrainConfig) -> keras.losses.Loss: ...

    @abc.abstractmethod
    def metrics(self, num_classes: int) -> list[keras.metrics.Metric]: ...

    def compile_args(self, config: TrainConfig, num_classes: int) -> dict[str, Any]:
        """``loss``, ``metrics`` and ``loss_weights`` for ``model.compile``. A model of one
        output takes :meth:`loss` and :meth:`metrics`; a task whose model has several outputs
        (a detector's boxes and classes) returns them keyed by output name, with weights."""
        return {"loss": self.loss(config), "metrics": self.metrics(num_classes)}

    # ---- evaluation -------------------------------------------------------------------------
    def postprocess(self, outputs: Any, *, evaluating: bool = False) -> Any:
        """The model's raw outputs turned into what evaluation, prediction and serving use
        (a detector decodes its boxes and suppresses overlaps here, with COCO's low score
        threshold when ``evaluating``); TensorFlow ops, so the SavedModel runs the same step.
        Classification and segmentation: the outputs as they are (probabilities)."""
        return outputs

    @abc.abstractmethod
    def evaluator(self, class_names: Sequence[str], *,
                  image_size: int | None = None) -> Evaluator:
        """A fresh :class:`Evaluator` for one split of a model of ``image_size``."""

    def summarise(self, outputs: np.ndarray, labels: np.ndarray,
                  class_names: Sequence[str]) -> dict[str, Any]:
        """The JSON-ready metrics of outputs against labels, in one batch."""
        evaluator = self.evaluator(class_names)
        evaluator.update(outputs, labels, ())
        return evaluator.result()

    @abc.abstractmethod
    def headline(self, metrics: dict[str, Any]) -> str:
        """One line of the most telling numbers of :meth:`summarise`'s result."""

    @abc.abstractmethod
    def key_metrics(self, metrics: dict[str, Any]) -> list[tuple[str, float]]:
        """``(label, value)`` of the numbers of :meth:`summarise`'s result a summary shows
        (the report's table), those present and numeric (see :func:`present_numbers`)."""

    @abc.abstractmethod
    def trained_line(self, val: dict[str, Any]) -> str:
        """What ``zoo train`` prints of the validation metrics at the end of a run."""

    @abc.abstractmethod
    def evaluation_lines(self, result: dict[str, Any]) -> list[str]:
        """What ``zoo evaluate`` prints of :func:`transfer.evaluate.evaluate`'s result (the
        per-class table, the files written), line by line."""

    def report_sections(self, page: Any) -> list[tuple[str, Callable[[], str]]]:
        """The task's sections of ``report.html`` after the training curves: ``(title, a
        function returning HTML)``, drawn with ``page`` (a
        :class:`transfer.viz.report.ReportPage`: the run's metrics, validation split and
        predictions, and the page's building blocks). A section that fails becomes a note."""
        return []

    # ---- the model card ---------------------------------------------------------------------
    @abc.abstractmethod
    def card_data(self, split: dict[str, Any], names: Sequence[str],
                  report: dict[str, Any]) -> list[str]:
        """Markdown lines about the data (from ``split.json`` and ``data_report.json``)."""

    @abc.abstractmethod
    def card_metrics(self, val: dict[str, Any]) -> list[str]:
        """Markdown lines about the validation metrics (a :meth:`summarise` result)."""

    @abc.abstractmethod
    def card_outputs(self, k: int, top_k: int, size: str) -> dict[str, str]:
        """The outputs of each export (``savedmodel``, ``keras``, ``tflite``, ``onnx``), in
        words."""

    # ---- prediction and serving -------------------------------------------------------------
    def csv_header(self, top_k: int) -> list[str]:
        """The columns of ``zoo predict --csv``: ``path, label_1, score_1, ..., error``."""
        columns = ["path"]
        for rank in range(1, top_k + 1):
            columns += [f"label_{rank}", f"score_{rank}"]
        return columns + ["error"]

    def csv_rows(self, prediction: Prediction, top_k: int) -> list[list[str]]:
        """The rows of one image under :meth:`csv_header` (a detector: one per box)."""
        return [prediction.csv_row(top_k)]

    @abc.abstractmethod
    def predictions(self, paths: Sequence[str], images: np.ndarray,
                    served: Mapping[str, np.ndarray], *, class_names: Sequence[str], top_k: int,
                    output_dir: Path | None) -> dict[str, Prediction]:
        """A :class:`Prediction` per path from the serving outputs of ``images`` (one size,
        float 0-255, as decoded); files the task writes (:attr:`prediction_files`) go into
        ``output_dir`` and never replace one already there. With ``output_dir`` ``None`` (video
        frames) nothing is written, and each prediction carries the ``arrays``
        :meth:`draw_frame` needs."""

    def draw_frame(self, image: np.ndarray, prediction: Prediction) -> np.ndarray:
        """``image`` (uint8 ``[height, width, 3]``, a video frame) with ``prediction`` drawn on
        it, as the task draws its predicted images; a new uint8 array of the same shape."""
        from transfer.errors import ConfigError

        raise ConfigError(f"a {self.name} model cannot draw its predictions onto video frames")

    @abc.abstractmethod
    def serving_outputs(self, outputs: tf.Tensor, class_names: tf.Tensor, top_k: int,
                        input_size: tf.Tensor) -> dict[str, tf.Tensor]:
        """The SavedModel's outputs, computed from the model's outputs on images that were
        ``input_size`` before they were resized to the model's size: ``[2]`` (height, width)
        for a batch of one size, ``[batch, 2]`` for encoded images of their own sizes, or
        ``None`` when the task does not need it (:attr:`needs_input_size`)."""


def present_numbers(metrics: Mapping[str, Any],
                    keys: Sequence[tuple[str, str]]) -> list[tuple[str, float]]:
    """``(label, value)`` for each ``(key, label)`` whose value in ``metrics`` is a number."""
    return [(label, metrics[key]) for key, label in keys
            if isinstance(metrics.get(key), (int, float)) and not isinstance(metrics[key], bool)]
