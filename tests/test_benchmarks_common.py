"""The benchmarks' shared helpers: the scripts run for hours, so a helper broken by a refactor
must fail here in seconds, not at a benchmark's start."""

import argparse
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _common  # noqa: E402


def test_parse_parts_returns_the_parts_in_order():
    """A context-manager decorator landed on parse_parts in a refactor, and every benchmark
    with --parts failed at ``part in args.parts``."""
    parser = argparse.ArgumentParser()
    assert _common.parse_parts(parser, "b,a,", ("a", "b", "c")) == ["b", "a"]
    with pytest.raises(SystemExit):
        _common.parse_parts(parser, "a,z", ("a", "b"))


def test_timed_records_the_seconds_of_its_block():
    results = {}
    with _common.timed(results, "block"):
        time.sleep(0.01)
    assert 0.01 <= results["block"] < 5
