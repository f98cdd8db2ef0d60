"""ImageNet class names shipped as package data, in Keras's class-index order."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import pytest

import zoo
from zoo.errors import ZooError

TFDS_LABELS = Path("tensorflow_datasets") / "datasets" / "imagenet2012" / "labels.txt"


def test_one_thousand_classes_in_index_order():
    classes = zoo.imagenet_classes()
    assert len(classes) == 1000
    assert [c.index for c in classes] == list(range(1000))
    assert len({c.wnid for c in classes}) == 1000
    # Keras's class index is the sorted WordNet ids.
    assert [c.wnid for c in classes] == sorted(c.wnid for c in classes)
    assert all(c.synonyms[0] == c.name and c.name.strip() == c.name for c in classes)
    names = zoo.imagenet_class_names()
    assert names[285] == "Egyptian cat" and classes[285].wnid == "n02124075"
    assert names[967] == "espresso" and classes[967].wnid == "n07920052"
    assert names[0] == "tench" and names[999] == "toilet tissue"


def test_wnids_match_tensorflow_datasets():
    """An independent source for the order: TFDS's ImageNet 2012 labels (a dependency)."""
    tfds = pytest.importorskip("tensorflow_datasets")
    path = Path(tfds.__file__).parent.parent / TFDS_LABELS
    if not path.is_file():
        pytest.skip(f"{path} not found in this tensorflow_datasets version")
    assert [c.wnid for c in zoo.imagenet_classes()] == path.read_text().split()


def test_lookup_by_index_wnid_and_name():
    cat = zoo.imagenet_class(285)
    assert zoo.imagenet_class("n02124075") == cat
    assert zoo.imagenet_class("Egyptian cat") == cat
    assert zoo.imagenet_class("egyptian_cat") == cat  # Keras's decode_predictions spelling
    assert zoo.imagenet_class("espresso").index == 967
    assert zoo.imagenet_class("Ailuropoda melanoleuca").index == 388  # a synonym
    assert zoo.imagenet_class("n02012849").name == zoo.imagenet_class("n03126707").name == "crane"


def test_lookup_errors_say_what_to_do():
    with pytest.raises(ZooError, match=r"'crane' is ambiguous: 134 n02012849 .* 517 n03126707"):
        zoo.imagenet_class("crane")
    with pytest.raises(ZooError, match="ambiguous.*387.*388"):
        zoo.imagenet_class("panda")  # a synonym of the giant and the lesser panda
    with pytest.raises(ZooError, match="Did you mean 'espresso'"):
        zoo.imagenet_class("expresso")
    with pytest.raises(ZooError, match="0-999"):
        zoo.imagenet_class(1000)


def test_shipped_as_package_data():
    data = importlib.resources.files("zoo").joinpath("data")
    assert data.joinpath("imagenet_classes.json").is_file()
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert 'zoo = ["data/*.json"' in pyproject
