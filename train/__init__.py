"""Training: the neuron, multi-step layers, models, datasets and the training loop."""
