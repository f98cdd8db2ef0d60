"""The one training configuration: a transfer mode and a frozen config object."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import numbers
from pathlib import Path
from typing import Any, Callable, Iterable

from transfer.errors import ConfigError


class TransferMode(str, enum.Enum):
    """How much of the backbone trains.

    - ``FEATURE_EXTRACTOR``: backbone frozen, only the new head trains (small data).
    - ``FINE_TUNE``: head first with the backbone frozen, then the top of the backbone unfrozen at
      a lower learning rate, BatchNorm kept in inference mode (medium data); each task fills
      in its own policy (:meth:`transfer.tasks.base.Task.fill_defaults`).
    - ``FULL_RETRAIN``: everything trains from the start (large data, or no useful weights).
    """

    FEATURE_EXTRACTOR = "feature-extractor"
    FINE_TUNE = "fine-tune"
    FULL_RETRAIN = "full-retrain"


OPTIMIZERS = ("adam", "adamw", "sgd")
CLASS_WEIGHTS = ("auto", "on", "off")
SCHEDULES = ("auto", "plateau", "cosine", "onecycle", "constant")
# BatchNorm in fine-tune's second phase: "auto" is the task's choice, filled in at the start
# (transfer.tasks.base.Task.fine_tune_batchnorm).
FINE_TUNE_BATCHNORM = ("auto", "frozen", "train")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("default", "mirrored", "multiworker", "tpu")
TASK_NAMES = ("classification", "segmentation", "detection")  # the keys of transfer.tasks.TASKS
SEGMENTATION_LOSSES = ("ce", "dice", "ce+dice", "focal")
DETECTION_LOSSES = ("tal+ciou", "tal+giou", "centre+ciou", "centre+giou")
LOSSES = ("auto", *SEGMENTATION_LOSSES, *DETECTION_LOSSES)


# The rule of each TrainConfig field is data on the field (``metadata["check"]``), read by
# ``TrainConfig.__post_init__`` and by the CLI, which builds its options from it. A check's
# ``parse`` returns the value normalised (a Python int or float, an enum member, None for
# "none") or raises ValueError; ``describe`` says what is allowed, for the error message.


# Ceilings of the sizes and counts: far above any real run, and far below what overflows the
# int32 tensors they end up in. Without them, --image-size 100000 ran out of memory a minute
# into the run and --epochs with 20 digits failed converting the number to a tensor.
MAX_IMAGE_SIZE = 4096
MAX_BATCH_SIZE = 65536
MAX_EPOCHS = 1_000_000  # also the ceiling of patience and warm-up, counted in epochs
MAX_BLOCKS = 10_000
MAX_PER_CLASS = 1_000_000
MAX_MEMORY_CACHE_MB = 10_000_000  # 10 TB


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


@dataclasses.dataclass(frozen=True)
class Range:
    """A number between optional bounds.

    Attributes:
        min, max: the bounds; ``None`` leaves that side open-ended.
        min_open, max_open: exclude the bound itself.
        integer: only whole numbers (bools are refused either way).
        none_ok: ``None`` is allowed too (it means "the default").
        words: strings allowed besides numbers, e.g. ``("auto",)``.
    """

    min: float | None = None
    max: float | None = None
    min_open: bool = False
    max_open: bool = False
    integer: bool = False
    none_ok: bool = False
    words: tuple[str, ...] = ()

    def parse(self, value: Any) -> Any:
        if value is None and self.none_ok:
            return None
        if isinstance(value, str) and value in self.words:
            return value
        kind = numbers.Integral if self.integer else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ValueError(value)
        number = int(value) if self.integer else float(value)
        if not math.isfinite(number):
            raise ValueError(value)
        if self.min is not None and (number <= self.min if self.min_open else number < self.min):
            raise ValueError(value)
        if self.max is not None and (number >= self.max if self.max_open else number > self.max):
            raise ValueError(value)
        return number

    def describe(self) -> str:
        if self.min is not None and self.max is not None:
            bounds = (f"in {'(' if self.min_open else '['}{_number(self.min)}, "
                      f"{_number(self.max)}{')' if self.max_open else ']'}")
        elif self.min is not None:
            bounds = f"{'>' if self.min_open else '>='} {_number(self.min)}"
        elif self.max is not None:
            bounds = f"{'<' if self.max_open else '<='} {_number(self.max)}"
        else:
            bounds = ""
        if self.integer:
            text = f"an integer {bounds}".rstrip()
        else:
            text = bounds or "a finite number"
        alternatives = [repr(w) for w in self.words] + (["None"] if self.none_ok else [])
        return " or ".join([text, *alternatives])


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of a few strings; ``cast`` turns the string into its final type (an enum)."""

    choices: tuple[str, ...]
    cast: Callable[[str], Any] | None = None

    def parse(self, value: Any) -> Any:
        if not isinstance(value, str) or value not in self.choices:
            raise ValueError(value)
        return self.cast(value) if self.cast else value

    def describe(self) -> str:
        return "one of " + ", ".join(repr(c) for c in self.choices)


@dataclasses.dataclass(frozen=True)
class Flag:
    """True or False (not 1, 0, or a string, which would silently mean True)."""

    def parse(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError(value)
        return value

    def describe(self) -> str:
        return "True or False"


# "mosaic" tiles four images into one: detection only (the other tasks refuse it)
AUGMENT_OPS = ("flip", "vflip", "crop", "scale", "rotate", "colour", "mosaic")
AUGMENT_POLICIES = {
    "none": (),
    "default": ("flip", "crop", "rotate", "colour"),  # photos: mirror-symmetric scenes
    # digits and text: no flips; scale and rotation, as LeCun et al. 1998's distortions.
    # "crop" is left out: its photo-sized zoom-in and shifts (up to 15% and 10% of the side)
    # push centred digits into their blank border; LeNet-5 on MNIST (bench_mnist.py, 30 epochs)
    # reached 1.11% test error with crop,scale,rotate, 0.94% with none, 0.75% (three seeds)
    # with scale,rotate.
    "digits": ("scale", "rotate"),
}


@dataclasses.dataclass(frozen=True)
class Augment:
    """An augmentation policy: a name of :data:`AUGMENT_POLICIES`, a comma-separated list of
    :data:`AUGMENT_OPS`, or True/False (the default policy / none); normalised to the list in
    :data:`AUGMENT_OPS` order, ``""`` for none, so ``config.json`` records exactly what runs.
    ``None`` (unset) stays ``None``: the task's default, filled in when training starts."""

    def parse(self, value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, bool):
            ops: tuple[str, ...] = AUGMENT_POLICIES["default"] if value else ()
        elif isinstance(value, str):
            text = value.strip().lower().replace("color", "colour")
            if text in AUGMENT_POLICIES or not text:  # "": none, as config.json records it
                ops = AUGMENT_POLICIES.get(text, ())
            else:
                ops = tuple(part.strip() for part in text.split(",") if part.strip())
                if not ops or any(op not in AUGMENT_OPS for op in ops) \
                        or len(set(ops)) != len(ops):
                    raise ValueError(value)
        else:
            raise ValueError(value)
        return ",".join(op for op in AUGMENT_OPS if op in ops)

    def describe(self) -> str:
        return (f"a policy ({', '.join(AUGMENT_POLICIES)}) or a comma-separated list of "
                f"{', '.join(AUGMENT_OPS)}")


@dataclasses.dataclass(frozen=True)
class Text:
    """A non-empty string; with ``none_ok``, also None, and each of ``none_words`` means None."""

    none_ok: bool = False
    none_words: tuple[str, ...] = ()

    def parse(self, value: Any) -> str | None:
        if self.none_ok and (value is None or value in self.none_words):
            return None
        if not isinstance(value, str) or not value:
            raise ValueError(value)
        return value

    def describe(self) -> str:
        return "a non-empty string" + (" or None" if self.none_ok else "")


Check = Range | Choice | Flag | Text | Augment


@dataclasses.dataclass(frozen=True)
class Applies:
    """The tasks and transfer modes in which a field does anything (``None``: all of them).

    A field set explicitly where it does nothing is refused (:func:`check_applicable`) rather
    than accepted, recorded in ``config.json`` as if it ran, and ignored.
    """

    tasks: tuple[str, ...] | None = None
    modes: tuple[str, ...] | None = None

    def why_not(self, task: str, mode: str) -> str | None:
        """Why the field does nothing for ``task`` in ``mode``, or None when it applies."""
        if self.tasks is not None and task in TASK_NAMES and task not in self.tasks:
            return f"applies to {' and '.join(self.tasks)} only, and the task is {task!r}"
        if self.modes is not None and mode not in self.modes:
            return (f"applies to mode {' or '.join(repr(m) for m in self.modes)} only, and the "
                    f"mode is {mode!r}")
        return None


ALWAYS = Applies()
FINE_TUNE_ONLY = Applies(modes=("fine-tune",))
CLASSIFICATION_ONLY = Applies(tasks=("classification",))
SEGMENTATION_ONLY = Applies(tasks=("segmentation",))
DENSE_TASKS = Applies(tasks=("segmentation", "detection"))  # a decoder or head on a backbone
MIRROR_CHECKS = ("auto", "off", "kept", "dropped")  # the last two: what a run decided
CACHED_MODES = Applies(modes=("feature-extractor", "fine-tune"))  # something stays frozen


def _field(default: Any, check: Check, help: str, applies: Applies = ALWAYS) -> Any:
    return dataclasses.field(default=default,
                             metadata={"check": check, "help": help, "applies": applies})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; saved as ``config.json`` in the run directory.

    Each field carries its rule as data, ``metadata["check"]`` (a :class:`Range`,
    :class:`Choice`, :class:`Flag` or :class:`Text`), and a one-line ``metadata["help"]``; the
    ``zoo`` CLI builds its options from both. A bad value raises :class:`ConfigError` naming the
    field, the value and what is allowed.

    Attributes:
        model: registry name of the backbone, or a path to a ``.keras`` model to transfer from.
        mode: the transfer mode.
        weights: ``"imagenet"``, ``None`` (random init) or a weight-file path for the backbone.
        image_size: side of the square training images; ``None`` uses the backbone's default.
        batch_size: mini-batch size per replica, or ``"auto"`` for the largest that fits in
            memory (probed before training; the size found is saved in ``config.json``).
        epochs: epochs of the first phase (the head, or everything for full-retrain).
        fine_tune_epochs: epochs of the second phase of fine-tune.
        optimizer: ``"sgd"`` (with momentum), ``"adam"`` or ``"adamw"``.
        learning_rate: learning rate of the first phase.
        fine_tune_lr_factor: the second phase runs at ``learning_rate * fine_tune_lr_factor``;
            ``None`` is the task's default (:attr:`transfer.tasks.base.Task.fine_tune_lr_factor`:
            0.1 for classification, 1 for segmentation), decided when training starts.
        momentum: SGD momentum.
        weight_decay: L2 penalty on the head's kernel (decoupled decay for AdamW).
        dropout: dropout rate before the classifier.
        label_smoothing: label smoothing of the cross-entropy; ``None`` is the task's default
            for the mode (:attr:`transfer.tasks.base.Task.label_smoothing`: 0.1 for
            classification's fine-tune, otherwise 0), decided when training starts.
        unfreeze_from: block of the backbone from which fine-tune unfreezes (a name from the
            model's ``blocks``); ``None`` uses the model's default (segmentation: the first
            block, see :attr:`transfer.tasks.base.Task.unfreeze_whole`).
        unfreeze_top: instead of ``unfreeze_from``, unfreeze the top N blocks.
        fine_tune_batchnorm: the unfrozen blocks' BatchNormalization layers in the fine-tune
            phase: ``"frozen"`` keeps them in inference mode with their pretrained statistics
            (the Keras guide's advice for small data); ``"train"`` lets them normalise with
            batch statistics and update their moving averages and scales, as in full-retrain.
            ``"auto"`` is the task's choice (:attr:`transfer.tasks.base.Task.fine_tune_batchnorm`:
            frozen for classification, train for segmentation), decided when training starts.
        discriminative_lr: layer-wise learning rates in the fine-tune phase: the earliest
            unfrozen block trains this many times slower than the head, the blocks in between
            spaced geometrically (ULMFiT/fastai); 1 gives every layer the same rate.
        val_split: fraction of each class held out for validation.
        test_split: fraction of each class held out for a final test evaluation.
        min_per_class: classes with fewer usable images stop the run with an error...
        drop_small_classes: ...unless this is set, which drops them with a warning.
        seed: fixes the split, the initialisation and the augmentation.
        augment: the augmentation that runs while training, as the comma-separated operations
            of :data:`AUGMENT_OPS` in a fixed order (``""``: none); given as a policy name of
            :data:`AUGMENT_POLICIES`, a list, or ``True``/``False`` (the default policy / none).
            ``None`` is the task's default for the mode (:attr:`transfer.tasks.base.Task.augment`:
            ``flip`` in fine-tune, and in segmentation's and detection's full-retrain; none
            otherwise, and in feature-extractor mode the frozen backbone's features are then
            cached), decided when training starts.
        lr_patience: epochs without validation-loss improvement before the LR is halved.
        early_stopping_patience: epochs without improvement before training stops (best weights
            are restored); 0 disables early stopping.
        class_weights: ``"auto"`` weights classes by inverse frequency when the largest class is
            more than ``imbalance_threshold`` times the smallest (segmentation: pixels, and
            only with a loss without Dice, which balances classes itself); ``"on"`` always;
            ``"off"`` never.
        imbalance_threshold: the ratio above which ``"auto"`` turns class weights on.
        cache_features: run what stays frozen once and train on its outputs
            (:mod:`transfer.views`): the backbone's features in the head phase, and in the
            fine-tune phase the output below the block it unfreezes from, for
            ``cache_views`` views of each image when augmentation is on.
        cache_views: views of each image the caches hold with augmentation on (one is taken
            per image and epoch); ``"auto"``: 2 with flips alone (the image and its mirror),
            :data:`transfer.views.SAMPLED_VIEWS` with other augmentation, 1 without.
        cache_dtype: what the caches store; float16 halves them (read back as float32).
        mirror_check: with fine-tune's default flips (``augment`` left unset), score a probe
            on the frozen features of the validation images and of their mirrors before the
            head trains, and train without flips when mirroring costs more than
            :data:`transfer.views.MIRROR_HARM` of accuracy; ``"off"`` keeps the flips. The run
            records ``"kept"`` or ``"dropped"``.
        schedule: ``"plateau"`` halves the learning rate when validation loss stops improving
            for ``lr_patience`` epochs; ``"cosine"`` decays it along a cosine after
            ``warmup_epochs`` of linear warm-up, in each phase; ``"onecycle"`` ramps it up to
            the peak for the first 30% of steps then anneals it (Smith 2018); ``"constant"``
            keeps it. ``"auto"``: cosine for fine-tune, whose second phase then starts with a
            warm-up instead of the fresh optimizer's full-size first steps (with
            ``warmup_epochs=2``, the winner of ``benchmarks/bench_policy.py``: no accuracy lost at
            the switch), plateau for the one-phase modes (see
            :func:`transfer.schedules.resolve_schedule`).
        warmup_epochs: linear warm-up length of the cosine schedule, at most half a phase.
        mixup: alpha of mixup's Beta distribution (Zhang et al. 2018); 0 disables it.
        cutmix: alpha of CutMix (Yun et al. 2019); 0 disables it.
        deterministic: make TensorFlow ops deterministic (slower), for bit-exact reruns.
        trust_model: load a ``.keras`` ``model`` with Keras ``safe_mode=False``, so code in it
            (a Lambda layer) runs; only for files you trust.
        precision: ``"float32"``, ``"mixed_float16"`` or ``"mixed_bfloat16"``.
        jit: compile the training step with XLA.
        strategy: ``"default"`` (one device), ``"mirrored"`` (all local GPUs or logical devices),
            ``"multiworker"`` (machines listed in ``TF_CONFIG``) or ``"tpu"``. Batch size is per
            replica; the learning rate scales linearly with the number of replicas.
        bn_momentum: momentum of the moving statistics of the BatchNormalization layers that
            train in a phase; ``"auto"`` is ``min(0.99, 1 - 1 / steps_per_epoch)``: Keras's 0.99
            averages over ~100 steps, so a run of a few dozen steps would validate (and keep)
            statistics still close to their initial values.
        memory_cache_mb: decoded training images, and in feature-extractor mode the backbone
            features, are kept in memory when they fit in this many megabytes; otherwise images
            are decoded again each epoch and features are cached on disk in the run directory.
        task: what the model learns (``"classification"`` or ``"segmentation"``; ``"auto"``:
            decided from the model and the data layout when training starts); see
            :mod:`transfer.tasks`.
        backbone: segmentation with ``model`` ``"unet"`` or ``"fpn"``: the registry encoder.
        loss: segmentation loss; ``"auto"`` is the task's default (cross-entropy plus Dice).
        ignore_index: segmentation: the mask value of unlabelled pixels, left out of loss and
            metrics. ``None`` is 255, except that masks holding only 0 and 255 with 2 classes
            are binary masks saved as 0/255 and read as 0/1 (``data_report.json`` notes it).
        palette: segmentation: a ``index,name,r,g,b`` CSV for RGB colour-coded masks.
    """

    model: str = _field(
        "keras_mobilenetv2", Text(),
        "Registry name of the backbone (see 'zoo list') or a .keras model trained earlier.")
    mode: TransferMode = _field(
        TransferMode.FINE_TUNE, Choice(tuple(m.value for m in TransferMode), cast=TransferMode),
        "feature-extractor: only the new head trains; fine-tune: the head, then the top of the "
        "backbone at a lower LR; full-retrain: everything from the start.")
    weights: str | None = _field(
        "imagenet", Text(none_ok=True, none_words=("none", "None", "")),
        "'imagenet', 'none' (random init) or a weights file.")
    image_size: int | None = _field(
        None, Range(min=8, max=MAX_IMAGE_SIZE, integer=True, none_ok=True),
        "Side of the square training images; default: the model's own.")
    batch_size: int | str = _field(
        32, Range(min=1, max=MAX_BATCH_SIZE, integer=True, words=("auto",)),
        "Per replica, or 'auto': the largest that fits in memory.")
    epochs: int = _field(
        10, Range(min=0, max=MAX_EPOCHS, integer=True),
        "Epochs of the head (or of everything in full-retrain).")
    fine_tune_epochs: int = _field(
        10, Range(min=0, max=MAX_EPOCHS, integer=True), "Epochs of the second phase of fine-tune.",
        applies=FINE_TUNE_ONLY)
    optimizer: str = _field(
        "adam", Choice(OPTIMIZERS), "sgd has momentum; adamw decays weights decoupled.")
    learning_rate: float = _field(
        1e-3, Range(min=0, min_open=True), "Learning rate of the first phase.")
    fine_tune_lr_factor: float | None = _field(
        None, Range(min=0, max=1, min_open=True, none_ok=True),
        "Fine-tuning runs at the learning rate times this; default: the task's "
        "(classification 0.1, segmentation 1).", applies=FINE_TUNE_ONLY)
    momentum: float = _field(0.9, Range(min=0, max=1), "SGD momentum.")
    weight_decay: float = _field(
        1e-4, Range(min=0), "L2 penalty on the head's kernel (decoupled decay for adamw).")
    dropout: float = _field(
        0.2, Range(min=0, max=1, max_open=True), "Dropout rate before the classifier.")
    label_smoothing: float | None = _field(
        None, Range(min=0, max=1, max_open=True, none_ok=True),
        "Label smoothing of the cross-entropy; default: the task's (classification fine-tune "
        "0.1, otherwise 0).")
    unfreeze_from: str | None = _field(
        None, Text(none_ok=True),
        "Fine-tune from this block on (see 'zoo info'); default: the model's own "
        "(segmentation: the encoder's first block).", applies=FINE_TUNE_ONLY)
    unfreeze_top: int | None = _field(
        None, Range(min=1, max=MAX_BLOCKS, integer=True, none_ok=True),
        "Fine-tune the top N blocks (instead of naming the first block).", applies=FINE_TUNE_ONLY)
    fine_tune_batchnorm: str = _field(
        "auto", Choice(FINE_TUNE_BATCHNORM),
        "BatchNorm of the unfrozen blocks when fine-tuning: frozen (inference mode), train "
        "(batch statistics); auto: the task's (classification frozen, segmentation train).",
        applies=FINE_TUNE_ONLY)
    discriminative_lr: float = _field(
        1.0, Range(min=1),
        "Layer-wise LRs when fine-tuning: the earliest unfrozen block trains this many times "
        "slower than the head, geometrically spaced; 1 disables.", applies=FINE_TUNE_ONLY)
    val_split: float = _field(
        0.2, Range(min=0, max=1, min_open=True, max_open=True),
        "Fraction of each class held out for validation.")
    test_split: float = _field(
        0.0, Range(min=0, max=1, max_open=True),
        "Fraction of each class held out for a final test evaluation.")
    min_per_class: int = _field(
        2, Range(min=1, max=MAX_PER_CLASS, integer=True), "Fewest usable images a class may have.")
    drop_small_classes: bool = _field(
        False, Flag(), "Drop classes with too few images instead of stopping.")
    seed: int = _field(
        42, Range(min=0, max=2**32 - 1, integer=True),
        "Fixes the split, the initialisation and the augmentation.")
    augment: str | None = _field(
        None, Augment(),
        "Augmentation while training: a policy (default, digits, none) or a list of "
        f"{', '.join(AUGMENT_OPS)}, e.g. 'crop,rotate' (no flips for digits and text); "
        "default: the task's (flip in fine-tune, and in segmentation's and detection's "
        "full-retrain; otherwise none).")
    lr_patience: int = _field(
        2, Range(min=1, max=MAX_EPOCHS, integer=True),
        "Plateau schedule: epochs without val-loss improvement before the LR is halved.")
    early_stopping_patience: int = _field(
        5, Range(min=0, max=MAX_EPOCHS, integer=True), "Early-stopping patience; 0 disables it.")
    class_weights: str = _field(
        "auto", Choice(CLASS_WEIGHTS),
        "Weight classes by inverse frequency: always (on), never (off), or when the classes "
        "are imbalanced (auto; segmentation: only for losses without Dice).")
    imbalance_threshold: float = _field(
        1.5, Range(min=1),
        "Largest-to-smallest class ratio above which class_weights='auto' weights classes.")
    cache_features: bool = _field(
        True, Flag(),
        "Run what stays frozen once per view of each image and train on its outputs: the "
        "backbone in the head phase, the layers below the unfrozen blocks when fine-tuning.",
        applies=CACHED_MODES)
    cache_views: int | str = _field(
        "auto", Range(min=1, max=64, integer=True, words=("auto",)),
        "Views per image the caches hold with augmentation on; auto: 2 for flips alone (the "
        "image and its mirror), 4 otherwise.", applies=CACHED_MODES)
    cache_dtype: str = _field(
        "float32", Choice(("float32", "float16")),
        "What the caches store; float16 halves their memory and disk.", applies=CACHED_MODES)
    mirror_check: str = _field(
        "auto", Choice(MIRROR_CHECKS),
        "Fine-tune with the default flips: score a probe on the frozen features of the "
        "mirrored validation images and drop flips when mirroring costs accuracy (digits, "
        "text); off keeps them; the run records kept or dropped.",
        applies=Applies(tasks=("classification",), modes=("fine-tune",)))
    schedule: str = _field(
        "auto", Choice(SCHEDULES),
        "plateau: halve the LR when val loss stops improving; cosine: cosine decay after "
        "warm-up, each phase; onecycle: ramp up, then anneal; constant; auto: cosine for "
        "fine-tune, plateau otherwise.")
    warmup_epochs: int = _field(
        2, Range(min=0, max=MAX_EPOCHS, integer=True),
        "Linear warm-up epochs of the cosine schedule (at most half a phase).")
    mixup: float = _field(0.0, Range(min=0), "Mixup alpha; 0 disables it.",
                          applies=CLASSIFICATION_ONLY)
    cutmix: float = _field(0.0, Range(min=0), "CutMix alpha; 0 disables it.",
                           applies=CLASSIFICATION_ONLY)
    deterministic: bool = _field(
        False, Flag(), "Deterministic TensorFlow ops (slower), for bit-exact reruns.")
    trust_model: bool = _field(
        False, Flag(), "Load a .keras --model with Keras safe_mode=False: arbitrary code in the "
        "file (a Lambda layer) runs. Only for files you trust.")
    precision: str = _field(
        "float32", Choice(PRECISIONS), "Keras dtype policy (mixed_*: 16-bit compute).")
    jit: bool = _field(False, Flag(), "Compile the training step with XLA.")
    strategy: str = _field(
        "default", Choice(STRATEGIES), "tf.distribute strategy; multiworker reads TF_CONFIG.")
    bn_momentum: float | str = _field(
        "auto", Range(min=0, max=1, max_open=True, words=("auto",)),
        "Momentum of the BatchNorm statistics that train; auto: min(0.99, 1 - 1/steps per "
        "epoch), so short runs do not validate on stale statistics.")
    memory_cache_mb: int = _field(
        2048, Range(min=0, max=MAX_MEMORY_CACHE_MB, integer=True),
        "Keep decoded images and backbone features in memory up to this size; beyond it "
        "images are decoded each epoch and features cached on disk.")
    task: str = _field(
        "auto", Choice(("auto", *TASK_NAMES)),
        "classification, segmentation or detection; auto: from the model and the data "
        "layout.")
    backbone: str | None = _field(
        None, Text(none_ok=True, none_words=("none", "None", "")),
        "Segmentation: the registry encoder under --model unet|fpn; detection: the detector's "
        "backbone (e.g. keras_mobilenetv2).",
        applies=DENSE_TASKS)
    loss: str = _field(
        "auto", Choice(LOSSES),
        "Segmentation loss (ce, dice, ce+dice, focal); detection: assignment+box loss "
        "(tal+ciou, tal+giou, centre+ciou, centre+giou); auto: the task's default.",
        applies=DENSE_TASKS)
    ignore_index: int | None = _field(
        None, Range(min=0, max=255, integer=True, none_ok=True),
        "Segmentation: the mask value that marks unlabelled pixels; default 255 (Pascal VOC), "
        "except that masks of only 0 and 255 with 2 classes read 255 as class 1.",
        applies=SEGMENTATION_ONLY)
    palette: str | None = _field(
        None, Text(none_ok=True),
        "Segmentation: a CSV of index,name,r,g,b to read colour-coded RGB masks.",
        applies=SEGMENTATION_ONLY)

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            object.__setattr__(self, field.name, check_field(field.name, getattr(self, field.name)))
        check_splits(self.val_split, self.test_split)
        if self.unfreeze_from is not None and self.unfreeze_top is not None:
            raise ConfigError(
                f"unfreeze_from and unfreeze_top cannot both be given; got "
                f"unfreeze_from={self.unfreeze_from!r}, unfreeze_top={self.unfreeze_top!r}",
                field="unfreeze_top")
        if self.discriminative_lr != 1 and self.mode is not TransferMode.FINE_TUNE:
            raise ConfigError(
                f"discriminative_lr applies to the fine-tune phase; use mode 'fine-tune' or "
                f"discriminative_lr=1; got discriminative_lr={self.discriminative_lr!r} with "
                f"mode={self.mode.value!r}", field="discriminative_lr")

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["mode"] = self.mode.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**data)

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        """A run's ``config.json``. One written before the view cache (no ``cache_views``)
        trained with augmentation on full forward passes, and resumes so."""
        data = json.loads(Path(path).read_text())
        if "cache_views" not in data and data.get("augment") not in (None, "", False):
            data["cache_features"] = False
        data.setdefault("mirror_check", "off")  # written before the check existed
        return cls.from_dict(data)


_FIELDS = {field.name: field for field in dataclasses.fields(TrainConfig)}


def check_field(name: str, value: Any) -> Any:
    """``value`` checked against the rule of TrainConfig field ``name``, and normalised.

    Raises:
        ConfigError: naming the field, the value and what is allowed.
    """
    check = _FIELDS[name].metadata["check"]
    try:
        return check.parse(value)
    except ValueError:
        raise ConfigError(f"{name} must be {check.describe()}; got {value!r}",
                          field=name) from None


def applies(name: str) -> Applies:
    """Where TrainConfig field ``name`` does anything."""
    return _FIELDS[name].metadata["applies"]


def explicit_fields(config: TrainConfig) -> list[str]:
    """The fields of ``config`` that differ from their defaults: what a Python caller set."""
    return [f.name for f in dataclasses.fields(TrainConfig)
            if getattr(config, f.name) != check_field(f.name, f.default)]


def check_applicable(config: TrainConfig, fields: Iterable[str] | None = None) -> None:
    """Refuse a field set explicitly that does nothing for the config's task and mode.

    Args:
        config: the config as the user gave it, with its task decided (an ``"auto"`` task
            checks the modes only).
        fields: the fields the user set (the CLI knows them); default: those that differ from
            their defaults (:func:`explicit_fields`).

    Raises:
        ConfigError: naming the first such field, why it does nothing, and what to do.
    """
    for name in (explicit_fields(config) if fields is None else fields):
        why = applies(name).why_not(config.task, config.mode.value)
        if why is not None:
            raise ConfigError(f"{name} {why}; drop it, or choose a task and mode it applies to",
                              field=name)


def check_splits(val_split: float, test_split: float) -> None:
    """The rule that ties the two held-out fractions: something must be left to train on.

    Raises:
        ConfigError: naming ``test_split``, with both values.
    """
    check_field("val_split", val_split)
    check_field("test_split", test_split)
    if val_split + test_split >= 1:
        raise ConfigError(f"val_split + test_split must be < 1 (the rest trains); got "
                          f"val_split={val_split!r}, test_split={test_split!r}",
                          field="test_split")
