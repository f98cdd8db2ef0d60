"""TrainConfig: every field carries its own check, and a bad value names that field."""

import dataclasses
import json

import numpy as np
import pytest

from transfer.config import (
    Augment,
    Choice,
    Flag,
    Range,
    Text,
    TrainConfig,
    TransferMode,
    check_field,
)
from transfer.errors import ConfigError

# Values each field must refuse. Written by hand, not derived from the checks, so the test says
# what the rules are; a new field without an entry (or without a check) fails the test below.
BAD = {
    "model": ["", None, 3],
    "mode": ["half-retrain", None, "FINE_TUNE"],
    "weights": [3, b"imagenet"],
    "image_size": [7, 0, 32.0, "224", 100_000],
    "batch_size": [0, -8, "32", "Auto", 8.0, True, 2**31],
    "epochs": [-1, 1.5, None, 10**20, 1_000_001],
    "fine_tune_epochs": [-1, "10", 2**63],
    "optimizer": ["rmsprop", "Adam", None],
    "learning_rate": [0, -1e-3, float("nan"), float("inf"), "1e-3"],
    "fine_tune_lr_factor": [0, 1.5, -0.1],
    "fine_tune_batchnorm": ["inference", "Train", None, True],
    "momentum": [-0.1, 1.01, None],
    "weight_decay": [-1e-4, "0"],
    "dropout": [1, 1.0, -0.1],
    "label_smoothing": [1, -0.5],
    "unfreeze_from": ["", 3],
    "unfreeze_top": [0, -1, 2.5, 2**31],
    "discriminative_lr": [0.5, 0, None],
    "val_split": [0, 1, 1.5, -0.1],
    "test_split": [-0.1, 1],
    "min_per_class": [0, -2, 1.5, 2**63],
    "drop_small_classes": ["yes", 1, None],
    "seed": [-1, 2**32, 4.2, "42"],
    "augment": ["no", 0, "flip,mirror", "flip,flip"],
    "lr_patience": [-1, 0, 1.5, 2**31],
    "early_stopping_patience": [-1, "5", 10**20],
    "class_weights": ["balanced", True],
    "imbalance_threshold": [0.5, -1, None],
    "cache_features": ["false", None],
    "cache_views": [0, 65, 2.5, "many", None],
    "cache_dtype": ["float64", "half", None],
    "mirror_check": ["on", True, None],
    "schedule": ["step", None],
    "warmup_epochs": [-1, 0.5, 2**31],
    "mixup": [-0.2, "0.2"],
    "cutmix": [-1, float("-inf")],
    "deterministic": [1, "true"],
    "trust_model": [1, "yes", None],
    "precision": ["float16", "bfloat16"],
    "jit": ["on", None],
    "strategy": ["mirror", None],
    "memory_cache_mb": [-1, 2.5, None, 2**63],
    "task": ["keypoints", None, 3],
    "bn_momentum": [-0.1, 1.0, "fast", None],
    "backbone": [3, ["keras_mobilenetv2"]],
    "loss": ["l2", None],
    "ignore_index": [-1, 256, 2.5],
    "palette": ["", 3],
}

FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]


@pytest.mark.parametrize("name", FIELDS)
def test_every_field_refuses_a_bad_value_naming_that_field(name):
    assert name in BAD, f"add bad values for the new field {name!r} to BAD"
    for value in BAD[name]:
        with pytest.raises(ConfigError) as caught:
            TrainConfig(**{name: value})
        message = str(caught.value)
        assert message.startswith(f"{name} must be "), message
        assert message.endswith(f"; got {value!r}"), message
        assert "\n" not in message
        assert caught.value.field == name


@pytest.mark.parametrize("name", FIELDS)
def test_every_field_has_a_check_and_help_and_its_default_passes(name):
    field = next(f for f in dataclasses.fields(TrainConfig) if f.name == name)
    assert isinstance(field.metadata["check"], (Range, Choice, Flag, Text, Augment))
    help_text = field.metadata["help"]
    assert help_text and "\n" not in help_text
    assert check_field(name, field.default) == field.default


@pytest.mark.parametrize("kwargs,message", [
    # The reports that motivated this: each names its own field now.
    ({"cutmix": -1}, "cutmix must be >= 0; got -1"),
    ({"fine_tune_epochs": -1}, "fine_tune_epochs must be an integer in [0, 1000000]; got -1"),
    ({"lr_patience": -1}, "lr_patience must be an integer in [1, 1000000]; got -1"),
    ({"momentum": -0.9}, "momentum must be in [0, 1]; got -0.9"),
    ({"memory_cache_mb": -1}, "memory_cache_mb must be an integer in [0, 10000000]; got -1"),
    ({"batch_size": 0}, "batch_size must be an integer in [1, 65536] or 'auto'; got 0"),
    ({"image_size": 4}, "image_size must be an integer in [8, 4096] or None; got 4"),
    # Sizes and counts have a ceiling: beyond it a run ran out of memory a minute later, or
    # died converting the number to a tensor.
    ({"image_size": 100_000}, "image_size must be an integer in [8, 4096] or None; got 100000"),
    ({"epochs": 10**19}, f"epochs must be an integer in [0, 1000000]; got {10**19}"),
    ({"batch_size": 2**31},
     "batch_size must be an integer in [1, 65536] or 'auto'; got 2147483648"),
    ({"val_split": 1.0}, "val_split must be in (0, 1); got 1.0"),
    ({"optimizer": "rmsprop"}, "optimizer must be one of 'adam', 'adamw', 'sgd'; got 'rmsprop'"),
    ({"mode": "sideways"},
     "mode must be one of 'feature-extractor', 'fine-tune', 'full-retrain'; got 'sideways'"),
])
def test_messages_are_exact(kwargs, message):
    with pytest.raises(ConfigError) as caught:
        TrainConfig(**kwargs)
    assert str(caught.value) == message


@pytest.mark.parametrize("kwargs,field,message", [
    ({"val_split": 0.5, "test_split": 0.5}, "test_split",
     "val_split + test_split must be < 1 (the rest trains); got val_split=0.5, test_split=0.5"),
    ({"unfreeze_from": "conv4", "unfreeze_top": 1}, "unfreeze_top",
     "unfreeze_from and unfreeze_top cannot both be given; got unfreeze_from='conv4', "
     "unfreeze_top=1"),
    ({"mode": "full-retrain", "discriminative_lr": 10}, "discriminative_lr",
     "discriminative_lr applies to the fine-tune phase; use mode 'fine-tune' or "
     "discriminative_lr=1; got discriminative_lr=10.0 with mode='full-retrain'"),
])
def test_rules_across_two_fields_name_the_field_to_change(kwargs, field, message):
    with pytest.raises(ConfigError) as caught:
        TrainConfig(**kwargs)
    assert (caught.value.field, str(caught.value)) == (field, message)


@pytest.mark.parametrize("kwargs", [
    {"dropout": 0, "label_smoothing": 0.0, "momentum": 0, "weight_decay": 0},
    {"momentum": 1, "fine_tune_lr_factor": 1, "test_split": 0.79, "val_split": 0.2},
    {"batch_size": "auto", "image_size": None, "unfreeze_top": 1, "label_smoothing": None},
    {"batch_size": 1, "image_size": 8, "seed": 0, "epochs": 0, "fine_tune_epochs": 0},
    {"seed": 2**32 - 1, "lr_patience": 1, "early_stopping_patience": 0, "memory_cache_mb": 0},
    {"imbalance_threshold": 1, "discriminative_lr": 1, "mixup": 0.4, "cutmix": 1.0},
    {"mode": TransferMode.FEATURE_EXTRACTOR, "weights": None, "unfreeze_from": "conv4"},
    {"image_size": 4096, "batch_size": 65536, "epochs": 10**6, "fine_tune_epochs": 10**6},
    {"lr_patience": 10**6, "early_stopping_patience": 10**6, "warmup_epochs": 10**6},
    {"unfreeze_top": 10**4, "min_per_class": 10**6, "memory_cache_mb": 10**7},
])
def test_values_on_the_edges_are_accepted(kwargs):
    config = TrainConfig(**kwargs)
    for name, value in kwargs.items():
        assert getattr(config, name) == value


def test_values_are_normalised():
    config = TrainConfig(mode="full-retrain", weights="none", epochs=np.int64(3), mixup=1,
                         learning_rate=np.float32(0.5))
    assert config.mode is TransferMode.FULL_RETRAIN
    assert config.weights is None
    assert type(config.epochs) is int and config.epochs == 3
    assert type(config.mixup) is float and type(config.learning_rate) is float
    assert TrainConfig(weights="").weights is None and TrainConfig(weights="None").weights is None
    json.dumps(config.to_dict())  # numpy numbers would not serialise


def test_replace_checks_the_changed_field():
    with pytest.raises(ConfigError, match="^dropout must be in"):
        TrainConfig().replace(dropout=1.0)


def test_stays_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().epochs = 3  # type: ignore[misc]


def test_config_json_of_an_earlier_run_still_loads(tmp_path):
    # Written by the version before the per-field checks (zoo train ... --batch-size auto,
    # resolved to 64); every field present, JSON types as json.dumps wrote them.
    earlier = {
        "model": "lenet5", "mode": "full-retrain", "weights": None, "image_size": 32,
        "batch_size": 64, "epochs": 4, "fine_tune_epochs": 10, "optimizer": "sgd",
        "learning_rate": 0.001, "fine_tune_lr_factor": 0.1, "momentum": 0.9,
        "weight_decay": 0.0001, "dropout": 0.2, "label_smoothing": 0.0, "unfreeze_from": None,
        "unfreeze_top": None, "discriminative_lr": 1.0, "val_split": 0.2, "test_split": 0.0,
        "min_per_class": 2, "drop_small_classes": False, "seed": 42, "augment": False,
        "lr_patience": 2, "early_stopping_patience": 0, "class_weights": "auto",
        "imbalance_threshold": 1.5, "cache_features": True, "schedule": "plateau",
        "warmup_epochs": 0, "mixup": 0.0, "cutmix": 0.0, "deterministic": False,
        "precision": "float32", "jit": False, "strategy": "default", "memory_cache_mb": 2048,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(earlier, indent=2) + "\n")
    config = TrainConfig.load(path)
    later = {"task": "auto", "backbone": None, "loss": "auto", "ignore_index": None,
             "palette": None, "cache_views": "auto", "cache_dtype": "float32",  # added since
             "mirror_check": "off",  # an old run ran no mirror check, and resumes without one
             "augment": "",  # False, as the list of operations it means (none)
             "bn_momentum": "auto", "trust_model": False,
             # "auto" reaches an old run's resume, and means what it ran: BatchNorm frozen
             "fine_tune_batchnorm": "auto"}
    assert config.to_dict() == {**earlier, **later}
    config.save(tmp_path / "again.json")
    assert TrainConfig.load(tmp_path / "again.json") == config
    # Older files may lack later fields: those take their defaults.
    assert TrainConfig.from_dict({"model": "lenet5", "epochs": 2}).memory_cache_mb == 2048
    # A run from before the view cache that augmented trained on full forward passes, and
    # resumes so.
    path.write_text(json.dumps({**earlier, "mode": "fine-tune", "augment": "flip"}))
    assert TrainConfig.load(path).cache_features is False


def test_unknown_field_in_config_json_is_named():
    with pytest.raises(ConfigError, match=r"unknown config field\(s\) \['epoch'\]"):
        TrainConfig.from_dict({"epoch": 3})


@pytest.mark.parametrize("check,text", [
    (Range(), "a finite number"),
    (Range(integer=True), "an integer"),
    (Range(max=3, max_open=True), "< 3"),
    (Range(min=0.5, max=2.5), "in [0.5, 2.5]"),
    (Range(min=1, integer=True, none_ok=True, words=("auto",)),
     "an integer >= 1 or 'auto' or None"),
    (Choice(("a", "b")), "one of 'a', 'b'"),
    (Text(none_ok=True), "a non-empty string or None"),
])
def test_checks_describe_what_they_allow(check, text):
    assert check.describe() == text


@pytest.mark.parametrize("given,recorded", [
    (True, "flip,crop,rotate,colour"), (False, ""), ("none", ""), ("", ""),
    ("default", "flip,crop,rotate,colour"), ("digits", "scale,rotate"),
    ("rotate, Color,crop", "crop,rotate,colour"), ("vflip", "vflip"),
])
def test_augment_takes_a_policy_or_a_list_and_records_exactly_what_runs(given, recorded):
    assert TrainConfig(augment=given).augment == recorded


# ---- options that do nothing for the task or mode -------------------------------------------

def _limited_fields() -> list[str]:
    from transfer.config import ALWAYS, applies

    return [f.name for f in dataclasses.fields(TrainConfig) if applies(f.name) != ALWAYS]


def test_the_fields_limited_to_a_task_or_mode_are_these():
    assert sorted(_limited_fields()) == sorted([
        "fine_tune_epochs", "fine_tune_lr_factor", "unfreeze_from", "unfreeze_top",
        "fine_tune_batchnorm", "discriminative_lr", "cache_features", "cache_views",
        "cache_dtype", "mirror_check", "mixup", "cutmix", "backbone", "loss", "ignore_index",
        "palette"])


@pytest.mark.parametrize("name", _limited_fields())
def test_a_field_set_where_it_does_nothing_is_refused_naming_it(name):
    from transfer.config import TASK_NAMES, TransferMode, applies, check_applicable

    combos = [(task, mode) for task in TASK_NAMES for mode in TransferMode]
    refused = [(t, m) for t, m in combos if applies(name).why_not(t, m.value)]
    allowed = [(t, m) for t, m in combos if not applies(name).why_not(t, m.value)]
    assert refused and allowed
    for task, mode in allowed:
        check_applicable(TrainConfig(task=task, mode=mode), [name])
    for task, mode in refused:
        with pytest.raises(ConfigError, match=rf"^{name} applies to .* only, and the "
                                              rf"(task is '{task}'|mode is '{mode.value}'); "
                                              rf"drop it") as info:
            check_applicable(TrainConfig(task=task, mode=mode), [name])
        assert info.value.field == name
    # Unset (at its default) it is never refused, whatever the task and mode.
    for task, mode in refused:
        check_applicable(TrainConfig(task=task, mode=mode))


def test_without_a_list_the_fields_that_differ_from_their_defaults_are_checked():
    from transfer.config import check_applicable, explicit_fields

    config = TrainConfig(task="classification", mode="full-retrain", fine_tune_epochs=3,
                         epochs=2)
    assert explicit_fields(config) == ["mode", "epochs", "fine_tune_epochs", "task"]
    with pytest.raises(ConfigError, match="^fine_tune_epochs applies to mode 'fine-tune' only, "
                                          "and the mode is 'full-retrain'"):
        check_applicable(config)
    check_applicable(config.replace(mode="fine-tune"))
