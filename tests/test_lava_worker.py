"""The Lava worker boundary (issue 15): Lava runs in its own Python 3.10 environment, exchanging
only files with the core; a missing or wrong environment, a worker that dies and one that hangs
each end in one line, with no process of the run left and no shared memory held."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nir
import numpy as np
import psutil
import pytest

from lava_env import patched_worker, python_without_lava
from spikeport.errors import UserError, WorkerCrashed
from spikeport.runtime.lava.run import run_lava, run_netx_fixed
from spikeport.runtime.lava.sandbox import ENVIRONMENT_VARIABLE
from spikeport.runtime.lava.worker.group import SHARED_MEMORY
from spikeport.runtime.lava.worker import exchange

pytestmark = pytest.mark.lava


def small_graph() -> nir.NIRGraph:
    rng = np.random.default_rng(0)
    nodes = {
        "input": nir.Input(np.array([4])),
        "fc1": nir.Affine(rng.normal(size=(6, 4)), np.zeros(6)),
        "lif1": nir.LIF(tau=np.full(6, 0.002), r=np.ones(6), v_leak=np.zeros(6), v_threshold=np.ones(6)),
        "fc2": nir.Affine(rng.normal(size=(3, 6)), np.zeros(3)),
        "output": nir.Output(np.array([3])),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 0.001})


INPUTS = np.random.default_rng(1).uniform(0, 2, size=(2, 5, 4))


def shared_memory() -> set[str]:
    return {p.name for p in SHARED_MEMORY.glob("psm_*")}


def assert_nothing_left(before: set[str]) -> None:
    assert psutil.Process().children(recursive=True) == []
    assert shared_memory() <= before


def test_a_run_through_the_worker_leaves_nothing():
    before = shared_memory()
    result = run_lava(small_graph(), INPUTS, timeout_s=120)
    assert result.output.shape == (2, 5, 3) and result.delay == 2
    assert_nothing_left(before)


def test_a_missing_environment_says_how_to_make_one(monkeypatch, tmp_path):
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, str(tmp_path / "nowhere" / "python"))
    with pytest.raises(UserError, match=r"Lava is not set up: SPIKEPORT_LAVA_PYTHON names .*nowhere/python, which is not an executable; create it with `make lava-env`"):
        run_lava(small_graph(), INPUTS)


def test_an_installed_spikeport_without_a_setting_says_where_to_set_it(monkeypatch, tmp_path):
    from spikeport.runtime.lava import sandbox

    monkeypatch.delenv(ENVIRONMENT_VARIABLE, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setattr(sandbox, "CHECKOUT_ENVIRONMENT", None)  # site-packages: no checkout around it
    with pytest.raises(UserError, match=r"Lava is not set up: SPIKEPORT_LAVA_PYTHON is not set and .*spikeport/settings.yaml names no "
                                        r"lava_python; .*pip install -r .*runtime/lava/worker/requirements.txt"):
        run_lava(small_graph(), INPUTS)


def test_the_settings_file_names_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(ENVIRONMENT_VARIABLE, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "spikeport").mkdir()
    (tmp_path / "spikeport" / "settings.yaml").write_text(f"lava_python: {tmp_path / 'elsewhere'}\n")
    with pytest.raises(UserError, match=r"lava_python in .*settings.yaml names .*elsewhere"):
        run_lava(small_graph(), INPUTS)


def test_a_wrong_python_is_named(monkeypatch):
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, sys.executable)  # the core's own, 3.11+
    with pytest.raises(UserError, match=r"the Lava environment's Python is 3\.1[1-9].*; Lava 0\.10 needs Python 3\.10; create it"):
        run_lava(small_graph(), INPUTS)


def test_an_environment_without_lava_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, str(python_without_lava(tmp_path)))
    with pytest.raises(UserError, match=r"the Lava environment \(.*bare/bin/python\) lacks Lava: ModuleNotFoundError"):
        run_lava(small_graph(), INPUTS)


def test_an_environment_without_netx_is_named(monkeypatch, tmp_path):
    """The worker only looks netx up at its start (importing it takes seconds), as missing as before."""
    patched_worker(monkeypatch, tmp_path, "sys.modules['lava.lib.dl.netx'] = None  # not installed, to importlib\n")
    with pytest.raises(UserError, match=r"the Lava environment \(.*\) lacks Lava: ModuleNotFoundError: No module named 'lava.lib.dl.netx'; create it"):
        run_lava(small_graph(), INPUTS)


def test_a_netx_that_fails_to_import_is_one_line(monkeypatch, tmp_path):
    """A netx that is there but does not import is named in one line by the netx run that imports it."""
    import h5py

    patched_worker(monkeypatch, tmp_path, """
        import importlib.abc, importlib.machinery
        class BrokenNetx(importlib.abc.MetaPathFinder, importlib.abc.Loader):
            def find_spec(self, name, path, target=None):
                return importlib.machinery.ModuleSpec(name, self) if name == "lava.lib.dl.netx" else None
            def create_module(self, spec):
                return None
            def exec_module(self, module):
                raise ImportError("libtorch_cpu.so: cannot open shared object file: No such file or directory")
        sys.meta_path.insert(0, BrokenNetx())
    """)
    h5py.File(tmp_path / "model.net", "w").close()
    before = shared_memory()
    with pytest.raises(UserError, match=r"^Lava run failed: the Lava environment \(.*\) cannot import lava.lib.dl.netx: ImportError: "
                                        r"libtorch_cpu.so: cannot open shared object file: No such file or directory; create it") as e:
        run_netx_fixed(tmp_path / "model.net", np.zeros((1, 2, 3)), 2)
    assert "\n" not in str(e.value)
    assert_nothing_left(before)


def test_a_worker_that_dies_mid_run_is_a_crash_with_its_last_words(monkeypatch, tmp_path):
    patched_worker(monkeypatch, tmp_path, """
        import network
        def die(*args):
            print("segfault-like death in the middle of the run", file=sys.stderr, flush=True)
            os._exit(139)
        network.simulate = die
    """)
    before = shared_memory()
    with pytest.raises(WorkerCrashed, match=r"the Lava worker \(.*\) died with exit code 139; its last output: .*segfault-like death") as e:
        run_lava(small_graph(), INPUTS)
    assert e.value.exit_code == 1
    assert_nothing_left(before)


def test_a_failing_lava_model_is_reported_at_once(monkeypatch, tmp_path):
    """Lava 0.10 hangs when a process model raises; the worker's report ends the run long before the timeout."""
    patched_worker(monkeypatch, tmp_path, """
        import lava.proc.lif.models as lif_models
        def boom(self):
            raise RuntimeError("injected failure")
        lif_models.PyLifResetModelFloat.run_spk = boom
    """)
    before = shared_memory()
    with pytest.raises(UserError, match=r"Lava run failed: PyLifResetModelFloat failed in step 1: RuntimeError: injected failure"):
        run_lava(small_graph(), INPUTS, timeout_s=120)
    assert_nothing_left(before)


def test_a_worker_that_hangs_is_killed_at_the_timeout(monkeypatch, tmp_path):
    patched_worker(monkeypatch, tmp_path, """
        import time, network
        network.simulate = lambda *args: time.sleep(3600)
    """)
    before = shared_memory()
    with pytest.raises(UserError, match=r"Lava run failed: timed out after 8 s; the Lava processes were killed"):
        run_lava(small_graph(), INPUTS, timeout_s=8)
    assert_nothing_left(before)


def test_the_cli_prints_one_line_and_exits_1_for_a_crash(monkeypatch, tmp_path):
    patched_worker(monkeypatch, tmp_path, "import os, network\nnetwork.simulate = lambda *a: os._exit(3)\n")
    nir.write(tmp_path / "small.nir", small_graph())
    np.savez(tmp_path / "x.npz", input=INPUTS)
    done = subprocess.run([sys.executable, "-m", "spikeport.cli", "simulate", str(tmp_path / "small.nir"), "--input", str(tmp_path / "x.npz"),
                           "--backend", "lava", "--out", str(tmp_path / "sim")], capture_output=True, text=True, timeout=300, env=os.environ)
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("spikeport: error: Lava run failed: the Lava worker") and "exit code 3" in line
    assert not (tmp_path / "sim").exists()


def test_only_json_and_npz_cross_and_nothing_is_unpickled(tmp_path):
    exchange.write_request(tmp_path, {"run": "network", "stages": [{"weight": np.eye(2), "shape": (2,), "vth": float("inf")}]})
    assert sorted(p.name for p in tmp_path.iterdir()) == [exchange.ARRAYS, exchange.REQUEST]
    request = exchange.read_request(tmp_path)
    np.testing.assert_array_equal(request["stages"][0]["weight"], np.eye(2))
    assert request["stages"][0]["shape"] == [2] and request["stages"][0]["vth"] == float("inf")
    np.savez(tmp_path / exchange.ARRAYS, a0=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        exchange.read_request(tmp_path)


def test_the_core_imports_no_lava_module():
    """Every module of the core, imported; Lava only ever runs in the worker."""
    script = (
        "import pkgutil, importlib, sys, spikeport\n"
        "worker = 'spikeport.runtime.lava.worker.'\n"
        "for m in pkgutil.walk_packages(spikeport.__path__, 'spikeport.'):\n"
        "    pass\n"
        "import spikeport.train, spikeport.export, spikeport.runtime, spikeport.hwprofiles\n"
        "names = [m.name for p in (spikeport, spikeport.train, spikeport.export, spikeport.runtime, spikeport.hwprofiles)\n"
        "         for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.')]\n"
        "for name in names:\n"
        "    if name.startswith(worker) and name[len(worker):] in ('main', 'network', 'host'):\n"
        "        continue  # the worker's own modules, run in the Lava environment\n"
        "    importlib.import_module(name)\n"
        "lava = sorted(m for m in sys.modules if m == 'lava' or m.startswith('lava.'))\n"
        "print(len(names), lava)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    count, lava = done.stdout.split(maxsplit=1)
    assert int(count) > 40 and lava.strip() == "[]"
