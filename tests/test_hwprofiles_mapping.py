"""Chip mappings against the chips' own toolchains: Loihi 2 as its compiler mapped lava-dl's PilotNet
LIF, Speck as sinabs accounts memory and places layers on the NIR paper's CNN."""

import json

import numpy as np
import pytest

from conftest import needs_shared
from spikeport.hwprofiles.fit import check_fit, sinabs_mapping
from spikeport.hwprofiles.memory import speck_kernel_entries, speck_neuron_entries
from spikeport.hwprofiles.registry import available_profiles

PROFILES = available_profiles()

# The Loihi 2 compiler's per-core distribution for PilotNet LIF, printed in lava-dl's
# tutorials/lava/lib/dl/netx/pilotnet_snn/benchmark.ipynb (lava-nc/lava-dl d825ac5): cores per layer,
# input layer first (the notebook lists them last to first).
PILOTNET_LIF_CORES = {
    "layer/0": 13, "layer/1": 25, "layer/2": 13, "layer/3": 3, "layer/4": 3, "layer/5": 2,
    "layer/7": 12, "layer/8": 1, "layer/9": 1, "layer/10": 1,
}


@pytest.fixture(scope="module")
def pilotnet_report(tmp_path_factory):
    from spikeport.reporting import make_report

    folder = needs_shared("peer-tests/lava-dl/pilotnet_lif")
    tmp = tmp_path_factory.mktemp("pilotnet")
    image = np.load(folder / "image.npy").transpose(2, 1, 0)  # Lava's (x, y, c) -> (c, y, x)
    np.savez(tmp / "in.npz", input=np.repeat(image[None, None], 16, axis=1))  # T = 16, as measured
    make_report(folder / "network.net", profiles=["loihi2"], input_file=tmp / "in.npz", out=tmp, device="cpu")
    return json.loads((tmp / "report" / "report.json").read_text())


def test_loihi2_maps_pilotnet_lif_as_its_compiler_did(pilotnet_report):
    loihi2 = pilotnet_report["profiles"]["loihi2"]
    got = loihi2["layer_cores"]
    assert set(got) == set(PILOTNET_LIF_CORES)
    for layer, published in PILOTNET_LIF_CORES.items():
        assert abs(got[layer] - published) <= 0.1 * published, (layer, got[layer], published)
    assert loihi2["cores"] == 74 and loihi2["chips"] == 1


def test_loihi2_energy_of_pilotnet_lif_holds_the_measurement_it_was_fitted_on(pilotnet_report):
    """Not a validation (the per-op figures were fitted on this measurement): a check that the fit is
    applied as stated, 1.661 mJ per inference total (lava-dl benchmark notebook)."""
    loihi2 = pilotnet_report["profiles"]["loihi2"]
    e = loihi2["energy_j"]
    assert e["low"] <= 1.661103e-3 <= e["high"]
    assert e["total"] == pytest.approx(1.661103e-3, rel=0.05)
    assert 1 / (16 * loihi2["step_time_s"]) == pytest.approx(408.91, rel=0.02)  # the busiest core's step


# sinabs' memory accounting (sinabs/backend/dynapcnn/dynapcnn_layer.py `memory_summary`), worked by
# hand from the NIR file's shapes: kernel c * 2^(ceil log2(kx ky) + ceil log2 f), neuron
# f * 2^(ceil log2 fy + ceil log2 fx); the Linear 128 -> 256 after Flatten runs as a 4 x 4 conv on
# 8 channels, the Linear 256 -> 10 as a 1 x 1 conv on 256 channels.
SINABS_CNN_MEMORY = {  # layer: (neuron entries, kernel entries)
    "0": (16 * 2 ** (4 + 4), 2 * 2 ** (5 + 4)),  # conv 2 -> 16, 5 x 5, stride 2: 16 x 16 out
    "2": (16 * 2 ** (4 + 4), 16 * 2 ** (4 + 4)),  # conv 16 -> 16, 3 x 3: 16 x 16 out (then sum pool)
    "5": (8 * 2 ** (3 + 3), 16 * 2 ** (4 + 3)),  # conv 16 -> 8, 3 x 3: 8 x 8 out (then sum pool)
    "9": (256, 8 * 2 ** (4 + 8)),  # linear 128 -> 256
    "11": (10, 256 * 2 ** (0 + 4)),  # linear 256 -> 10
}
# sinabs' Edmonds-Karp placement on Speck's cores (kernel 16,16,16,32,32,64,64,16,16 Ki; neuron
# 64,64,64,32,32,16,16,16,16 Ki): the 32 Ki-entry kernel of layer 9 fits only cores 3-6.
SINABS_CNN_PLACEMENT = {"0": 0, "2": 1, "5": 2, "9": 3, "11": 4}


@pytest.fixture(scope="module")
def sinabs_cnn_report(tmp_path_factory):
    from spikeport.reporting import make_report

    path = needs_shared("peer-tests/nir/02_cnn/cnn_sinabs.nir")
    tmp = tmp_path_factory.mktemp("cnn")
    x = (np.random.default_rng(0).random((2, 10, 2, 34, 34)) < 0.05).astype(np.float32)
    np.savez(tmp / "in.npz", input=x)
    make_report(path, profiles=["speck"], input_file=tmp / "in.npz", out=tmp, device="cpu", dt=1e-3)
    return json.loads((tmp / "report" / "report.json").read_text())


def test_speck_memory_and_placement_of_the_nir_papers_cnn_match_sinabs(sinabs_cnn_report):

    speck = sinabs_cnn_report["profiles"]["speck"]
    assert speck["fits"] is True and speck["violations"] == []
    names = [layer["name"] for layer in sinabs_cnn_report["layers"]]
    assert names == list(SINABS_CNN_MEMORY)
    assert speck["placement"] == SINABS_CNN_PLACEMENT
    assert speck["energy_j"]["total"] > 0 and speck["energy_j"]["low"] < speck["energy_j"]["high"]


def test_speck_memory_formulas_are_sinabs(sinabs_cnn_report):
    """The same layers as the activity run builds them, through memory.py's formulas."""
    from spikeport.runtime.measure import measure
    from spikeport.deployment import Deployment
    import torch

    target = Deployment.load(needs_shared("peer-tests/nir/02_cnn/cnn_sinabs.nir"))
    target.dt = 1e-3
    x = np.zeros((1, 2, 2, 34, 34), dtype=np.float32)
    network = measure(target, {"input": x}, torch.device("cpu"), name="cnn", backend="reference", mode="float")
    got = {layer.name: (speck_neuron_entries(layer), speck_kernel_entries(layer)) for layer in network.layers}
    assert got == SINABS_CNN_MEMORY


def test_sinabs_placement_search_order():
    """Edmonds-Karp moves an earlier layer when a later one has no other core, as sinabs does."""
    assert sinabs_mapping([[0, 1], [0]], 2) == [1, 0]
    assert sinabs_mapping([[0], [0]], 1) == [0, None]
    assert sinabs_mapping([[0, 2], [0, 1], [0]], 3) == [2, 1, 0]
