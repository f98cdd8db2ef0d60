"""Options of train, lr-find and data check, built from TrainConfig's fields; their errors."""

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cli.main import main

REPO = Path(__file__).resolve().parents[2]

# Every option as `zoo train --help` (lr-find, data check) listed it before the options were
# built from TrainConfig: names, Click type (ranges as Click prints them) and default. The
# changes are --seed, now checked against numpy's seed range instead of failing later in
# keras.utils.set_random_seed, and the ceilings of sizes and counts (beyond them a run ran out
# of memory or failed to convert the number to a tensor). (Defaults that were unset are None;
# switches default to False.)
TRAIN = [
    "--model, -m text 'keras_mobilenetv2'",
    "--trust-model boolean False",  # issue 28
    "--mode [feature-extractor|fine-tune|full-retrain] 'fine-tune'",
    "--weights text 'imagenet'",
    "--task [auto|classification|segmentation|detection] 'auto'",  # one task per package
    "--backbone text None",
    "--output, -o directory None",
    "--resume directory None",
    "--overwrite boolean None",
    "--epochs 0<=x<=1000000 10",
    "--fine-tune-epochs 0<=x<=1000000 10",
    "--image-size 8<=x<=4096 None",
    "--batch-size integer|auto 32",
    "--optimizer [adam|adamw|sgd] 'adam'",
    "--lr x>0 0.001",
    "--fine-tune-lr-factor 0<x<=1 None",  # the task decides: 0.1 classification, 1 segmentation
    "--fine-tune-batchnorm [auto|frozen|train] 'auto'",  # the task decides, like the factor
    "--schedule [auto|plateau|cosine|onecycle|constant] 'auto'",
    "--warmup-epochs 0<=x<=1000000 2",
    "--lr-patience 1<=x<=1000000 2",
    "--patience 0<=x<=1000000 5",
    "--weight-decay x>=0 0.0001",
    "--dropout 0<=x<1 0.2",
    "--label-smoothing 0<=x<1 None",
    "--unfreeze-from text None",
    "--unfreeze-top 1<=x<=10000 None",
    "--discriminative-lr x>=1 1.0",
    "--val-split 0<x<1 0.2",
    "--test-split 0<=x<1 0.0",
    "--min-per-class 1<=x<=1000000 2",
    "--drop-small-classes boolean False",
    "--cache-dir directory None",
    "--tfds-data-dir directory None",
    "--augment text None",  # a policy or a list (alone: the default policy); None: the task's
    "--mixup x>=0 0.0",
    "--cutmix x>=0 0.0",
    "--class-weights [auto|on|off] 'auto'",
    # added with segmentation; detection's assignment+box losses with detection
    "--loss [auto|ce|dice|ce+dice|focal|tal+ciou|tal+giou|centre+ciou|centre+giou] 'auto'",
    "--ignore-index 0<=x<=255 None",
    "--palette text None",
    "--bn-momentum float|auto 'auto'",  # issue 15: BatchNorm statistics of short runs
    "--cache-features / --no-cache-features boolean True",
    # issue 26: the view cache
    "--cache-views integer|auto 'auto'",
    "--cache-dtype [float32|float16] 'float32'",
    "--mirror-check [auto|off|kept|dropped] 'auto'",
    "--memory-cache-mb 0<=x<=10000000 2048",
    "--precision [float32|mixed_float16|mixed_bfloat16] 'float32'",
    "--jit / --no-jit boolean False",
    "--strategy [default|mirrored|multiworker|tpu] 'default'",
    "--seed 0<=x<=4294967295 42",
    "--deterministic boolean False",
    "--custom-objects text None",  # issue 28
]
LR_FIND = [
    "--model, -m text 'keras_mobilenetv2'",
    "--trust-model boolean False",  # issue 28
    "--mode [feature-extractor|fine-tune|full-retrain] 'fine-tune'",
    "--weights text 'imagenet'",
    "--image-size 8<=x<=4096 None",
    "--batch-size 1<=x<=65536 32",
    "--optimizer [adam|adamw|sgd] 'adam'",
    "--steps 10<=x<=1000000 200",
    "--start x>0 1e-07",
    "--end x>0 10.0",
    "--plot file 'lr_find.png'",
    "--force boolean None",
    "--seed 0<=x<=4294967295 42",
    "--custom-objects text None",  # issue 28
]

DATA_CHECK = [
    "--json boolean None",
    "--cache-dir directory None",
    "--val-split 0<x<1 0.2",
    "--test-split 0<=x<1 0.0",
    "--min-per-class 1<=x<=1000000 2",
    "--drop-small-classes boolean False",
    "--palette text None",  # added with segmentation
    "--ignore-index 0<=x<=255 None",
    "--tfds-data-dir directory None",
    "--workers 1<=x<=1024 None",
]


def _describe(option: click.Option) -> str:
    kind = option.type
    if isinstance(kind, click.Choice):
        text = "[" + "|".join(kind.choices) + "]"
    elif isinstance(kind, (click.IntRange, click.FloatRange)):
        text = kind._describe_range()
    else:
        text = kind.name
    names = " / ".join(filter(None, [", ".join(option.opts), ", ".join(option.secondary_opts)]))
    default = None if option.default is click.core.UNSET else option.default
    return f"{names} {text} {default!r}"


@pytest.fixture()
def runner():
    return CliRunner()


@pytest.mark.parametrize("command,expected", [
    (["train"], TRAIN), (["lr-find"], LR_FIND), (["data", "check"], DATA_CHECK)])
def test_help_lists_the_same_options_as_before(runner, command, expected):
    found = main
    for name in command:
        found = found.commands[name]
    options = [p for p in found.params if isinstance(p, click.Option)]
    assert [_describe(p) for p in options] == expected
    result = runner.invoke(main, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    # "  -m, --model TEXT    Registry name ..." -> {"-m", "--model"}, in the order listed.
    listed = [set(re.findall(r"(?<!\w)--?[\w-]+", line.split("  ")[1]))
              for line in result.output.splitlines() if line.startswith("  -")]
    assert listed == [{*p.opts, *p.secondary_opts} for p in options] + [{"-h", "--help"}]


def test_help_texts_come_from_the_config_fields(runner):
    from transfer.config import TrainConfig

    helps = {f.name: f.metadata["help"] for f in dataclasses.fields(TrainConfig)}
    result = runner.invoke(main, ["train", "--help"], terminal_width=400)
    for name in ("mixup", "memory_cache_mb", "discriminative_lr", "val_split"):
        assert helps[name] in result.output


@pytest.mark.parametrize("args,option", [
    (["--cutmix", "-1"], "--cutmix"),
    (["--fine-tune-epochs", "-1"], "--fine-tune-epochs"),
    (["--lr-patience", "0"], "--lr-patience"),
    (["--memory-cache-mb", "-5"], "--memory-cache-mb"),
    (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", "many"], "--batch-size"),
    (["--val-split", "1"], "--val-split"),
    (["--lr", "0"], "--lr"),
    (["--mode", "sideways"], "--mode"),
    (["--seed", "-1"], "--seed"),
    (["-m", ""], "--model"),
    # Ceilings: an out-of-memory error a minute later, or a failed tensor conversion, before.
    (["--image-size", "100000"], "--image-size"),
    (["--epochs", "9" * 20], "--epochs"),
    (["--fine-tune-epochs", str(2**63)], "--fine-tune-epochs"),
    (["--batch-size", str(2**31)], "--batch-size"),
    (["--patience", "9" * 20], "--patience"),
    (["--lr-patience", "9" * 20], "--lr-patience"),
    (["--warmup-epochs", "9" * 20], "--warmup-epochs"),
    (["--unfreeze-top", "9" * 20], "--unfreeze-top"),
    (["--min-per-class", "9" * 20], "--min-per-class"),
    (["--memory-cache-mb", "9" * 20], "--memory-cache-mb"),
    # Rules across two fields are checked by TrainConfig and still name the option to change.
    (["--val-split", "0.5", "--test-split", "0.5"], "--test-split"),
    (["--unfreeze-from", "c3", "--unfreeze-top", "1"], "--unfreeze-top"),
    (["--mode", "full-retrain", "--discriminative-lr", "10"], "--discriminative-lr"),
])
def test_train_bad_value_is_one_error_line_naming_the_option(runner, tmp_path, args, option):
    out = tmp_path / "run"
    result = runner.invoke(main, ["train", str(tmp_path), "--output", str(out), *args])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and f"Invalid value for '{option}'" in errors[0], result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_an_empty_model_name_names_the_field_rule(runner, tmp_path):
    result = runner.invoke(main, ["train", str(tmp_path), "-o", str(tmp_path / "r"), "-m", ""])
    assert "model must be a non-empty string; got ''" in result.output


@pytest.mark.parametrize("args,option", [
    (["lr-find", "--batch-size", "auto"], "--batch-size"),  # the sweep needs a fixed size
    (["lr-find", "--image-size", "4"], "--image-size"),
    (["lr-find", "--optimizer", "rmsprop"], "--optimizer"),
    (["data", "check", "--val-split", "0"], "--val-split"),
    (["data", "check", "--min-per-class", "0"], "--min-per-class"),
])
def test_lr_find_and_data_check_bad_value_is_one_error_line_naming_the_option(
        runner, tmp_path, args, option):
    result = runner.invoke(main, [*args, str(tmp_path)])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and f"Invalid value for '{option}'" in errors[0], result.output


def test_zoo_help_does_not_import_tensorflow():
    """Options are built from TrainConfig on first use, so listing the commands stays instant."""
    code = ("import sys\nfrom click.testing import CliRunner\nfrom cli.main import main\n"
            "result = CliRunner().invoke(main, ['--help'])\n"
            "assert result.exit_code == 0 and 'lr-find' in result.output, result.output\n"
            "print(sorted(m for m in ('tensorflow', 'keras', 'transfer') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("args,option,why", [
    (["--mode", "full-retrain", "--fine-tune-epochs", "3"], "--fine-tune-epochs",
     "fine_tune_epochs applies to mode 'fine-tune' only, and the mode is 'full-retrain'"),
    # set to its default, but set: the CLI knows what the user typed
    (["--mode", "feature-extractor", "--fine-tune-epochs", "10"], "--fine-tune-epochs",
     "fine_tune_epochs applies to mode 'fine-tune' only, and the mode is 'feature-extractor'"),
    (["--loss", "dice"], "--loss",
     "loss applies to segmentation and detection only, and the task is 'classification'"),
    (["--task", "segmentation", "--model", "unet", "--backbone", "lenet5", "--mode",
      "full-retrain", "--mixup", "0.2"], "--mixup",
     "mixup applies to classification only, and the task is 'segmentation'"),
    (["--task", "segmentation", "--model", "unet", "--backbone", "lenet5", "--mode",
      "full-retrain", "--cutmix", "1"], "--cutmix",
     "cutmix applies to classification only, and the task is 'segmentation'"),
])
def test_train_refuses_an_option_that_does_nothing_for_the_task_or_mode(runner, tmp_path, args,
                                                                        option, why):
    out, data = tmp_path / "run", tmp_path / "data"
    data.mkdir()
    result = runner.invoke(main, ["train", str(data), "--output", str(out), "--model",
                                  "lenet5", "--weights", "none", *args])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: Invalid value for '{option}': {why}; drop it, or choose a task "
                      f"and mode it applies to"], result.output
    assert not out.exists()


@pytest.mark.parametrize("args,option", [
    (["--epochs", "5"], "--epochs"), (["--lr", "0.1"], "--lr"), (["--overwrite"], "--overwrite"),
    (["--no-cache-features"], "--cache-features")])
def test_resume_refuses_training_options(runner, tmp_path, args, option):
    result = runner.invoke(main, ["train", "--resume", str(tmp_path), *args])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: {option} cannot change a resumed run: --resume continues with the "
                      f"settings of its config.json; drop {option}, or train a new run with "
                      f"--output"], result.output


@pytest.mark.parametrize("args,option", [
    # Options of commands not built from TrainConfig have the same ceilings; the bad option
    # comes first, so Click checks it before the arguments.
    (["predict", "--batch-size", str(2**31), "m.keras", "x.png"], "--batch-size"),
    (["predict", "--top-k", "9" * 20, "m.keras", "x.png"], "--top-k"),
    (["evaluate", "--batch-size", "9" * 20, "run"], "--batch-size"),
    (["lr-find", "--steps", "9" * 20, "data"], "--steps"),
    (["viz", "filters", "--image-size", "100000", "lenet5"], "--image-size"),
    (["viz", "maximize", "--steps", "9" * 20, "lenet5"], "--steps"),
    (["viz", "maximize", "--octaves", "9" * 20, "lenet5"], "--octaves"),
    (["viz", "maximize", "--seed", "9" * 20, "lenet5"], "--seed"),
    (["embed", "--batch-size", "9" * 20, "lenet5", "data", "index"], "--batch-size"),
    (["list", "--input-size", "100000"], "--input-size"),
    (["data", "check", "--workers", "9" * 20, "data"], "--workers"),
])
def test_other_commands_refuse_absurd_sizes_naming_the_option(runner, args, option):
    result = runner.invoke(main, args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and f"Invalid value for '{option}'" in errors[0], result.output


def test_the_cli_ceilings_are_the_configs():
    from cli import options
    from transfer import config

    assert (options.IMAGE_SIZE.max, options.BATCH_SIZE.max, options.SEED.max) == (
        config.MAX_IMAGE_SIZE, config.MAX_BATCH_SIZE, 2**32 - 1)
    assert options.COUNT.max == config.MAX_EPOCHS
