"""The experiments' shared run handling (experiments/arm_runs.py) and dta_temporal.py's datasets.

The experiments resume from their run folders, so the folder of an (arm, seed) must not change
under them (a renamed folder retrains everything), and two experiments must never share one.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).parents[1] / "experiments"


def _load(name: str):
    """An experiment script as a module, with experiments/ on sys.path as when it runs."""
    sys.path.insert(0, str(EXPERIMENTS))
    try:
        spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(EXPERIMENTS))


@pytest.fixture(scope="module")
def dta_temporal():
    return _load("dta_temporal")


@pytest.fixture(scope="module")
def arm_runs():
    return _load("arm_runs")


def test_run_folders_keep_the_names_the_recorded_runs_have(arm_runs):
    """The names under runs/dta-temporal and runs/taaf-temporal that results.md's runs were trained in."""
    runs = Path("runs")
    assert arm_runs.folder(runs, "DTA, causal", 2) == runs / "DTA_causal-seed2"
    assert arm_runs.folder(runs, "DTA_OFF, parameter-matched", 0) == runs / "DTA_OFF_parameter-matched-seed0"
    assert arm_runs.folder(runs, "concat + unimodal losses (k=1)", 4, prefix="noise0.5-") == runs / "noise0.5-concat_+_unimodal_losses_k1-seed4"
    assert arm_runs.folder(runs, "TAAF, uniform alpha", 1, prefix="noise0.2-") == runs / "noise0.2-TAAF_uniform_alpha-seed1"


def test_finished_needs_every_epoch_and_the_checkpoint(arm_runs, tmp_path):
    config = {"train": {"epochs": 3}}
    assert not arm_runs.finished(tmp_path, config)
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2}\n')
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    assert not arm_runs.finished(tmp_path, config)
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2}\n{"epoch": 3}\n')
    assert arm_runs.finished(tmp_path, config)
    (tmp_path / "checkpoint.pt").unlink()
    assert not arm_runs.finished(tmp_path, config)


def test_finished_only_trains_nothing(arm_runs, tmp_path):
    config = {"train": {"epochs": 1}}
    assert arm_runs.trained(config, tmp_path / "absent", finished_only=True) is None
    assert not (tmp_path / "absent").exists()


def test_dta_temporal_names_one_results_file_per_dataset_and_epochs(dta_temporal):
    """event-digits-sparse at the config's epochs keeps dta_temporal (its recorded results and runs)."""
    epochs = 6
    names = {
        dta_temporal.experiment_name(dataset, e, epochs)
        for dataset in dta_temporal.DATASETS
        for e in (None, epochs, 12)
    }
    assert names == {"dta_temporal", "dta_temporal_12ep", "dta_temporal_order", "dta_temporal_order_12ep"}


def test_dta_temporal_order_task_changes_only_the_data(dta_temporal):
    from spikeport.config import config_from_dict, load_config
    from spikeport.train.dataset_specs import spec

    base = load_config(Path(__file__).parents[1] / dta_temporal.CONFIG).to_dict()
    sparse = dta_temporal.arm_config(base, "DTA", 3, None)
    order = dta_temporal.arm_config(base, "DTA", 3, None, "event-digits-order")
    assert sparse["data"]["name"] == "event-digits-sparse" and order["data"]["name"] == "event-digits-order"
    assert {**order, "data": sparse["data"]} == sparse
    config_from_dict(order)  # a valid config: the options (seed, validation) are the order task's too
    assert spec("event-digits-order").input_shape == spec("event-digits-sparse").input_shape


def test_taaf_temporal_at_other_epochs_has_its_own_results_and_runs(arm_runs):
    """taaf_temporal.py names its results, plot and runs folder by arm_runs.experiment_name: at the
    config's epochs the recorded ones (runs/taaf-temporal), at --epochs 12 others, never resumed from them."""
    taaf_temporal = _load("taaf_temporal")
    source = (EXPERIMENTS / "taaf_temporal.py").read_text()
    assert 'experiment_name("taaf_temporal", args.epochs' in source and "taaf_temporal.json" not in source
    from spikeport.config import load_config

    epochs = load_config(taaf_temporal.CONFIG).to_dict()["train"]["epochs"]
    assert [arm_runs.experiment_name("taaf_temporal", e, epochs) for e in (None, epochs, 12)] == ["taaf_temporal", "taaf_temporal", "taaf_temporal_12ep"]
