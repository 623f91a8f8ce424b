"""Recurrent CubaLIF graphs (issue 14): the NIR paper's braille networks run in the reference
runtime spike for spike, and membrane for membrane, as snnTorch runs them.

snnTorch's own `import_from_nir` cannot run these files with the pinned packages: nirtorch 2.6
fails on the recurrent subgraph it makes ('GraphModule' object has no attribute 'items'), and
snnTorch 1.0.0's RSynaptic with reset_delay=False reads an undefined spike when it keeps its own
state. So the oracle is built from snnTorch's importer piece by piece: its own conversion of each
node (`import_nir._nir_to_snntorch_module`, dt = 1e-4 as it assumes), the recurrent layer its
RSynaptic with the states passed by hand. That RSynaptic applies no immediate reset (its forward
resets the arguments it was given, not the state it returns), so the oracle applies NIR's reset
to zero in the step itself by hand, as snnTorch's Synaptic does (mem - spk * mem).
"""

from __future__ import annotations

import nir
import numpy as np
import pytest
import snntorch as snn
import torch
from snntorch import import_nir, utils

from conftest import needs_shared
from spikeport.errors import UserError
from spikeport.runtime.reference import NIRExecutor

FILES = ["03_rnn/braille_noDelay_bias_zero.nir", "03_rnn/braille_noDelay_noBias_subtract.nir", "nirtorch_tests/braille.nir"]
SNNTORCH_DT = 1e-4  # what snnTorch's import_nir assumes for every file


def snntorch_braille(path) -> callable:
    graph = import_nir._replace_rnn_subgraph_with_nirgraph(nir.read(path))
    fc1, fc2 = (import_nir._nir_to_snntorch_module(graph.nodes[k], init_hidden=True) for k in ("fc1", "fc2"))
    lif1 = import_nir._nir_to_snntorch_module(graph.nodes["lif1"])  # its RSynaptic
    lif2 = import_nir._nir_to_snntorch_module(graph.nodes["lif2"], init_hidden=True)
    assert isinstance(lif1, snn.RSynaptic) and isinstance(lif2, snn.Synaptic)

    def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        utils.reset(torch.nn.ModuleList([lif2]))
        spk1 = syn1 = mem1 = torch.zeros(x.shape[1], lif1.recurrent.in_features)
        first, second, membrane = [], [], []
        with torch.no_grad():
            for t in range(x.shape[0]):
                spk1, syn1, mem1 = lif1(fc1(x[t]), spk1, syn1, mem1)
                mem1 = mem1 - spk1 * mem1  # the reset to zero in the spiking step
                first.append(spk1)
                membrane.append(mem1)
                second.append(lif2(fc2(spk1)))
        return torch.stack(first), torch.stack(second), torch.stack(membrane)

    return run


def membranes(executor: NIRExecutor, name: str) -> list[torch.Tensor]:
    """The membrane after every step of neuron node `name`, read from the state it carries."""
    layer, seen = executor.layers[name.replace(".", "_")], []
    run = layer.run

    def recording(current, state, recurrent=None):
        spikes, state = run(current, state, recurrent)
        seen.append(state[0])
        return spikes, state

    layer.run = recording
    return seen


@pytest.mark.parametrize("name", FILES)
def test_the_braille_network_spikes_as_snntorch_runs_it(name):
    path = needs_shared(f"peer-tests/nir/{name}")
    x = (torch.rand(256, 8, 12, generator=torch.Generator().manual_seed(0)) < 0.1).float()
    first, second, membrane = snntorch_braille(path)(x)
    seen = {}
    neurons = [n for n, node in nir.read(path).nodes.items() if isinstance(node, nir.CubaLIF)]
    recurrent, readout = sorted(neurons, key=lambda n: n != "lif1.lif")
    executor = NIRExecutor(nir.read(path), dt=SNNTORCH_DT)
    ours = membranes(executor, recurrent)  # the recurrent graph is stepped: one state per step
    executor({"input": x}, lambda node, i, o: seen.__setitem__(node, o))
    assert torch.equal(seen[recurrent], first) and torch.equal(seen[readout], second)
    assert torch.equal(torch.stack(ours), membrane)
    assert first.sum() > 100 and second.sum() > 10  # the comparison saw spikes in both layers


def test_a_recurrent_input_reads_the_step_before():
    """Input -> Affine -> LIF <-> Affine (recurrent): the recurrent current arrives one step late,
    and at the first step it is the recurrent Affine's bias (its output for no spikes)."""
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(np.array([1])),
            "w": nir.Linear(np.array([[2.0]])),
            "lif": nir.LIF(tau=np.array([1.0]), r=np.array([1.0]), v_leak=np.array([0.0]), v_threshold=np.array([1.5]), v_reset=np.array([0.0])),
            "rec": nir.Affine(np.array([[1.0]]), np.array([0.25])),
            "output": nir.Output(np.array([1])),
        },
        edges=[("input", "w"), ("w", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")],
    )
    # dt = tau: v[t] = I[t] (no memory); I[0] = 2 x[0] + 0.25, I[t] = 2 x[t] + s[t-1] + 0.25
    x = torch.tensor([1.0, 0.0, 0.0, 0.6, 0.0]).reshape(5, 1, 1)
    out = NIRExecutor(graph, dt=1.0)({"input": x}).outputs["output"].flatten().tolist()
    assert out == [1.0, 0.0, 0.0, 0.0, 0.0]  # 2.25 > 1.5 fires; then 1.25, 0.25, 1.45, 0.25 do not
    x[1] = 0.3  # step 1: 0.6 + 1 (the spike of step 0) + 0.25 = 1.85 fires
    assert NIRExecutor(graph, dt=1.0)({"input": x}).outputs["output"].flatten().tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]


def test_a_cycle_through_no_neuron_is_refused():
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([1])), "a": nir.Linear(np.array([[1.0]])), "b": nir.Linear(np.array([[1.0]])), "output": nir.Output(np.array([1]))},
        edges=[("input", "a"), ("a", "b"), ("b", "a"), ("b", "output")],
        type_check=False,
    )
    with pytest.raises(UserError, match="passes no neuron"):
        NIRExecutor(graph, dt=1.0)
