"""The one training configuration: a transfer mode and a frozen config object."""

from __future__ import annotations

import dataclasses
import enum
import json
from pathlib import Path
from typing import Any

from transfer.errors import ConfigError


class TransferMode(str, enum.Enum):
    """How much of the backbone trains.

    - ``FEATURE_EXTRACTOR``: backbone frozen, only the new head trains (small data).
    - ``FINE_TUNE``: head first with the backbone frozen, then the top of the backbone unfrozen at
      a lower learning rate, BatchNorm kept in inference mode (medium data).
    - ``FULL_RETRAIN``: everything trains from the start (large data, or no useful weights).
    """

    FEATURE_EXTRACTOR = "feature-extractor"
    FINE_TUNE = "fine-tune"
    FULL_RETRAIN = "full-retrain"


OPTIMIZERS = ("adam", "adamw", "sgd")
CLASS_WEIGHTS = ("auto", "on", "off")
SCHEDULES = ("plateau", "cosine", "onecycle", "constant")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("default", "mirrored", "multiworker", "tpu")
TASK_NAMES = ("classification",)  # the keys of transfer.tasks.TASKS


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; saved as ``config.json`` in the run directory.

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
        fine_tune_lr_factor: the second phase runs at ``learning_rate * fine_tune_lr_factor``.
        momentum: SGD momentum.
        weight_decay: L2 penalty on the head's kernel (decoupled decay for AdamW).
        dropout: dropout rate before the classifier.
        label_smoothing: label smoothing of the cross-entropy.
        unfreeze_from: block of the backbone from which fine-tune unfreezes (a name from the
            model's ``blocks``); ``None`` uses the model's default.
        unfreeze_top: instead of ``unfreeze_from``, unfreeze the top N blocks.
        discriminative_lr: layer-wise learning rates in the fine-tune phase: the earliest
            unfrozen block trains this many times slower than the head, the blocks in between
            spaced geometrically (ULMFiT/fastai); 1 gives every layer the same rate.
        val_split: fraction of each class held out for validation.
        test_split: fraction of each class held out for a final test evaluation.
        min_per_class: classes with fewer usable images stop the run with an error...
        drop_small_classes: ...unless this is set, which drops them with a warning.
        seed: fixes the split, the initialisation and the augmentation.
        augment: random flips, crops and colour changes during training.
        lr_patience: epochs without validation-loss improvement before the LR is halved.
        early_stopping_patience: epochs without improvement before training stops (best weights
            are restored); 0 disables early stopping.
        class_weights: ``"auto"`` weights classes by inverse frequency when the largest class is
            more than ``imbalance_threshold`` times the smallest; ``"on"`` always; ``"off"`` never.
        imbalance_threshold: the ratio above which ``"auto"`` turns class weights on.
        cache_features: in feature-extractor mode without augmentation, run the backbone once
            and train the head on the cached features.
        schedule: ``"plateau"`` halves the learning rate when validation loss stops improving
            for ``lr_patience`` epochs; ``"cosine"`` decays it along a cosine after
            ``warmup_epochs`` of linear warm-up; ``"onecycle"`` ramps it up to the peak for the
            first 30% of steps then anneals it (Smith 2018); ``"constant"`` keeps it.
        warmup_epochs: linear warm-up length of the cosine schedule.
        mixup: alpha of mixup's Beta distribution (Zhang et al. 2018); 0 disables it.
        cutmix: alpha of CutMix (Yun et al. 2019); 0 disables it.
        deterministic: make TensorFlow ops deterministic (slower), for bit-exact reruns.
        precision: ``"float32"``, ``"mixed_float16"`` or ``"mixed_bfloat16"``.
        jit: compile the training step with XLA.
        strategy: ``"default"`` (one device), ``"mirrored"`` (all local GPUs or logical devices),
            ``"multiworker"`` (machines listed in ``TF_CONFIG``) or ``"tpu"``. Batch size is per
            replica; the learning rate scales linearly with the number of replicas.
        memory_cache_mb: decoded training images, and in feature-extractor mode the backbone
            features, are kept in memory when they fit in this many megabytes; otherwise images
            are decoded again each epoch and features are cached on disk in the run directory.
        task: what the model learns (``"classification"``); see :mod:`transfer.tasks`.
    """

    model: str = "keras_mobilenetv2"
    mode: TransferMode = TransferMode.FINE_TUNE
    weights: str | None = "imagenet"
    image_size: int | None = None
    batch_size: int | str = 32
    epochs: int = 10
    fine_tune_epochs: int = 10
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    fine_tune_lr_factor: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    dropout: float = 0.2
    label_smoothing: float = 0.0
    unfreeze_from: str | None = None
    unfreeze_top: int | None = None
    discriminative_lr: float = 1.0
    val_split: float = 0.2
    test_split: float = 0.0
    min_per_class: int = 2
    drop_small_classes: bool = False
    seed: int = 42
    augment: bool = False
    lr_patience: int = 2
    early_stopping_patience: int = 5
    class_weights: str = "auto"
    imbalance_threshold: float = 1.5
    cache_features: bool = True
    schedule: str = "plateau"
    warmup_epochs: int = 0
    mixup: float = 0.0
    cutmix: float = 0.0
    deterministic: bool = False
    precision: str = "float32"
    jit: bool = False
    strategy: str = "default"
    memory_cache_mb: int = 2048
    task: str = "classification"

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "mode", TransferMode(self.mode))
        except ValueError:
            raise ConfigError(
                f"mode must be one of {[m.value for m in TransferMode]}, got {self.mode!r}"
            ) from None
        if self.weights in ("none", "None", ""):
            object.__setattr__(self, "weights", None)
        checks = [
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}"),
            (self.class_weights in CLASS_WEIGHTS, f"class_weights must be one of {CLASS_WEIGHTS}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}"),
            (self.strategy in STRATEGIES, f"strategy must be one of {STRATEGIES}"),
            (self.task in TASK_NAMES, f"task must be one of {TASK_NAMES}"),
            (self.mixup >= 0 and self.cutmix >= 0, "mixup must not be negative"),
            (self.warmup_epochs >= 0, "warmup_epochs must not be negative"),
            (self.batch_size == "auto" or (isinstance(self.batch_size, int)
                                           and self.batch_size >= 1),
             "batch_size must be a positive integer or 'auto'"),
            (self.epochs >= 0 and self.fine_tune_epochs >= 0, "epochs must not be negative"),
            (self.learning_rate > 0, "learning_rate must be positive"),
            (0 < self.fine_tune_lr_factor <= 1, "fine_tune_lr_factor must be in (0, 1]"),
            (0 <= self.dropout < 1, "dropout must be in [0, 1)"),
            (0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (self.unfreeze_top is None or self.unfreeze_top >= 1,
             "unfreeze_top must be a positive number of blocks"),
            (self.unfreeze_from is None or self.unfreeze_top is None,
             "unfreeze_from and unfreeze_top cannot both be given"),
            (self.discriminative_lr >= 1, "discriminative_lr must be >= 1 (1 disables it)"),
            (self.discriminative_lr == 1 or self.mode is TransferMode.FINE_TUNE,
             "discriminative_lr applies to the fine-tune phase; use mode 'fine-tune'"),
            (0 < self.val_split < 1, "val_split must be in (0, 1)"),
            (0 <= self.test_split and self.val_split + self.test_split < 1,
             "test_split must be >= 0 with val_split + test_split < 1"),
            (self.min_per_class >= 1, "min_per_class must be at least 1"),
            (self.weight_decay >= 0, "weight_decay must not be negative"),
            (self.image_size is None or self.image_size >= 8, "image_size must be at least 8"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"{message}; got config {self.describe_bad(message)}")

    def describe_bad(self, message: str) -> str:
        field = message.split()[0]
        return f"{field}={getattr(self, field)!r}"

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
        return cls.from_dict(json.loads(Path(path).read_text()))
