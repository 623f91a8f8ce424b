"""The interval benchmarks/layer_share.py gives the engine's median share of the bound.

Whether the engine reaches 90% of the bound is read from that interval, so its coverage is
checked here: on values of a skewed distribution whose median is known, the interval must hold
the median as often as it says, and not much more often (an interval one order statistic wider
would hold it 98.5% of the time with 25 values, one narrower 89%).
"""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def layer_share():
    """The benchmark script as a module, with benchmarks/ on sys.path as when it runs."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("layer_share", BENCHMARKS / "layer_share.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_the_interval_is_the_order_statistics_of_the_binomial(layer_share):
    values = [float(v) for v in range(1, 26)]
    random.Random(0).shuffle(values)
    assert layer_share.median_interval(values) == [8.0, 18.0]  # 2 P(Bin(25, 1/2) <= 7) = 0.043
    assert layer_share.median_interval([float(v) for v in range(1, 16)]) == [4.0, 12.0]  # 2 P(Bin(15, 1/2) <= 3) = 0.035
    assert layer_share.median_interval([1.0, 2.0, 3.0, 4.0, 5.0]) is None  # even [x(1), x(5)] misses it 6.25% of the time


def test_the_interval_holds_the_median_95_percent_of_the_time(layer_share):
    rng = random.Random(1)
    median = 1.0  # of a lognormal with mu 0: skewed, as a ratio of timings is
    draws = 4000
    held = 0
    for _ in range(draws):
        low, high = layer_share.median_interval([rng.lognormvariate(0.0, 0.3) for _ in range(layer_share.CYCLES)])
        held += low <= median <= high
    assert 0.945 <= held / draws <= 0.970  # 95.7% for 25 values; one binomial standard error is 0.3%


def test_the_machine_record_counts_the_threads_per_core(layer_share):
    train_step = sys.modules["train_step"]  # layer_share imports it
    fields = [{"siblings": "2", "cpu cores": "2"}, {"siblings": "4", "cpu cores": "2"}, {"siblings": "2"}, {}]
    assert [train_step.threads_per_core(f) for f in fields] == [1, 2, None, None]
    assert train_step.machine()["threads_per_core"] in (None, 1, 2, 4, 8)
