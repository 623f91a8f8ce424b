"""spikeport: train spiking networks, export them to neuromorphic formats, simulate, report."""

__version__ = "0.1.0"
