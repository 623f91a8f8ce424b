"""Progress of long work, the same for every command: a live rich display on a terminal, a plain
line per stage in a log.

Each long stage (generating a dataset, running a backend, a Lava session, writing a report) runs
inside `stage(...)`. On a terminal it is a line of one live display (stages nest: `simulate` ->
its Lava session), with a bar when the stage knows its number of steps, the elapsed time, and it
disappears when done. When stderr is not a terminal (a CI log, a file) nothing can be redrawn:
each stage writes one plain line when it finishes, with its duration. A stage that fails writes
nothing, so a user error stays the one line it is (spikeport.errors).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text

from spikeport.console import console

_live: Progress | None = None  # the display of the outermost stage running on a terminal


class _Count(MofNCompleteColumn):
    """Steps done out of the total; nothing for a stage of unknown length (rich writes "0/?")."""

    def render(self, task: Task) -> Text:
        return Text("") if task.total is None else super().render(task)


def display() -> Progress:
    """A live display of stages, with a free-text field (`info`) for running numbers such as loss."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        _Count(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=True,
        disable=not console.is_terminal,  # a log gets the stages' own lines (`stage`, training's epochs)
    )


@contextmanager
def stage(description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """Run the block as one stage of long work, named `description` ("lava-loihi: 40 samples");
    yields `advance(steps=1)` for a stage of `total` steps (None: a stage of unknown length)."""
    global _live
    started = time.perf_counter()
    if not console.is_terminal:
        yield lambda steps=1: None
        console.print(f"{description}: {time.perf_counter() - started:.1f} s", markup=False, highlight=False)
        return
    outermost = _live is None
    if outermost:
        _live = display()
        _live.start()
    live = _live
    task = live.add_task(description, total=total, info="")
    try:
        yield lambda steps=1: live.advance(task, steps)
    finally:
        live.remove_task(task)
        if outermost:
            live.stop()
            _live = None
