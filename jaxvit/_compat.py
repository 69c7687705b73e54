"""Work-arounds for the JAX and Flax versions jaxvit supports (jax >= 0.10)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

_lock = threading.Lock()
_depth = 0  # how many quick_tracer_probes() blocks are open, in any thread
_saved: Any = None  # Tracer.sharding as JAX defines it, while ours is in place


def _short_sharding_error(self):
    raise AttributeError(f"The 'sharding' attribute is not available on a tracer ({type(self).__name__}).")


def _slow_probe(prop: Any) -> bool:
    """Whether ``Tracer.sharding`` is the property whose error message walks the trace."""
    code = getattr(getattr(prop, "fget", None), "__code__", None)
    return code is not None and "_origin_msg" in code.co_names


@contextlib.contextmanager
def quick_tracer_probes() -> Iterator[None]:
    """Makes ``getattr(tracer, "sharding", None)`` cheap while tracing.

    Flax NNX's ``Variable.set_value`` probes ``value.sharding`` on every assignment: each RNG
    draw of a model's initializers, each BatchNorm statistics update and dropout RNG count in a
    train-mode forward. Before jax-ml/jax#40041 a tracer answered that probe with an
    AttributeError whose message walked every equation traced so far, so tracing was
    quadratic: ``nnx.eval_shape`` of Mixer-L/32 took 8.1 s, 1.5 s with the short message;
    tests/models/test_inception.py (train-mode forwards of ~150 BatchNorm layers) 78 s, 52 s
    (2-core CPU, jax 0.10.2). Only the message changes; the probe still fails as before.
    Reentrant and shared between threads: JAX's property is back when the last block closes.
    A no-op where ``Tracer.sharding`` does not build that message.
    """
    global _depth, _saved
    from jax._src import core

    with _lock:
        if _depth == 0:
            prop = core.Tracer.__dict__.get("sharding")
            _saved = prop if _slow_probe(prop) else None
            if _saved is not None:
                core.Tracer.sharding = property(_short_sharding_error)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                core.Tracer.sharding = _saved
                _saved = None


def eval_shape(fn: Callable[[], Any]) -> Any:
    """``nnx.eval_shape(fn)`` with :func:`quick_tracer_probes`: an abstract model (shapes and
    dtypes, no values, nothing computed)."""
    from flax import nnx

    with quick_tracer_probes():
        return nnx.eval_shape(fn)


def without_weights(make: Callable[[], Any]) -> Any:
    """The model ``make()`` builds, with its weights (``nnx.Param``, ``nnx.BatchStat``) left
    abstract for a caller that assigns every one of them (a converted checkpoint), and its
    other state (e.g. the dropout RNG streams some families keep) made for real. Nothing is
    initialized that is about to be overwritten: converting ViT-L/16 skips drawing 304M random
    numbers, and each family skips the eager initializer compiles (~5-9 s on 2 cores)."""
    import jax
    from flax import nnx

    weights = nnx.Any(nnx.Param, nnx.BatchStat)
    built = {}

    def build():
        graph, params, rest = nnx.split(make(), weights, ...)
        built["graph"] = graph
        # shapes and the tree's structure only: Variables made here would belong to this trace
        leaves, built["treedef"] = jax.tree.flatten(params)
        built["shapes"] = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in leaves]
        return rest

    # One trace of ``make`` gives both: the weights' shapes, and a program computing only the
    # other state (XLA drops the initializers as dead code), compiled and run where there is
    # any. Tracing twice (nnx.eval_shape, then a jit of the rest): a reduced Swin-T's conversion
    # took 1.10 s, 0.78 s this way (2-core CPU, 4 alternating runs, 2026-11-29).
    with quick_tracer_probes():
        traced = jax.jit(build).trace()
        rest = traced.lower().compile()() if jax.tree.leaves(traced.out_info) else traced.out_info
    return nnx.merge(built["graph"], jax.tree.unflatten(built["treedef"], built["shapes"]), rest)


def kept_bytes(fn: Callable[..., Any], *args: Any) -> int:
    """Bytes of what the forward pass of ``fn(*args)`` keeps for its gradient, ``fn``'s own
    arguments left out (jax's ``saved_residuals``, traced, nothing computed). Private in jax
    0.10-0.11 (``jax._src.ad_checkpoint``), hence here."""
    import math

    from jax._src.ad_checkpoint import saved_residuals

    return sum(math.prod(aval.shape) * aval.dtype.itemsize for aval, why in saved_residuals(fn, *args)
               if not why.startswith("from the argument"))
