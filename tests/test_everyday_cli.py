"""Everyday use of the command line, as a CI log sees it (output captured, not a terminal):
a line per stage of long work and no escape codes, tables and values written whole, one-line
usage errors, the accuracy of a simulation, one parity file per comparison, lazy imports."""

import json
import re
import subprocess
import sys

import nir
import numpy as np
import pytest
import torch

from conftest import load_trained_model
from spikeport.train import datasets

# escape codes, carriage returns (a redrawn line), a spinner's frames, a bar's half cells, an ellipsis
ESCAPES_AND_BARS = re.compile(r"\x1b|\r|[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏╸╺…]")


def one_line_error(result, *fragments):
    code, _, err = result
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spikeport: error: "), err
    assert "╭" not in err and "Usage:" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def test_data_build_writes_a_line_per_stage_in_a_log(cli, tmp_path):
    code, _, err = cli("data", "build", "digits", "--out", tmp_path / "d")
    assert code == 0, err
    assert re.search(rf"^generating digits into {re.escape(str(tmp_path / 'd' / 'digits'))}: \d+\.\d s$", err, re.M), err
    assert not ESCAPES_AND_BARS.search(err), err
    code, _, err = cli("data", "build", "digits", "--out", tmp_path / "d")  # cached: no stage ran
    assert code == 0 and "generating" not in err


def test_simulate_and_report_write_a_line_per_stage_and_the_accuracy(trained_run, cli, tmp_path):
    code, _, err = cli("simulate", trained_run, "--samples", "30", "--out", tmp_path)
    assert code == 0, err
    assert re.search(r"^reference-float: 30 samples: \d+\.\d s$", err, re.M), err
    assert not ESCAPES_AND_BARS.search(err), err
    # the accuracy printed is the trained torch model's on the same 30 test samples
    model = load_trained_model(trained_run)
    test = datasets.load("digits", trained_run.parent / "data", "test", 4)
    x = torch.stack([test[i][0] for i in range(30)]).transpose(0, 1)
    with torch.no_grad():
        predicted = model(x).mean(0).argmax(-1).numpy()
    accuracy = float((predicted == np.array([test[i][1] for i in range(30)])).mean())
    assert f"{tmp_path / 'sim' / 'reference-float.npz'}: accuracy {accuracy:.4f} on 30 samples" in err, err

    code, _, err = cli("report", trained_run, "--profiles", "loihi2", "--samples", "10", "--out", tmp_path)
    assert code == 0, err
    # the report runs the simulate stage for its activity (runtime/simulate.py), then reports
    assert re.search(r"^reference-float: 10 samples: \d+\.\d s$", err, re.M), err
    assert re.search(r"^report for loihi2: \d+\.\d s$", err, re.M), err
    assert not ESCAPES_AND_BARS.search(err), err


def test_tables_are_written_whole_when_not_on_a_terminal(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")  # a narrow log: rich would cut every row to 60 columns
    code, _, err = cli("data", "list")
    assert code == 0
    description = datasets.spec("av-digits").description
    assert len(description) > 60 and description in err, err
    assert "…" not in err


def test_report_values_are_written_whole_when_not_on_a_terminal(trained_run, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    code, _, err = cli("report", trained_run, "--profiles", "loihi2,ann-45nm", "--samples", "5", "--out", tmp_path)
    assert code == 0, err
    assert "…" not in err and not ESCAPES_AND_BARS.search(err), err
    widest = max(len(line) for line in err.splitlines())
    assert widest > 40, err


def test_an_energy_value_is_not_cut(monkeypatch, capsys):
    """The console itself: a table cell holding a long number, printed to a captured stream."""
    from rich.table import Table

    from spikeport.console import console

    monkeypatch.setenv("COLUMNS", "20")
    table = Table()
    for column in ("profile", "energy per sample", "latency per sample"):
        table.add_column(column)
    table.add_row("loihi2", "0.000213456789 J", "0.00123456789 s")
    console.print(table)
    err = capsys.readouterr().err
    assert "0.000213456789 J" in err and "0.00123456789 s" in err and "…" not in err


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["report", ".", "--budget-ms", "abc"], ["--budget-ms", "valid number", "(see 'spikeport report --help')"]),
        (["train", "configs/digits-cnn.yaml"], ["Missing option '--out'"]),
        (["trian"], ["No such command 'trian'"]),
        (["simulate", ".", "--samples", "many"], ["--samples", "valid integer"]),
        (["export"], ["Missing argument"]),
        (["report", ".", "--no-such-option"], ["--no-such-option"]),
    ],
)
def test_usage_errors_are_one_line(cli, args, fragments):
    one_line_error(cli(*args), *fragments)


def test_a_network_given_to_train(cli, tmp_path):
    for name in ("model.nir", "model.onnx", "checkpoint.pt"):
        path = tmp_path / name
        path.write_bytes(b"\x89HDF\r\n")
        line = one_line_error(cli("train", path, "--out", tmp_path / "run"), name, "not a config", "takes a config YAML")
        assert "not a text file" not in line
    one_line_error(cli("inspect", tmp_path / "model.nir"), "model.nir", "takes a config YAML")
    assert not (tmp_path / "run").exists()


def test_a_foreign_nir_without_input_names_the_npz_layout(trained_run, cli, tmp_path):
    graph = nir.read(trained_run / "export" / "model.nir")
    nir.write(tmp_path / "foreign.nir", graph)
    line = one_line_error(cli("simulate", tmp_path / "foreign.nir"), "no --input given", "--input FILE.npz", "'input' [N, T, 1, 8, 8]", "'labels' [N]")
    assert not (tmp_path / "sim").exists(), line
    # the layout it names is one that works, and its labels give the accuracy
    x = (np.random.default_rng(0).random((6, 4, 1, 8, 8)) * 16).astype(np.float32)
    np.savez(tmp_path / "in.npz", input=x, labels=np.arange(6) % 10)
    code, _, err = cli("simulate", tmp_path / "foreign.nir", "--input", tmp_path / "in.npz")
    assert code == 0, err
    result = np.load(tmp_path / "sim" / "reference-float.npz")
    accuracy = float((result["output"].mean(1).argmax(-1) == result["labels"]).mean())
    assert f"accuracy {accuracy:.4f} on 6 samples" in err, err


def test_each_comparison_keeps_its_parity_file(trained_run, cli, tmp_path):
    code, _, err = cli("simulate", trained_run, "--samples", "4", "--out", tmp_path, "--compare", "reference-float,onnx-float")
    assert code == 0, err
    code, _, err = cli("simulate", trained_run, "--samples", "4", "--out", tmp_path, "--compare", "reference-float,reference-loihi")
    assert code == 0, err
    first = json.loads((tmp_path / "sim" / "parity-reference-float-vs-onnx-float.json").read_text())
    second = json.loads((tmp_path / "sim" / "parity-reference-float-vs-reference-loihi.json").read_text())
    assert (first["a"], first["b"]) == ("reference-float.npz", "onnx-float.npz")
    assert (second["a"], second["b"]) == ("reference-float.npz", "reference-loihi.npz")
    assert f"{tmp_path / 'sim' / 'parity-reference-float-vs-reference-loihi.json'}: reference-float.npz vs reference-loihi.npz" in err
    assert not (tmp_path / "sim" / "parity.json").exists()


def test_version_and_verbose_after_the_command(cli, tmp_path):
    from spikeport import __version__

    code, out, _ = cli("--version")
    assert code == 0 and out.strip() == f"spikeport {__version__}"
    bad = tmp_path / "c.yaml"
    bad.write_text("model: {name: spiking-cnn}\ndata: {name: nope}\n")
    for args in (["--verbose", "train", bad, "--out", tmp_path / "r"], ["train", bad, "--out", tmp_path / "r", "--verbose"]):
        code, _, err = cli(*args)
        assert code == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("spikeport: error: ") and "nope" in err
    code, _, err = cli("train", bad, "--out", tmp_path / "r")
    assert code == 2 and "Traceback" not in err


@pytest.mark.parametrize(
    "module, heavy",
    [
        ("spikeport.cli", ("numpy", "yaml")),  # what `--help` and `--version` load
        ("spikeport.runtime.simulate", ()),
        ("spikeport.reporting", ()),
    ],
)
def test_the_command_line_starts_without_torch(module, heavy):
    """What makes `--help` and a mistyped argument answer at once: torch (seconds to import), the
    training code and matplotlib load only when a command needs them (benchmarks/startup.py)."""
    names = ("torch", "matplotlib", "lava", "sklearn", "spikeport.train.loop", *heavy)
    code = f"import sys, {module}; print(sorted(m for m in {names!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout


@pytest.mark.lava
def test_lava_runs_write_their_stage_lines(trained_run, cli, tmp_path):
    code, _, err = cli("simulate", trained_run, "--backend", "lava", "--mode", "loihi", "--samples", "3", "--out", tmp_path)
    assert code == 0, err
    lines = err.splitlines()
    session = next(i for i, line in enumerate(lines) if re.fullmatch(r"Lava session \(Loihi2SimCfg, CPU, in the Lava worker\): \d+\.\d s", line))
    run = next(i for i, line in enumerate(lines) if re.fullmatch(r"lava-loihi: 3 samples: \d+\.\d s", line))
    assert session < run  # the session is a stage inside the run's stage
    assert "accuracy" in lines[run + 1] and not ESCAPES_AND_BARS.search(err), err


def test_stages_on_a_terminal_are_a_live_display(monkeypatch):
    """On a terminal, nested stages share one live display, which clears itself: no log lines."""
    import io

    from spikeport import progress
    from spikeport.console import console

    screen = io.StringIO()
    monkeypatch.setattr(console, "_force_terminal", True)
    monkeypatch.setattr(console, "_file", screen)
    with progress.stage("outer stage") as advance_outer:
        with progress.stage("inner stage", total=3) as advance:
            for _ in range(3):
                advance()
            assert progress._live is not None and len(progress._live.tasks) == 2
        advance_outer()
    assert progress._live is None
    written = screen.getvalue()
    assert "\x1b[" in written  # drawn with cursor and colour codes
    assert not re.search(r"outer stage: \d+\.\d s", written) and not re.search(r"inner stage: \d+\.\d s", written)
