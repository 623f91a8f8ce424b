"""`spikeport report TARGET`: the network's activity, checked against chips.

The activity comes from an activity file (`--activity`, the sim/activity.json that `spikeport
simulate` writes: the report then runs nothing), or from the run `simulate` would make
(runtime/simulate.py `run`: the backend, then its spike trains counted), made here in memory. This
module joins the stages (the runtime counts, hwprofiles/ reports), so it lives in spikeport/
itself: hwprofiles/ imports no other stage (tests/test_import_graph.py).

TARGET is a run folder (after `spikeport export`), an export folder, a manifest.json, a foreign
.nir file (bring your own model; give --input, and --dt when the file does not record it) or a
lava-dl .net file (spikeport/deployment.py `Deployment.load`). The report goes to
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
    from spikeport.deployment import Deployment
    from spikeport.hwprofiles.report import Report


def make_report(
    target: Deployment | str | Path,
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
    """`backend`/`mode` pick the run whose spike trains are counted (runtime/measure.py ACTIVITY);
    `mode` None is loihi for Lava (what the chip computes) and a lava-dl .net file (its only
    mode), float otherwise. Without `activity` the report runs what `simulate` runs
    (runtime/simulate.py `run`), in memory, and counts it."""
    chosen = resolve_profiles(list(profiles), list(profiles_dirs))  # bad profiles fail before any work
    from spikeport.runtime.backends import check_backend
    from spikeport.runtime.simulate import deployment_name, load, load_inputs, run  # no torch: nir, h5py, onnxruntime

    deployment = load(target, dt)
    final = Path(out or deployment.folder) / "report"
    check_replaceable(final)  # before any work: a report/ spikeport did not write is refused
    # The runtime (torch) and the plots (matplotlib) are imported only after the checks of the
    # target, the report folder and the activity or --input file: they take seconds and most of a GB.
    if activity is not None:
        network = _read_activity_of(Path(activity), deployment, target)
        deployment.check_deployed()
        from spikeport.hwprofiles.report import write_report

        with stage(f"report for {', '.join(p.name for p in chosen)}"), replacing_folder(final, "report") as build:
            report = write_report(network, chosen, build, budget_ms, None)
        report.out_dir = final
        return report
    mode = mode or ("loihi" if backend == "lava" or deployment.netx is not None else "float")
    check_backend(backend, mode)
    deployment, inputs, labels = load_inputs(deployment, Path(input_file) if input_file else None, None if input_file else samples)
    from spikeport.runtime.accuracy import check_labels, task_accuracy

    check_labels(labels, inputs, input_file)
    deployment.check_deployed()
    from spikeport.hwprofiles.report import write_report
    from spikeport.runtime.measure import check_source

    check_source(deployment, backend, mode)

    with recorded_warnings() as notes:  # the run `simulate` makes, in memory, and its activity
        result, network = run(deployment, inputs, backend, mode, device, name=deployment_name(deployment))
    if isinstance(network, str):
        raise UserError(f"{target}: no activity to report: {network}")
    network.warnings = notes
    if labels is not None:
        with stage(f"task accuracy on {len(labels)} labelled samples"):
            known = {mode: result.output} if backend == "reference" else None
            accuracy = task_accuracy(deployment, inputs, labels, device, chosen, known)
    else:
        accuracy = None
    with stage(f"report for {', '.join(p.name for p in chosen)}"), replacing_folder(final, "report") as build:
        report = write_report(network, chosen, build, budget_ms, accuracy)
    report.out_dir = final
    return report


def _read_activity_of(path: Path, deployment, target):
    """The activity file's network, refused in one line when it was measured on another deployment."""
    from spikeport.activity import fingerprint, read_activity

    network, measured = read_activity(path)
    if measured.deployment != fingerprint(deployment.source):
        raise UserError(f"{path}: measured on another deployment than {target} (its manifest or file differs); run `spikeport simulate {target}` again")
    return network
