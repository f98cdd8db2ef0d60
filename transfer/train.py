"""Training in the three transfer modes, writing a complete, resumable run directory.

A run directory holds::

    config.json        the TrainConfig used
    class_names.json   class names in label order
    split.json         the exact train/val(/test) files, so evaluation reuses them
    model.keras        the trained classifier (raw 0-255 images in, probabilities out)
    saved_model/       the SavedModel export (see transfer.export)
    history.json/.csv  every metric of every epoch, with the phase it belongs to
    metrics.json       the final evaluation on the validation (and test) split
    checkpoint/        the state after the last finished epoch, for ``--resume``
    logs/              TensorBoard logs

Each mode is a plan of phases (see :func:`phase_plan`); one epoch counter and one history run
across the phases. After every epoch the run is checkpointed, and the data order depends only on
``(seed, epoch)``, so :func:`resume` after a crash, a kill or Ctrl-C reaches the same result as an
uninterrupted run.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import keras
import numpy as np

from transfer import checkpoint as ckpt
from transfer import data as data_lib
from transfer.config import TrainConfig, TransferMode
from transfer.errors import ConfigError, DataError, RunDirError, TrainingInterrupted
from transfer.evaluate import evaluate_model
from transfer.export import export_saved_model
from transfer.model import (
    BACKBONE,
    TrainableSummary,
    backbone_info,
    build_classifier,
    feature_model,
    head_model,
    layer_lr_multipliers,
    resolve_unfreeze,
    set_trainable,
)
from transfer.optimizers import make_optimizer
from transfer.schedules import StepSchedule

log = logging.getLogger(__name__)

FEATURES_DIR = "features"


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


@dataclasses.dataclass(frozen=True)
class Phase:
    """One step of a mode's plan: what trains, for how many epochs, at which learning rate."""

    name: str
    epochs: int
    learning_rate: float


def phase_plan(config: TrainConfig, replicas: int = 1) -> list[Phase]:
    """The mode as a short named procedure (the fastai/Keras-guide fine-tune policy).

    feature-extractor: the head, backbone frozen. fine-tune: the head until it has converged,
    then the backbone from block ``unfreeze_from`` on at ``learning_rate * fine_tune_lr_factor``.
    full-retrain: everything. Learning rates scale linearly with the number of replicas.
    """
    lr = config.learning_rate * replicas
    if config.mode is TransferMode.FULL_RETRAIN:
        return [Phase("full", config.epochs, lr)]
    plan = [Phase("head", config.epochs, lr)]
    if config.mode is TransferMode.FINE_TUNE and config.fine_tune_epochs:
        plan.append(Phase("fine-tune", config.fine_tune_epochs, lr * config.fine_tune_lr_factor))
    return plan


def train(data_dir: str | os.PathLike, *, output: str | os.PathLike,
          config: TrainConfig | None = None, overwrite: bool = False,
          callbacks: Sequence[keras.callbacks.Callback] = (), verbose: int | str = "auto",
          cache_dir: str | os.PathLike | None = None,
          tfds_data_dir: str | os.PathLike | None = None, **overrides: Any) -> TrainResult:
    """Train a classifier on an image folder and write a run directory.

    Args:
        data_dir: one sub-folder per class (or ``train/`` and ``val/`` folders laid out so), a
            CSV file of ``path,label`` rows, or ``tfds:NAME``.
        output: the run directory to create.
        config: a :class:`TrainConfig`; keyword ``overrides`` replace its fields, so
            ``train(d, output=o, model="resnet50", mode="fine-tune")`` works without one.
        overwrite: replace an existing non-empty run directory.
        callbacks: extra Keras callbacks, added to every phase.
        verbose: Keras ``fit`` verbosity.
        cache_dir: where image checks and normalised images are cached.
        tfds_data_dir: a local TensorFlow Datasets store, for ``tfds:NAME``.

    Returns:
        A :class:`TrainResult` with the model, the history, the final metrics and the paths.

    Raises:
        TrainingInterrupted: on Ctrl-C; the last finished epoch is checkpointed.
    """
    config = (config or TrainConfig()).replace(**overrides)
    info = backbone_info(config.model)
    config = config.replace(image_size=config.image_size or info.default_size)
    # Checked before anything is written or trained: a typo must not cost the head phase.
    resolve_unfreeze(info, unfreeze_from=config.unfreeze_from, unfreeze_top=config.unfreeze_top)
    folder = data_lib.load_source(
        data_dir, val_split=config.val_split, test_split=config.test_split, seed=config.seed,
        min_per_class=config.min_per_class, drop_small_classes=config.drop_small_classes,
        cache_dir=cache_dir, tfds_data_dir=tfds_data_dir)
    log.info("data: %s", folder.report.summary())
    strategy = _make_strategy(config.strategy)
    run_dir = Path(output)
    if _is_chief(strategy):
        _prepare_run_dir(run_dir, overwrite)
    else:  # other workers of a multi-worker run write their copies out of the way
        run_dir = Path(tempfile.mkdtemp(prefix="zoo-worker-"))
    config.save(run_dir / "config.json")
    folder.save(run_dir / "split.json")
    folder.report.save(run_dir / "data_report.json")
    (run_dir / "class_names.json").write_text(
        json.dumps(list(folder.class_names), ensure_ascii=False) + "\n")
    return _Trainer(config, folder, run_dir, strategy, list(callbacks), verbose).run(None)


def resume(run_dir: str | os.PathLike, *, callbacks: Sequence[keras.callbacks.Callback] = (),
           verbose: int | str = "auto") -> TrainResult:
    """Continue an interrupted run from its last finished epoch: same data order, optimizer
    state, schedule and callback state, hence the same result as an uninterrupted run."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file() or not (run_dir / "split.json").is_file():
        raise RunDirError(f"{str(run_dir)!r} is not a run directory (no config.json/split.json)")
    state = ckpt.load_state(run_dir)
    if state is None:
        raise RunDirError(f"{str(run_dir)!r} has no checkpoint to resume from; train it again "
                          f"with --overwrite")
    if state.get("finished"):
        raise RunDirError(f"the run in {str(run_dir)!r} already finished")
    config = TrainConfig.load(run_dir / "config.json")
    folder = data_lib.ImageFolderData.load(run_dir / "split.json")
    strategy = _make_strategy(config.strategy)
    log.info("resuming %s after epoch %d", run_dir, state["epoch"])
    return _Trainer(config, folder, run_dir, strategy, list(callbacks), verbose).run(state)


def _prepare_run_dir(run_dir: Path, overwrite: bool) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"output {str(run_dir)!r} exists and is not a folder")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not overwrite:
            hint = (" or --resume it" if (run_dir / ckpt.CHECKPOINT_DIR).is_dir() else "")
            raise RunDirError(
                f"run directory {str(run_dir)!r} already exists and is not empty; choose another "
                f"--output, pass --overwrite to replace it{hint}")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def _make_strategy(name: str):
    import tensorflow as tf

    if name == "mirrored":
        if not tf.config.list_logical_devices("GPU"):
            # No GPU: mirror over the logical CPU devices (one unless the CPU was split).
            return tf.distribute.MirroredStrategy(
                [d.name for d in tf.config.list_logical_devices("CPU")])
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        _check_tf_config()
        return _multi_worker_strategy()
    if name == "tpu":
        tpu = os.environ.get("TPU_NAME")
        # Checked locally first: without a TPU the resolver would query the cloud's metadata
        # server, and fail only after its network retries.
        if not tpu and not tf.config.list_physical_devices("TPU"):
            raise ConfigError("--strategy tpu: this machine has no TPU; run on a TPU VM, or set "
                              "TPU_NAME to a TPU node's name or grpc:// address")
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu or "local")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()


def _check_tf_config() -> None:
    """Multi-worker training is configured by ``TF_CONFIG``; say so when it is missing or bad."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        log.warning("--strategy multiworker without TF_CONFIG: training as a single worker; set "
                    "TF_CONFIG on every machine to train across them (see the README)")
        return
    expected = ('expected {"cluster": {"worker": ["host:port", ...]}, "task": {"type": '
                '"worker", "index": N}}')
    try:
        spec = json.loads(raw)
        members = spec["cluster"][spec["task"]["type"]]
        index = int(spec["task"]["index"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"TF_CONFIG is not a valid cluster spec ({type(exc).__name__}: "
                          f"{exc}); {expected}") from None
    if not 0 <= index < len(members):
        raise ConfigError(f"TF_CONFIG task index {index} is outside its {len(members)} "
                          f"{spec['task']['type']} address(es); {expected}")


def _multi_worker_strategy():
    """MultiWorkerMirroredStrategy whose ``reduce`` takes what Keras 3's ``fit`` passes it.

    ``fit`` reduces a whole ``(x, y)`` batch in one call to find the input shapes, and the
    scalar metric results with ``axis=0``. MirroredStrategy accepts both; the collective strategy
    behind MultiWorkerMirroredStrategy takes one value (TensorFlow's "support `value` being a
    nest" TODO) and fails on a batch axis that a scalar lacks. Reducing each value on its own,
    and a scalar across replicas only, is what those calls mean.
    """
    import tensorflow as tf

    class MultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis):
            if tf.nest.is_nested(value):
                return tf.nest.map_structure(lambda v: self.reduce(reduce_op, v, axis), value)
            local = value.values[0] if isinstance(value, tf.distribute.DistributedValues) \
                else value
            if axis is not None and getattr(local, "shape", None) is not None \
                    and local.shape.rank == 0:
                axis = None
            return super().reduce(reduce_op, value, axis)

    return MultiWorkerStrategy()


def _is_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


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


def epoch_dataset(num_items: int, fetch: Callable, *, seed: int, start_epoch: int,
                  end_epoch: int, batch_size: int, shuffle: bool,
                  batch_fn: Callable | None = None, batched: bool = False):
    """Batches for epochs ``[start_epoch, end_epoch)``; each epoch's order is a stateless
    permutation of ``(seed, epoch)``, so it is the same whether or not the run was resumed.

    ``fetch`` maps an item index to ``(x, y)``, or with ``batched`` a vector of indices to a
    batch: in-memory data is then gathered once per batch, not copied item by item and again
    into the batch. ``batch_fn(batch, seed_pair)`` may transform each batch (mixup/CutMix) with a
    seed that also depends only on the epoch and batch number.
    """
    import tensorflow as tf

    seed_t = tf.constant(seed, tf.int64)

    def one_epoch(epoch):
        index = tf.range(num_items, dtype=tf.int64)
        if shuffle:
            index = tf.random.experimental.stateless_shuffle(index, seed=tf.stack([seed_t, epoch]))
        ds = tf.data.Dataset.from_tensor_slices(index)
        if batched:
            ds = ds.batch(batch_size).map(fetch, num_parallel_calls=tf.data.AUTOTUNE,
                                          deterministic=True)
        else:
            ds = (ds.map(fetch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                  .batch(batch_size))
        if batch_fn is not None:
            ds = ds.enumerate().map(
                lambda i, b: batch_fn(b, tf.stack([seed_t, epoch * 1_000_003 + i])),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds

    batches = (end_epoch - start_epoch) * math.ceil(num_items / batch_size)
    return (tf.data.Dataset.range(start_epoch, end_epoch).flat_map(one_epoch)
            .apply(tf.data.experimental.assert_cardinality(batches))
            .prefetch(tf.data.AUTOTUNE))


def mix_batch(mixup: float, cutmix: float) -> Callable | None:
    """Mixup and/or CutMix on one-hot batches; with both, each batch picks one at random."""
    if not mixup and not cutmix:
        return None
    import tensorflow as tf

    def beta(alpha, seed):
        a = tf.random.stateless_gamma([], seed=seed, alpha=alpha)
        b = tf.random.stateless_gamma([], seed=seed + 1, alpha=alpha)
        return a / (a + b)

    def apply(batch, seed):
        x, y = batch
        n = tf.shape(x)[0]
        perm = tf.random.experimental.stateless_shuffle(tf.range(n), seed=seed + 2)
        x2, y2 = tf.gather(x, perm), tf.gather(y, perm)
        use_cutmix = cutmix > 0 and (
            not mixup or tf.random.stateless_uniform([], seed=seed + 3) < 0.5)
        if use_cutmix:
            lam = beta(cutmix, seed + 4)
            h, w = tf.shape(x)[1], tf.shape(x)[2]
            cut = tf.sqrt(1.0 - lam)
            ch = tf.cast(tf.cast(h, tf.float32) * cut, tf.int32)
            cw = tf.cast(tf.cast(w, tf.float32) * cut, tf.int32)
            cy = tf.random.stateless_uniform([], seed=seed + 5, maxval=h, dtype=tf.int32)
            cx = tf.random.stateless_uniform([], seed=seed + 6, maxval=w, dtype=tf.int32)
            y0, y1 = tf.maximum(cy - ch // 2, 0), tf.minimum(cy + ch // 2, h)
            x0, x1 = tf.maximum(cx - cw // 2, 0), tf.minimum(cx + cw // 2, w)
            rows = tf.logical_and(tf.range(h) >= y0, tf.range(h) < y1)
            cols = tf.logical_and(tf.range(w) >= x0, tf.range(w) < x1)
            mask = tf.cast(tf.logical_and(rows[:, None], cols[None, :]), x.dtype)[None, :, :, None]
            area = tf.cast((y1 - y0) * (x1 - x0), tf.float32) / tf.cast(h * w, tf.float32)
            return x * (1 - mask) + x2 * mask, y * (1 - area) + y2 * area
        lam = beta(mixup, seed + 7)
        return x * lam + x2 * (1 - lam), y * lam + y2 * (1 - lam)

    return apply


class _RunLogger(keras.callbacks.Callback):
    """Last callback of every phase: records the epoch and checkpoints the run."""

    def __init__(self, trainer: _Trainer, phase_index: int, optimizer_model: keras.Model):
        super().__init__()
        self.trainer, self.phase_index, self.optimizer_model = trainer, phase_index, optimizer_model

    def on_epoch_end(self, epoch, logs=None):
        trainer = self.trainer
        row = {"epoch": epoch + 1, "phase": trainer.plan[self.phase_index].name}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        trainer.history.append(row)
        trainer.epoch = epoch + 1
        trainer.write_history()
        trainer.save_checkpoint(self.phase_index, self.optimizer_model.optimizer)


class _Trainer:
    """Runs a mode's phase plan, keeping one epoch count, one history and the checkpoints."""

    def __init__(self, config: TrainConfig, folder: data_lib.ImageFolderData, run_dir: Path,
                 strategy, extra_callbacks: list, verbose):
        self.config = config
        self.folder = folder
        self.run_dir = run_dir
        self.strategy = strategy
        self.extra_callbacks = extra_callbacks
        self.verbose = verbose
        self.replicas = strategy.num_replicas_in_sync
        self.plan = phase_plan(config, self.replicas)
        self.info = backbone_info(config.model)
        self.unfreeze_from = resolve_unfreeze(self.info, unfreeze_from=config.unfreeze_from,
                                              unfreeze_top=config.unfreeze_top)
        self.num_classes = folder.num_classes
        self.history: list[dict[str, Any]] = []
        self.phases: list[TrainableSummary] = []
        self.epoch = 0
        self.phase_start = 0
        self.plateau: ckpt.ResumableReduceLROnPlateau | None = None
        self.early: ckpt.ResumableEarlyStopping | None = None
        self._images: dict[tuple[str, ...], Any] = {}  # decoded splits held in memory
        self._features: dict[str, np.ndarray] = {}
        counts = folder.train.class_counts(self.num_classes)
        self.class_weight = _class_weights(config, counts)
        log.info("data: %d classes, %d training and %d validation images; class counts %s",
                 self.num_classes, len(folder.train), len(folder.val),
                 dict(zip(folder.class_names, counts)))
        if self.replicas > 1:
            log.info("%d replicas: global batch %d, learning rates scaled by %d",
                     self.replicas, self.global_batch, self.replicas)

    @property
    def global_batch(self) -> int:
        return int(self.config.batch_size) * self.replicas

    # ---- the run ---------------------------------------------------------------------------
    def run(self, state: dict[str, Any] | None) -> TrainResult:
        import tensorflow as tf

        config = self.config
        if config.deterministic:
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(config.seed)
        with _precision(config.precision), self.strategy.scope():
            self.classifier = build_classifier(
                config.model, num_classes=self.num_classes, mode=config.mode,
                image_size=config.image_size,
                weights=None if state else config.weights, dropout=config.dropout,
                weight_decay=config.weight_decay, augment=config.augment, seed=config.seed)
        self.started, self.started_cpu = time.perf_counter(), time.process_time()
        if config.batch_size == "auto":
            self.probe_batch_size()
        start_phase = 0
        if state:
            start_phase = state["phase_index"]
            self.epoch, self.phase_start = state["epoch"], state["phase_start"]
            self.history = state["history"]
        try:
            for index in range(start_phase, len(self.plan)):
                resuming = state if (state and index == start_phase) else None
                if not resuming:
                    self.phase_start = self.epoch
                self.run_phase(index, resuming)
        except KeyboardInterrupt:
            raise TrainingInterrupted(
                f"interrupted; epoch {self.epoch} is checkpointed. Continue with: "
                f"zoo train --resume {self.run_dir}") from None
        return self.finish()

    def run_phase(self, index: int, state: dict[str, Any] | None) -> None:
        phase, config = self.plan[index], self.config
        if phase.epochs == 0 and not state:  # e.g. --epochs 0: straight to fine-tuning
            return
        cached = phase.name == "head" and config.cache_features and not config.augment
        if phase.name == "head" and not cached and config.augment:
            log.info("augmentation is on: the head trains with full forward passes through "
                     "the frozen backbone (features cannot be cached)")
        summary = set_trainable(
            self.classifier, phase.name, blocks=self.info.blocks,
            unfreeze_from=self.unfreeze_from if phase.name == "fine-tune" else None)
        self.phases.append(summary)
        log.info("%s", summary)
        multipliers = None
        if phase.name == "fine-tune" and config.discriminative_lr > 1:
            multipliers, by_block = layer_lr_multipliers(
                self.classifier, blocks=self.info.blocks, unfreeze_from=self.unfreeze_from,
                ratio=config.discriminative_lr)
            log.info("discriminative learning rates (x %.2e): %s", phase.learning_rate,
                     ", ".join(f"{name} {m:.3g}" for name, m in by_block.items()))

        if cached:
            features = self.cached_features()
            with self.strategy.scope():
                model = head_model(self.classifier)
            fetch_train = _fetch_arrays(features["train"], self.folder.train.labels,
                                        self.num_classes)
            val = epoch_dataset(len(self.folder.val),
                                _fetch_arrays(features["val"], self.folder.val.labels,
                                              self.num_classes),
                                seed=config.seed, start_epoch=0, end_epoch=1,
                                batch_size=self.global_batch, shuffle=False, batched=True)
            batched = True
        else:
            model = self.classifier
            fetch_train, batched = self.image_fetch(self.folder.train)
            fetch_val, val_batched = self.image_fetch(self.folder.val)
            val = (epoch_dataset(len(self.folder.val), fetch_val, seed=config.seed,
                                 start_epoch=0, end_epoch=1, batch_size=self.global_batch,
                                 shuffle=False, batched=True)
                   if val_batched else self.image_dataset(self.folder.val))
        with self.strategy.scope():
            self.compile(model, phase.learning_rate, lr_multipliers=multipliers)
        callbacks = self.callbacks(index, phase, model)
        if state:
            with self.strategy.scope():
                model.optimizer.build(model.trainable_variables)
            best = ckpt.restore(self.run_dir, model=self.classifier,
                                optimizer=model.optimizer if state.get("optimizer") else None,
                                state=state)
            if self.plateau and state.get("plateau"):
                self.plateau.pending = state["plateau"]
            if self.early and state.get("early"):
                self.early.pending, self.early.pending_weights = state["early"], best
        end = self.phase_start + phase.epochs
        if self.epoch >= end:
            return
        steps = math.ceil(len(self.folder.train) / self.global_batch)
        train = epoch_dataset(len(self.folder.train), fetch_train, seed=config.seed,
                              start_epoch=self.epoch, end_epoch=end,
                              batch_size=self.global_batch, shuffle=True,
                              batch_fn=mix_batch(config.mixup, config.cutmix), batched=batched)
        with _unknown_length_ok():  # of the validation set; the training set's is asserted
            model.fit(train, steps_per_epoch=steps, validation_data=val,
                      initial_epoch=self.epoch, epochs=end, shuffle=False,
                      class_weight=self.class_weight, callbacks=callbacks, verbose=self.verbose)
        # The phase is over (maybe stopped early, best weights restored): the next one starts
        # from here, with a fresh optimizer.
        self.save_checkpoint(index + 1, None)

    def probe_batch_size(self) -> None:
        """Resolve ``batch_size="auto"`` on the plan's most demanding phase, then undo the
        probe's training steps (weights and RNG states) so the run starts as if unprobed."""
        from transfer.batch_size import probe_batch_size

        last = self.plan[-1]
        saved = [np.array(v) for v in self.classifier.variables]
        set_trainable(self.classifier, last.name, blocks=self.info.blocks,
                      unfreeze_from=self.unfreeze_from if last.name == "fine-tune" else None)
        with self.strategy.scope():
            self.compile(self.classifier, last.learning_rate)
        found = probe_batch_size(self.classifier, self.num_classes,
                                 maximum=max(8, len(self.folder.train)))
        for variable, value in zip(self.classifier.variables, saved):
            variable.assign(value)
        self.config = self.config.replace(batch_size=found.batch_size)
        self.config.save(self.run_dir / "config.json")

    # ---- data ------------------------------------------------------------------------------
    def image_fetch(self, split: data_lib.Split) -> tuple[Callable, bool]:
        """``(fetch, batched)`` for :func:`epoch_dataset`: index vector -> (images, one-hot
        labels) gathered from memory when the decoded split fits in what is left of
        ``memory_cache_mb``, else index -> (image, label) decoded from its file every epoch."""
        import tensorflow as tf

        size = self.config.image_size
        labels = tf.one_hot(tf.constant(split.labels, tf.int32), self.num_classes)
        key = tuple(split.paths)
        if key not in self._images:
            held = sum(int(np.prod(x.shape)) * 4 for x in self._images.values())
            if held + len(split) * size * size * 3 * 4 <= self.config.memory_cache_mb * 2**20:
                self._images[key] = tf.constant(self.decode_all(split))
        if key in self._images:
            images = self._images[key]
            return (lambda i: (tf.gather(images, i), tf.gather(labels, i))), True
        load = data_lib.split_loader(split, image_size=size)
        return (lambda i: (load(i), tf.gather(labels, i))), False

    def decode_all(self, split: data_lib.Split) -> np.ndarray:
        ds = data_lib.make_dataset(split, image_size=self.config.image_size,
                                   batch_size=64, shuffle=False, cache=False)
        images = np.concatenate([np.asarray(x) for x, _ in ds])
        if len(images) != len(split):  # a file dropped: images and labels would misalign
            raise _files_changed(len(split) - len(images))
        return images

    def image_dataset(self, split: data_lib.Split):
        import tensorflow as tf

        depth = self.num_classes
        ds = data_lib.make_dataset(split, image_size=self.config.image_size,
                                   batch_size=self.global_batch, shuffle=False)
        return ds.map(lambda x, y: (x, tf.one_hot(y, depth)))

    def cached_features(self) -> dict[str, np.ndarray]:
        """Pooled backbone features of every train and validation image, computed once.

        They are kept in memory when they fit in ``memory_cache_mb``, else written to
        ``RUN_DIR/features/*.npy`` and read back by memory map (and reused by ``--resume``;
        the folder is removed when the run finishes). The pass runs the compiled backbone batch
        by batch, with a progress bar when ``verbose``.
        """
        if self._features:
            return self._features
        import tensorflow as tf

        extractor = feature_model(self.classifier)
        forward = tf.function(lambda x: extractor(x, training=False), reduce_retracing=True)
        dim = int(extractor.output.shape[-1])
        splits = {"train": self.folder.train, "val": self.folder.val}
        total = sum(len(split) for split in splits.values())
        folder = self.run_dir / FEATURES_DIR
        on_disk = total * dim * 4 > self.config.memory_cache_mb * 2**20
        done = folder / "complete.json"
        if on_disk and done.is_file():
            log.info("reusing the backbone features cached in %s", folder)
            self._features = {name: np.load(folder / f"{name}.npy", mmap_mode="r")
                              for name in splits}
            return self._features
        if on_disk:
            folder.mkdir(exist_ok=True)
            log.info("caching backbone features on disk in %s (%.2f GiB > memory_cache_mb)",
                     folder, total * dim * 4 / 2**30)
        log.info("extracting backbone features once for %d images", total)
        progress = (keras.utils.Progbar(total, unit_name="image",
                                        verbose=1 if self.verbose in (1, "auto") else 2)
                    if self.verbose else None)
        for name, split in splits.items():
            shape = (len(split), dim)
            out = (np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+",
                                             dtype="float32", shape=shape)
                   if on_disk else np.empty(shape, np.float32))
            filled = 0
            ds = data_lib.make_dataset(split, image_size=self.config.image_size,
                                       batch_size=self.global_batch, shuffle=False, cache=False)
            for images, _ in ds:
                batch = np.asarray(forward(images))
                if filled + len(batch) <= len(out):
                    out[filled:filled + len(batch)] = batch
                filled += len(batch)
                if progress:
                    progress.add(len(batch))
            if filled != len(split):  # a file dropped: features and labels would misalign
                raise _files_changed(len(split) - filled)
            if on_disk:
                out.flush()
            self._features[name] = out
        if on_disk:
            done.write_text(json.dumps({n: list(f.shape) for n, f in self._features.items()}))
        return self._features

    # ---- compile and callbacks ---------------------------------------------------------------
    def compile(self, model: keras.Model, learning_rate: float,
                lr_multipliers: dict[str, float] | None = None) -> None:
        config = self.config
        model.compile(
            optimizer=make_optimizer(config.optimizer, learning_rate, momentum=config.momentum,
                                     weight_decay=config.weight_decay,
                                     lr_multipliers=lr_multipliers),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"),
                     keras.metrics.TopKCategoricalAccuracy(k=min(5, self.num_classes),
                                                           name="top5_accuracy")],
            jit_compile=config.jit)

    def callbacks(self, index: int, phase: Phase, model: keras.Model) -> list:
        config = self.config
        self.plateau = self.early = None
        cbs: list[keras.callbacks.Callback] = []
        if config.schedule == "plateau":
            self.plateau = ckpt.ResumableReduceLROnPlateau(
                monitor="val_loss", factor=0.5, patience=config.lr_patience, min_lr=1e-7)
            cbs.append(self.plateau)
        elif config.schedule in ("cosine", "onecycle"):
            steps = math.ceil(len(self.folder.train) / self.global_batch)
            cbs.append(StepSchedule(config.schedule, peak=phase.learning_rate,
                                    total_steps=steps * phase.epochs,
                                    warmup_steps=steps * config.warmup_epochs))
        if config.early_stopping_patience > 0:
            self.early = ckpt.ResumableEarlyStopping(
                monitor="val_loss", patience=config.early_stopping_patience,
                restore_best_weights=True)
            cbs.append(self.early)
        cbs.append(keras.callbacks.TensorBoard(log_dir=str(self.run_dir / "logs" / phase.name),
                                               write_graph=False))
        return cbs + self.extra_callbacks + [_RunLogger(self, index, model)]

    # ---- bookkeeping -----------------------------------------------------------------------
    def save_checkpoint(self, phase_index: int, optimizer) -> None:
        state = {
            "phase_index": phase_index,
            "phase_start": self.phase_start if optimizer is not None else self.epoch,
            "epoch": self.epoch,
            "history": self.history,
            "optimizer": optimizer is not None,
            "plateau": self.plateau.state() if (self.plateau and optimizer) else None,
            "early": self.early.state() if (self.early and optimizer) else None,
        }
        best = self.early.best_weights if (self.early and optimizer) else None
        # Mid-phase, the variables this phase cannot change are written once (frozen.npz).
        phase = self.plan[phase_index].name if optimizer is not None else "full"
        ckpt.save(self.run_dir, state=state, model=self.classifier, optimizer=optimizer,
                  best_weights=best, frozen=self.constant_variables(phase),
                  frozen_tag=f"phase-{phase_index}")

    def constant_variables(self, phase: str) -> frozenset[int]:
        """Indices into ``classifier.variables`` of what ``phase`` leaves unchanged: in the head
        and fine-tune phases the backbone runs in inference mode, so its variables that do not
        train (its weights, or the frozen part and every BatchNorm statistic) stay as they are.
        In the full phase anything may change."""
        if phase == "full":
            return frozenset()
        backbone = {id(v) for v in self.classifier.get_layer(BACKBONE).variables}
        training = {id(v) for v in self.classifier.trainable_variables}
        return frozenset(i for i, v in enumerate(self.classifier.variables)
                         if id(v) in backbone and id(v) not in training)

    def write_history(self) -> None:
        (self.run_dir / "history.json").write_text(json.dumps(self.history, indent=1) + "\n")
        keys = list(dict.fromkeys(k for row in self.history for k in row))
        with open(self.run_dir / "history.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.history)

    def finish(self) -> TrainResult:
        classifier, folder, run_dir = self.classifier, self.folder, self.run_dir
        trained, trained_cpu = time.perf_counter(), time.process_time()
        classifier.save(run_dir / "model.keras")
        from transfer.evaluate import classification_metrics

        predicted = self.val_predictions()
        self._features = {}
        shutil.rmtree(run_dir / FEATURES_DIR, ignore_errors=True)  # an on-disk feature cache
        metrics: dict[str, Any] = {"val": classification_metrics(
            predicted.probabilities, predicted.labels, folder.class_names)}
        if folder.test is not None and len(folder.test):
            metrics["test"] = self.evaluate(folder.test)
        metrics["phases"] = [dataclasses.asdict(p) for p in self.phases]
        metrics["class_weights"] = self.class_weight
        export_saved_model(classifier, run_dir / "saved_model", folder.class_names, force=True)
        self.write_artifacts(metrics, predicted)
        metrics["seconds"] = {"training": round(trained - self.started, 3),
                              # all of the process's threads; not slowed by other processes
                              "training_cpu": round(trained_cpu - self.started_cpu, 3),
                              "evaluation_and_export": round(time.perf_counter() - trained, 3)}
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        ckpt.mark_finished(run_dir)
        val = metrics["val"]
        log.info("validation: top-1 accuracy %.4f, top-%d accuracy %.4f, loss %.4f",
                 val["top1_accuracy"], val["top_k"], val["top5_accuracy"],
                 val["loss"] or float("nan"))
        return TrainResult(classifier, self.history, metrics, run_dir, folder.class_names,
                           self.config, self.phases)

    def write_artifacts(self, metrics: dict[str, Any], predicted) -> None:
        """Confusion matrix and worst-mistakes PNGs, the model card and the HTML report."""
        from transfer.evaluate import write_evaluation_artifacts
        from transfer.export import write_model_card
        from transfer.viz.report import write_report

        write_evaluation_artifacts(metrics["val"], predicted.probabilities, predicted.labels,
                                   predicted.paths, self.folder.class_names, self.run_dir)
        (self.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        write_model_card(self.run_dir)
        write_report(self.run_dir)

    def val_predictions(self):
        """Validation probabilities, computed once for the metrics and the PNGs: from the cached
        features when the backbone never changed (the head on cached features computes exactly
        what the full model computes on the images), else one pass over the images."""
        from transfer.evaluate import SplitPredictions, predict_split

        split = self.folder.val
        if self._features and self.config.mode is TransferMode.FEATURE_EXTRACTOR:
            probabilities = head_model(self.classifier).predict(self._features["val"], verbose=0)
            return SplitPredictions(probabilities, np.asarray(split.labels), tuple(split.paths))
        return predict_split(self.classifier, split, batch_size=self.global_batch)

    def evaluate(self, split: data_lib.Split) -> dict:
        ds = data_lib.make_dataset(split, image_size=self.config.image_size,
                                   batch_size=self.global_batch, shuffle=False, cache=False)
        return evaluate_model(self.classifier, ds, self.folder.class_names)


def _files_changed(count: int) -> DataError:
    return DataError(f"{count} image(s) no longer decode (changed since they were checked); "
                     f"run 'zoo data check' on the data and train again")


def _fetch_arrays(x: np.ndarray, labels: Sequence[int], num_classes: int) -> Callable:
    """A batched fetch (index vector -> (rows, one-hot labels)) for :func:`epoch_dataset`:
    gathered from a constant, or read from a memory-mapped array on disk."""
    import tensorflow as tf

    ys = tf.one_hot(tf.constant(labels, tf.int32), num_classes)
    if not isinstance(x, np.memmap):
        xs = tf.constant(x)
        return lambda i: (tf.gather(xs, i), tf.gather(ys, i))

    def read(i):
        rows = tf.numpy_function(lambda index: np.asarray(x[index]), [i], tf.float32,
                                 stateful=False)
        rows.set_shape([None, x.shape[1]])
        return rows, tf.gather(ys, i)

    return read


@contextlib.contextmanager
def _unknown_length_ok():
    """Image datasets have no known length (a file that no longer decodes is dropped rather than
    ending the run), and Keras warns when such a dataset ends ("Your input ran out of data");
    here that end is expected."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Your input ran out of data")
        yield


@contextlib.contextmanager
def _precision(policy: str):
    """Build under a mixed-precision policy without leaking it into later models."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
