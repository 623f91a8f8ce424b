"""The checkpoint gate (issue 19): nothing but a plain tensor checkpoint reaches torch.

The hole it closes: torch 2.3.1 hands a TorchScript archive to `torch.jit.load` even under
`weights_only=True`, and loading runs the archive's code (CVE-2025-32434). The archive below
prints a marker from its `__setstate__`; the first test shows that torch itself runs it here (on a
torch that still has the hole), the next ones that spikeport refuses it in one line before torch
sees it, under `train --resume` and `export`, in real processes.
"""

from __future__ import annotations

import io
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from spikeport.errors import UserError
from spikeport.train.checkpoint import check_archive, load_checkpoint

MARKER = "SPIKEPORT-ARCHIVE-CODE-RAN"

# A scripted module's __setstate__ runs when torch.jit.load rebuilds it: here it only prints.
TORCHSCRIPT_WRITER = f"""
import sys, torch

class Payload(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.x = 1

    def forward(self, a):
        return a

    @torch.jit.export
    def __getstate__(self):
        return (self.x, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[int, bool]):
        print("{MARKER}")
        self.x = state[0]
        self.training = state[1]

torch.jit.save(torch.jit.script(Payload()), sys.argv[1])
"""


def python(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.fixture(scope="module")
def torchscript_archive(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ts")
    (folder / "writer.py").write_text(TORCHSCRIPT_WRITER)  # torch.jit.script reads the class's source file
    path = folder / "archive.pt"
    result = python(str(folder / "writer.py"), str(path))
    assert result.returncode == 0, result.stderr
    return path


def torch_has_the_hole() -> bool:
    major, minor = (int(part) for part in torch.__version__.split(".")[:2])
    return (major, minor) < (2, 6)


def test_this_torch_runs_the_archive_code_under_weights_only(torchscript_archive):
    """The vector is real where torch < 2.6: torch.load(weights_only=True) runs the archive's code."""
    if not torch_has_the_hole():
        pytest.skip(f"torch {torch.__version__} no longer dispatches to torch.jit.load (fixed in 2.6)")
    result = python("-c", f"import torch; torch.load({str(torchscript_archive)!r}, weights_only=True)")
    assert MARKER in result.stdout


@pytest.mark.parametrize("command", ["export", "resume"])
def test_spikeport_refuses_a_torchscript_checkpoint_before_torch_reads_it(command, torchscript_archive, trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("sim", "report"))
    shutil.copy(torchscript_archive, run / "checkpoint.pt")
    args = ["export", str(run)] if command == "export" else ["train", str(run / "config.yaml"), "--out", str(run), "--resume"]
    result = python("-m", "spikeport.cli", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert MARKER not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "checkpoint.pt: refused to load" in lines[0] and "TorchScript" in lines[0], lines


def test_the_gate_runs_before_torch_load(torchscript_archive, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("torch.load was called on a refused archive")

    monkeypatch.setattr(torch, "load", never)
    with pytest.raises(UserError, match="TorchScript"):
        load_checkpoint(torchscript_archive)


def test_the_gate_passes_a_real_checkpoint_with_every_kind_of_state(tmp_path):
    """Model, Adam state (tensor steps), schedule, scaler, BN counters, nested plain data."""
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Linear(4, 2))
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(1, 1, 6, 6)).sum().backward()
    optimizer.step()
    state = {
        "format": "spikeport-checkpoint-1",
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 4).state_dict(),
        "metrics": [{"epoch": 1, "loss": 0.5, "ok": True, "none": None}],
        "config": {"model": {"name": "x", "channels": [4, 8]}},
    }
    torch.save(state, tmp_path / "c.pt")
    check_archive(tmp_path / "c.pt")
    assert torch.equal(load_checkpoint(tmp_path / "c.pt")["model"]["0.weight"], model.state_dict()["0.weight"])


def rewritten(source: Path, target: Path, change) -> Path:
    """`source`'s members copied into `target` through `change(name, data) -> [(name, data, compress)]`."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for member in old.infolist():
            for name, data, compress in change(member.filename, old.read(member)):
                new.writestr(name, data, compress_type=compress)
    return target


class Hostile:
    def __reduce__(self):
        return (print, (MARKER,))


def pickled_with(obj, protocol: int) -> bytes:
    return pickle.dumps({"format": "spikeport-checkpoint-1", "model": obj}, protocol=protocol)


@pytest.fixture
def plain_checkpoint(tmp_path) -> Path:
    torch.save({"format": "spikeport-checkpoint-1", "model": {"w": torch.ones(3)}}, tmp_path / "plain.pt")
    return tmp_path / "plain.pt"


@pytest.mark.parametrize(
    "name, change, reason",
    [
        ("extra member", lambda n, d: [(n, d, zipfile.ZIP_STORED)] + ([(n.replace("data.pkl", "code/x.py"), b"", zipfile.ZIP_STORED)] if n.endswith("data.pkl") else []), "'code/x.py'"),
        ("constants.pkl", lambda n, d: [(n.replace("version", "constants.pkl") if n.endswith("/version") else n, d, zipfile.ZIP_STORED)], "TorchScript"),
        ("compressed member", lambda n, d: [(n, d, zipfile.ZIP_DEFLATED)], "compressed"),
        ("two folders", lambda n, d: [("other/byteorder" if n.endswith("/byteorder") else n, d, zipfile.ZIP_STORED)], "2 top-level folders"),
        ("no data.pkl", lambda n, d: [] if n.endswith("data.pkl") else [(n, d, zipfile.ZIP_STORED)], "no data.pkl"),
        ("GLOBAL of a function", lambda n, d: [(n, pickled_with(Hostile(), 2) if n.endswith("data.pkl") else d, zipfile.ZIP_STORED)], ".print)"),
        ("STACK_GLOBAL of a function", lambda n, d: [(n, pickled_with(Hostile(), 4) if n.endswith("data.pkl") else d, zipfile.ZIP_STORED)], ".print)"),
        ("INST opcode", lambda n, d: [(n, b"(ibuiltins\nobject\n." if n.endswith("data.pkl") else d, zipfile.ZIP_STORED)], "opcode INST"),
        ("damaged pickle", lambda n, d: [(n, d[: len(d) // 2] if n.endswith("data.pkl") else d, zipfile.ZIP_STORED)], "damaged"),
    ],
)
def test_the_gate_refuses_what_torch_save_does_not_write(name, change, reason, plain_checkpoint, tmp_path):
    bad = rewritten(plain_checkpoint, tmp_path / "bad.pt", change)
    with pytest.raises(UserError, match="refused to load") as refused:
        check_archive(bad)
    assert reason in str(refused.value) and str(bad) in str(refused.value)


def test_the_gate_refuses_a_non_zip_in_one_line(tmp_path):
    path = tmp_path / "x.pt"
    path.write_bytes(io.BytesIO(b"\x80\x02}q\x00.").getvalue())
    with pytest.raises(UserError, match="not a torch zip archive"):
        check_archive(path)
