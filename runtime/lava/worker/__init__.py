"""The Lava worker: the part of spikeport's Lava backend that runs inside the Lava environment.

Its modules import Lava, numpy, onnxruntime and the standard library, never spikeport: the worker
is started as a script (`python main.py REQUEST_FOLDER`) by the interpreter of the Lava
environment (Python 3.10, lava-nc 0.10, lava-dl 0.6; requirements.txt), and exchanges only files
with the core (exchange.py). The core imports exchange.py, layout.py and payload.py from here,
which need numpy alone.
"""
