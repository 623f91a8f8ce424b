"""The one exception type that means "the user gave us something wrong".

The CLI turns a `UserError` into a single line on stderr and exit code 2; any other exception is
a bug in spikeport and keeps its traceback (exit code 1). Raise `UserError` with a message that
names the file, field, layer or value and says what is wrong with it.
"""


class UserError(Exception):
    """Bad input from the user: a file, a config field, a name, a shape."""
