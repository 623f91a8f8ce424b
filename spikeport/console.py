"""Where spikeport talks to people: rich output on stderr, so stdout stays clean for --json.

On a terminal, output fits the terminal. Anywhere else (a CI log, a file, a pipe) there is no
width to fit, and rich's default of 80 columns would cut table cells ("0.0002… J"): there every
table is as wide as its content and every line is written whole, without colour codes.
"""

from rich.console import Console, ConsoleDimensions

LOG_WIDTH = 4096  # columns when not on a terminal: wider than any table spikeport prints


class _Console(Console):
    """A Console whose width, when it does not write to a terminal, is LOG_WIDTH: decided at every
    print, because the stream can change (pytest's capture, a redirected sys.stderr)."""

    @property
    def size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)
        return size if self.is_terminal else ConsoleDimensions(LOG_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)


console = _Console(stderr=True, soft_wrap=True)  # long paths stay on one line
