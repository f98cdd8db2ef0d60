"""The view cache (transfer.views): cached and uncached training agree, views are what they say,
the view of each image is a function of (seed, epoch), and the fallbacks say why."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import transfer
from transfer import data as data_lib
from transfer.config import TrainConfig
from transfer.errors import ConfigError
from transfer.features import FeatureCache
from transfer.tasks import get_task
from transfer.views import epoch_views, view_count


def _train(folder, out, **settings):
    options = dict(weights=None, mode="fine-tune", epochs=2, fine_tune_epochs=2, batch_size=8,
                   optimizer="adam", learning_rate=3e-3, schedule="constant",
                   early_stopping_patience=0, seed=3,
                   deterministic=True, verbose=0)
    return transfer.train(folder, output=out, **{**options, **settings})


def _assert_same_run(cached, uncached):
    assert [r["phase"] for r in cached.history] == [r["phase"] for r in uncached.history]
    for got, want in zip(cached.history, uncached.history):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-4, abs=1e-6)
        assert got["val_loss"] == pytest.approx(want["val_loss"], rel=1e-4, abs=1e-6)
    for a, b in zip(cached.model.weights, uncached.model.weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5,
                                   err_msg=a.path)


def test_the_boundary_cache_trains_exactly_as_the_whole_model(image_folder, tmp_path, caplog):
    """LeNet-5 fine-tuned from block c5 (its default): the fine-tune phase on the cached
    outputs of c1 and c3 gives the losses and weights of full forward passes."""
    caplog.set_level("INFO", logger="transfer")
    settings = dict(model="lenet5", augment="none")
    cached = _train(image_folder, tmp_path / "cached", **settings)
    assert "the fine-tune phase trains on the cache: 1 view(s) per image" in caplog.text
    uncached = _train(image_folder, tmp_path / "plain", cache_features=False, **settings)
    assert uncached.history[-1]["loss"] < 0.97 * uncached.history[0]["loss"]  # it learns
    _assert_same_run(cached, uncached)
    # The whole model keeps the optimizer that trained it (its saved .keras too).
    assert cached.model.optimizer.iterations.numpy() == uncached.model.optimizer.iterations.numpy()


@pytest.mark.slow  # 25 s: a U-Net trained four times
def test_the_boundary_cache_of_a_segmenter_caches_the_skip_taps_below_it(seg_folder, tmp_path):
    """A U-Net on MobileNet fine-tuned from conv_dw_7: the decoder's skip taps from below the
    block are cached beside the boundary, and the run equals the uncached one."""
    settings = dict(model="unet", backbone="keras_mobilenet", image_size=64, augment="none",
                    unfreeze_from="conv_dw_7")
    cached = _train(seg_folder, tmp_path / "cached", **settings)
    uncached = _train(seg_folder, tmp_path / "plain", cache_features=False, **settings)
    _assert_same_run(cached, uncached)


def test_a_segmenter_boundary_split_computes_what_the_model_computes(seg_folder):
    from transfer.train import ResolvedRun
    from transfer.views import boundary_split

    config = TrainConfig(model="unet", backbone="keras_mobilenet", image_size=64,
                         mode="fine-tune", weights=None, unfreeze_from="conv_dw_7",
                         task="segmentation")
    resolved = ResolvedRun.of(config)
    model = resolved.task.build_model(config, num_classes=3, weights=None)
    _, head = resolved.task.feature_split(model)
    cut = boundary_split(model, head, unfreeze_from="conv_dw_7")
    # conv_dw_7 takes the stride-16 input; the stride-2, 4 and 8 taps are below it
    assert len(cut.lower.outputs) == 4
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(cut.upper(cut.lower(images)), model(images, training=False),
                               atol=1e-5)


def _identity_cache(split, task, config, k, targets=None):
    """The views themselves: an extractor that returns its input."""
    image = keras.Input((16, 16, 3))
    extractor = keras.Model(image, keras.layers.Identity()(image))
    cache = FeatureCache(None, memory_mb=64, image_size=16, verbose=0)
    arrays = cache.get(extractor, {"train": split}, batch_size=4,
                       views={"train": (k, lambda view: task.view_fn(config, view))},
                       targets={"train": targets} if targets is not None else None)
    return arrays["train"][0], cache


def _split(image_folder, count=6):
    paths = sorted(image_folder.rglob("*.png"))[:count]
    return data_lib.Split(tuple(str(p) for p in paths), tuple([0] * count))


def test_flip_views_are_the_image_and_its_mirror(image_folder):
    split = _split(image_folder)
    config = TrainConfig(mode="fine-tune", augment="flip")
    assert view_count(config) == 2
    views, _ = _identity_cache(split, get_task("classification"), config, 2)
    images = np.concatenate([x for x, _ in data_lib.make_dataset(
        split, image_size=16, batch_size=4, shuffle=False, cache=False)])
    n = len(split)
    assert views.shape == (2 * n, 16, 16, 3)
    np.testing.assert_array_equal(views[:n], images)
    np.testing.assert_array_equal(views[n:], images[:, :, ::-1])


def test_drawn_views_are_the_same_on_every_computation(image_folder):
    split = _split(image_folder)
    config = TrainConfig(mode="fine-tune", augment="crop,colour", seed=5)
    assert view_count(config) == 4
    first, _ = _identity_cache(split, get_task("classification"), config, 3)
    again, _ = _identity_cache(split, get_task("classification"), config, 3)
    n = len(split)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first[n:2 * n], first[:n])  # drawn views differ from the image
    assert not np.allclose(first[n:2 * n], first[2 * n:])  # and from each other


def test_mirrored_views_move_masks_and_boxes_with_the_image(image_folder):
    split = _split(image_folder, 4)
    config = TrainConfig(mode="fine-tune", augment="flip")
    masks = tf.constant(np.arange(4 * 16 * 16, dtype=np.uint8).reshape(4, 16, 16))
    _, cache = _identity_cache(split, get_task("segmentation"), config, 2, targets=masks)
    np.testing.assert_array_equal(cache.targets["train"][:4], masks.numpy())
    np.testing.assert_array_equal(cache.targets["train"][4:], masks.numpy()[:, :, ::-1])
    boxes = np.full((4, 2, 5), -1, np.float32)
    boxes[:, 0] = [1, 2, 3, 6, 9]  # class 1, x0 2, y0 3, x1 6, y1 9
    _, cache = _identity_cache(split, get_task("detection"), config, 2,
                               targets=tf.constant(boxes))
    np.testing.assert_array_equal(cache.targets["train"][4:, 0], [[1, 10, 3, 14, 9]] * 4)
    np.testing.assert_array_equal(cache.targets["train"][4:, 1], [[-1] * 5] * 4)  # padding


def test_the_view_of_each_image_is_a_function_of_seed_and_epoch():
    a = epoch_views(7, 3, 500, 2).numpy()
    np.testing.assert_array_equal(a, epoch_views(7, 3, 500, 2).numpy())
    assert not np.array_equal(a, epoch_views(7, 4, 500, 2).numpy())
    assert not np.array_equal(a, epoch_views(8, 3, 500, 2).numpy())
    assert set(a) == {0, 1} and 200 < a.sum() < 300  # each view about half the time
    assert set(epoch_views(7, 3, 500, 4).numpy()) == {0, 1, 2, 3}


def test_epoch_batches_take_one_view_per_image():
    from transfer.feeding import epoch_dataset, fetch_arrays

    n, k = 10, 2
    views = np.concatenate([np.arange(n), 100 + np.arange(n)]).astype(np.float32)[:, None]
    labels = tf.constant(np.arange(n))
    ds = epoch_dataset(n, fetch_arrays([views], labels, items=n), seed=1, start_epoch=0,
                       end_epoch=3, batch_size=4, shuffle=True, batched=True, views=k)
    batches = list(ds)
    for epoch in range(3):
        x = np.concatenate([b[0].numpy()[:, 0] for b in batches[epoch * 3:(epoch + 1) * 3]])
        y = np.concatenate([b[1].numpy() for b in batches[epoch * 3:(epoch + 1) * 3]])
        assert sorted(y) == list(range(n))  # every image once, its label with it
        np.testing.assert_array_equal(x % 100, y)
        chosen = epoch_views(1, epoch, n, k).numpy()
        np.testing.assert_array_equal(x >= 100, chosen[y] == 1)


def test_flip_fine_tune_trains_on_views_and_records_k(image_folder, tmp_path, caplog):
    caplog.set_level("INFO", logger="transfer")
    result = _train(image_folder, tmp_path / "run", model="lenet5", augment="flip",
                    epochs=1, fine_tune_epochs=1)
    assert result.config.cache_views == 2
    assert json.loads((tmp_path / "run" / "config.json").read_text())["cache_views"] == 2
    assert "the head phase trains on the cache: 2 view(s) per image (the image and its " \
           "mirror)" in caplog.text
    assert "the fine-tune phase trains on the cache: 2 view(s)" in caplog.text
    # metrics.json says where the run's time went, step by step
    steps = json.loads((tmp_path / "run" / "metrics.json").read_text())["seconds"]["steps"]
    assert list(steps) == ["read and check data", "cache for the head phase",
                           "train the head phase", "cache for the fine-tune phase",
                           "train the fine-tune phase", "save model.keras", "evaluate val",
                           "export SavedModel", "figures", "model card and report"]
    assert all(seconds >= 0 for seconds in steps.values())


@pytest.mark.parametrize("settings,line", [
    (dict(cache_features=False), "the head phase runs full forward passes: --no-cache-features"),
    pytest.param(dict(mixup=0.2), "the head phase runs full forward passes: mixup and CutMix "
                 "mix the images of a batch, which a cache of views cannot stand in for",
                 marks=pytest.mark.slow),
])
def test_the_fallbacks_say_why_in_one_line(image_folder, tmp_path, caplog, settings, line):
    caplog.set_level("INFO", logger="transfer")
    _train(image_folder, tmp_path / "run", model="lenet5", augment="flip", epochs=1,
           fine_tune_epochs=1, **settings)
    assert line in caplog.text


def test_a_whole_unfrozen_backbone_has_no_boundary():
    from transfer.train import ResolvedRun
    from transfer.views import boundary_split

    config = TrainConfig(model="lenet5", mode="fine-tune", weights=None, task="classification")
    resolved = ResolvedRun.of(config)
    model = resolved.task.build_model(config, num_classes=3, weights=None)
    _, head = resolved.task.feature_split(model)
    assert boundary_split(model, head, unfreeze_from="c1") == \
        "no layer below block 'c1' stays frozen"
    assert boundary_split(model, head, unfreeze_from=None) == \
        "fine-tuning unfreezes the whole backbone, so nothing below it stays frozen"
    cut = boundary_split(model, head, unfreeze_from="c5")
    assert [tuple(t.shape[1:]) for t in cut.lower.outputs] == [(5, 5, 16)]  # c3's pooled map


def test_one_view_with_augmentation_is_refused(image_folder, tmp_path):
    with pytest.raises(ConfigError, match="cache_views 1 would train without the augmentation"):
        _train(image_folder, tmp_path / "run", model="lenet5", augment="flip", cache_views=1)
    assert not (tmp_path / "run").exists()


def _sides_folder(root, per_class=16):
    """Two classes told apart only by side: a bright square on the left or on the right half, so
    a mirrored image is an image of the other class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("left", "right"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            image = (rng.random((32, 32, 3)) * 60).astype(np.uint8)
            top, left = int(rng.integers(2, 18)), int(rng.integers(1, 5))
            columns = slice(left, left + 10) if name == "left" else slice(31 - left - 10,
                                                                           31 - left)
            image[top:top + 10, columns] = 250
            Image.fromarray(image).save(root / name / f"{i:02d}.png")
    return root


def test_the_mirror_check_drops_flips_where_mirroring_changes_the_class(tmp_path, caplog):
    caplog.set_level("INFO", logger="transfer")
    folder = _sides_folder(tmp_path / "sides")
    result = _train(folder, tmp_path / "run", model="lenet5", epochs=1, fine_tune_epochs=1)
    assert (result.config.mirror_check, result.config.augment) == ("dropped", "")
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (recorded["mirror_check"], recorded["augment"], recorded["cache_views"]) == \
        ("dropped", "", 1)
    assert "mirroring costs accuracy here, so fine-tuning trains without flips" in caplog.text
    assert "the fine-tune phase trains on the cache: 1 view(s) per image" in caplog.text
    # the model was built again without its flip layer
    assert not any(layer.name == "augmentation" for layer in result.model.layers)


def test_the_mirror_check_keeps_flips_where_mirroring_keeps_the_class(image_folder, tmp_path,
                                                                       caplog):
    caplog.set_level("INFO", logger="transfer")
    result = _train(image_folder, tmp_path / "run", model="lenet5", epochs=1,
                    fine_tune_epochs=1)
    assert (result.config.mirror_check, result.config.augment) == ("kept", "flip")
    assert "flips kept" in caplog.text


def test_an_explicit_augment_always_wins_over_the_mirror_check(tmp_path, caplog):
    caplog.set_level("INFO", logger="transfer")
    folder = _sides_folder(tmp_path / "sides")
    result = _train(folder, tmp_path / "run", model="lenet5", epochs=1, fine_tune_epochs=1,
                    augment="flip")
    assert (result.config.mirror_check, result.config.augment) == ("off", "flip")
    assert "mirror check" not in caplog.text
