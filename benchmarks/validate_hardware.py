"""spikeport's chip estimates against published measurements of networks it can run.

One row per published figure: the chip, the network, the figure with its source, spikeport's
estimate (central value and interval), their ratio (estimate / published), and a status:
- `hit`: the published figure lies inside the interval and the central value is within 30% of it
  (10% for core counts);
- `miss`: it does not; the row says why (`cause`);
- `fitted`: the profile figures behind the estimate were derived from this very measurement
  (`derived_from` in the profile), so agreement shows the fit is applied as stated and validates
  nothing (held out of the hit count);
- `not run`: the measurement cannot be reproduced here; the row says why, and no estimate is given.

Networks, all read from ../shared/peer-tests (never copied):
- lava-dl's PilotNet LIF on Loihi 2 (tutorials/lava/lib/dl/netx/pilotnet_snn/benchmark.ipynb):
  cores per layer printed by the Loihi 2 compiler, throughput, total power, energy per inference;
  driven by its reference image for 16 steps, as the notebook runs one frame per 16-step window.
- lava-dl's Oxford dense network 200 -> 256 -> 200 on Loihi 2 (tutorials/.../oxford/run.ipynb):
  the compiler's cores per layer, held out (the Loihi 2 mapping figures come from PilotNet);
  driven by its own input events binned to 1 ms steps.
- the NIR paper's sinabs CNN on Speck: sinabs' memory accounting and core placement. sinabs 3.1.3
  requires nir <= 1.0.4 and cannot be installed beside this project's nir 1.0.8, so its figures
  are its formulas (sinabs/backend/dynapcnn/dynapcnn_layer.py `memory_summary`, mapping.py
  Edmonds-Karp) worked by hand from the NIR file's shapes; the activity the NIR paper recorded
  on Speck (`speck_activity.npy`) needs the first N-MNIST test sample, which is not here.

    OMP_NUM_THREADS=1 python benchmarks/validate_hardware.py [--out benchmarks/results/validate_hardware.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

from spikeport.hwprofiles.registry import available_profiles
from spikeport.reporting import make_report

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "peer-tests"
COMMAND = "OMP_NUM_THREADS=1 python benchmarks/validate_hardware.py"
PILOTNET_NB = "lava-dl tutorials/lava/lib/dl/netx/pilotnet_snn/benchmark.ipynb (lava-nc/lava-dl d825ac5)"
OXFORD_NB = "lava-dl tutorials/lava/lib/dl/netx/oxford/run.ipynb (lava-nc/lava-dl d825ac5)"
SINABS = "sinabs 3.1.3 memory_summary / get_valid_mapping, worked by hand from cnn_sinabs.nir (sinabs is not installable beside nir 1.0.8)"

PILOTNET_CORES = {  # the compiler's per-core distribution, input layer first
    "layer/0": 13, "layer/1": 25, "layer/2": 13, "layer/3": 3, "layer/4": 3, "layer/5": 2,
    "layer/7": 12, "layer/8": 1, "layer/9": 1, "layer/10": 1,
}
OXFORD_CORES = {"layer/0": 3, "layer/1": 2}  # 200 -> 256 (85 neurons per core), 256 -> 200 (100 per core)
SINABS_MEMORY = {  # layer: (neuron entries, kernel entries)
    "0": (4096, 1024), "2": (4096, 4096), "5": (512, 2048), "9": (256, 32768), "11": (10, 4096),
}
SINABS_PLACEMENT = {"0": 0, "2": 1, "5": 2, "9": 3, "11": 4}


def row(chip, network, quantity, published, unit, source, estimate=None, low=None, high=None, *, fitted_on=None, core_count=False, cause=None):
    """One table row; the status follows from the numbers unless the figure was fitted or not run."""
    out = {
        "chip": chip, "network": network, "quantity": quantity,
        "published": {"value": published, "unit": unit, "source": source},
        "estimate": None if estimate is None else {"value": estimate, "low": low if low is not None else estimate, "high": high if high is not None else estimate},
        "ratio": None if estimate is None else estimate / published,  # estimate / published
        "command": COMMAND,
    }
    if estimate is None:
        out.update(status="not run", cause=cause)
        return out
    inside = out["estimate"]["low"] <= published <= out["estimate"]["high"]
    close = abs(estimate / published - 1) <= (0.10 if core_count else 0.30)
    out["inside_interval"] = inside
    if fitted_on:
        out.update(status="fitted", cause=f"profile figures derived from this measurement ({fitted_on}): not a validation")
    elif inside and close:
        out["status"] = "hit"
    else:
        out.update(status="miss", cause=cause or "")
    return out


def pilotnet(tmp: Path) -> list[dict]:
    folder = SHARED / "lava-dl" / "pilotnet_lif"
    image = np.load(folder / "image.npy").transpose(2, 1, 0)  # Lava's (x, y, c) -> (c, y, x)
    np.savez(tmp / "pilot.npz", input=np.repeat(image[None, None], 16, axis=1))
    report = make_report(folder / "network.net", profiles=["loihi2"], input_file=tmp / "pilot.npz", out=tmp / "pilot", device="cpu").data
    p, net = report["profiles"]["loihi2"], "lava-dl PilotNet LIF"
    rows = [
        row("Loihi 2", net, f"cores {layer}", published, "cores", f"{PILOTNET_NB}: per-core distribution", p["layer_cores"][layer],
            fitted_on="capacity.neurons_per_core, capacity.synapse_memory_per_core_bits <- pilotnet_lif_cores", core_count=True)
        for layer, published in PILOTNET_CORES.items()
    ]
    rows.append(row("Loihi 2", net, "cores (total)", 74, "cores", f"{PILOTNET_NB}: per-core distribution, Total", p["cores"],
                    fitted_on="pilotnet_lif_cores", core_count=True))
    steps = report["totals"]["timesteps"]
    fps = 1 / (steps * p["step_time_s"])
    fast, slow = (1 / (steps * s) for s in p["step_time_interval_s"])  # the shorter step, the more fps
    rows.append(row("Loihi 2", net, "throughput", 408.91, "inferences/s", f"{PILOTNET_NB}: Throughput", fps, slow, fast,
                    fitted_on="timing per-op times <- pilotnet_lif_throughput"))
    e = p["energy_j"]
    rows.append(row("Loihi 2", net, "energy per inference", 1.661103e-3, "J", f"{PILOTNET_NB}: Total Energy per inference 1.661103 mJ",
                    e["total"], e["low"], e["high"], fitted_on="energy per-op figures <- pilotnet_lif_dynamic_energy"))
    rows.append(row("Loihi 2", net, "total power", 0.679234, "W", f"{PILOTNET_NB}: Total Power", e["total"] * fps, e["low"] * fps, e["high"] * fps,
                    fitted_on="pilotnet_lif_dynamic_energy, pilotnet_lif_throughput"))
    return rows


def oxford(tmp: Path) -> list[dict]:
    folder = SHARED / "lava-dl" / "oxford"
    events = np.load(folder / "input.npy")  # (neuron, 0, time in ms)
    x = np.zeros((1, 2000, 200), dtype=np.float32)
    x[0, np.minimum(events[:, 2].astype(int), 1999), events[:, 0].astype(int)] = 1.0
    np.savez(tmp / "oxford.npz", input=x)
    report = make_report(folder / "Trained" / "network.net", profiles=["loihi2"], input_file=tmp / "oxford.npz", out=tmp / "oxford", device="cpu").data
    p, net = report["profiles"]["loihi2"], "lava-dl Oxford dense 200-256-200"
    cause = ("the compiler packs dense synapses in its own (not public) encoding, whose size depends on the weights: "
             "its SynMem allocations were 16128 and 16200 units for these two layers; spikeport stores every input at 8 bits")
    rows = [row("Loihi 2", net, f"cores {layer}", published, "cores", f"{OXFORD_NB}: per-core distribution", p["layer_cores"][layer], core_count=True, cause=cause)
            for layer, published in OXFORD_CORES.items()]
    rows.append(row("Loihi 2", net, "cores (total)", 5, "cores", f"{OXFORD_NB}: per-core distribution, Total", p["cores"], core_count=True, cause=cause))
    return rows


def sinabs_cnn(tmp: Path) -> list[dict]:
    x = (np.random.default_rng(0).random((2, 10, 2, 34, 34)) < 0.05).astype(np.float32)  # activity does not enter memory
    np.savez(tmp / "cnn.npz", input=x)
    report = make_report(SHARED / "nir" / "02_cnn" / "cnn_sinabs.nir", profiles=["speck"], input_file=tmp / "cnn.npz", out=tmp / "cnn", device="cpu", dt=1e-3).data
    import torch

    from spikeport.hwprofiles import memory
    from spikeport.runtime.measure import measure
    from spikeport.deployment import Deployment

    speck, net, rows = report["profiles"]["speck"], "NIR paper CNN (cnn_sinabs.nir)", []
    # report.json keeps no memory per layer: the same layers, measured again, through memory.py
    target = Deployment.load(SHARED / "nir" / "02_cnn" / "cnn_sinabs.nir", dt=1e-3)
    network = measure(target, {"input": x[:1, :2]}, torch.device("cpu"), name="cnn", backend="reference", mode="float")
    assert [layer.name for layer in network.layers] == [layer["name"] for layer in report["layers"]]
    for layer in network.layers:
        neurons, kernel = SINABS_MEMORY[layer.name]
        rows.append(row("Speck", net, f"neuron memory {layer.name}", neurons, "entries", SINABS, memory.speck_neuron_entries(layer), core_count=True))
        rows.append(row("Speck", net, f"kernel memory {layer.name}", kernel, "entries", SINABS, memory.speck_kernel_entries(layer), core_count=True))
    for name, core in SINABS_PLACEMENT.items():
        rows.append(row("Speck", net, f"core of layer {name}", core + 1, "core index + 1", SINABS, speck["placement"][name] + 1, core_count=True))
    rows.append(row("Speck", net, "activity per layer (first N-MNIST test sample)", None, "spikes per layer", "NIR paper, 02_cnn/speck_activity.npy",
                    cause="its input, the first N-MNIST test sample, is not available here (no download); not estimated rather than faked"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "validate_hardware.json")
    args = parser.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"{SHARED}: the peer networks are not here")
    available_profiles()  # bad profiles fail first
    with tempfile.TemporaryDirectory() as tmp:
        rows = pilotnet(Path(tmp)) + oxford(Path(tmp)) + sinabs_cnn(Path(tmp))
    counted = [r for r in rows if r["status"] in ("hit", "miss")]
    result = {
        "description": __doc__.split("\n\n")[0],
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "summary": {
            "rows": len(rows),
            "validated (held out)": len(counted),
            "hits": sum(r["status"] == "hit" for r in counted),
            "misses": sum(r["status"] == "miss" for r in counted),
            "fitted (not counted)": sum(r["status"] == "fitted" for r in rows),
            "not run": sum(r["status"] == "not run" for r in rows),
        },
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for r in rows:
        est = "-" if r["estimate"] is None else f"{r['estimate']['value']:.4g} [{r['estimate']['low']:.4g}, {r['estimate']['high']:.4g}]"
        published = "-" if r["published"]["value"] is None else f"{r['published']['value']:.4g}"
        print(f"{r['chip']:8} {r['network'][:34]:34} {r['quantity'][:34]:34} {published:10} {est:32} {r['status']}")
    print(json.dumps(result["summary"]))


if __name__ == "__main__":
    main()
