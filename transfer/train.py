"""Training in the three transfer modes: the phase plan and the epoch loop, for any task.

One ``zoo train`` reads top-down: config -> input contract -> data -> model -> phases ->
end of run -> run directory (:mod:`transfer.rundir` says what it holds). Each mode is a plan of
phases (see :func:`phase_plan`); one epoch counter and one history run across the phases. After
every epoch the run is checkpointed, and the data order depends only on ``(seed, epoch)``, so
:func:`resume` after a crash, a kill or Ctrl-C reaches the same result as an uninterrupted run.
What is particular to a task (data reader, head, loss, metrics, evaluation, serving outputs)
comes from its :class:`~transfer.tasks.Task`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Collection, Sequence

import keras
import numpy as np

from transfer import checkpoint as ckpt
from transfer import data as data_lib
from transfer import outputs
from transfer.config import TrainConfig, TransferMode, check_applicable
from transfer.distribute import is_chief, make_strategy, precision_policy
from transfer.errors import TrainingInterrupted
from transfer.features import FeatureCache
from transfer.feeding import ImageFeed, epoch_dataset, fetch_arrays, unknown_length_ok
from transfer.finish import RunRecord, StepClock, finish_run
from transfer.model import (
    BackboneInfo,
    TrainableSummary,
    backbone_info,
    frozen_part,
    layer_lr_multipliers,
    resolve_unfreeze,
    set_trainable,
)
from transfer.optimizers import make_optimizer
from transfer.rundir import InputContract, RunDir
from transfer.schedules import policy_callbacks, resolve_schedule
from transfer.tasks import DEFAULT_TASK, Predictions, Task, task_for, task_of
from transfer.views import (
    MIRROR_HARM,
    Cut,
    boundary_split,
    check_views,
    disk_budget,
    exact_views,
    mirror_check_runs,
    view_count,
)
from zoo import leaf_layers
from zoo.errors import ZooError

log = logging.getLogger(__name__)
# Below this many images per replica, batch statistics are too noisy for BatchNorm to train on
# (Wu & He 2018, Group Normalization: BatchNorm's error grows quickly below batches of 8).
_MIN_BN_BATCH = 8


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
        return RunDir(self.run_dir).saved_model_dir

    @property
    def task(self) -> Task:
        """The task the run trained, with its options."""
        return task_of(self.config)

    @property
    def model_path(self) -> Path:
        return RunDir(self.run_dir).model_path


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


@dataclasses.dataclass
class ResolvedRun:
    """What a run's config resolves to, decided once at the start and passed down: the config
    with every ``"auto"`` and ``None`` filled in (as ``config.json`` records it), the task with
    its options, the backbone's facts (blocks, input size, preprocessing) and the block
    fine-tuning unfreezes from."""

    config: TrainConfig
    task: Task
    info: BackboneInfo

    @classmethod
    def of(cls, config: TrainConfig) -> ResolvedRun:
        """A config already resolved (a run's ``config.json``, on resume)."""
        task = task_of(config)
        return cls(config, task, backbone_info(task.backbone_name(config),
                                               trust_model=config.trust_model))

    @functools.cached_property
    def unfreeze_from(self) -> str | None:
        """The first block fine-tuning trains (``None``: the whole backbone, or no blocks)."""
        return resolve_unfreeze(self.info, unfreeze_from=self.config.unfreeze_from,
                                unfreeze_top=self.config.unfreeze_top)

    def contract(self, class_names: Sequence[str]) -> InputContract:
        """The input contract of the model this run trains."""
        info, config = self.info, self.config
        return InputContract(task=config.task, image_size=config.image_size or info.default_size,
                             channels=info.channels, preprocessing=info.preprocessing,
                             class_names=tuple(class_names), options=self.task.contract_options())


def resolve_task(config: TrainConfig, data_dir: str | os.PathLike) -> TrainConfig:
    """``task="auto"`` decided by the task registry (:func:`transfer.tasks.task_for`): the
    task the model options name, else the one whose layout the data has, else
    classification."""
    return config.replace(task=task_for(config, data_dir))


def resolve_config(config: TrainConfig, data_dir: str | os.PathLike) -> ResolvedRun:
    """What ``"auto"`` and ``None`` leave open, decided once before training: the task, the
    image size (the backbone's own) and the task's defaults (augmentation, fine-tune policy)."""
    config = resolve_task(config, data_dir)
    info = backbone_info(task_of(config).backbone_name(config), trust_model=config.trust_model)
    config = config.replace(image_size=config.image_size or info.default_size)
    given = config
    config = task_of(config).fill_defaults(config, info.blocks)
    if config.cache_views == "auto" and config.mode is not TransferMode.FULL_RETRAIN:
        config = config.replace(cache_views=view_count(config))  # config.json records K
    if config.mirror_check == "auto" and not (task_of(config).judges_mirrors
                                              and mirror_check_runs(given, config)):
        config = config.replace(mirror_check="off")
    return ResolvedRun(config, task_of(config), info)


def train(data_dir: str | os.PathLike, *, output: str | os.PathLike,
          config: TrainConfig | None = None, overwrite: bool = False,
          callbacks: Sequence[keras.callbacks.Callback] = (), verbose: int | str = "auto",
          cache_dir: str | os.PathLike | None = None,
          tfds_data_dir: str | os.PathLike | None = None,
          explicit: Collection[str] | None = None, **overrides: Any) -> TrainResult:
    """Train a model on the user's data and write a run directory.

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
        explicit: the config fields the user set (the CLI knows them); default: the fields
            that differ from their defaults. One that does nothing for the task and mode
            (``fine_tune_epochs`` in full-retrain, ``mixup`` for segmentation...) is refused.

    Returns:
        A :class:`TrainResult` with the model, the history, the final metrics and the paths.

    Raises:
        TrainingInterrupted: on Ctrl-C; the last finished epoch is checkpointed.
    """
    given = (config or TrainConfig()).replace(**overrides)
    # Checked before the data is read: the run directory must not be, hold or lie inside the
    # data, nor be or hold the model or weights the run starts from (transfer.outputs).
    data_source = None if str(data_dir).startswith("tfds:") else data_dir
    reads = [(p, f"the {what} the run starts from") for p, what in
             ((given.model, "model"), (given.weights, "weights")) if _is_path(p)]
    RunDir.check_new(output, overwrite=overwrite, data=data_source, reads=reads)
    resolved = resolve_config(given, data_dir)
    config, task = resolved.config, resolved.task
    # Before the task fills in its defaults: what the user set must do something.
    check_applicable(given.replace(task=config.task), explicit)
    # Checked before anything is written or trained: a typo must not cost the head phase.
    task.check(config)
    check_views(config)
    resolved.unfreeze_from  # noqa: B018  - a block name that does not exist is refused now
    loading = time.perf_counter()
    data = task.load_data(data_dir, config, cache_dir=cache_dir, tfds_data_dir=tfds_data_dir)
    loading = time.perf_counter() - loading
    log.info("data: %s", data.report.summary())
    contract = resolved.contract(data.class_names)
    strategy = make_strategy(config.strategy)
    if is_chief(strategy):
        fresh = not Path(output).exists()
        run = RunDir.create(output, overwrite=overwrite, data=data_source, reads=reads)
    else:  # other workers of a multi-worker run write their copies out of the way
        fresh, run = True, RunDir(tempfile.mkdtemp(prefix="zoo-worker-"))
    try:
        config.save(run / "config.json")
        run.write_contract(contract)
        data.save(run / "split.json")
        data.report.save(run / "data_report.json")
        run.write_class_names(data.class_names)
        trainer = Trainer(resolved, data, run, strategy, list(callbacks), verbose)
        trainer.clock.steps["read and check data"] = loading
        return trainer.run(None)
    except ZooError as exc:
        # A config or data error found before the first checkpoint leaves nothing behind, so
        # the corrected command needs no --overwrite (an interrupted run stays, to resume).
        if not isinstance(exc, TrainingInterrupted) and ckpt.load_state(run.path) is None:
            if fresh:
                outputs.remove(run.path)
            else:
                outputs.clear(run.path)
        raise


def _is_path(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike)) and Path(value).exists()


def resume(run_dir: str | os.PathLike, *, callbacks: Sequence[keras.callbacks.Callback] = (),
           verbose: int | str = "auto") -> TrainResult:
    """Continue an interrupted run from its last finished epoch: same data order, optimizer
    state, schedule and callback state, hence the same result as an uninterrupted run. A run
    stopped before its first epoch finished starts over from its config.json and split.json."""
    from transfer.errors import RunDirError

    run = RunDir.open_for_resume(run_dir)
    state = ckpt.load_state(run.path)
    if state is not None and state.get("finished"):
        raise RunDirError(f"the run in {str(run.path)!r} already finished")
    if state is not None:
        ckpt.verify(run.path, state)
    config = TrainConfig.load(run / "config.json")
    if config.task == "auto":  # runs written before tasks were recorded were classifiers
        config = config.replace(task=DEFAULT_TASK)
    data = data_lib.ImageFolderData.load(run / "split.json")
    _warn_if_data_changed(run, data)
    strategy = make_strategy(config.strategy)
    if state is None:
        log.info("%s stopped before its first epoch finished: starting it over", run.path)
    else:
        log.info("resuming %s after epoch %d", run.path, state["epoch"])
    return Trainer(ResolvedRun.of(config), data, run, strategy, list(callbacks),
                   verbose).run(state)


def _warn_if_data_changed(run: RunDir, data: data_lib.ImageFolderData) -> None:
    """Warn when files of ``split.json`` are gone or image files were added since the run
    started: the resumed run trains on the split as recorded."""
    report = run / "data_report.json"
    skipped = ([p for p, _ in data_lib.DataReport.load(report).skipped]
               if report.is_file() else [])
    missing, added = data_lib.changes_since(data, skipped)
    if not missing and not added:
        return
    parts = ([f"{len(missing)} file(s) of split.json are missing (e.g. {missing[0]})"]
             if missing else [])
    parts += ([f"{len(added)} file(s) not in it were added (e.g. {added[0]})"] if added else [])
    log.warning("the data changed since this run started: %s; resuming with the split as "
                "recorded (added files are not used)", ", ".join(parts))


class _RunLogger(keras.callbacks.Callback):
    """Last callback of every phase: records the epoch and checkpoints the run."""

    def __init__(self, trainer: Trainer, phase_index: int, optimizer_model: keras.Model):
        super().__init__()
        self.trainer, self.phase_index, self.optimizer_model = trainer, phase_index, optimizer_model

    def on_epoch_end(self, epoch, logs=None):
        trainer = self.trainer
        row = {"epoch": epoch + 1, "phase": trainer.plan[self.phase_index].name}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        # Every schedule's rate is in the history, a constant one too.
        row.setdefault("learning_rate",
                       float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))
        trainer.history.append(row)
        trainer.epoch = epoch + 1
        trainer.run_dir.write_history(trainer.history)
        trainer.save_checkpoint(self.phase_index, self.optimizer_model.optimizer)


@dataclasses.dataclass
class PhaseSetup:
    """What one phase trains and feeds: the model fit is called on, its compile arguments, and
    how the training and validation batches are read."""

    model: keras.Model
    learning_rate: float
    lr_multipliers: dict[str, float] | None
    fetch_train: Any
    batched: bool
    val: Any
    val_predictions: Any = None  # set when the validation outputs come from cached features
    views: int = 1  # views per image in the cache (transfer.views)
    cached: bool = False  # trains on cached outputs of what stays frozen


class Trainer:
    """Runs a mode's phase plan, keeping one epoch count, one history and the checkpoints.

    ``run_dir`` may be ``None`` for a loop that leaves nothing behind (the learning-rate range
    test runs on this same loop).
    """

    def __init__(self, resolved: ResolvedRun, data: data_lib.ImageFolderData,
                 run_dir: RunDir | None, strategy, extra_callbacks: list, verbose):
        config = resolved.config
        self.config = config  # resolved (resolve_config), as config.json records it
        self.task: Task = resolved.task
        self.info = resolved.info
        self.data = data
        self.run_dir = run_dir
        self.strategy = strategy
        self.extra_callbacks = extra_callbacks
        self.verbose = verbose
        self.replicas = strategy.num_replicas_in_sync
        self.plan = phase_plan(config, self.replicas)
        self.unfreeze_from = resolved.unfreeze_from
        # resolve_config fills in "auto"; a run written before the field existed froze BN
        self.train_batchnorm = config.fine_tune_batchnorm == "train"
        self.contract = resolved.contract(data.class_names)
        self.num_classes = data.num_classes
        self.history: list[dict[str, Any]] = []
        self.phases: list[TrainableSummary] = []
        self.epoch = 0
        self.phase_start = 0
        self.plateau: ckpt.ResumableReduceLROnPlateau | None = None
        self.early: ckpt.ResumableEarlyStopping | None = None
        self.images = ImageFeed(config.image_size, config.memory_cache_mb,
                                lambda split: self.task.targets(split, self.num_classes,
                                                                config.image_size),
                                fit=self.task.fit)
        self.features = FeatureCache(run_dir.features_dir if run_dir else None,
                                     memory_mb=config.memory_cache_mb,
                                     image_size=config.image_size, verbose=verbose,
                                     fit=self.task.fit)
        self.val_predictions: Predictions | None = None
        self.clock = StepClock({})  # where the run's time goes (metrics.json: seconds.steps)
        self.class_weight = self.task.loss_weights(config, data.train, self.num_classes)
        log.info("data: %s", self.task.describe(data))
        log.info("augmentation: %s", config.augment or "none")
        log.info("learning-rate schedule: %s%s", resolve_schedule(config),
                 f" (auto, for {config.mode.value})" if config.schedule == "auto" else "")
        if self.replicas > 1:
            log.info("%d replicas: global batch %d, learning rates scaled by %d",
                     self.replicas, self.global_batch, self.replicas)

    @property
    def global_batch(self) -> int:
        return int(self.config.batch_size) * self.replicas

    # ---- the run ---------------------------------------------------------------------------
    def build(self, state: dict[str, Any] | None = None) -> keras.Model:
        import tensorflow as tf

        config = self.config
        if config.deterministic:
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(config.seed)
        with precision_policy(config.precision), self.strategy.scope():
            self.model = self.task.build_model(config, num_classes=self.num_classes,
                                               weights=None if state else config.weights)
        return self.model

    def run(self, state: dict[str, Any] | None) -> TrainResult:
        self.build(state)
        self.started, self.started_cpu = time.perf_counter(), time.process_time()
        if self.config.batch_size == "auto":
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
            path = self.run_dir.path
            if ckpt.load_state(path) is None:
                raise TrainingInterrupted(
                    f"stopped before the first epoch finished, so nothing is checkpointed; "
                    f"start it over with: zoo train --resume {path} (or the same command with "
                    f"--overwrite)") from None
            raise TrainingInterrupted(
                f"interrupted; epoch {self.epoch} is checkpointed. Continue with: "
                f"zoo train --resume {path}") from None
        return self.finish()

    def set_trainable(self, phase: str) -> TrainableSummary:
        """:func:`transfer.model.set_trainable` with this run's fine-tune policy."""
        fine = phase == "fine-tune"
        return set_trainable(self.model, phase, blocks=self.info.blocks,
                             unfreeze_from=self.unfreeze_from if fine else None,
                             train_batchnorm=self.train_batchnorm)

    def setup_phase(self, index: int) -> PhaseSetup:
        """Make what ``plan[index]`` trains trainable and prepare its data: cached outputs of
        what stays frozen when :meth:`cache_split` finds a cut, else the images."""
        phase, config = self.plan[index], self.config
        summary = self.set_trainable(phase.name)
        self.phases.append(summary)
        log.info("%s", summary)
        if summary.batchnorm == "train" and int(config.batch_size) < _MIN_BN_BATCH:
            log.warning("BatchNorm trains on batch statistics of %s images per replica, too few "
                        "to be reliable; consider --fine-tune-batchnorm frozen or a larger "
                        "--batch-size", config.batch_size)
        self.set_bn_momentum()
        multipliers = None
        if phase.name == "fine-tune" and config.discriminative_lr > 1:
            multipliers, by_block = layer_lr_multipliers(
                self.model, blocks=self.info.blocks, unfreeze_from=self.unfreeze_from,
                ratio=config.discriminative_lr)
            log.info("discriminative learning rates (x %.2e): %s", phase.learning_rate,
                     ", ".join(f"{name} {m:.3g}" for name, m in by_block.items()))
        train, val = self.data.train, self.data.val
        split = self.cache_split(phase)
        if split is None and self.features.arrays:  # the head phase's, in memory
            self.features.release()
        features = None
        if split is not None:
            k = view_count(config)
            views = {"train": (k, lambda view: self.task.view_fn(config, view))} if k > 1 \
                else {}
            judging = phase.name == "head" and config.mirror_check == "auto"
            if judging:  # the validation images' mirrors too, for the mirror check
                views["val"] = (2, lambda view: self.task.view_fn(config, view))
            moved = k > 1 and self.task.views_move_targets
            tag = "features" if phase.name == "head" else "boundary"
            budget = (disk_budget(self.run_dir.features_dir) if self.run_dir is not None
                      else None)
            with self.clock(f"cache for the {phase.name} phase"):
                features = self.features.get(
                    split.lower, {"train": train, "val": val}, batch_size=self.global_batch,
                    views=views, targets={"train": self.images.encode(train)} if moved
                    else None, dtype=config.cache_dtype, tag=tag, disk_budget=budget)
            if features is not None and judging:
                split = self.judge_mirrors(features, phase) or split
                k = view_count(self.config)
                config = self.config
            if features is None:
                log.info("the %s phase runs full forward passes: its cache would take %.2f GiB, "
                         "more than memory_cache_mb and half the free disk", phase.name,
                         self.features.size / 2**30)
            else:
                log.info("the %s phase trains on the cache: %d view(s) per image%s, %.1f MiB "
                         "(%s)", phase.name, k, " (the image and its mirror)" if k == 2 and
                         exact_views(config) else "", self.features.size / 2**20,
                         "on disk" if self.features.on_disk else "in memory")
        if features is None:
            fetch_train, batched = self.images.fetch(train)
            return PhaseSetup(self.model, phase.learning_rate, multipliers, fetch_train, batched,
                              self.images.evaluation_dataset(val, batch_size=self.global_batch,
                                                             seed=config.seed))
        encode = self.images.encode
        moved_targets = self.features.targets.get("train")
        fetch_train = (fetch_arrays(features["train"], moved_targets) if moved_targets is not None
                       else fetch_arrays(features["train"], encode(train), items=len(train)))
        val_ds = epoch_dataset(len(val), fetch_arrays(features["val"], encode(val)),
                               seed=config.seed, start_epoch=0, end_epoch=1,
                               batch_size=self.global_batch, shuffle=False, batched=True)
        return PhaseSetup(split.upper, phase.learning_rate, multipliers, fetch_train, True,
                          val_ds, views=view_count(config), cached=True)

    def judge_mirrors(self, features, phase: Phase) -> Cut | None:
        """The mirror check (``TrainConfig.mirror_check``) on the cached features of the
        training images and of the validation images and their mirrors: when mirroring costs
        the task's probe more than :data:`MIRROR_HARM`, and significantly (McNemar's test on
        the images lost and won), the run trains without flips (the
        model is built again without them, before anything trained) and ``config.json`` says
        ``dropped``; else ``kept``. Returns the head phase's new cut when the model changed."""
        train, val = self.data.train, self.data.val
        n = len(val)
        scores = self.task.mirror_scores(features["train"][0][:len(train)], train,
                                         features["val"][0][:n], features["val"][0][n:2 * n],
                                         val)
        if scores is None:
            self.config = self.config.replace(mirror_check="off")
            return None
        right, mirrored_right = (np.asarray(x, bool) for x in scores)
        plain, mirrored = float(right.mean()), float(mirrored_right.mean())
        harm = plain - mirrored
        # McNemar's test, two sigma: images lost to mirroring against images won, so that a
        # few validation images cannot turn flips off by chance
        lost = int(np.sum(right & ~mirrored_right))
        won = int(np.sum(~right & mirrored_right))
        drop = harm > MIRROR_HARM and lost - won >= 2 * math.sqrt(lost + won)
        log.info("mirror check: a probe on the frozen features scores %.3f on the validation "
                 "images and %.3f on their mirrors (%+.3f); %s", plain, mirrored, -harm,
                 "mirroring costs accuracy here, so fine-tuning trains without flips (--augment "
                 "flip keeps them)" if drop else "flips kept")
        self.config = self.config.replace(mirror_check="dropped" if drop else "kept",
                                          **({"augment": "", "cache_views": 1} if drop else {}))
        if self.run_dir is not None:
            self.config.save(self.run_dir / "config.json")
        if not drop:
            return None
        self.phases.pop()  # the phase's summary is taken again on the rebuilt model
        self.build(None)
        self.phases.append(self.set_trainable(phase.name))
        self.set_bn_momentum()
        return self.cache_split(phase)

    def cache_split(self, phase: Phase) -> Cut | None:
        """Where ``phase`` cuts the model for the view cache (:mod:`transfer.views`), or
        ``None`` (with a line saying why when a cache was asked for): the head phase at the
        frozen backbone's outputs, the fine-tune phase below the block it unfreezes from."""
        config = self.config
        if phase.name == "full":
            return None
        if not config.cache_features:
            log.info("the %s phase runs full forward passes: --no-cache-features", phase.name)
            return None
        refusal = self.task.cache_refusal(config) if config.augment else None
        if refusal:
            log.info("the %s phase runs full forward passes: %s, which a cache of views "
                     "cannot stand in for", phase.name, refusal)
            return None
        with self.strategy.scope():
            extractor, head = self.task.feature_split(self.model)
            if phase.name == "head":
                return Cut(extractor, head)
            cut = boundary_split(self.model, head, unfreeze_from=self.unfreeze_from)
        if isinstance(cut, str):
            log.info("the fine-tune phase runs full forward passes: %s", cut)
            return None
        return cut

    def set_bn_momentum(self) -> None:
        """Give the BatchNorm layers that train this phase the configured momentum (``auto``:
        ``min(0.99, 1 - 1 / steps_per_epoch)``)."""
        steps = math.ceil(len(self.data.train) / self.global_batch)
        momentum = (min(0.99, 1 - 1 / max(steps, 2)) if self.config.bn_momentum == "auto"
                    else float(self.config.bn_momentum))
        layers = [layer for layer in leaf_layers(self.model)
                  if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
        for layer in layers:
            layer.momentum = momentum
        if layers:
            log.info("BatchNorm momentum %.3g for the %d BatchNorm layers that train",
                     momentum, len(layers))

    def train_dataset(self, setup: PhaseSetup, start: int, end: int):
        # On a cache of views, the views are the augmentation (a task's batch_fn augments).
        batch_fn = (None if setup.cached and self.config.augment
                    else self.task.batch_fn(self.config))
        return epoch_dataset(len(self.data.train), setup.fetch_train, seed=self.config.seed,
                             start_epoch=start, end_epoch=end, batch_size=self.global_batch,
                             shuffle=True, batch_fn=batch_fn, batched=setup.batched,
                             views=setup.views)

    def run_phase(self, index: int, state: dict[str, Any] | None) -> None:
        phase = self.plan[index]
        if phase.epochs == 0 and not state:  # e.g. --epochs 0: straight to fine-tuning
            return
        setup = self.setup_phase(index)
        model = setup.model
        with self.strategy.scope():
            self.compile(model, setup.learning_rate, lr_multipliers=setup.lr_multipliers)
        callbacks = self.callbacks(index, phase, model, val=setup.val)
        if state:
            with self.strategy.scope():
                model.optimizer.build(model.trainable_variables)
            best = ckpt.restore(self.run_dir.path, model=self.model,
                                optimizer=model.optimizer if state.get("optimizer") else None,
                                state=state)
            if self.plateau and state.get("plateau"):
                self.plateau.pending = state["plateau"]
            if self.early and state.get("early"):
                self.early.pending, self.early.pending_weights = state["early"], best
        end = self.phase_start + phase.epochs
        if self.epoch >= end:
            return
        steps = math.ceil(len(self.data.train) / self.global_batch)
        val = None if self.task.validates_in_callbacks else setup.val
        with unknown_length_ok(), self.clock(f"train the {phase.name} phase"):
            model.fit(self.train_dataset(setup, self.epoch, end), steps_per_epoch=steps,
                      validation_data=val, initial_epoch=self.epoch, epochs=end,
                      shuffle=False, class_weight=self.class_weight, callbacks=callbacks,
                      verbose=self.verbose)
        if model is not self.model:  # trained on a cache: the model keeps what trained it
            with self.strategy.scope():
                self.model.compile(optimizer=model.optimizer,
                                   **self.task.compile_args(self.config, self.num_classes),
                                   jit_compile=self.config.jit)
        # The phase is over (maybe stopped early, best weights restored): the next one starts
        # from here, with a fresh optimizer.
        self.save_checkpoint(index + 1, None)

    def probe_batch_size(self) -> None:
        """Resolve ``batch_size="auto"`` on the plan's most demanding phase, then undo the
        probe's training steps (weights and RNG states) so the run starts as if unprobed."""
        from transfer.batch_size import probe_batch_size

        last = self.plan[-1]
        saved = [np.array(v) for v in self.model.variables]
        self.set_trainable(last.name)
        with self.strategy.scope():
            self.compile(self.model, last.learning_rate)
        size = int(self.model.input_shape[1])
        found = probe_batch_size(
            self.model, lambda n, rng: self.task.probe_targets(n, self.num_classes, size, rng),
            maximum=max(8, len(self.data.train)))
        for variable, value in zip(self.model.variables, saved):
            variable.assign(value)
        self.config = self.config.replace(batch_size=found.batch_size)
        if self.run_dir is not None:
            self.config.save(self.run_dir / "config.json")

    # ---- compile and callbacks ---------------------------------------------------------------
    def compile(self, model: keras.Model, learning_rate: float,
                lr_multipliers: dict[str, float] | None = None) -> None:
        config = self.config
        model.compile(
            optimizer=make_optimizer(config.optimizer, learning_rate, momentum=config.momentum,
                                     weight_decay=config.weight_decay,
                                     lr_multipliers=lr_multipliers),
            **self.task.compile_args(config, self.num_classes), jit_compile=config.jit)

    def callbacks(self, index: int, phase: Phase, model: keras.Model, *, val=None) -> list:
        steps = math.ceil(len(self.data.train) / self.global_batch)
        # The task's own epoch-end numbers first, so the schedules, early stopping and the
        # history see them (detection: validation mAP).
        own = (self.task.epoch_callbacks(val, image_size=self.config.image_size,
                                         class_names=self.data.class_names)
               if val is not None else [])
        cbs, self.plateau, self.early = policy_callbacks(
            self.config, monitor=self.task.monitor, learning_rate=phase.learning_rate,
            steps=steps * phase.epochs, warmup_steps=steps * self.config.warmup_epochs)
        cbs.append(keras.callbacks.TensorBoard(log_dir=str(self.run_dir.logs_dir / phase.name),
                                               write_graph=False))
        return own + cbs + self.extra_callbacks + [_RunLogger(self, index, model)]

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
        ckpt.save(self.run_dir.path, state=state, model=self.model, optimizer=optimizer,
                  best_weights=best,
                  frozen=ckpt.constant_variables(self.model, frozen_part(self.model),
                                                 full=phase == "full"),
                  frozen_tag=f"phase-{phase_index}")

    def finish(self) -> TrainResult:
        record = RunRecord(self.config, self.contract, self.data, self.history, self.phases,
                           self.class_weight, self.started, self.started_cpu,
                           self.clock.steps)
        metrics = finish_run(self.run_dir, self.task, self.model, record,
                             self.cached_val_predictions(), batch_size=self.global_batch)
        self.images.clear()
        return TrainResult(self.model, self.history, metrics, self.run_dir.path,
                           self.data.class_names, self.config, self.phases)

    def cached_val_predictions(self) -> Predictions | None:
        """Validation outputs from the cached features when the backbone never changed (the
        head on cached features computes exactly what the full model computes on the images);
        ``None`` otherwise. The feature cache is released either way."""
        import tensorflow as tf

        features, val = self.features.arrays, self.data.val
        result = None
        if features and self.config.mode is TransferMode.FEATURE_EXTRACTOR:
            _, head = self.task.feature_split(self.model)
            inputs = features["val"]
            outputs = self.task.postprocess(
                head.predict(inputs[0] if len(inputs) == 1 else inputs, verbose=0),
                evaluating=True)
            outputs = tf.nest.map_structure(np.asarray, outputs)
            result = Predictions(outputs, self.task.labels(val, self.config.image_size),
                                 tuple(val.paths))
        self.features.release()
        return result
