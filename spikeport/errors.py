"""The one exception type that means "the user gave us something wrong".

The CLI turns a `UserError` into a single line on stderr and exit code 2 (a `WorkerCrashed`, its
one subclass, exits 1); any other exception is a bug in spikeport and keeps its traceback (exit
code 1). Raise `UserError` with a message that
names the file, field, layer or value and says what is wrong with it.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator


class UserError(Exception):
    """Bad input from the user: a file, a config field, a name, a shape."""

    exit_code = 2


class WorkerCrashed(UserError):
    """A program spikeport runs for the user died without saying why (the Lava worker killed by a
    signal, out of memory, a crash in Lava): not bad input, and not a bug to show a traceback of.
    Its message names the program and ends with the tail of what it printed; exit code 1."""

    exit_code = 1


class DeploymentWarning(UserWarning):
    """A result that runs but is likely not what the user meant (a dt that makes a neuron's decay
    negative, a --dt that contradicts the file's). The CLI prints it as one line
    ("spikeport: warning: ..."), and simulate and report also write it into their results."""


@contextlib.contextmanager
def recorded_warnings() -> Iterator[list[str]]:
    """The DeploymentWarnings raised inside the block, each once, in a list filled when the block
    ends (for a result file to keep); every warning is then raised again as usual."""
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield notes
    for w in caught:
        if issubclass(w.category, DeploymentWarning):
            if str(w.message) in notes:
                continue
            notes.append(str(w.message))
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
