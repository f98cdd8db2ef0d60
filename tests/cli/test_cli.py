"""The CLI through Click's CliRunner, error paths included."""

import json

import pytest
from click.testing import CliRunner

from cli.main import main


@pytest.fixture()
def runner():
    return CliRunner()


def test_help_lists_commands(runner):
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("list", "info", "train", "predict"):
        assert command in result.output


def test_list_and_info(runner):
    result = runner.invoke(main, ["list", "lenet*"])
    assert result.exit_code == 0, result.output
    line = next(l for l in result.output.splitlines() if l.startswith("lenet5"))
    assert "61.7K" in line and "32x32x1" in line
    result = runner.invoke(main, ["list", "lenet*", "--json"])
    (row,) = json.loads(result.output)
    assert row["params_total"] == 61_706 and row["macs"] == 416_520
    result = runner.invoke(main, ["info", "lenet5", "--json"])
    assert json.loads(result.output)["paper"].startswith("LeCun")


def test_unknown_model_is_one_clean_line(runner):
    result = runner.invoke(main, ["info", "lenet"])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: unknown model 'lenet'. Did you mean lenet5")
    assert line.endswith("Run 'zoo list' to see the registered models.")
    result = runner.invoke(main, ["list", "nothing*"])
    assert result.exit_code == 1 and "no model matches" in result.output


def test_train_then_predict(runner, image_folder, tmp_path):
    out = tmp_path / "run"
    args = ["train", str(image_folder), "--model", "lenet5", "--mode", "full-retrain",
            "--weights", "none", "--epochs", "2", "--batch-size", "8", "--output", str(out)]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "validation accuracy" in result.output
    assert (out / "saved_model" / "saved_model.pb").is_file()

    again = runner.invoke(main, args)
    assert again.exit_code == 1
    assert "already exists" in again.output and "--overwrite" in again.output
    assert "Traceback" not in again.output

    image = next(image_folder.glob("red/*.png"))
    broken = tmp_path / "broken.jpg"
    broken.write_text("<html>not an image</html>")
    result = runner.invoke(main, ["predict", str(out), str(image), str(broken), "--json",
                                  "--top-k", "2"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert rows[0]["path"] == str(image) and len(rows[0]["predictions"]) == 2
    assert {p["label"] for p in rows[0]["predictions"]} <= {"red", "green", "blue"}
    assert rows[1]["path"] == str(broken) and "error" in rows[1]


@pytest.mark.parametrize("args,message", [
    (["train", ".", "--output", "x", "--mode", "sideways"], "Invalid value for '--mode'"),
    (["train", ".", "--output", "x", "--epochs", "-1"], "Invalid value for '--epochs'"),
    (["predict", "/no/such/run", "a.png"], "does not exist"),
])
def test_usage_errors_exit_2_without_traceback(runner, args, message):
    result = runner.invoke(main, args)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_train_missing_data_exits_1_naming_it(runner, tmp_path):
    result = runner.invoke(main, ["train", "/no/such/dir", "--model", "lenet5", "--weights",
                                  "none", "--output", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "/no/such/dir" in result.output and "Traceback" not in result.output


def test_train_bad_model_name_exits_1(runner, image_folder, tmp_path):
    result = runner.invoke(main, ["train", str(image_folder), "--model", "resnet5O",
                                  "--weights", "none", "--output", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "unknown model 'resnet5O'" in result.output


def test_train_resume_via_cli(runner, image_folder, tmp_path):
    """A run whose checkpoint says epoch 1 of 2 continues with --resume and finishes."""
    import transfer
    from transfer.checkpoint import load_state

    out = tmp_path / "run"
    transfer.train(image_folder, output=out, model="lenet5", mode="full-retrain", weights=None,
                   epochs=2, batch_size=8, verbose=0, early_stopping_patience=0)
    assert load_state(out) == {"finished": True}
    result = runner.invoke(main, ["train", "--resume", str(out)])
    assert result.exit_code == 1 and "already finished" in result.output
    result = runner.invoke(main, ["train", str(image_folder), "--resume", str(out)])
    assert result.exit_code == 2 and "--resume takes the run directory alone" in result.output
    result = runner.invoke(main, ["train", str(image_folder)])
    assert result.exit_code == 2 and "--output" in result.output


def test_fine_tune_top_blocks_with_discriminative_lrs_via_cli(runner, image_folder, tmp_path):
    out = tmp_path / "ft"
    result = runner.invoke(main, [
        "train", str(image_folder), "--model", "lenet5", "--mode", "fine-tune", "--weights",
        "none", "--epochs", "1", "--fine-tune-epochs", "1", "--batch-size", "8",
        "--unfreeze-top", "2", "--discriminative-lr", "100", "--output", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    head, fine = metrics["phases"]
    assert (head["phase"], head["trainable_weights"]) == ("head", 2)
    # LeNet-5's blocks are c1, c3, c5: the top two are c3 and c5 (kernel + bias each) + head.
    assert (fine["unfreeze_from"], fine["trainable_weights"]) == ("c3", 6)
    assert fine["batchnorm"] == "frozen"  # classification's default (fine_tune_batchnorm auto)
    # c3 at 1/100 of the fine-tune rate, c5 at 1/10, the head at the full rate
    assert "discriminative learning rates (x 1.00e-04): c3 0.01, c5 0.1, head 1" in result.output
    result = runner.invoke(main, ["train", str(image_folder), "--model", "lenet5", "--weights",
                                  "none", "--unfreeze-top", "9", "--output", str(tmp_path / "x")])
    assert result.exit_code == 1 and "--unfreeze-top must be between 1 and 3" in result.output
    result = runner.invoke(main, ["train", str(image_folder), "--model", "lenet5", "--weights",
                                  "none", "--unfreeze-from", "c4", "--output", str(tmp_path / "x")])
    assert result.exit_code == 1
    assert "unknown block 'c4' for --unfreeze-from; the blocks of 'lenet5' are: c1, c3, c5" \
        in result.output
    assert not (tmp_path / "x").exists()  # refused before the run directory was made


@pytest.mark.parametrize("strategy,tf_config,message", [
    ("tpu", None, "this machine has no TPU"),
    ("multiworker", "{not json", "TF_CONFIG is not a valid cluster spec"),
    ("multiworker", '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", '
                    '"index": 3}}', "task index 3 is outside its 1 worker"),
])
def test_unusable_strategy_is_one_clean_line(runner, image_folder, tmp_path, monkeypatch,
                                             strategy, tf_config, message):
    monkeypatch.delenv("TPU_NAME", raising=False)
    if tf_config:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    result = runner.invoke(main, ["train", str(image_folder), "--model", "lenet5", "--weights",
                                  "none", "--strategy", strategy, "--output",
                                  str(tmp_path / "r")])
    assert result.exit_code == 1 and message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "r").exists()  # nothing written before the strategy was usable


@pytest.mark.slow  # 12 s: a fine-tune run; the policies' parsing is tested fast in test_config
def test_augment_policy_runs_and_is_recorded(runner, image_folder, tmp_path):
    import keras

    from transfer.model import augmentation

    # The default policy builds the layers (and seeds) augmentation always had.
    assert [type(layer).__name__ for layer in augmentation(7).layers] == [
        "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomBrightness",
        "RandomContrast"]
    out = tmp_path / "digits"
    result = runner.invoke(main, ["train", str(image_folder), "--model", "lenet5", "--mode",
                                  "full-retrain", "--weights", "none", "--epochs", "1",
                                  "--augment", "digits", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["augment"] == "scale,rotate"
    model = keras.saving.load_model(out / "model.keras")
    kinds = [type(layer).__name__ for layer in model.get_layer("augmentation").layers]
    assert kinds == ["RandomRotation", "RandomZoom"]  # rotate, then scale
    assert "`scale,rotate`" in (out / "MODEL_CARD.md").read_text()
    result = runner.invoke(main, ["train", str(image_folder), "--model", "lenet5", "--augment",
                                  "--mode", "full-retrain", "--weights", "none", "--epochs",
                                  "0", "--output", str(tmp_path / "default")])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "default" / "config.json").read_text())
    assert saved["augment"] == "flip,crop,rotate,colour"


def test_train_into_an_output_that_cannot_be_made_is_one_clean_line(runner, image_folder,
                                                                    tmp_path):
    (tmp_path / "notes.txt").write_text("a file")
    out = tmp_path / "notes.txt" / "run"
    result = runner.invoke(main, ["train", str(image_folder), "--model", "lenet5", "--weights",
                                  "none", "--epochs", "1", "--output", str(out)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    (line,) = [l for l in result.output.splitlines() if l.startswith("Error:")]
    assert f"output {str(out)!r} cannot be created" in line and "--output" in line
