"""Tapping a model: the outputs (or inputs) of any layers, nested ones included, next to the
predictions, and where each cell of a spatial tap sits on the input image (used to align
Grad-CAM heatmaps exactly, also for networks with ``valid`` padding); class scores for
gradients."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Sequence

from transfer.errors import ConfigError
from transfer.viz.common import final_dense, find_layer

if TYPE_CHECKING:
    import keras


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Where the cells of a spatial tensor sit on the input image, per axis.

    Cell ``i`` of a row is centred on input pixel ``y0 + sy * i`` (pixel centres at integers).
    """

    y0: float
    sy: float
    x0: float
    sx: float

    def then(self, inner: Geometry) -> Geometry:
        """This geometry followed by ``inner`` (which is relative to this tensor)."""
        return Geometry(self.y0 + self.sy * inner.y0, self.sy * inner.sy,
                        self.x0 + self.sx * inner.x0, self.sx * inner.sx)


IDENTITY = Geometry(0.0, 1.0, 0.0, 1.0)


@dataclasses.dataclass
class TapModel:
    """A model from the image to ``[*taps, *outputs]``, and the geometry of each tap."""

    model: keras.Model
    paths: list[str]
    geometries: list[Geometry | None]

    def __call__(self, images, training: bool = False):
        return self.model(images, training=training)


def tap_model(model: keras.Model, taps: Sequence[str | tuple[str, str]]) -> TapModel:
    """A model giving the outputs (or inputs) of layers, nested ones included, then the outputs.

    Args:
        model: a functional model, possibly holding nested functional models.
        taps: layer paths or bare names (their outputs), or ``(name, "input")`` for the tensor
            going into a layer.

    Returns:
        A :class:`TapModel` whose model returns a list: one tensor per tap, then the model's
        outputs. The layers (and weights) are shared with ``model``.
    """
    import keras

    resolved = []
    for tap in taps:
        name, where = (tap, "output") if isinstance(tap, str) else tap
        if where not in ("output", "input"):
            raise ConfigError(f"a tap is a layer's 'output' or 'input', got {where!r}")
        path, _ = find_layer(model, name)
        resolved.append((tuple(path.split("/")), where))
    tapped, geometries, _ = _tap_functional(model, resolved)
    n_out = len(tapped.outputs) - len(resolved)
    reordered = keras.Model(tapped.input, [*tapped.outputs[n_out:], *tapped.outputs[:n_out]],
                            name=f"{model.name}_taps")
    return TapModel(reordered, ["/".join(p) for p, _ in resolved], geometries)


def _tap_functional(model, targets):
    """Rebuild ``model`` on new inputs, collecting the targets; recurses into nested models."""
    import keras

    refusal = (f"cannot look inside {model.name!r}: only functional models (and functional "
               f"models nested in them) can be tapped")
    try:
        if isinstance(model, keras.Sequential):
            raise ConfigError(refusal)
        structure = model.input
    except AttributeError:  # a subclassed model has no graph to walk
        raise ConfigError(refusal) from None
    inputs = keras.tree.map_structure(
        lambda t: keras.Input(batch_shape=t.shape, dtype=t.dtype, name=f"{model.name}_{t.name}"),
        structure)
    geometry = {id(t): IDENTITY for t in keras.tree.flatten(inputs)}
    stash: dict[tuple, object] = {}
    stash_geometry: dict[tuple, Geometry | None] = {}

    def call(layer, *args, **kwargs):
        first = _first_tensor(args)
        in_geo = geometry.get(id(first)) if first is not None else None
        mine = [t for t in targets if t[0][0] == layer.name]
        deeper = [(path[1:], where) for path, where in mine if len(path) > 1]
        if isinstance(layer, keras.Model) and not isinstance(layer, keras.Sequential):
            sub, sub_geos, out_geos = _tap_functional(layer, deeper)
            result = sub(*args, **kwargs)
            result = list(result) if isinstance(result, (list, tuple)) else [result]
            n_out = len(layer.outputs)
            for (path, where), tensor, geo in zip(deeper, result[n_out:], sub_geos):
                key = ((layer.name, *path), where)
                stash[key] = tensor
                stash_geometry[key] = _compose(in_geo, geo)
            out = result[0] if n_out == 1 else result[:n_out]
            out_geo = _compose(in_geo, out_geos[0])
        elif deeper:
            raise ConfigError(f"cannot look inside {layer.name!r}: only functional models "
                              f"(and functional models nested in them) can be tapped")
        else:
            out = layer(*args, **kwargs)
            out_geo = None
            if first is not None and not isinstance(out, (list, tuple, dict)):
                out_geo = _propagate(layer, in_geo, first.shape, out.shape)
        for path, where in mine:
            if len(path) == 1:
                stash[(path, where)] = first if where == "input" else out
                stash_geometry[(path, where)] = in_geo if where == "input" else out_geo
        if not isinstance(out, (list, tuple, dict)):
            geometry[id(out)] = out_geo
        return out

    try:
        clone = keras.models.clone_model(model, input_tensors=inputs,
                                         clone_function=lambda layer: layer, call_function=call)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"{refusal} ({exc})") from exc
    missing = [t for t in targets if t not in stash]
    if missing:
        raise ConfigError(f"layer(s) {', '.join('/'.join(p) for p, _ in missing)} of "
                          f"{model.name!r} are not on the path from its input to its output")
    outputs = list(clone.outputs)
    # Outputs first, then the taps: a caller one level up slices them off in that order.
    tapped = keras.Model(clone.input, [*outputs, *(stash[t] for t in targets)],
                         name=f"{model.name}_tapped")
    return tapped, [stash_geometry[t] for t in targets], [geometry.get(id(o)) for o in outputs]


def _first_tensor(args):
    import keras

    for arg in args:
        if isinstance(arg, (list, tuple)):
            arg = arg[0] if arg else None
        if isinstance(arg, keras.KerasTensor):
            return arg
    return None


def _compose(outer: Geometry | None, inner: Geometry | None) -> Geometry | None:
    if outer is None or inner is None:
        return None
    return outer.then(inner)


def _propagate(layer, geo: Geometry | None, in_shape, out_shape) -> Geometry | None:
    """Geometry of a layer's output from its input's: exact for convolutions and pooling."""
    if geo is None or len(in_shape) != 4 or len(out_shape) != 4:
        return None
    kernel = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
    strides = getattr(layer, "strides", None)
    if kernel is not None and strides is not None:
        dilation = getattr(layer, "dilation_rate", (1, 1)) or (1, 1)
        padding = getattr(layer, "padding", "valid")
        rel = []
        for axis in range(2):
            k = (kernel[axis] - 1) * dilation[axis] + 1
            s = strides[axis]
            n = in_shape[1 + axis]
            if padding == "same":
                if n is None:
                    return None
                out = math.ceil(n / s)
                before = max((out - 1) * s + k - n, 0) // 2
            else:
                before = 0
            rel.append(((k - 1) / 2 - before, float(s)))
        return geo.then(Geometry(rel[0][0], rel[0][1], rel[1][0], rel[1][1]))
    name = type(layer).__name__
    if name == "ZeroPadding2D":
        (top, _), (left, _) = layer.padding
        return geo.then(Geometry(-top, 1.0, -left, 1.0))
    if name == "Cropping2D":
        (top, _), (left, _) = layer.cropping
        return geo.then(Geometry(top, 1.0, left, 1.0))
    if tuple(in_shape[1:3]) == tuple(out_shape[1:3]):
        return geo
    return None


# ---- scores -----------------------------------------------------------------------------------


def class_scores_fn(model: keras.Model):
    """A function ``images -> (scores, probabilities)`` for gradients, and what the scores are.

    Scores are the logits when the model ends in a dense softmax layer (its input is tapped and
    the layer's kernel applied), so gradients do not vanish on confident predictions; otherwise
    they are the outputs themselves.
    """
    from keras import ops

    dense = final_dense(model)
    if dense is not None and getattr(dense[1].activation, "__name__", "") == "softmax":
        path, layer = dense
        tap = tap_model(model, [(path, "input")])

        def scores(images):
            features, probabilities = tap(images)
            logits = ops.matmul(features, layer.kernel)
            if layer.use_bias:
                logits = logits + layer.bias
            return logits, probabilities

        return scores, "logits"

    def outputs(images):
        probabilities = model(images, training=False)
        return probabilities, probabilities

    return outputs, "outputs"
