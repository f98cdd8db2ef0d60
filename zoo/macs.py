"""Multiply-accumulate counts, computed from a built model's layers (nothing hard-coded).

Counted: convolutions (regular, grouped, depthwise, separable, transposed) and dense layers, the
operations that published MAC/FLOP figures count. Normalisation, activations, pooling and
element-wise additions are left out, as in those figures. Nested models are walked.
"""

from __future__ import annotations

import math

import keras

from zoo._common import leaf_layers


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one forward pass of one image through ``model``.

    The model must have a fully defined input size (build it at the size you want counted).
    """
    return sum(_layer_macs(layer) for layer in leaf_layers(model))


def _spatial(shape) -> int:
    dims = [d for d in shape[1:-1]]
    if any(d is None for d in dims):
        raise ValueError("count_macs needs a model built with a fixed input size")
    return math.prod(dims)


def _outputs(layer):
    # A layer called more than once (shared) is counted once per call.
    return [node.output_tensors[0] for node in layer._inbound_nodes] or [layer.output]


def _inputs(layer):
    return [node.input_tensors[0] for node in layer._inbound_nodes] or [layer.input]


def _layer_macs(layer) -> int:
    kinds = keras.layers
    if not isinstance(layer, (kinds.Conv1D, kinds.Conv2D, kinds.Conv3D, kinds.Conv2DTranspose,
                              kinds.DepthwiseConv2D, kinds.SeparableConv2D, kinds.Dense)):
        return 0
    total = 0
    for inp, out in zip(_inputs(layer), _outputs(layer)):
        in_ch, out_ch = inp.shape[-1], out.shape[-1]
        if isinstance(layer, kinds.Dense):
            total += math.prod(d for d in inp.shape[1:-1] if d) * in_ch * out_ch
        elif isinstance(layer, kinds.DepthwiseConv2D):
            total += _spatial(out.shape) * math.prod(layer.kernel_size) * out_ch
        elif isinstance(layer, kinds.SeparableConv2D):
            depth_out = in_ch * layer.depth_multiplier
            total += _spatial(out.shape) * (math.prod(layer.kernel_size) * depth_out
                                            + depth_out * out_ch)
        elif isinstance(layer, kinds.Conv2DTranspose):
            # Every input position scatters a kernel into the output.
            total += _spatial(inp.shape) * math.prod(layer.kernel_size) * in_ch * out_ch
        else:
            groups = getattr(layer, "groups", 1) or 1
            total += _spatial(out.shape) * math.prod(layer.kernel_size) * in_ch // groups * out_ch
    return total
