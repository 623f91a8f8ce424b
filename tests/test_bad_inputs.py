"""Every case of the bad-input corpus (tests/bad_inputs/corpus.py) through the CLI: exit 2, one line
naming the file or field and the problem, no traceback, and the workspace exactly as it was."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bad_inputs.corpus import CASES, Case

SUBPROCESS_CASES = ("pt-hostile-pickle", "pt-torchscript-export", "pt-torchscript-resume", "net-truncated")


def snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder under `folder` (hidden ones too) -> a hash of its content."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
        for p in sorted(folder.rglob("*"))
    }


def prepare(case: Case, tmp_path: Path, trained_run: Path) -> tuple[Path, list[str], dict]:
    ws = tmp_path / "ws"
    ws.mkdir()
    args = [str(a) for a in case.build(ws, trained_run)]
    return ws, args, snapshot(ws)


def check(case: Case, ws: Path, before: dict, code: int, err: str) -> None:
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spikeport: error: "), err
    assert "Traceback" not in err
    for fragment in case.expect:
        assert fragment in lines[0], (fragment, lines[0])
    assert snapshot(ws) == before, "the command created or changed files"


def test_the_corpus_is_large_and_names_are_unique():
    names = [case.name for case in CASES]
    assert len(names) >= 120 and len(set(names)) == len(names)


def params(cases: list[Case]) -> list:
    """Cases with a known issue are expected to fail (strictly: the fix shows up as a failure too)."""
    return [pytest.param(c, id=c.name, marks=[pytest.mark.xfail(reason=c.known_issue, strict=True)] if c.known_issue else []) for c in cases]


@pytest.mark.parametrize("case", params(CASES))
def test_bad_input_is_refused_in_one_line_and_changes_nothing(case, cli, trained_run, tmp_path, monkeypatch):
    ws, args, before = prepare(case, tmp_path, trained_run)
    monkeypatch.chdir(ws)  # a default output path (./data, ./runs) would land in the workspace too
    code, _, err = cli(*args)
    check(case, ws, before, code, err)


@pytest.mark.parametrize("case", params([c for c in CASES if c.name in SUBPROCESS_CASES]))
def test_bad_input_in_a_real_process(case, trained_run, tmp_path):
    """The same in `python -m spikeport.cli`: the real exit status and stderr, nothing in-process hides."""
    ws, args, before = prepare(case, tmp_path, trained_run)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "spikeport.cli", *args], cwd=ws, env=env, capture_output=True, text=True, timeout=300)
    check(case, ws, before, result.returncode, result.stderr)
