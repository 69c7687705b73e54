"""Conversion rules, one per layer type, applied by walking the jaxvit module tree.

jaxvit models use timm's attribute names, so a torch key is the NNX path with
the layer's own parameter names swapped (``qkv.kernel`` <-> ``qkv.weight``) and
its layout changed (Linear transposed, Conv OIHW <-> HWIO). Variables that sit
outside a ruled layer (``cls_token``, ``pos_embed``, a LayerScale ``gamma``)
keep their path and layout. No model needs its own table.

This module only needs numpy: state dicts arrive as ``{key: np.ndarray}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from flax import nnx

from jaxvit.errors import CheckpointError
from jaxvit.weights import collections_of, flatten, unflatten_like

Array = np.ndarray
Transform = Callable[[Array], Array]

# torch buffers that carry no weights: accepted on import, synthesized on export.
IGNORED_SUFFIXES = ("num_batches_tracked",)


class ConversionError(CheckpointError):
    """A checkpoint does not fit the model; the message says which keys and how to fix it."""


def _same(x: Array) -> Array:
    return x


def _swap_last_two(x: Array) -> Array:
    # Linear: torch (out, in) <-> flax (in, out).
    return np.swapaxes(x, -1, -2)


def _oi_spatial_to_spatial_io(x: Array) -> Array:
    # Conv of any rank: torch (O, I, *k) -> flax (*k, I, O).
    return np.transpose(x, tuple(range(2, x.ndim)) + (1, 0))


def _spatial_io_to_oi_spatial(x: Array) -> Array:
    # Inverse of the above: flax (*k, I, O) -> torch (O, I, *k).
    n = x.ndim
    return np.transpose(x, (n - 1, n - 2) + tuple(range(n - 2)))


@dataclass(frozen=True)
class Field:
    """One tensor of a layer: its torch name, its NNX attribute and the layout change."""

    torch_name: str
    attr: str
    to_jax: Transform = _same
    to_torch: Transform = _same


_AFFINE = (Field("weight", "scale"), Field("bias", "bias"))

RULES: dict[type, tuple[Field, ...]] = {
    nnx.Linear: (Field("weight", "kernel", _swap_last_two, _swap_last_two), Field("bias", "bias")),
    nnx.Conv: (
        Field("weight", "kernel", _oi_spatial_to_spatial_io, _spatial_io_to_oi_spatial),
        Field("bias", "bias"),
    ),
    nnx.LayerNorm: _AFFINE,
    nnx.GroupNorm: _AFFINE,
    nnx.RMSNorm: (Field("weight", "scale"),),
    nnx.BatchNorm: _AFFINE + (Field("running_mean", "mean"), Field("running_var", "var")),
    nnx.Embed: (Field("weight", "embedding"),),
}

# Buffers timm's strict load_state_dict wants that have no NNX counterpart.
EXPORT_EXTRAS: dict[type, dict[str, Callable[[], Array]]] = {
    nnx.BatchNorm: {"num_batches_tracked": lambda: np.zeros((), np.int64)},
}


def _rule_type(cls: type, table: Mapping[type, object]) -> type | None:
    return next((base for base in cls.__mro__ if base in table), None)


@dataclass(frozen=True)
class Entry:
    """Where one torch tensor lives in the NNX model and how to move it there and back."""

    torch_key: str
    collection: str  # 'params' or 'batch_stats', as in checkpoint.collections_of
    path: str  # dotted path inside the collection, as checkpoint.flatten writes it
    shape: tuple[int, ...]  # NNX layout
    to_jax: Transform
    to_torch: Transform

    @property
    def torch_shape(self) -> tuple[int, ...]:
        # A zero-stride view: no memory is touched to learn the transposed shape.
        return tuple(self.to_torch(np.broadcast_to(np.float32(0), self.shape)).shape)


def _collection(var: nnx.Variable) -> str | None:
    if isinstance(var, nnx.BatchStat):
        return "batch_stats"
    if isinstance(var, nnx.Param):
        return "params"
    return None  # rng state, caches: not part of a checkpoint


def _dotted(path: Iterable) -> str:
    return ".".join(str(p) for p in path)


def plan(model: nnx.Module) -> list[Entry]:
    """Every persistent tensor of ``model`` with its torch key, found by layer type."""
    nodes = list(nnx.iter_graph(model))
    entries: list[Entry] = []
    claimed: set[int] = set()
    for path, node in nodes:
        if not isinstance(node, nnx.Module):
            continue
        rule = _rule_type(type(node), RULES)
        if rule is None:
            own = [k for k, v in vars(node).items() if isinstance(v, nnx.Variable) and _collection(v)]
            if own and type(node).__module__.startswith("flax."):
                raise NotImplementedError(
                    f"no conversion rule for {type(node).__name__} at {_dotted(path) or '<root>'} "
                    f"(holds {', '.join(own)}); add one to convert/rules.py RULES"
                )
            continue
        for field in RULES[rule]:
            var = getattr(node, field.attr, None)
            if not isinstance(var, nnx.Variable) or _collection(var) is None:
                continue  # e.g. use_bias=False
            claimed.add(id(var))
            entries.append(
                Entry(
                    _dotted((*path, field.torch_name)), _collection(var), _dotted((*path, field.attr)),
                    tuple(var.shape), field.to_jax, field.to_torch,
                )
            )
    for path, node in nodes:
        if isinstance(node, nnx.Variable) and id(node) not in claimed and _collection(node):
            key = _dotted(path)
            entries.append(Entry(key, _collection(node), key, tuple(node.shape), _same, _same))
    return entries


def tied_aliases(model: nnx.Module) -> dict[str, str]:
    """{extra path: path plan() uses} for every module the model references more than once.

    Weight tying (Perceiver's ``weight_tie_layers``) shares one module object: NNX holds
    one copy under the first path, while torch's state_dict writes the tensors under every path.
    """
    canonical = {id(n): _dotted(p) for p, n in nnx.iter_graph(model) if isinstance(n, nnx.Module)}
    out: dict[str, str] = {}
    for path, node in nnx.iter_graph(model):
        if not isinstance(node, nnx.Module):
            continue
        for name, child in nnx.iter_children(node):
            where = _dotted((*path, name))
            if isinstance(child, nnx.Module) and canonical.get(id(child), where) != where:
                out[where] = canonical[id(child)]
    return out


def _untied_key(key: str, aliases: Mapping[str, str]) -> str | None:
    """The key plan() has for ``key`` when ``key`` lies under a tied alias, else None."""
    for alias, canonical in aliases.items():
        if key.startswith(alias + "."):
            return canonical + key[len(alias):]
    return None


def _model_name(model: nnx.Module) -> str:
    return getattr(model, "pretrained_cfg", {}).get("architecture", type(model).__name__)


def _is_ignored(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in IGNORED_SUFFIXES


def to_jaxvit(
    model: nnx.Module, state_dict: Mapping[str, Array], *, keep: Iterable[str] = ()
) -> dict[str, dict]:
    """A timm state dict as ``{'params': ..., ['batch_stats': ...]}`` trees for ``model``.

    Strict both ways: a missing tensor, a tensor nothing in the model takes, or
    a shape that disagrees raises ConversionError naming the key and both
    shapes. Keys in ``keep`` are taken from ``model`` as it is (re-initialized
    heads).
    """
    keep = set(keep)
    current = collections_of(model)
    flat_current = {c: flatten(tree) for c, tree in current.items()}
    out: dict[str, dict] = {c: {} for c in current}
    missing, mismatched = [], []
    used = set()
    for e in plan(model):
        if e.torch_key in keep:
            out[e.collection][e.path] = flat_current[e.collection][e.path]
            continue
        if e.torch_key not in state_dict:
            missing.append(e.torch_key)
            continue
        used.add(e.torch_key)
        value = np.asarray(state_dict[e.torch_key])
        if tuple(value.shape) != e.torch_shape:
            mismatched.append(f"{e.torch_key}: checkpoint {tuple(value.shape)} vs model {e.torch_shape}")
            continue
        out[e.collection][e.path] = e.to_jax(value)
    aliases = tied_aliases(model)
    for k in [k for k in state_dict if k not in used and aliases]:
        canonical = _untied_key(k, aliases)
        if canonical is None or canonical not in used:
            continue
        used.add(k)  # a tied layer's copy: torch writes it under every path
        if not np.array_equal(np.asarray(state_dict[k]), np.asarray(state_dict[canonical])):
            mismatched.append(f"{k}: tied to {canonical} in the model, but the checkpoint's values differ")
    unexpected = sorted(k for k in state_dict if k not in used and k not in keep and not _is_ignored(k))
    if missing or mismatched or unexpected:
        raise ConversionError(_mismatch_report(_model_name(model), missing, mismatched, unexpected))
    return {c: unflatten_like(out[c], current[c]) for c in current}


def _mismatch_report(name: str, missing: list, mismatched: list, unexpected: list, limit: int = 8) -> str:
    def listed(items: list) -> str:
        more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
        return ", ".join(items[:limit]) + more

    lines = [f"the checkpoint does not fit {name}:"]
    lines += [f"  shape mismatch {m}" for m in mismatched[:limit]]
    if len(mismatched) > limit:
        lines.append(f"  (+{len(mismatched) - limit} more shape mismatches)")
    if missing:
        lines.append(f"  missing from the checkpoint: {listed(missing)}")
    if unexpected:
        lines.append(f"  not in the model: {listed(unexpected)}")
    lines.append(
        "  fix: pass the --model the checkpoint was trained as (and its --num-classes/--img-size/"
        "--patch-size); use --strip-prefix or --checkpoint-key if its keys carry a wrapper"
    )
    return "\n".join(lines)


def to_timm(model: nnx.Module) -> dict[str, Array]:
    """The inverse of ``to_jaxvit``: a torch-layout state dict (numpy) of ``model``."""
    flat = {c: flatten(tree) for c, tree in collections_of(model).items()}
    # np.array copies: a writable, C-ordered buffer torch can own (jax's are read-only).
    out = {
        e.torch_key: np.array(e.to_torch(np.asarray(flat[e.collection][e.path])), order="C")
        for e in plan(model)
    }
    for path, node in nnx.iter_graph(model):
        rule = _rule_type(type(node), EXPORT_EXTRAS) if isinstance(node, nnx.Module) else None
        for name, make in (EXPORT_EXTRAS[rule].items() if rule else ()):
            out[_dotted((*path, name))] = make()
    for alias, canonical in tied_aliases(model).items():
        for key in [k for k in out if k.startswith(canonical + ".")]:
            out[alias + key[len(canonical):]] = out[key].copy()
    return out
