"""Training in the three transfer modes, writing a complete run directory.

A run directory holds::

    config.json        the TrainConfig used
    class_names.json   class names in label order
    split.json         the exact train/val(/test) files, so evaluation reuses them
    model.keras        the trained classifier (raw 0-255 images in, probabilities out)
    saved_model/       the SavedModel export (see transfer.export)
    history.json/.csv  every metric of every epoch, with the phase it belongs to
    metrics.json       the final evaluation on the validation (and test) split
    logs/              TensorBoard logs
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import keras
import numpy as np

from transfer import data as data_lib
from transfer.config import TrainConfig, TransferMode
from transfer.errors import RunDirError
from transfer.evaluate import evaluate_model
from transfer.export import export_saved_model
from transfer.model import (
    TrainableSummary,
    backbone_info,
    build_classifier,
    feature_model,
    head_model,
    set_trainable,
)

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainResult:
    """What a training run produced."""

    model: keras.Model
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    run_dir: Path
    class_names: tuple[str, ...]
    config: TrainConfig
    phases: list[TrainableSummary]

    @property
    def saved_model_dir(self) -> Path:
        return self.run_dir / "saved_model"

    @property
    def model_path(self) -> Path:
        return self.run_dir / "model.keras"


def train(data_dir: str | os.PathLike, *, output: str | os.PathLike,
          config: TrainConfig | None = None, overwrite: bool = False,
          callbacks: Sequence[keras.callbacks.Callback] = (), verbose: int | str = "auto",
          **overrides: Any) -> TrainResult:
    """Train a classifier on an image folder and write a run directory.

    Args:
        data_dir: one sub-folder per class (or ``train/`` and ``val/`` folders laid out so).
        output: the run directory to create.
        config: a :class:`TrainConfig`; keyword ``overrides`` replace its fields, so
            ``train(d, output=o, model="resnet50", mode="fine-tune")`` works without one.
        overwrite: replace an existing non-empty run directory.
        callbacks: extra Keras callbacks, added to every phase.
        verbose: Keras ``fit`` verbosity.

    Returns:
        A :class:`TrainResult` with the model, the history, the final metrics and the paths.
    """
    config = (config or TrainConfig()).replace(**overrides) if overrides else (
        config or TrainConfig())
    run_dir = _prepare_run_dir(Path(output), overwrite)
    keras.utils.set_random_seed(config.seed)

    folder = data_lib.load_image_folder(data_dir, val_split=config.val_split, seed=config.seed)
    info = backbone_info(config.model)
    size = config.image_size or info.default_size
    config = config.replace(image_size=size)
    config.save(run_dir / "config.json")
    folder.save(run_dir / "split.json")
    (run_dir / "class_names.json").write_text(
        json.dumps(list(folder.class_names), ensure_ascii=False) + "\n")

    counts = folder.train.class_counts(folder.num_classes)
    weights = _class_weights(config, counts)
    log.info("data: %d classes, %d training and %d validation images; class counts %s",
             folder.num_classes, len(folder.train), len(folder.val),
             dict(zip(folder.class_names, counts)))

    classifier = build_classifier(
        config.model, num_classes=folder.num_classes, mode=config.mode, image_size=size,
        weights=config.weights, dropout=config.dropout, weight_decay=config.weight_decay,
        augment=config.augment, seed=config.seed)

    trainer = _Trainer(config, folder, classifier, run_dir, weights, list(callbacks), verbose)
    trainer.run()

    classifier.save(run_dir / "model.keras")
    metrics = {"val": trainer.evaluate(folder.val)}
    if folder.test is not None and len(folder.test):
        metrics["test"] = trainer.evaluate(folder.test)
    metrics["phases"] = [dataclasses.asdict(p) for p in trainer.phases]
    metrics["class_weights"] = weights
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    export_saved_model(classifier, run_dir / "saved_model", folder.class_names)
    log.info("validation: top-1 accuracy %.4f, top-%d accuracy %.4f, loss %.4f",
             metrics["val"]["top1_accuracy"], metrics["val"]["top_k"],
             metrics["val"]["top5_accuracy"], metrics["val"]["loss"] or float("nan"))
    return TrainResult(classifier, trainer.history, metrics, run_dir, folder.class_names, config,
                       trainer.phases)


def _prepare_run_dir(run_dir: Path, overwrite: bool) -> Path:
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"output {str(run_dir)!r} exists and is not a folder")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not overwrite:
            raise RunDirError(
                f"run directory {str(run_dir)!r} already exists and is not empty; choose another "
                f"--output or pass --overwrite to replace it")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _class_weights(config: TrainConfig, counts: list[int]) -> dict[int, float] | None:
    ratio = data_lib.imbalance_ratio(counts)
    use = config.class_weights == "on" or (
        config.class_weights == "auto" and ratio > config.imbalance_threshold)
    if not use:
        return None
    weights = data_lib.class_weights(counts)
    log.info("class weights on (largest/smallest class = %.2f): %s", ratio,
             {k: round(v, 3) for k, v in weights.items()})
    return weights


def make_optimizer(name: str, learning_rate: float, *, momentum: float = 0.9,
                   weight_decay: float = 0.0) -> keras.optimizers.Optimizer:
    """SGD with momentum, Adam, or AdamW (decoupled weight decay)."""
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=momentum)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay or 1e-4)
    return keras.optimizers.Adam(learning_rate)


class _Trainer:
    """Runs the phases of one mode, keeping one epoch count and one history across them."""

    def __init__(self, config: TrainConfig, folder: data_lib.ImageFolderData,
                 classifier: keras.Model, run_dir: Path, class_weight: dict | None,
                 extra_callbacks: list, verbose):
        self.config = config
        self.folder = folder
        self.classifier = classifier
        self.run_dir = run_dir
        self.class_weight = class_weight
        self.extra_callbacks = extra_callbacks
        self.verbose = verbose
        self.history: list[dict[str, Any]] = []
        self.phases: list[TrainableSummary] = []
        self.epoch = 0
        self.info = backbone_info(config.model)
        self.num_classes = folder.num_classes

    # ---- data -----------------------------------------------------------------------------
    def dataset(self, split: data_lib.Split, *, shuffle: bool, one_hot: bool = True):
        ds = data_lib.make_dataset(split, image_size=self.config.image_size,
                                   batch_size=self.config.batch_size, shuffle=shuffle,
                                   seed=self.config.seed)
        if one_hot:
            depth = self.num_classes
            import tensorflow as tf

            ds = ds.map(lambda x, y: (x, tf.one_hot(y, depth)))
        return ds

    def one_hot(self, labels: Sequence[int]) -> np.ndarray:
        return np.eye(self.num_classes, dtype=np.float32)[np.asarray(labels, dtype=np.int64)]

    # ---- phases ---------------------------------------------------------------------------
    def run(self) -> None:
        mode = self.config.mode
        if mode is TransferMode.FULL_RETRAIN:
            self.fit_images("full", self.config.epochs, self.config.learning_rate)
            return
        self.fit_head()
        if mode is TransferMode.FINE_TUNE and self.config.fine_tune_epochs > 0:
            self.fit_images("fine-tune", self.config.fine_tune_epochs,
                            self.config.learning_rate * self.config.fine_tune_lr_factor)

    def fit_head(self) -> None:
        config = self.config
        if config.augment or not config.cache_features:
            if config.augment:
                log.info("augmentation is on: the head trains with full forward passes through "
                         "the frozen backbone (features cannot be cached)")
            self.fit_images("head", config.epochs, config.learning_rate)
            return
        summary = set_trainable(self.classifier, "head")
        self._log_phase(summary)
        extractor = feature_model(self.classifier)
        log.info("extracting backbone features once for %d images",
                 len(self.folder.train) + len(self.folder.val))
        x_train = extractor.predict(self.dataset(self.folder.train, shuffle=False, one_hot=False)
                                    .map(lambda x, y: x), verbose=0)
        x_val = extractor.predict(self.dataset(self.folder.val, shuffle=False, one_hot=False)
                                  .map(lambda x, y: x), verbose=0)
        head = head_model(self.classifier)
        self.compile(head, config.learning_rate)
        fit = head.fit(
            x_train, self.one_hot(self.folder.train.labels),
            validation_data=(x_val, self.one_hot(self.folder.val.labels)),
            batch_size=config.batch_size, epochs=config.epochs, shuffle=True,
            class_weight=self.class_weight, callbacks=self.callbacks("head"),
            verbose=self.verbose)
        self._record(fit, "head")

    def fit_images(self, phase: str, epochs: int, learning_rate: float) -> None:
        summary = set_trainable(self.classifier, phase, blocks=self.info.blocks,
                                unfreeze_from=self._unfreeze_from() if phase == "fine-tune"
                                else None)
        self._log_phase(summary)
        self.compile(self.classifier, learning_rate)
        fit = self.classifier.fit(
            self.dataset(self.folder.train, shuffle=True),
            validation_data=self.dataset(self.folder.val, shuffle=False),
            initial_epoch=self.epoch, epochs=self.epoch + epochs, shuffle=False,
            class_weight=self.class_weight, callbacks=self.callbacks(phase),
            verbose=self.verbose)
        self._record(fit, phase)

    def _unfreeze_from(self) -> str | None:
        return self.config.unfreeze_from or self.info.default_unfreeze

    def compile(self, model: keras.Model, learning_rate: float) -> None:
        config = self.config
        model.compile(
            optimizer=make_optimizer(config.optimizer, learning_rate, momentum=config.momentum,
                                     weight_decay=config.weight_decay),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"),
                     keras.metrics.TopKCategoricalAccuracy(k=min(5, self.num_classes),
                                                           name="top5_accuracy")])

    def callbacks(self, phase: str) -> list[keras.callbacks.Callback]:
        config = self.config
        cbs: list[keras.callbacks.Callback] = [
            keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5,
                                              patience=config.lr_patience, min_lr=1e-7,
                                              verbose=0),
            keras.callbacks.CSVLogger(str(self.run_dir / "history.csv"), append=True),
            keras.callbacks.TensorBoard(log_dir=str(self.run_dir / "logs" / phase),
                                        write_graph=False),
        ]
        if config.early_stopping_patience > 0:
            cbs.append(keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=config.early_stopping_patience,
                restore_best_weights=True, verbose=0))
        return cbs + self.extra_callbacks

    # ---- bookkeeping ----------------------------------------------------------------------
    def _log_phase(self, summary: TrainableSummary) -> None:
        self.phases.append(summary)
        log.info("%s", summary)

    def _record(self, fit: keras.callbacks.History, phase: str) -> None:
        epochs = len(fit.epoch)
        for i in range(epochs):
            row = {"epoch": self.epoch + i + 1, "phase": phase}
            row.update({k: float(v[i]) for k, v in fit.history.items()})
            self.history.append(row)
        self.epoch += epochs
        (self.run_dir / "history.json").write_text(json.dumps(self.history, indent=1) + "\n")

    def evaluate(self, split: data_lib.Split) -> dict:
        return evaluate_model(self.classifier, self.dataset(split, shuffle=False, one_hot=False),
                              self.folder.class_names)
