"""Memory models: how much core memory one layer takes, chip by chip.

A profile's `capacity.memory_model` names one of these rules, so chip-specific formulas stay data
in the YAML while the arithmetic lives here once.

- `synapse_bits` (Loihi, TrueNorth, ...): every nonzero synapse stores one weight, so a layer needs
  nonzero_weights x weight bits. The weight width is the layer's, capped at the chip's maximum (a
  wider layer is reported as a weight_bits violation and would be quantized to the chip's width).
  Index and routing tables are not counted, so this is a lower bound.
- `speck` (DYNAP-CNN cores, sinabs chips/dynapcnn.py): a layer takes one whole core; its kernel
  memory is c * 2^(ceil(log2(kx*ky)) + ceil(log2 f)) entries and its neuron memory
  f * 2^(ceil(log2 fy) + ceil(log2 fx)) entries (each side of the output map rounded up to a power
  of two, sinabs DynapcnnLayer.memory_summary). A dense layer runs as a conv whose kernel covers its whole input (c channels of
  kx x ky); a flat input is c = features with a 1 x 1 kernel.
"""

from __future__ import annotations

import math

from spikeport.activity import Layer


def stored_weight_bits(layer: Layer, weight_bits_max: int | None) -> int:
    """Bits per stored weight: the chip's precision, or less if the export is coarser; float weights
    (weight_bits None) on a chip of unknown precision count as the 32 bits they have."""
    if layer.weight_bits is None:
        return 32 if weight_bits_max is None else weight_bits_max
    return layer.weight_bits if weight_bits_max is None else min(layer.weight_bits, weight_bits_max)


def synapse_bits(layer: Layer, weight_bits_max: int | None) -> int:
    return layer.nonzero_weights * stored_weight_bits(layer, weight_bits_max)


def _speck_kernel_geometry(layer: Layer) -> tuple[int, int, int, int]:
    """(c, kx, ky, f) of a layer as the chip sees it."""
    if layer.kind == "conv":
        kx, ky = layer.kernel_size
        return layer.in_channels, kx, ky, layer.out_channels
    if len(layer.input_shape) == 3:  # (C, H, W) flattened into a Linear layer
        c, kx, ky = layer.input_shape
        return c, kx, ky, layer.neurons
    return math.prod(layer.input_shape), 1, 1, layer.neurons


def speck_kernel_entries(layer: Layer) -> int:
    c, kx, ky, f = _speck_kernel_geometry(layer)
    return c * 2 ** (math.ceil(math.log2(kx * ky)) + math.ceil(math.log2(f)))


def speck_neuron_entries(layer: Layer) -> int:
    """f * 2^(ceil(log2 fy) + ceil(log2 fx)); a dense layer's output is f x 1 x 1."""
    if len(layer.output_shape) == 3:
        f, fy, fx = layer.output_shape
        return f * 2 ** (math.ceil(math.log2(fy)) + math.ceil(math.log2(fx)))
    return layer.neurons
