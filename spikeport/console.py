"""Where spikeport talks to people: rich output on stderr, so stdout stays clean for --json."""

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True, soft_wrap=True)  # long paths stay on one line


def progress() -> Progress:
    """A progress bar with a free-text field (`info`) for running numbers such as loss."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=True,
    )
