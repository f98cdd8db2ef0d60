"""Learning-rate schedules and the per-mode default ("auto")."""

import keras
import numpy as np
import pytest

from transfer.config import TrainConfig
from transfer.schedules import (
    StepSchedule,
    cosine_with_warmup,
    one_cycle,
    policy_callbacks,
    resolve_schedule,
)


@pytest.mark.parametrize("mode,expected", [
    ("fine-tune", "cosine"), ("feature-extractor", "plateau"), ("full-retrain", "plateau")])
def test_auto_schedule_is_cosine_for_fine_tune_and_plateau_otherwise(mode, expected):
    assert TrainConfig().schedule == "auto"
    assert TrainConfig().warmup_epochs == 2
    assert resolve_schedule(TrainConfig(mode=mode)) == expected


@pytest.mark.parametrize("schedule", ["plateau", "cosine", "onecycle", "constant"])
def test_a_named_schedule_is_kept_in_every_mode(schedule):
    for mode in ("fine-tune", "feature-extractor", "full-retrain"):
        assert resolve_schedule(TrainConfig(mode=mode, schedule=schedule)) == schedule


def test_cosine_warms_up_linearly_then_decays_to_zero():
    rates = [cosine_with_warmup(step, peak=1e-3, total=10, warmup=4) for step in range(11)]
    assert rates[:4] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])
    assert rates[4] == pytest.approx(1e-3)
    assert rates[7] == pytest.approx(0.5e-3)  # half way through the decay
    assert rates[10] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(rates[4:], rates[5:]))


def test_one_cycle_peaks_after_30_percent_and_ends_near_zero():
    rates = [one_cycle(step, peak=1.0, total=100) for step in range(101)]
    assert rates[0] == pytest.approx(1 / 25)
    assert max(rates) == pytest.approx(1.0) and int(np.argmax(rates)) == 30
    assert rates[100] == pytest.approx(1 / 25 / 1e4)


def _kinds(callbacks):
    return [type(c).__name__ for c in callbacks]


def test_fine_tune_phases_get_a_warm_up_of_at_most_half_the_phase():
    config = TrainConfig(mode="fine-tune", warmup_epochs=1, early_stopping_patience=0)
    callbacks, plateau, early = policy_callbacks(config, monitor="val_loss", learning_rate=1e-3,
                                                 steps=40, warmup_steps=10)
    (schedule,) = callbacks
    assert isinstance(schedule, StepSchedule) and plateau is None and early is None
    assert (schedule.kind, schedule.peak, schedule.total_steps, schedule.warmup_steps) == (
        "cosine", 1e-3, 40, 10)
    # A one-epoch phase with a one-epoch warm-up: the warm-up takes half of it, not all.
    (short,), _, _ = policy_callbacks(config, monitor="val_loss", learning_rate=1e-3, steps=10,
                                      warmup_steps=10)
    assert short.warmup_steps == 5


def test_one_phase_modes_halve_the_rate_on_a_plateau():
    config = TrainConfig(mode="full-retrain", lr_patience=3)
    callbacks, plateau, early = policy_callbacks(config, monitor="val_loss", learning_rate=1e-3,
                                                 steps=40, warmup_steps=10)
    assert _kinds(callbacks) == ["ResumableReduceLROnPlateau", "ResumableEarlyStopping"]
    assert plateau.factor == 0.5 and plateau.patience == 3 and early is callbacks[1]


def test_step_schedule_sets_the_rate_of_every_step_from_the_optimizer():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(1.0), "mse")
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(float(self.model.optimizer.learning_rate.numpy()))

    schedule = StepSchedule("cosine", peak=0.1, total_steps=6, warmup_steps=2)
    model.fit(np.zeros((12, 2)), np.zeros((12, 1)), batch_size=2, epochs=1, verbose=0,
              callbacks=[schedule, Record()])
    assert seen == pytest.approx([cosine_with_warmup(s, peak=0.1, total=6, warmup=2)
                                  for s in range(6)])
    assert seen[:2] == pytest.approx([0.05, 0.1])
