"""dt without silent wrong answers (issue 14): no NIR file from another tool records dt, and a wrong
one runs without error, so what makes a dt likely wrong is said, on the terminal and in the result,
and `export --dt` writes files that snnTorch's import_nir reads as the model that was trained."""

from __future__ import annotations

import warnings

import nir
import numpy as np
import pytest
import snntorch as snn
import torch
from snntorch.import_nir import import_from_nir
from torch import nn

import spikeport
from conftest import needs_shared
from spikeport.errors import DeploymentWarning, UserError
from spikeport.runtime.reference import NIRExecutor


def test_a_dt_beyond_a_time_constant_warns_naming_the_node():
    graph = nir.read(needs_shared("peer-tests/nir/01_lif/lif_norse.nir"))  # tau 2.5 ms, written for dt 1e-4
    with pytest.warns(DeploymentWarning, match=r"node '1': dt 0.003 s is at least its tau 0.0025 s.*snnTorch's export_to_nir and import_nir assume 1e-4 s"):
        NIRExecutor(graph, dt=3e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeploymentWarning)
        NIRExecutor(graph, dt=1e-4)  # the file's own convention: nothing to say


def test_no_dt_anywhere_is_an_error_naming_the_conventions():
    graph = nir.read(needs_shared("peer-tests/nir/01_lif/lif_norse.nir"))
    with pytest.raises(UserError, match=r"give the timestep length with --dt \(snnTorch.*1e-4 s, sinabs one step"):
        NIRExecutor(graph)


def mlp(reset: str = "zero") -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), snn.Leaky(beta=0.75, threshold=0.5, init_hidden=True, reset_mechanism=reset), nn.Linear(8, 3), snn.Leaky(beta=0.75, threshold=0.5, init_hidden=True, reset_mechanism=reset)).eval()


def test_a_dt_that_contradicts_the_file_warns_on_the_terminal_and_in_the_result(cli, tmp_path):
    deployment = spikeport.export(model=mlp(), input_shape=(1, 4, 4), timesteps=5, out=tmp_path / "run")  # dt 1e-3 in the file
    np.savez(tmp_path / "in.npz", input=np.ones((2, 5, 1, 4, 4), dtype=np.float32))
    code, _, err = cli("simulate", deployment.path / "model.nir", "--dt", "1e-4", "--input", tmp_path / "in.npz", "--out", tmp_path / "sim")
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("spikeport: warning: ")]
    assert lines == ["spikeport: warning: --dt 0.0001 s contradicts the file's own dt 0.001 s; running with --dt"], err
    with np.load(tmp_path / "sim" / "sim" / "reference-float.npz") as result:
        assert list(result["warnings"]) == [lines[0].removeprefix("spikeport: warning: ")]


def test_export_with_snntorchs_dt_is_read_back_by_snntorch_as_trained(tmp_path):
    deployment = spikeport.export(model=mlp(), input_shape=(1, 4, 4), timesteps=5, out=tmp_path / "run", dt=1e-4)
    imported = import_from_nir(nir.read(deployment.path / "model.nir"))
    leaky = [m for m in imported.modules() if isinstance(m, snn.Leaky)]
    assert len(leaky) == 2
    for m in leaky:
        assert torch.allclose(m.beta, torch.tensor(0.75)) and torch.allclose(m.threshold, torch.tensor(0.5))
        assert m.reset_mechanism == "zero" and not m.reset_delay
    # At spikeport's default dt the same file reads as another neuron in snnTorch: say why --dt exists.
    other = import_from_nir(nir.read(spikeport.export(model=mlp(), input_shape=(1, 4, 4), timesteps=5, out=tmp_path / "run2").path / "model.nir"))
    assert not torch.allclose(next(m for m in other.modules() if isinstance(m, snn.Leaky)).beta, torch.tensor(0.75))
