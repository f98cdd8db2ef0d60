"""Per-epoch checkpoints that make ``--resume`` reproduce an uninterrupted run exactly.

A checkpoint holds everything that decides the rest of a run: every model variable (weights,
BatchNorm statistics and the dropout/augmentation RNG states), every optimizer variable (moments,
iteration count, learning rate), the state of the callbacks that carry state across epochs
(learning-rate halving and early stopping, best weights included), the history, and where the
run is in its phase plan. Data order depends only on ``(seed, epoch)``, so it needs no state.

Files are written to a temporary name and renamed, so a kill mid-write leaves the previous
checkpoint intact.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import keras
import numpy as np

from transfer.errors import RunDirError
from transfer.rundir import atomic_write

CHECKPOINT_DIR = "checkpoint"


class ResumableReduceLROnPlateau(keras.callbacks.ReduceLROnPlateau):
    """Halves the learning rate on a plateau; its counters survive a resume."""

    pending: dict[str, Any] | None = None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.pending:
            self.wait, self.best = self.pending["wait"], self.pending["best"]
            self.cooldown_counter = self.pending["cooldown_counter"]
            self.pending = None

    def state(self) -> dict[str, Any]:
        return {"wait": int(self.wait),
                "best": None if self.best is None else float(self.best),
                "cooldown_counter": int(self.cooldown_counter)}


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Early stopping whose best value, patience counter and best weights survive a resume."""

    pending: dict[str, Any] | None = None
    pending_weights: list[np.ndarray] | None = None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.pending:
            self.wait, self.best = self.pending["wait"], self.pending["best"]
            self.best_epoch = self.pending["best_epoch"]
            self.best_weights = self.pending_weights
            self.pending = self.pending_weights = None

    def state(self) -> dict[str, Any]:
        return {"wait": int(self.wait),
                "best": None if self.best is None else float(self.best),
                "best_epoch": int(self.best_epoch)}


def save(run_dir: Path, *, state: dict[str, Any], model: keras.Model,
         optimizer: keras.optimizers.Optimizer | None,
         best_weights: list[np.ndarray] | None, frozen: frozenset[int] = frozenset(),
         frozen_tag: str | None = None) -> None:
    """Write the checkpoint of a finished epoch; ``state`` must be JSON-serialisable.

    ``frozen`` holds the indices (into ``model.variables``) of variables that cannot change in
    the current phase, such as a frozen backbone run in inference mode. They go to
    ``frozen.npz`` once per phase, named by ``frozen_tag``, instead of being rewritten every
    epoch: a frozen ResNet-50 would otherwise cost 100 MB of writes per epoch of a head that
    trains in a fraction of a second.
    """
    folder = Path(run_dir) / CHECKPOINT_DIR
    folder.mkdir(exist_ok=True)
    variables = model.variables
    if frozen:
        if frozen_tag is None:
            raise ValueError("frozen variables need a frozen_tag")
        if _frozen_tag(folder) != frozen_tag:
            arrays = {f"model_{i}": np.asarray(variables[i]) for i in sorted(frozen)}
            arrays["tag"] = np.array(frozen_tag)
            atomic_write(folder / "frozen.npz", lambda f: np.savez(f, **arrays))
    arrays = {f"model_{i}": np.asarray(v) for i, v in enumerate(variables) if i not in frozen}
    if optimizer is not None:
        arrays.update({f"opt_{i}": np.asarray(v) for i, v in enumerate(optimizer.variables)})
    for i, w in enumerate(best_weights or []):
        arrays[f"best_{i}"] = np.asarray(w)
    state = {**state, "num_best_weights": len(best_weights or []),
             "frozen_tag": frozen_tag if frozen else None}
    atomic_write(folder / "variables.npz", lambda f: np.savez(f, **arrays))
    # state.json is written last: it names the epoch whose variables are on disk.
    atomic_write(folder / "state.json",
                        lambda f: f.write(json.dumps(state, indent=1).encode()))


def _frozen_tag(folder: Path) -> str | None:
    try:
        with np.load(folder / "frozen.npz") as arrays:
            return str(arrays["tag"])
    except (OSError, KeyError, ValueError):
        return None


# What a checkpoint's state.json must hold to be resumed (besides what older runs may lack).
_STATE_KEYS = {"epoch": int, "phase_index": int, "phase_start": int, "history": list}
# What reading a damaged file raises: a truncated or empty zip, a short array, a missing key.
_DAMAGED = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile)


def damaged(run_dir: Path, what: str) -> RunDirError:
    """The one error of a checkpoint that cannot be resumed, saying what to do."""
    return RunDirError(f"the checkpoint in {str(run_dir)!r} is damaged ({what}) and cannot be "
                       f"resumed; start the run again with --overwrite")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def load_state(run_dir: Path) -> dict[str, Any] | None:
    """The checkpoint's state, or None without one.

    Raises:
        RunDirError: ``state.json`` is not the JSON object a checkpoint writes (a truncated
            write, an edit).
    """
    path = Path(run_dir) / CHECKPOINT_DIR / "state.json"
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise damaged(run_dir, f"state.json is not valid JSON: {_reason(exc)}") from None
    if not isinstance(state, dict):
        raise damaged(run_dir, f"state.json holds a {type(state).__name__}, not an object")
    if not state.get("finished"):
        wrong = [key for key, kind in _STATE_KEYS.items()
                 if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool)]
        if wrong:
            raise damaged(run_dir, f"state.json lacks {', '.join(wrong)}")
    return state


def verify(run_dir: Path, state: dict[str, Any]) -> None:
    """Read every stored array once (their CRCs are checked), so a damaged checkpoint is
    refused before the run rebuilds its model and features.

    Raises:
        RunDirError: a file is missing, truncated, or does not belong to ``state``.
    """
    folder = Path(run_dir) / CHECKPOINT_DIR
    names = ["variables.npz"] + (["frozen.npz"] if state.get("frozen_tag") else [])
    for name in names:
        try:
            with zipfile.ZipFile(folder / name) as archive:
                bad = archive.testzip()
        except _DAMAGED as exc:
            raise damaged(run_dir, f"{name}: {_reason(exc)}") from None
        if bad is not None:
            raise damaged(run_dir, f"{name}: {bad} is corrupt")
    if state.get("frozen_tag") and _frozen_tag(folder) != state["frozen_tag"]:
        raise damaged(run_dir, "frozen.npz does not belong to it")


def restore(run_dir: Path, *, model: keras.Model,
            optimizer: keras.optimizers.Optimizer | None,
            state: dict[str, Any]) -> list[np.ndarray] | None:
    """Assign the saved variables; returns the early-stopping best weights, if any.

    ``optimizer`` must already be built for the model being fitted; ``None`` restores the model
    alone (a checkpoint taken between phases holds no optimizer state).

    Raises:
        RunDirError: a file is damaged, or its arrays do not fit the model.
    """
    verify(run_dir, state)
    folder = Path(run_dir) / CHECKPOINT_DIR
    try:
        return _assign(folder, model, optimizer, state)
    except _DAMAGED as exc:
        raise damaged(run_dir, _reason(exc)) from None


def _assign(folder: Path, model: keras.Model, optimizer: keras.optimizers.Optimizer | None,
            state: dict[str, Any]) -> list[np.ndarray] | None:
    if state.get("frozen_tag"):
        with np.load(folder / "frozen.npz") as arrays:
            for i, variable in enumerate(model.variables):
                if f"model_{i}" in arrays:
                    variable.assign(arrays[f"model_{i}"])
    with np.load(folder / "variables.npz") as arrays:
        for i, variable in enumerate(model.variables):
            if f"model_{i}" in arrays:
                variable.assign(arrays[f"model_{i}"])
        for i, variable in enumerate(optimizer.variables if optimizer is not None else []):
            variable.assign(arrays[f"opt_{i}"])
        count = state.get("num_best_weights", 0)
        return [arrays[f"best_{i}"] for i in range(count)] if count else None


def mark_finished(run_dir: Path) -> None:
    """Drop the variables of a finished run (the model is saved) and record that it finished."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    (folder / "variables.npz").unlink(missing_ok=True)
    (folder / "frozen.npz").unlink(missing_ok=True)
    folder.mkdir(exist_ok=True)
    (folder / "state.json").write_text(json.dumps({"finished": True}) + "\n")


def constant_variables(model: keras.Model, backbone: keras.Model | None, *,
                       full: bool) -> frozenset[int]:
    """Indices into ``model.variables`` of what a phase leaves unchanged: in the head and
    fine-tune phases the ``backbone`` (the frozen nested model) runs in inference mode, so its
    variables that do not train (its weights, or the frozen part and its BatchNorm statistics)
    stay as they are; the moving statistics of BatchNorm layers that train (fine-tune with
    ``fine_tune_batchnorm="train"``) change. In the full phase (``full``) anything may change."""
    from zoo import leaf_layers

    if full or backbone is None:
        return frozenset()
    held = {id(v) for v in backbone.variables}
    training = {id(v) for v in model.trainable_variables}
    training |= {id(v) for layer in leaf_layers(backbone)
                 if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
                 for v in layer.non_trainable_variables}
    return frozenset(i for i, v in enumerate(model.variables)
                     if id(v) in held and id(v) not in training)
