"""`spikeport report TARGET`: the network's activity, checked against chips.

The activity comes from an activity file (`--activity`, the sim/activity.json that `spikeport
simulate` writes: the report then runs nothing), or is measured here on the inputs. This module
joins the stages (the runtime measures, hwprofiles/ reports), so it lives in spikeport/ itself:
hwprofiles/ imports no other stage.

TARGET is a run folder (after `spikeport export`), a manifest.json, or a foreign .nir file (bring
your own model; give --input, and --dt when the file does not record it). The report goes to
DIR/report/ (report.json, report.md, report.html, plots/), built under a temporary name and
swapped into place when complete (spikeport.io.replacing_folder), so an interrupted report never
looks like a finished one and a report/ folder holding anything spikeport did not write is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from spikeport.errors import UserError, recorded_warnings
from spikeport.hwprofiles.registry import resolve_profiles
from spikeport.io import check_replaceable, replacing_folder
from spikeport.progress import stage

if TYPE_CHECKING:
    from spikeport.hwprofiles.report import Report


def make_report(
    target: str | Path,
    profiles: list[str] = (),
    profiles_dirs: list[str | Path] = (),
    input_file: str | Path | None = None,
    samples: int | None = 256,
    budget_ms: float | None = None,
    out: str | Path | None = None,
    device: str = "auto",
    dt: float | None = None,
    backend: str = "reference",
    mode: str | None = None,
    activity: str | Path | None = None,
) -> Report:
    """`backend`/`mode` pick where the activity comes from (activity.ACTIVITY); `mode` None is loihi
    where it is the only one (Lava, whose float runner gives no per-neuron spikes; a lava-dl .net
    file), float otherwise."""
    chosen = resolve_profiles(list(profiles), list(profiles_dirs))  # bad profiles fail before any work
    from spikeport.runtime.simulate import load_inputs, resolve_target  # no torch: nir, h5py, onnxruntime

    resolved = resolve_target(target)
    resolved.dt = dt
    final = Path(out or resolved.folder) / "report"
    check_replaceable(final)  # before any work: a report/ spikeport did not write is refused
    # The runtime (torch) and the plots (matplotlib) are imported only after the checks of the
    # target, the report folder and the activity or --input file: they take seconds and most of a GB.
    if activity is not None:
        network = _read_activity_of(Path(activity), resolved, Path(target))
        from spikeport.hwprofiles.report import write_report

        with stage(f"report for {', '.join(p.name for p in chosen)}"), replacing_folder(final, "report") as build:
            report = write_report(network, chosen, build, budget_ms, None)
        report.out_dir = final
        return report
    inputs, labels = load_inputs(resolved, Path(input_file) if input_file else None, None if input_file else samples)
    from spikeport.runtime.accuracy import check_labels, task_accuracy

    check_labels(labels, inputs, input_file)
    from spikeport.device import resolve_device
    from spikeport.hwprofiles.report import write_report
    from spikeport.runtime.measure import measure

    name = Path(target).stem if Path(target).suffix else Path(target).name
    mode = mode or ("loihi" if backend == "lava" or resolved.netx is not None else "float")
    with stage(f"activity of {len(next(iter(inputs.values())))} samples ({backend}, {mode})"), recorded_warnings() as notes:
        network = measure(resolved, inputs, resolve_device(device), name=name, backend=backend, mode=mode)
    network.warnings = notes
    if labels is not None:
        with stage(f"task accuracy on {len(labels)} labelled samples"):
            accuracy = task_accuracy(resolved, inputs, labels, resolve_device(device), chosen)
    else:
        accuracy = None
    with stage(f"report for {', '.join(p.name for p in chosen)}"), replacing_folder(final, "report") as build:
        report = write_report(network, chosen, build, budget_ms, accuracy)
    report.out_dir = final
    return report


def _read_activity_of(path: Path, resolved, target: Path):
    """The activity file's network, refused in one line when it was measured on another deployment."""
    from spikeport.activity import fingerprint, read_activity

    network, measured = read_activity(path)
    if measured.deployment != fingerprint(resolved.source):
        raise UserError(f"{path}: measured on another deployment than {target} (its manifest or file differs); run `spikeport simulate {target}` again")
    return network
