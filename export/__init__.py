"""Export: a trained model to NIR, ONNX and Lava-compatible files (ARCHITECTURE.md, "Partitions").

Called as a function (spikeport.export(run=...)) it is the public API's `export` (spikeport/api.py;
spikeport/stage_call.py says why a package can be called).
"""

from spikeport.stage_call import make_callable

make_callable(__name__, "export")
