"""Folders, interruptions and a full disk (issue 19), in real `python -m spikeport.cli` processes.

- The folder swap killed (SIGKILL) between its two renames, the one moment with neither the old
  nor the new folder in place: the next run finishes the swap, the new folder complete, and no
  hidden temporary is left.
- A run killed before its first checkpoint starts over; a second training into a folder that one
  is writing into is refused in one line.
- A full disk (a small tmpfs) during train, export, simulate and report: one line "no space left
  writing FILE", exit 2, no temporary, the previous result intact.
- Temporaries of dead writers are removed, those of live ones kept; files get the umask's mode.
(Ownership refusals and damaged caches, as bad inputs: tests/bad_inputs/corpus.py.)
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from spikeport.errors import UserError
from spikeport.io import MARKER, replacing_folder, write_json, write_text

# Runs the CLI with one function replaced: `kill-after-rename` makes os.rename kill the process
# (SIGKILL, no clean-up) right after the swap's first rename, final -> .NAME.old-ID; `stall`
# makes `module.name` say so through a file and wait to be killed before it runs.
CHILD = """
import os, signal, sys, time, pathlib, importlib
how, module, name, signal_file = sys.argv[1:5]
if how == "kill-after-rename":
    real = os.rename
    def rename(src, dst, *args, **kwargs):
        real(src, dst, *args, **kwargs)
        if ".old-" in os.fspath(dst):
            pathlib.Path(signal_file).touch()
            os.kill(os.getpid(), signal.SIGKILL)
    os.rename = rename
else:
    owner = importlib.import_module(module)
    def stall(*args, **kwargs):
        pathlib.Path(signal_file).touch()
        time.sleep(600)
    setattr(owner, name, stall)
sys.argv = ["spikeport", *sys.argv[5:]]
from spikeport.cli import main
main()
"""


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def child(how: str, module: str, name: str, flag: Path, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, how, module, name, str(flag), *map(str, args)], env=env(), stderr=subprocess.PIPE, text=True)


def spikeport(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spikeport.cli", *map(str, args)], env=env(), capture_output=True, text=True, timeout=timeout)


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder" for p in sorted(folder.rglob("*"))}


def hidden(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))


def run_copy(trained_run: Path, where: Path) -> Path:
    run = where / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("sim", "report"))
    return run


def wait_for(condition, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None or condition(), f"exited with {process.returncode}: {process.stderr.read()}"
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def one_error_line(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()  # off a terminal, finished stages print a line each before it
    errors = [line for line in lines if "error" in line.lower()]
    assert errors == lines[-1:] and lines[-1].startswith("spikeport: error: ") and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, lines[-1])
    return lines[-1]


# --- the swap's window ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command, final, next_run",
    [
        (["export"], "export", ["simulate", "RUN", "--samples", "2"]),  # a reader of export/ repairs it too
        (["report", "--samples", "4", "--profiles", "loihi2"], "report", ["report", "RUN", "--samples", "4", "--profiles", "loihi2"]),
    ],
    ids=["export", "report"],
)
def test_a_swap_killed_between_its_renames_is_finished_by_the_next_run(trained_run, tmp_path, cli, command, final, next_run):
    run = run_copy(trained_run, tmp_path)
    assert cli(command[0], run, *command[1:])[0] == 0  # the folder the swap replaces (in this process: only the next two are the test's)
    flag = tmp_path / "killed"
    process = child("kill-after-rename", "", "", flag, command[0], run, *command[1:])
    assert process.wait(300) == -signal.SIGKILL, process.stderr.read()
    process.stderr.close()
    assert flag.exists()
    assert not (run / final).exists(), "killed in the window: neither folder in place"
    new = [p for p in hidden(run, final) if ".new-" in p]
    assert len(new) == 1 and len(hidden(run, final)) == 2, hidden(run, final)
    complete = snapshot(run / new[0])

    result = spikeport(*[str(run) if a == "RUN" else a for a in next_run])
    assert result.returncode == 0, result.stderr
    if final == "export":
        assert snapshot(run / final) == complete, "the new folder, whole, in place"
    assert hidden(run, final) == [], "no hidden temporary left"
    written = json.loads((run / final / MARKER).read_text())["entries"]
    assert sorted(written) == sorted(snapshot(run / final)), "every entry the marker lists is there, and nothing else"


def test_a_build_killed_before_its_swap_is_removed_by_the_next_run(trained_run, tmp_path):
    run = run_copy(trained_run, tmp_path)
    before = snapshot(run / "export")
    flag = tmp_path / "stalled"
    process = child("stall", "spikeport.io", "_swap", flag, "export", run)
    wait_for(flag.exists, process)
    assert [p for p in hidden(run, "export") if ".new-" in p], "the build in its hidden folder"
    process.kill()
    process.wait(30)
    process.stderr.close()
    assert snapshot(run / "export") == before
    assert spikeport("export", run).returncode == 0
    assert hidden(run, "export") == []


# --- run-folder states ---------------------------------------------------------------------------


@pytest.fixture
def config_file(tiny_config, tmp_path) -> Path:
    tiny_config["train"]["epochs"] = 2
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    return path


@pytest.mark.parametrize("again", [[], ["--resume"]], ids=["fresh", "resume"])
def test_a_run_killed_before_its_first_checkpoint_starts_over(config_file, tmp_path, again):
    out = tmp_path / "run"
    flag = tmp_path / "stalled"
    process = child("stall", "spikeport.train.loop", "save_checkpoint", flag, "train", config_file, "--out", out, "--device", "cpu")
    wait_for(flag.exists, process)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    process.stderr.close()
    assert (out / "config.yaml").is_file() and not (out / "checkpoint.pt").exists()

    result = spikeport("train", config_file, "--out", out, "--device", "cpu", *again)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.yaml", "metrics.jsonl"]


def test_a_second_training_into_the_same_folder_is_refused(config_file, tmp_path):
    out = tmp_path / "run"
    flag = tmp_path / "stalled"
    first = child("stall", "spikeport.train.loop", "save_checkpoint", flag, "train", config_file, "--out", out, "--device", "cpu")
    try:
        wait_for(flag.exists, first)
        before = snapshot(out)
        for extra in ([], ["--resume"]):
            second = spikeport("train", config_file, "--out", out, "--device", "cpu", *extra)
            one_error_line(second, str(out), "another training is writing into this folder")
        assert snapshot(out) == before
    finally:
        first.kill()
        first.wait(30)
        first.stderr.close()


# --- a full disk ---------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A tmpfs of 8 MiB mounted in tmp_path (root only); skipped where mounting is not allowed,
    except on CI."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True, text=True)
    if mounted.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs on CI: {mounted.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path, leave: int = 0) -> None:
    """Fill the disk up, then free `leave` bytes again."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for chunk in (2**20, 2**12, 1):
            with pytest.raises(OSError):
                while True:
                    os.write(fd, b"\0" * chunk)
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    os.truncate(disk / "filler", max(0, size - leave))


def no_temporaries(folder: Path) -> list[str]:
    return [str(p.relative_to(folder)) for p in folder.rglob(".*") if p.name not in (MARKER,)]


def test_a_full_disk_is_one_line_and_keeps_the_previous_result(trained_run, small_disk, tmp_path, cli):
    run = run_copy(trained_run, small_disk)
    # The previous results, written in this process; the three runs on the full disk are real processes.
    assert cli("simulate", run, "--samples", "2")[0] == 0
    assert cli("report", run, "--samples", "4", "--profiles", "loihi2")[0] == 0
    before = snapshot(run)

    fill(small_disk, leave=32 * 1024)  # export: model.nir (about 100 KiB) fails half-way
    one_error_line(spikeport("export", run), "no space left writing", str(run / "export"))
    fill(small_disk)
    one_error_line(spikeport("simulate", run, "--samples", "2"), "no space left writing", str(run / "sim"))
    one_error_line(spikeport("report", run, "--samples", "4", "--profiles", "loihi2"), "no space left writing", str(run / "report"))
    assert snapshot(run) == before, "the previous export, simulation and report as they were"
    assert no_temporaries(run) == []


def test_a_full_disk_during_training_is_one_line_and_the_run_can_start_over(config_file, small_disk):
    fill(small_disk, leave=8 * 1024)  # config.yaml fits, the checkpoint does not
    out = small_disk / "run"
    one_error_line(spikeport("train", config_file, "--out", out, "--device", "cpu"), "no space left writing", str(out / "checkpoint.pt"))
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml"], "no temporary, no lock left"
    (small_disk / "filler").unlink()
    result = spikeport("train", config_file, "--out", out, "--device", "cpu")
    assert result.returncode == 0, result.stderr


def test_a_full_disk_at_a_fresh_start_leaves_nothing(config_file, small_disk):
    fill(small_disk)
    one_error_line(spikeport("train", config_file, "--out", small_disk / "run", "--device", "cpu"), "no space left writing")
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


# --- temporaries and modes -----------------------------------------------------------------------

HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(600)
"""


def test_dead_writers_temporaries_are_removed_and_live_ones_kept(tmp_path):
    dead, live = tmp_path / ".a.json.0123abcd.tmp", tmp_path / ".a.json.4567cdef.tmp"
    dead.write_text("half")
    live.write_text("being written")
    user = tmp_path / ".a.json.mine.tmp"  # not a name spikeport gives its temporaries
    user.write_text("the user's")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(live)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        write_json(tmp_path / "a.json", {"x": 1})
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, user.name, "a.json"])
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the holder is gone: its lock with it
    os.close(fd)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_are_created_with_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        write_text(tmp_path / "a.txt", "x")
        write_text(tmp_path / "a.txt", "y")  # replaced: created anew, with the same mode
    finally:
        os.umask(previous)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == mode


def test_exported_files_are_0644_under_umask_022(trained_run, tmp_path):
    run = run_copy(trained_run, tmp_path)
    previous = os.umask(0o022)
    try:
        assert spikeport("export", run).returncode == 0
    finally:
        os.umask(previous)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (run / "export").iterdir()}
    assert set(modes.values()) == {"0o644"}, modes


def test_only_an_empty_folder_or_one_spikeport_wrote_is_replaced(tmp_path):
    final = tmp_path / "export"
    final.mkdir()  # made by the user for the output: empty, so replaced
    for content in ("one", "two"):
        with replacing_folder(final, "export") as build:
            (build / "plots").mkdir()
            write_text(build / "plots" / "a.txt", content)
        assert (final / "plots" / "a.txt").read_text() == content
    (final / "plots" / "mine.txt").write_text("the user's")
    with pytest.raises(UserError, match="holds plots/mine.txt, which spikeport did not write"):
        with replacing_folder(final, "export") as build:
            raise AssertionError("refused before the block runs")
    assert (final / "plots" / "mine.txt").read_text() == "the user's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"], "no temporary left"
