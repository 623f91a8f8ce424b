"""The `spikeport` command line: one command per pipeline stage.

Exit codes: 0 success; 2 a user error (one line on stderr naming the file, field or value and
what is wrong; `--verbose` adds the traceback), a mistyped command or option included; 1 a bug in
spikeport (with its traceback).

Each command imports its stage (torch, Lava, ONNX Runtime, matplotlib) inside its function, after
the checks of its arguments and files that need none of them: `--help`, a mistyped option or
profile name answer at once instead of after seconds of imports (benchmarks/startup.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import traceback
import warnings
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from typer import _click as click  # typer's own copy of click, whose exceptions it raises

from spikeport import __version__
from spikeport.console import console
from spikeport.errors import DeploymentWarning, UserError
from spikeport.io import NoSpace, is_no_space

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Train spiking networks, export them to neuromorphic formats, simulate them and report per chip.",
)
data_app = typer.Typer(no_args_is_help=True, help="The built-in datasets (generated locally, no download).")
app.add_typer(data_app, name="data")

_options = {"verbose": False}


def _print_version(value: bool) -> None:
    if value:
        print(f"spikeport {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    verbose: bool = typer.Option(False, "--verbose", help="Show tracebacks for user errors too (also after the command)."),
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
) -> None:
    _options["verbose"] = _options["verbose"] or verbose


@app.command()
def train(
    config: Path = typer.Argument(..., help="Config YAML (see configs/)."),
    out: Path = typer.Option(..., "--out", help="Run folder to create (or continue with --resume)."),
    epochs: Optional[int] = typer.Option(None, help="Override train.epochs."),
    seed: Optional[int] = typer.Option(None, help="Override train.seed."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    nproc: int = typer.Option(1, help="Training processes (torchrun, DDP: gloo on CPU, nccl on GPU)."),
) -> None:
    """Train a model; writes config.yaml, checkpoint.pt and metrics.jsonl into the run folder."""
    from spikeport.api import train as run_training

    try:
        run = run_training(config=config, out=out, epochs=epochs, seed=seed, device=device, resume=resume, nproc=nproc)
    except subprocess.CalledProcessError as e:  # the training processes have printed why
        raise SystemExit(e.returncode) from None
    final = run.metrics[-1]
    console.print(f"[bold]{out}[/bold]: {final['epoch']} epochs, test accuracy {final['test_acc']:.4f}")


def _checked_model(cfg, source: Path):
    """The config's model, built once here so that a wrong model option or dataset name is
    reported against the config file that holds it."""
    from spikeport.train.loop import model_for

    try:
        return model_for(cfg)
    except UserError as e:
        raise UserError(f"{source}: {e}") from None


@app.command()
def inspect(
    config: Path = typer.Argument(..., help="Config YAML."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
) -> None:
    """Parameter counts per module and in total, input shape and timesteps of a config's model."""
    from spikeport.api import _check_is_config

    _check_is_config(config, "inspect")
    from spikeport.config import load_config

    cfg = load_config(config)
    from spikeport.train import datasets
    from spikeport.train.models import parameter_counts

    model = _checked_model(cfg, config)
    counts = parameter_counts(model)
    summary = {
        "total_params": sum(p.numel() for p in model.parameters()),
        "modules": counts,
        "input_shape": _shapes(datasets.spec(cfg.data.name).input_shape),
        "timesteps": cfg.data.timesteps,
    }
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    table = Table(title=f"{config}: {cfg.model['name']} on {cfg.data.name}")
    table.add_column("module")
    table.add_column("parameters", justify="right")
    for name, n in counts.items():
        table.add_row(name, f"{n:,}")
    table.add_row("[bold]total", f"[bold]{summary['total_params']:,}")
    console.print(table)
    shapes = summary["input_shape"]
    shown = ", ".join(f"{k} {tuple(v)}" for k, v in shapes.items()) if isinstance(shapes, dict) else str(tuple(shapes))
    console.print(f"input {shown} per timestep, T = {summary['timesteps']}")


def _shapes(shape: tuple | dict) -> list | dict:
    """A dataset's input shape as JSON: a list, or lists by input name for a multi-input dataset."""
    return {name: list(s) for name, s in shape.items()} if isinstance(shape, dict) else list(shape)


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="A run folder written by `spikeport train`, or a .nir file another tool wrote."),
    formats: Optional[str] = typer.Option(None, help="Comma-separated: nir, onnx, lava (default: all three; nir,lava for a .nir file)."),
    quantize: Optional[str] = typer.Option(None, help="loihi | none (default: loihi, for every model; docs/export.md)."),
    dt: Optional[float] = typer.Option(None, help="Seconds per timestep written into the NIR file (a run: default 1e-3; 1e-4 is what snnTorch's "
                                       "import_nir assumes). A .nir file: needed where it gives none."),
    out: Optional[Path] = typer.Option(None, "--out", help="A .nir file: the folder for export/ (default: the file's folder)."),
    timesteps: Optional[int] = typer.Option(None, help="A .nir file: timesteps per sample (or give --input)."),
    input: Optional[Path] = typer.Option(None, "--input", help="A .nir file: npz with key `input` [N, T, *input_shape] to calibrate the fixed-point ranges on."),
) -> None:
    """Export a trained run to RUN_DIR/export, or a .nir file to OUT/export: manifest, NIR (as exported, and deployed.nir as the chip runs it), ONNX, Loihi fixed point, netx (docs/export.md)."""
    from spikeport.api import export as run_export

    listed = None if formats is None else [f.strip() for f in formats.split(",") if f.strip()]
    if run_dir.suffix == ".nir":
        deployment = run_export(nir=run_dir, out=out, formats=listed, quantize=quantize, dt=dt, timesteps=timesteps, inputs=input)
    else:
        given = [name for name, value in (("--out", out), ("--timesteps", timesteps), ("--input", input)) if value is not None]
        if given:
            raise UserError(f"{given[0]}: for a .nir file; a run exports to RUN_DIR/export, with its own timesteps and training set")
        deployment = run_export(run=run_dir, formats=listed, quantize=quantize, dt=dt)
    console.print(f"[bold]{deployment.path}[/bold]: " + ", ".join(sorted(p.name for p in deployment.path.iterdir() if not p.name.startswith("."))))


@app.command()
def simulate(
    target: Path = typer.Argument(..., help="A run folder (after export), an export folder, a manifest.json, a .nir or a lava-dl .net file."),
    backend: str = typer.Option("reference", help="reference | onnx | lava"),
    mode: str = typer.Option("float", help="float | loihi (fixed point; reference and lava; a .net file: loihi only)"),
    samples: Optional[int] = typer.Option(None, help="How many test samples (default: the whole test set)."),
    input: Optional[Path] = typer.Option(None, "--input", help="npz with key `input` [N, T, *input_shape]."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    out: Optional[Path] = typer.Option(None, help="Folder for sim/ (default: the target's folder)."),
    dt: Optional[float] = typer.Option(None, help="Seconds per timestep, for a .nir file that does not say."),
    compare: Optional[str] = typer.Option(None, help="BACKEND-MODE,BACKEND-MODE: run both and write sim/parity-A-vs-B.json."),
) -> None:
    """Simulate an exported network; writes DIR/sim/<backend>-<mode>.npz (and parity-A-vs-B.json).

    A later run of the same backend and mode, or the same comparison, replaces its file; other
    backends, modes and comparisons keep theirs (docs/runtime.md). With labels (the run's test
    set, or `labels` in the --input file) it prints the accuracy too."""
    from spikeport.api import compare as run_comparison
    from spikeport.api import simulate as run_simulation

    runs = [(backend, mode)]
    if compare:
        pairs = [c.strip().rsplit("-", 1) for c in compare.split(",")]
        if len(pairs) != 2 or any(len(p) != 2 for p in pairs):
            raise UserError(f"--compare: expected BACKEND-MODE,BACKEND-MODE, got {compare!r}")
        runs = [tuple(p) for p in pairs]
    results = [run_simulation(target=target, backend=b, mode=m, samples=samples, inputs=input, device=device, out=out, dt=dt) for b, m in runs]
    for result in results:
        accuracy = "" if result.accuracy is None else f": accuracy {result.accuracy:.4f} on {len(result.labels)} samples"
        console.print(f"[bold]{result.path}[/bold]{accuracy}")
    if compare:
        parity = run_comparison(a=results[0], b=results[1])
        console.print(
            f"[bold]{parity.path}[/bold]: {parity.data['a']} vs {parity.data['b']}: outputs differ by at most {parity.output_max_abs_diff:.3g}, "
            f"predictions agree on {parity.prediction_agreement:.1%}"
        )


@app.command()
def report(
    target: Path = typer.Argument(..., help="A run folder (after export), an export folder, a manifest.json, a .nir or a lava-dl .net file."),
    profiles: str = typer.Option("all", help="all, or comma-separated profile names or .yaml paths."),
    profiles_dir: list[Path] = typer.Option([], "--profiles-dir", help="A folder of your own profile YAML files (repeatable)."),
    input: Optional[Path] = typer.Option(None, "--input", help="npz with key `input` [N, T, *input_shape]."),
    samples: int = typer.Option(256, help="Test samples to average over (without --input)."),
    backend: str = typer.Option("reference", help="reference | lava: the runtime whose spikes the report counts."),
    mode: Optional[str] = typer.Option(None, help="float | loihi (Loihi fixed point on model.net). Default: loihi for lava and .net files, else float."),
    budget_ms: Optional[float] = typer.Option(None, help="Latency budget per sample in ms: exit 3 when a chip misses it."),
    out: Optional[Path] = typer.Option(None, help="Folder for report/ (default: the target's folder)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    dt: Optional[float] = typer.Option(None, help="Seconds per timestep, for a .nir file that does not say."),
    activity: Optional[Path] = typer.Option(None, "--activity", help="An activity file (the sim/activity.json `simulate` writes): count nothing again."),
) -> None:
    """Spikes, synaptic operations, fit, energy and latency per hardware profile; exit 3 when a check fails."""
    from spikeport.api import report as make_report
    from spikeport.config import check_number
    from spikeport.hwprofiles.table import print_report

    if samples < 1:
        raise UserError(f"--samples: must be at least 1, got {samples}")
    check_number("--budget-ms", budget_ms, 0, low_open=True)
    check_number("--dt", dt, 0, low_open=True)
    names = "all" if profiles == "all" else [p.strip() for p in profiles.split(",") if p.strip()]
    result = make_report(target=target, profiles=names, profiles_dirs=profiles_dir, inputs=input, samples=samples, backend=backend,
                         mode=mode, budget_ms=budget_ms, out=out, device=device, dt=dt, activity=activity)
    print_report(result.data, console)
    console.print(f"[bold]{result.path}[/bold]: report.json, report.md, report.html, plots/")
    if not result.passed:
        raise SystemExit(3)


profiles_app = typer.Typer(no_args_is_help=True, help="Hardware profiles (hwprofiles/profiles/*.yaml, or your own).")
app.add_typer(profiles_app, name="profiles")


@profiles_app.command("list")
def profiles_list(
    as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
    profiles_dir: list[Path] = typer.Option([], "--profiles-dir", help="A folder of your own profile YAML files."),
) -> None:
    """The available profiles."""
    from spikeport.hwprofiles.registry import available_profiles
    from spikeport.hwprofiles.table import print_profiles

    known = available_profiles(profiles_dir)
    if as_json:
        print(json.dumps([p.model_dump(mode="json") for p in known.values()], indent=2))
        return
    print_profiles(list(known.values()), console)


@profiles_app.command("show")
def profiles_show(
    name: str = typer.Argument(..., help="Profile name or .yaml path."),
    profiles_dir: list[Path] = typer.Option([], "--profiles-dir", help="A folder of your own profile YAML files."),
) -> None:
    """Every figure of one profile, with its source and confidence."""
    from spikeport.hwprofiles.registry import resolve_profiles

    (profile,) = resolve_profiles([name], profiles_dir)
    print(json.dumps(profile.model_dump(mode="json"), indent=2))


@profiles_app.command("validate")
def profiles_validate(path: Path = typer.Argument(..., help="A profile YAML file.")) -> None:
    """Check a profile file against the schema; one line naming the field when it is wrong."""
    from spikeport.hwprofiles.registry import load_profile

    profile = load_profile(path)
    console.print(f"{path}: valid profile {profile.name!r}")


@data_app.command("list")
def data_list() -> None:
    """The built-in datasets."""
    from spikeport.train import dataset_specs

    table = Table()
    for column in ("name", "input shape", "classes", "description"):
        table.add_column(column)
    for name in dataset_specs.dataset_names():
        spec = dataset_specs.spec(name)
        table.add_row(name, str(spec.input_shape), str(spec.num_classes), spec.description)
    console.print(table)


@data_app.command("build")
def data_build(
    name: str = typer.Argument(..., help="Dataset name (see `spikeport data list`)."),
    out: Path = typer.Option(Path("data"), "--out", help="Dataset root folder (data.root in configs)."),
    option: list[str] = typer.Option([], "--option", help="KEY=VALUE generator setting, as data.options in a config (repeatable)."),
) -> None:
    """Generate a built-in dataset into the dataset root (cached: a second build is instant)."""
    from spikeport.readers import parse_yaml

    options = {}
    for item in option:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise UserError(f"--option {item!r}: expected KEY=VALUE, e.g. visual_noise=0.8")
        options[key] = parse_yaml(value, f"--option {key}")
    from spikeport.train.dataset_specs import spec

    spec(name)  # an unknown name answers before the loaders' imports (torch, tonic)
    from spikeport.train import datasets

    path = datasets.build(name, out, options=options)
    console.print(f"{name}: {path}")


def main() -> None:
    args, _options["verbose"] = _without_verbose(sys.argv[1:])
    warnings.showwarning = _show_warning
    try:
        code = app(args=args, prog_name="spikeport", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:
        sys.exit(e.exit_code)  # typer has printed the help
    except click.ClickException as e:  # a mistyped command, option or value: one line, as any user error
        print(f"spikeport: error: {_usage_message(e)}", file=sys.stderr)
        sys.exit(e.exit_code)
    except typer.Abort:
        print("spikeport: aborted", file=sys.stderr)
        sys.exit(1)
    except (UserError, OSError) as e:
        if isinstance(e, OSError) and not is_no_space(e):
            raise
        if _options["verbose"]:
            traceback.print_exc()
        message = e if isinstance(e, UserError) else NoSpace(e.filename or "the output")  # a full disk outside atomic_open
        print(f"spikeport: error: {message}", file=sys.stderr)
        sys.exit(getattr(message, "exit_code", 2))
    if isinstance(code, int) and code:  # typer.Exit(code), 130 for Ctrl-C
        sys.exit(code)


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning) -> None:
    """A DeploymentWarning is one line, like an error; other warnings are Python's."""
    if issubclass(category, DeploymentWarning):
        print(f"spikeport: warning: {message}", file=sys.stderr)
    else:
        _default(message, category, filename, lineno, file, line)


def _without_verbose(argv: list[str]) -> tuple[list[str], bool]:
    """argv without `--verbose`, wherever it stands (before or after the command), and whether it
    was there. Arguments after `--` are left alone."""
    end = argv.index("--") if "--" in argv else len(argv)
    kept = [a for a in argv[:end] if a != "--verbose"] + argv[end:]
    return kept, len(kept) < len(argv)


def _usage_message(e: click.ClickException) -> str:
    """click's error on one line, with the command whose --help explains it."""
    message = " ".join(e.format_message().split())
    ctx = getattr(e, "ctx", None)
    return f"{message} (see '{ctx.command_path} --help')" if ctx is not None else message


if __name__ == "__main__":  # torchrun starts each training process as `python -m spikeport.cli train ...`
    main()
