"""Parameter and MAC counts of every registered model, stored as data so that listings are instant.

Counting means building the model, and building all of them takes minutes, so the counts at each
model's default input size and default classes are computed once and stored in ``zoo/stats.json``
next to the registry, with the registry facts that ``zoo list`` shows (a listing then needs
neither Keras nor TensorFlow). Regenerate the file after registering or changing a model::

    python -m zoo.stats --write

``python -m zoo.stats --check`` rebuilds every model and compares; ``tests/zoo/test_stats.py``
does the same (the large models in the slow suite) and fails when the facts drift from the
registry. Counts at other sizes or class counts are computed on demand (:func:`compute`,
``zoo list --stats``).

What is counted: ``params_total`` is every weight of the model (``model.count_params()``,
BatchNorm moving statistics included), ``params_trainable`` the trainable ones (what PyTorch and
the papers report for BatchNorm models) and ``macs`` the multiply-accumulates of one image
(:func:`zoo.macs.count_macs`). The preprocessing layers have no weights and no MACs, so the
counts are the same with ``include_preprocessing`` on or off.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.info import compute, count, model_info
from zoo.registry import list_models

log = logging.getLogger(__name__)

STATS_PATH = Path(__file__).with_name("stats.json")
COUNTS = ("params_total", "params_trainable", "macs")

__all__ = ["COUNTS", "STATS_PATH", "compute", "count", "differences", "main", "rows", "stored",
           "table", "write"]


@functools.cache
def table(path: Path = STATS_PATH) -> dict[str, dict[str, Any]]:
    """The stored rows, by model name: registry facts and counts at the defaults."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))["models"]
    except FileNotFoundError:
        raise ZooError(f"{path} is missing; generate it with 'python -m zoo.stats --write'"
                       ) from None


def stored(name: str) -> dict[str, Any]:
    """The stored row of ``name``.

    Raises:
        ZooError: the model is not in the table (registered after it was written).
    """
    try:
        return table()[name]
    except KeyError:
        raise ZooError(f"{name!r} is not in {STATS_PATH.name}; regenerate it with "
                       f"'python -m zoo.stats --write'") from None


def rows(names: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Registry facts and counts, computed now, of ``names`` (every model by default)."""
    result = {}
    for name in names or list_models():
        result[name] = model_info(name, with_stats=True)
        log.info("%s: %s parameters, %s MACs", name, f"{result[name]['params_total']:,}",
                 f"{result[name]['macs']:,}")
    return result


def write(path: Path = STATS_PATH) -> None:
    """Build every registered model and store its row in ``path``."""
    import keras

    document = {
        "generated_by": "python -m zoo.stats --write",
        "keras_version": keras.__version__,
        "models": rows(),
    }
    path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    table.cache_clear()


def differences(stored_row: dict[str, Any], fresh_row: dict[str, Any]) -> dict[str, tuple]:
    """Keys whose values differ between two rows: ``{key: (stored, fresh)}``."""
    keys = set(stored_row) | set(fresh_row)
    return {k: (stored_row.get(k), fresh_row.get(k)) for k in sorted(keys)
            if stored_row.get(k) != fresh_row.get(k)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo.stats", description=__doc__.split(
        "\n\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true",
                        help=f"build every model and write {STATS_PATH}")
    action.add_argument("--check", action="store_true",
                        help="build every model and compare with the stored table")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.write:
        write()
        print(f"wrote {STATS_PATH}")
        return 0
    stale = sorted(set(table()) ^ set(list_models()))
    if stale:
        print(f"registry and table differ on: {', '.join(stale)}")
        return 1
    failed = 0
    for name, fresh in rows().items():
        diff = differences(stored(name), fresh)
        if diff:
            failed += 1
            print(f"{name}: {diff}")
    print(f"{failed} model(s) differ from {STATS_PATH.name}" if failed else "table up to date")
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
