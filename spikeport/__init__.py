"""spikeport: train spiking networks, export them to neuromorphic formats, simulate, report.

The public API (spikeport/api.py, docs/api.md):

    import spikeport
    run = spikeport.train(config="configs/digits-cnn.yaml", out="runs/dc")
    deployment = spikeport.export(run=run)
    sim = spikeport.simulate(target=deployment, samples=100)      # sim.accuracy, sim.activity
    report = spikeport.report(target=deployment, profiles=["loihi2"])  # report.profiles

Everything is imported on first use, so `import spikeport` stays light and the CLI checks its
arguments before torch loads.
"""

__version__ = "0.1.0"

from spikeport.errors import UserError  # noqa: E402

_STAGE_PACKAGES = ("train", "export")  # packages that are also the API functions (stage_call.py)
_API = ("simulate", "report", "Run", "Deployment", "SimResult", "Report")
__all__ = [*_STAGE_PACKAGES, *_API, "UserError"]


def __getattr__(name: str):
    import importlib

    if name in _STAGE_PACKAGES:
        return importlib.import_module(f"spikeport.{name}")
    if name in _API:
        return getattr(importlib.import_module("spikeport.api"), name)
    raise AttributeError(f"module 'spikeport' has no attribute {name!r}")
