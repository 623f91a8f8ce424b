"""Hardware profiles and reports: what a trained spiking network costs on each neuromorphic chip.

A profile (profiles/*.yaml, validated by `schema`) holds one chip's capacity, precision, supported
models, energy and timing figures, each with its source and confidence. `fit` checks a network's
layers against a profile, `energy` and `timing` estimate cost per sample, and `report` writes
report.json / report.md / report.html. The input is a `network.Network` of per-layer activity.
"""
