"""Foreign NIR files all the way to Lava (issue 14): graphs that other tools wrote run in Lava's
floating_pt spike for spike as in the reference runtime: the NIR paper's LIF (Norse, dt 1e-4 s,
input gain dt r / tau = 0.04, which the export's lowering folds into the weights), its sinabs CNN (IF neurons,
SumPool2d folded into the next layer, dt = 1 as sinabs counts).

Not here: a graph from snnTorch 1.0.0's own export_to_nir, which fails NIR 1.0.8's type check
for a plain Sequential of Linear and Leaky (the Leaky node gets no input type, with either sample
shape), so it writes no file to try."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import needs_shared

pytestmark = pytest.mark.lava


def parity(cli, graph_path, x: np.ndarray, dt: str, tmp_path) -> dict:
    np.savez(tmp_path / "x.npz", input=x.astype(np.float32))
    code, _, err = cli("simulate", graph_path, "--compare", "reference-float,lava-float", "--dt", dt, "--input", tmp_path / "x.npz", "--out", tmp_path)
    assert code == 0, err
    return json.loads((tmp_path / "sim" / "parity-reference-float-vs-lava-float.json").read_text())


def spikes(x: np.ndarray, rate: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random(x) < rate).astype(np.float32)


@pytest.mark.parametrize(
    "path, shape, dt",
    [("01_lif/lif_norse.nir", (2, 200, 1), "1e-4"), ("02_cnn/cnn_sinabs.nir", (2, 6, 2, 34, 34), "1")],
    ids=["nir-paper-lif", "nir-paper-sinabs-cnn"],
)
def test_the_nir_papers_graphs_run_in_lava_as_in_the_reference(cli, path, shape, dt, tmp_path):
    report = parity(cli, needs_shared(f"peer-tests/nir/{path}"), spikes(shape, 0.1), dt, tmp_path)
    assert report["output_max_abs_diff"] == 0
    assert report["layers"] and all(layer["spike_count_mismatches"] == 0 for layer in report["layers"].values())
    assert sum(layer["spikes_a"] for layer in report["layers"].values()) > 0
