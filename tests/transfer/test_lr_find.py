import keras
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli.main import main
from transfer.lr_find import lr_find, suggest


def test_suggest_picks_the_steepest_descent():
    rates = list(np.logspace(-5, 0, 51))
    # Loss falls fastest around 1e-3, bottoms out at 1e-1, then diverges.
    losses = [2.0 - 1.5 / (1 + np.exp(-4 * (np.log10(r) + 3))) for r in rates]
    losses = [l if r < 0.1 else l + 20 * (r - 0.1) for l, r in zip(losses, rates)]
    assert suggest(rates, losses) == pytest.approx(1e-3, rel=0.3)


class _Snapshot(keras.callbacks.Callback):
    """Weights at the start and at the end of the sweep (before lr_find restores them)."""

    def on_train_begin(self, logs=None):
        self.before = [np.array(w) for w in self.model.weights]

    def on_train_end(self, logs=None):
        self.after = [np.array(w) for w in self.model.weights]


def test_lr_find_sweeps_restores_weights_and_plots(image_folder, tmp_path):
    snapshot = _Snapshot()
    result = lr_find(image_folder, model="lenet5", mode="full-retrain", weights=None,
                     batch_size=8, steps=40, start=1e-5, end=10.0,
                     plot_path=tmp_path / "lr.png", callbacks=[snapshot])
    # The sweep really trained, and the model came back exactly as it was before it.
    assert any(not np.array_equal(a, b) for a, b in zip(snapshot.before, snapshot.after))
    restored = [np.array(w) for w in result.model.weights]
    assert len(restored) == len(snapshot.before)
    for now, before in zip(restored, snapshot.before):
        np.testing.assert_array_equal(now, before)
    rates = result.learning_rates
    assert 3 <= len(rates) <= 40 and rates == sorted(rates)
    assert rates[0] == pytest.approx(1e-5, rel=1e-3)
    assert 1e-5 <= result.suggestion <= 10.0
    with Image.open(result.plot) as image:
        assert image.format == "PNG" and image.size == (600, 400)


def test_lr_find_cli(image_folder, tmp_path):
    out = tmp_path / "sweep.png"
    result = CliRunner().invoke(main, ["lr-find", str(image_folder), "--model", "lenet5",
                                       "--mode", "full-retrain", "--weights", "none",
                                       "--steps", "20", "--batch-size", "8", "--plot", str(out)])
    assert result.exit_code == 0, result.output
    assert "suggested learning rate" in result.output and out.is_file()
