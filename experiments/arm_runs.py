"""The runs behind an experiment's arms, shared by dta_temporal.py and taaf_temporal.py.

Every (arm, seed) of an experiment is one run folder, trained through the same
`train.loop.train` as `spikeport train`, on the CPU with one torch thread (stated in the results:
reductions, so the numbers, depend on the thread count). A run already in its folder is continued
from its checkpoint, never retrained, so an experiment can be split over calls (one seed or arm at
a time, two processes at once) and a last call with `--finished-only` summarises them all.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

torch.set_num_threads(1)

from spikeport.config import config_from_dict
from spikeport.train.loop import train


def folder(runs: Path, arm: str, seed: int, prefix: str = "") -> Path:
    """The run folder of one arm and seed: the arm's name without spaces, commas, brackets or '='."""
    slug = arm.replace(" ", "_")
    for character in ",()=":
        slug = slug.replace(character, "")
    return runs / f"{prefix}{slug}-seed{seed}"


def experiment_name(stem: str, epochs: int | None, config_epochs: int) -> str:
    """`stem` at the config's own epochs, `stem_<E>ep` for --epochs E other than those: the name of
    the results file, the plot and the runs folder, so that no experiment overwrites another's
    results or resumes another's runs (a run resumed at other epochs would keep training its checkpoint)."""
    return stem + ("" if epochs in (None, config_epochs) else f"_{epochs}ep")


def finished(out: Path, config: dict) -> bool:
    """Whether the run in `out` has trained all its epochs."""
    metrics = out / "metrics.jsonl"
    return metrics.is_file() and len(metrics.read_text().splitlines()) >= config["train"]["epochs"] and (out / "checkpoint.pt").is_file()


def trained(config: dict, out: Path, finished_only: bool) -> list[dict] | None:
    """The run's metrics, one dict per epoch: trained, or continued from the checkpoint in `out`;
    with `finished_only`, None for a run that has not trained all its epochs (nothing is trained)."""
    if finished_only and not finished(out, config):
        return None
    return train(config_from_dict(config), out, device="cpu", resume=(out / "checkpoint.pt").is_file())


def arguments(description: str, arms: list[str]) -> argparse.ArgumentParser:
    """The options both experiments take; --runs defaults to None, for the script to choose."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=None, help="default: the config's")
    parser.add_argument("--runs", type=Path, default=None, help="the folder of the run folders")
    parser.add_argument("--arms", nargs="+", default=arms, choices=arms)
    parser.add_argument("--finished-only", action="store_true", help="summarise the runs that have finished; train nothing")
    return parser
