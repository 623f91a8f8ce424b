"""Training: the neuron, multi-step layers, models, datasets and the training loop.

Called as a function (spikeport.train(config=..., out=...)) it is the public API's `train` (spikeport/api.py;
spikeport/stage_call.py says why a package can be called).
"""

from spikeport.stage_call import make_callable

make_callable(__name__, "train")
