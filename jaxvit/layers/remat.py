"""Rematerialization of each block (``config.remat``): activations recomputed in the backward pass.

'none' keeps every block's activations for the backward pass; 'block' keeps only each block's
input and recomputes the rest (big_vision's and scenic's per-block remat): a little more compute
for much less activation memory, so larger batches fit. The numbers are the same either way.
Like the attention kernel, the policy is read when a model is traced (``set_policy`` before the
step is jitted; the trainer does it from ``config.remat``).
"""

from __future__ import annotations

import contextlib

import jax
from flax import nnx

from jaxvit.errors import ConfigError

POLICIES = ("none", "block")
_policy = "none"


def set_policy(name: str) -> None:
    global _policy
    if name not in POLICIES:
        raise ConfigError(f"remat {name!r} is not one of {POLICIES}")
    _policy = name


def get_policy() -> str:
    return _policy


@contextlib.contextmanager
def policy(name: str):
    """``with policy('block'): ...``: the remat policy for what is traced inside."""
    old = _policy
    set_policy(name)
    try:
        yield
    finally:
        set_policy(old)


def block_call(block: nnx.Module, *args, **kwargs):
    """``block(*args, **kwargs)``, rematerialized under the 'block' policy. Every family's block
    loop calls its blocks through this. Keyword arguments (masks, flags) are closed over.

    The block runs as a pure function of its state under ``jax.checkpoint`` and its new state
    (BatchNorm statistics, dropout RNG counts) is written back: ``nnx.remat`` refuses a
    BatchNorm update under an outer ``jax.grad`` (flax 0.12: "Cannot mutate BatchStat from a
    different trace level")."""
    if _policy == "none":
        return block(*args, **kwargs)
    graph, state = nnx.split(block)

    def pure(state, *args):
        blk = nnx.merge(graph, state)
        return blk(*args, **kwargs), nnx.state(blk)

    out, new_state = jax.checkpoint(pure)(state, *args)
    nnx.update(block, new_state)
    return out
