"""Work-arounds for the JAX and Flax versions jaxvit supports (jax >= 0.10)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

_lock = threading.Lock()


@contextlib.contextmanager
def quick_tracer_probes() -> Iterator[None]:
    """Makes ``getattr(tracer, "sharding", None)`` cheap while tracing.

    Flax NNX's ``Variable.set_value`` probes ``value.sharding`` on every assignment (each RNG
    draw of a model's initializers is one). Before jax-ml/jax#40041 a tracer answered that
    probe with an AttributeError whose message walked every equation traced so far, so
    tracing a constructor was quadratic: ``nnx.eval_shape`` of Mixer-L/32 took 8.1 s, 1.5 s
    with the short message (2-core CPU, jax 0.10.2). Only the message changes; the probe
    still fails as before. A no-op where ``Tracer.sharding`` is not a property.
    """
    from jax._src import core

    original = core.Tracer.__dict__.get("sharding")
    if not isinstance(original, property):
        yield
        return

    def sharding(self):
        raise AttributeError(f"The 'sharding' attribute is not available on a tracer ({type(self).__name__}).")

    with _lock:
        core.Tracer.sharding = property(sharding)
        try:
            yield
        finally:
            core.Tracer.sharding = original


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
    model = eval_shape(make)
    _, rest = nnx.state(model, weights, ...)
    if jax.tree.leaves(rest):
        with quick_tracer_probes():
            # only the non-weight outputs: XLA drops the initializers as dead code
            values = jax.jit(lambda: nnx.state(make(), nnx.Not(weights)))()
        nnx.update(model, values)
    return model
