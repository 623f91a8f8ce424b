"""Samples per second: the reference runtime's loihi mode (batched torch) vs Lava fixed_pt.

Two networks, each run by both on the same inputs, with equality checked in this run:

- digits CNN: the exported model.net (loaded unchanged by lava-dl netx in Lava) on the same test
  samples; spikes of every layer and the read-out must be equal on the samples Lava ran. The second
  baseline is the cost bound the emulator is held to: the same layers in float, T dense forward
  passes plus the neurons. "The same layers" are the deployed graph's (model.nir lowered for the
  chip by fold_avgpool, the average pools folded into the convolutions, as model.net holds them),
  run by the float runtime (NIRExecutor); the emulator is the host layer (input_bias) plus
  simulate_netx on each block's sample steps. Both with their files read beforehand, alternated
  over several repeats (medians). The end-to-end runners (`reference_backend.run(mode="loihi")`, `reference_backend.run(mode="float")`,
  file reading included) are timed too.
- lava-dl's pilotnet_lif (../shared/peer-tests/lava-dl, network.net as lava-dl wrote it), driven as
  tests/test_runtime_loihi.py drives it: image.npy as the input layer's bias, one window of 17 steps
  per sample (T = 8 input steps + 9 synaptic stages, netx resetting every layer once per window,
  lava-dl's reset interval of 17). Sample i is image.npy + i. Every layer's spikes at every step of
  the window and the read-out's voltage must be equal on the samples Lava ran; sample 0 must also
  reproduce lava-dl's own spike references for the first 17 steps. Lava is slow on PilotNet (about
  two minutes per sample on 2 cores), so it runs a few samples only. Skipped, with a note, without ../shared.

- the small DTA MS-ResNet of configs/dta-small-digits.yaml (NIR + host ONNX + NIR, membrane
  shortcuts, the gate's graded payload; no model.net): the emulator (`reference_backend.run(mode="loihi")`, i.e.
  loihi_fixed.simulate_export, host partitions in ONNX Runtime included) on the whole test set
  against Lava fixed_pt on spikeport's graph with the host process (`lava_backend.run(mode="loihi")`,
  one session for its samples, start-up included); every layer's spike counts at every timestep
  and the logits must be equal on the samples Lava ran.

Writes benchmarks/results/runtime_vs_lava.json. `--networks` picks the sections to run; those not
run keep their figures from the file's last run.

    python benchmarks/runtime_vs_lava.py [--run runs/readme-dc] [--lava-samples 10] [--device cpu]
        [--pilotnet-samples 64] [--pilotnet-lava-samples 2] [--repeats 9]
        [--networks digits,pilotnet,dta] [--dta-run runs/dta-small-digits] [--dta-lava-samples 8] [--note "..."]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from spikeport.config import load_config
from spikeport.export.exporter import export
from spikeport.export.loihi import input_bias, read_loihi_json
from spikeport.export.lower import fold_avgpool
from spikeport.io import write_json
from spikeport.export.netx_read import read_netx
from spikeport.deployment import Deployment, read_nir
from spikeport.runtime import reference as reference_backend
from spikeport.runtime.lava import run as lava_backend
from spikeport.runtime.loihi_fixed import from_lava_order, netx_drive, simulate_netx
from spikeport.runtime.reference import NIRExecutor, export_outputs
from spikeport.runtime.simulate import load_inputs
from spikeport.train.loop import train

from train_step import machine  # the same machine description as the other benchmark (same folder)

RESULTS = Path(__file__).parent / "results" / "runtime_vs_lava.json"
PILOTNET = Path(__file__).resolve().parents[2] / "shared" / "peer-tests" / "lava-dl" / "pilotnet_lif"
PILOTNET_T = 8  # input steps per sample: a window of 8 + 9 = 17 steps, lava-dl's reset interval
PILOTNET_LAYERS = ["input", "conv-0", "conv-1", "conv-2", "conv-3", "conv-4", "fc-0", "fc-1", "fc-2"]  # spiking, with references


def ensure_run(run: Path, config: Path = Path("configs/digits-cnn.yaml")) -> None:
    """Train and export `config` into `run` unless its export is there already."""
    if not (run / "export" / "loihi.json").is_file():
        if not (run / "checkpoint.pt").is_file():
            train(load_config(config), run)
        export(run)


def timed(function, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def alternated(functions: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each function, run in turn `repeats` times (after one warm-up each), so
    that a change in the machine's load falls on all of them alike."""
    times = {name: [] for name in functions}
    for function in functions.values():
        function()
    for _ in range(repeats):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(t) for name, t in times.items()}


def emulator_vs_float_bound(target, x: np.ndarray, device: torch.device, repeats: int) -> dict[str, float]:
    """Seconds of the emulator's arithmetic and of the float bound on the same deployed layers (see
    the module docstring), files read beforehand."""
    partition = target.manifest.partitions[0]
    deployed = fold_avgpool(read_nir(target.export_dir / partition.file))
    model = read_loihi_json(target.export_dir / target.manifest.files["loihi"])
    network = read_netx(target.export_dir / target.manifest.files["netx"])
    window = x.shape[1] + len(network.blocks) - 1
    executor = NIRExecutor(deployed, dt=target.manifest.dt).to(device)
    (name,) = executor.inputs
    frames = {name: torch.as_tensor(x, device=device).transpose(0, 1).contiguous()}

    def emulator():
        drive = input_bias(deployed, model, x)
        return simulate_netx(network, bias=drive, steps=window, aligned=True, device=device, record=export_outputs(network))

    def float_bound():
        with torch.no_grad():
            return executor(frames)

    return alternated({"emulator": emulator, "float_bound": float_bound}, repeats)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def pilotnet(samples: int, lava_samples: int, device: torch.device, timeout_s: float) -> dict:
    """lava-dl's pilotnet_lif: reference-loihi on `samples` samples in one batch vs Lava fixed_pt
    (netx, Loihi2SimCfg) on the first `lava_samples`, same inputs, equality checked here."""
    from spikeport.runtime.lava.run import run_netx_fixed

    path = PILOTNET / "network.net"
    target = Deployment.load(path)
    network = target.netx
    k = len(network.blocks) - 1
    window = PILOTNET_T + k
    image = from_lava_order(np.load(PILOTNET / "image.npy")).astype(np.int64)  # (C, H, W) bias
    x = np.stack([np.repeat(image[None] + i, PILOTNET_T, axis=0) for i in range(samples)])  # [N, T, C, H, W]
    inputs, few = {"input": x}, {"input": x[:lava_samples]}

    # Lava: one session for all its samples, start-up and compile included, one step per run call.
    drive = netx_drive(network, few["input"])["bias"]  # exactly what the reference runtime feeds simulate_netx
    lava_s, (lava_spikes, lava_v) = timed(lambda: run_netx_fixed(path, drive, window, timeout_s=timeout_s), 1)
    reference_s, _ = timed(lambda: reference_backend.run(target, inputs, mode="loihi", device=device), 3)

    # Equality on the samples Lava ran. Lava streams its samples back to back, and block i is reset at
    # step i of each window, so its steps 0..i-1 still hold the previous sample's tail; the batched
    # runtime starts every sample from rest. So: (a) simulate_netx streamed as Lava ran, every block's
    # spikes and the read-out's voltage at every step; (b) the batched run at each block's valid steps
    # (i.. of the window); (c) what run_reference_loihi returns (output and per-layer spike counts).
    shape = lambda a, ours: a.reshape(ours.shape)
    stream = simulate_netx(network, bias=drive.reshape(1, -1, *drive.shape[2:]), reset_interval=window, device=device, record=("v", "s"))
    records = simulate_netx(network, bias=drive, steps=window, reset_interval=window, device=device, record=("v", "s"))
    if not len(stream) == len(records) == len(lava_spikes):
        raise SystemExit(f"pilotnet_lif: {len(records)} reference layers, {len(lava_spikes)} Lava layers")
    mismatches = {}
    for i, (block, streamed, batched, theirs) in enumerate(zip(network.blocks, stream, records, lava_spikes)):
        ours = streamed.s.cpu().numpy().reshape(lava_samples, window, *block.shape)
        mismatches[f"streamed spikes {block.name}"] = int((ours != shape(theirs, ours)).sum())
        ours = batched.s.cpu().numpy()
        mismatches[f"batched spikes {block.name}"] = int((ours[:, i:] != shape(theirs, ours)[:, i:]).sum())
    ours = stream[-1].v.cpu().numpy().reshape(lava_samples, window, -1)
    mismatches["streamed read-out voltage"] = int((ours != shape(lava_v, ours)).sum())
    readout_v = records[-1].v.cpu().numpy()
    mismatches["batched read-out voltage"] = int((readout_v[:, k:] != shape(lava_v, readout_v)[:, k:]).sum())
    check = reference_backend.run(target, few, mode="loihi", device=device)
    # the runtime's output: the last block's voltage if netx made it an integrator (du -1), else its
    # spikes (pilotnet_lif's fc-3 is a LIF whose threshold, 131071, it never reaches: zeros)
    last = lava_v if network.blocks[-1].neuron.du < 0 else lava_spikes[-1]
    lava_output = last.reshape(readout_v.shape)[:, k : k + PILOTNET_T].astype(np.float64)
    mismatches["run_reference_loihi output"] = int((check.output != lava_output).sum())
    for i, (block, theirs) in enumerate(zip(network.blocks, lava_spikes)):
        if block.neuron.du >= 0:
            counts = theirs[:, i : i + PILOTNET_T].reshape(lava_samples, PILOTNET_T, -1).sum(-1)
            mismatches[f"run_reference_loihi spike counts {block.name}"] = int((check.spikes[block.name] != counts).sum())
    total = sum(mismatches.values())
    spikes_compared = int(sum(s.sum() for s in lava_spikes))
    if total or spikes_compared == 0:
        raise SystemExit(f"pilotnet_lif: reference-loihi and Lava fixed_pt differ ({mismatches}): the speed comparison is void")

    # Sample 0 is image.npy itself: its first window is the first 17 steps of the peer test's run.
    upstream = {}
    for name, record in zip(PILOTNET_LAYERS, records):
        reference = np.load(PILOTNET / f"{name}.npy")  # [W, H, C, steps] / [N, steps]: Lava's order
        ours = record.s[0].cpu().numpy()  # [window, *shape]
        ours = np.moveaxis(ours.transpose(0, *range(ours.ndim - 1, 0, -1)), 0, -1)
        upstream[name] = int((ours != reference[..., :window]).sum())
    if any(upstream.values()):
        raise SystemExit(f"pilotnet_lif: sample 0 does not reproduce lava-dl's references ({upstream})")

    return {
        "network": f"lava-dl pilotnet_lif ({path.name}: input 3x66x200, 5 conv, 4 dense; fc-3, the read-out, a LIF whose threshold 131071 it never reaches)",
        "inputs": f"sample i = image.npy + i as the input layer's bias, held for T={PILOTNET_T} steps; window {window} steps (T + {k} synaptic stages), reset every window",
        "lava_timing": "one Lava session for all its samples, start-up and compile included, one step per run call (the input bias is set every step)",
        "equal_on_lava_samples": True,
        "mismatches": total,
        "mismatches_by_check": mismatches,
        "spikes_compared": spikes_compared,
        "sample_0_vs_lava_dl_references": {"steps": window, "spike_mismatches": sum(upstream.values()), "layers": list(upstream)},
        "lava_samples": lava_samples,
        "reference_samples": samples,
        "seconds": {"lava_fixed_pt": lava_s, "reference_loihi": reference_s},
        "samples_per_s": {
            "reference_loihi": samples / reference_s,
            "lava_fixed_pt": lava_samples / lava_s,
        },
        "speedup_vs_lava": (samples / reference_s) / (lava_samples / lava_s),
    }


def dta_small(run: Path, lava_samples: int, device: torch.device, repeats: int) -> dict:
    """The small DTA export: the emulator on the whole test set vs Lava fixed_pt (module docstring)."""
    ensure_run(run, config=Path("configs/dta-small-digits.yaml"))
    target = Deployment.load(run)
    target, inputs, _ = load_inputs(target, None, None)
    samples = next(iter(inputs.values())).shape[0]
    few = {k: v[:lava_samples] for k, v in inputs.items()}
    lava_s, lava = timed(lambda: lava_backend.run(target, few, mode="loihi"), 1)
    reference_s = alternated({"reference_loihi": lambda: reference_backend.run(target, inputs, mode="loihi", device=device)}, repeats)["reference_loihi"]
    check = reference_backend.run(target, few, mode="loihi", device=device)
    mismatches = {k: int((check.spikes[k] != lava.spikes[k]).sum()) for k in check.spikes}
    output_difference = float(np.abs(check.output - lava.output).max())
    if sorted(check.spikes) != sorted(lava.spikes) or any(mismatches.values()) or output_difference != 0:
        raise SystemExit(f"DTA: reference-loihi and Lava fixed_pt differ ({mismatches}, output {output_difference}): the speed comparison is void")
    return {
        "network": f"{run} (DTA MS-ResNet, {len(target.manifest.partitions)} partitions, loihi.json), T={target.manifest.timesteps}",
        "lava_timing": "one Lava session for its samples (host process included), start-up and compile included",
        "equal_on_lava_samples": True,
        "spike_count_mismatches": mismatches,
        "spikes_compared": int(sum(v.sum() for v in check.spikes.values())),
        "output_max_abs_diff": output_difference,
        "lava_samples": lava_samples,
        "reference_samples": samples,
        "seconds": {"lava_fixed_pt": lava_s, "reference_loihi": reference_s},
        "samples_per_s": {"reference_loihi": samples / reference_s, "lava_fixed_pt": lava_samples / lava_s},
        "speedup_vs_lava": (samples / reference_s) / (lava_samples / lava_s),
        "machine": machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/readme-dc"))
    parser.add_argument("--lava-samples", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=9, help="alternated timings of the reference runners (medians)")
    parser.add_argument("--pilotnet-samples", type=int, default=64, help="samples in the reference runtime's batch")
    parser.add_argument("--pilotnet-lava-samples", type=int, default=2, help="samples Lava runs (about two minutes each on 2 cores)")
    parser.add_argument("--pilotnet-lava-timeout", type=float, default=1800, help="seconds before the Lava session is killed")
    parser.add_argument("--networks", default="digits,pilotnet,dta", help="sections to run; the others keep the file's figures")
    parser.add_argument("--dta-run", type=Path, default=Path("runs/dta-small-digits"))
    parser.add_argument("--dta-lava-samples", type=int, default=8)
    parser.add_argument("--note", default="", help="how the machine was when measured (e.g. shared with other jobs)")
    args = parser.parse_args()
    networks = set(args.networks.split(","))
    load_before = load_average()
    if "digits" not in networks:
        result = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"benchmark": "runtime_vs_lava"}
        if "dta" in networks:
            dta_load = load_average()
            result["dta_small"] = dta_small(args.dta_run, args.dta_lava_samples, torch.device(args.device), args.repeats)
            result["dta_small"]["load_average_1_5_15_min"] = {"before": dta_load, "after": load_average()}
            result["dta_small"]["note"] = args.note
        write_json(RESULTS, result)
        print(json.dumps(result.get("dta_small"), indent=2))
        return
    ensure_run(args.run)
    target = Deployment.load(args.run)
    target, inputs, _ = load_inputs(target, None, None)
    samples = next(iter(inputs.values())).shape[0]
    device = torch.device(args.device)
    few = {k: v[: args.lava_samples] for k, v in inputs.items()}

    lava_s, lava = timed(lambda: lava_backend.run_export_netx(target, few), 1)
    runners = alternated(
        {"reference_loihi": lambda: reference_backend.run(target, inputs, mode="loihi", device=device), "reference_float": lambda: reference_backend.run(target, inputs, mode="float", device=device)},
        args.repeats,
    )
    reference_s = runners["reference_loihi"]
    arithmetic = emulator_vs_float_bound(target, next(iter(inputs.values())), device, args.repeats)
    check = reference_backend.run(target, few, mode="loihi", device=device)
    equal = bool(np.array_equal(check.output, lava.output)) and all(np.array_equal(check.spikes[k], lava.spikes[k]) for k in check.spikes)
    if not equal:
        raise SystemExit("reference-loihi and Lava fixed_pt differ: the speed comparison is void")

    result = {
        "benchmark": "runtime_vs_lava",
        "network": f"{args.run} (digits CNN, model.net), T={target.manifest.timesteps}",
        "lava_timing": "one Lava session for all its samples, start-up and compile included, one step per run call",
        "device": args.device,
        "equal_on_lava_samples": equal,
        "lava_samples": args.lava_samples,
        "reference_samples": samples,
        "repeats": args.repeats,
        "note": args.note,
        "samples_per_s": {
            "reference_loihi": samples / reference_s,
            "lava_fixed_pt": args.lava_samples / lava_s,
            "reference_float": samples / runners["reference_float"],
            "emulator_arithmetic": samples / arithmetic["emulator"],
            "float_bound_arithmetic": samples / arithmetic["float_bound"],
        },
        "speedup_vs_lava": (samples / reference_s) / (args.lava_samples / lava_s),
        "cost_vs_float_bound": arithmetic["emulator"] / arithmetic["float_bound"],
        "end_to_end_cost_vs_float": reference_s / runners["reference_float"],
        "machine": machine(),
    }
    if "pilotnet" not in networks:
        pass
    elif PILOTNET.is_dir():
        lava_samples = min(args.pilotnet_lava_samples, args.pilotnet_samples)
        result["pilotnet_lif"] = pilotnet(args.pilotnet_samples, lava_samples, device, args.pilotnet_lava_timeout)
    else:
        note = f"{PILOTNET} not found (a user's clone has no ../shared): pilotnet_lif skipped"
        print(f"note: {note}")
        result["pilotnet_lif"] = {"skipped": note}
    if "dta" in networks:
        result["dta_small"] = dta_small(args.dta_run, args.dta_lava_samples, device, args.repeats)
    result["load_average_1_5_15_min"] = {"before": load_before, "after": load_average()}
    write_json(RESULTS, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
