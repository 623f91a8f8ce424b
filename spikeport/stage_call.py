"""Why `spikeport.train` and `spikeport.export` are packages you can call.

The public API names its functions after the stages (`spikeport.train(...)`, `spikeport.export(...)`),
and the stages' code lives in the packages `spikeport.train` and `spikeport.export`. Python binds
`spikeport.train` to the package as soon as any of its modules is imported, so a function of that
name would be replaced behind the user's back. Instead the package itself is made callable: calling
it calls the API function, and everything else (imports, attributes, mocks) sees a normal package.
"""

from __future__ import annotations

import sys
from types import ModuleType


def make_callable(package: str, function: str) -> None:
    """Make the module `package` call `spikeport.api.<function>` when called."""

    class CallableStage(ModuleType):
        def __call__(self, **kwargs):
            from spikeport import api

            return getattr(api, function)(**kwargs)

    sys.modules[package].__class__ = CallableStage
