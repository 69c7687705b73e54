"""Rematerialization (``config.remat``): activations recomputed in the backward pass.

'none' keeps every block's activations for the backward pass; 'block' keeps only each block's
input and recomputes the rest (big_vision's and scenic's per-block remat): a little more compute
for much less activation memory, so larger batches fit. 'elementwise' recomputes only what is
cheap: the output of a norm or an activation that feeds a Linear (``chain``), which the Linear's
weight gradient needs, is recomputed from the norm's or activation's input rather than kept; the
products, attention and everything else are kept as under 'none'. The numbers are the same
either way.
Like the attention kernel, the policy is read when a model is traced (``set_policy`` before the
step is jitted; the trainer does it from ``config.remat``).
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxvit.layers.common import TraceSetting

POLICIES = ("none", "block", "elementwise")
_setting = TraceSetting("remat", POLICIES, "none")
# set_policy(name) before the step is traced; ``with policy('block'): ...`` for what is traced inside
set_policy, get_policy, policy = _setting.set, _setting.get, _setting.using


def block_call(block: nnx.Module, *args, **kwargs):
    """``block(*args, **kwargs)``, rematerialized under the 'block' policy. Every family's block
    loop calls its blocks through this. Keyword arguments (masks, flags) are closed over.
    """
    if _setting.get() != "block":
        return block(*args, **kwargs)
    return _modules_recomputed([block], lambda modules, args: modules[0](*args, **kwargs), args)


def chain(x: jax.Array, *layers) -> jax.Array:
    """``x`` through ``layers`` in turn (modules or functions, or tuples of them; None skipped),
    e.g. a norm then a
    Linear, or an activation, a Dropout and a Linear. Under the 'elementwise' policy only ``x``
    and the modules' parameters are kept for the backward pass, which runs the layers again: what
    passes between them (the norm's or activation's output, which the last Linear's weight
    gradient needs) is recomputed there rather than kept. Shared layers call this where such a
    chain ends in a product (``Mlp``, ``Attention``'s qkv). Dropout draws the same masks again."""
    layers = [layer for item in layers for layer in (item if isinstance(item, tuple) else (item,))
              if layer is not None]
    if _setting.get() != "elementwise":
        for layer in layers:
            x = layer(x)
        return x

    def run(modules, args):
        y, fresh = args[0], iter(modules)
        for layer in layers:
            y = (next(fresh) if isinstance(layer, nnx.Module) else layer)(y)
        return y

    return _modules_recomputed([layer for layer in layers if isinstance(layer, nnx.Module)], run, (x,))


def _modules_recomputed(modules: list[nnx.Module], run, args):
    """``run(modules, args)`` keeping only the modules' parameters and ``args`` for the backward
    pass (``_recomputed``). The modules run as pure functions of their parameters, other state and
    ``args``; their new non-parameter state (BatchNorm statistics, dropout RNG counts) is written
    back."""
    holder = nnx.List(modules)
    graph, params, others = nnx.split(holder, nnx.Param, ...)

    def pure(params, others, args):
        # fresh Variable objects, made in the trace that mutates them: flax refuses a mutation
        # of a Variable made at another trace level (the backward's ``others`` are made outside
        # the ``jax.vjp`` that recomputes the modules)
        fresh = nnx.merge(graph, params, jax.tree.map(lambda v: v, others))
        out = run(list(fresh), args)
        return out, nnx.split(fresh, nnx.Param, ...)[2]

    out, new_others = _recomputed(pure, params, others, args)
    nnx.update(holder, new_others)
    return out


def normed(layer, norm, x: jax.Array, **kwargs) -> jax.Array:
    """``layer(norm(x), **kwargs)``, a block's pre-norm branch (``norm`` may be a tuple: the norm
    and what follows it, e.g. Mixer's transpose to tokens last). A layer whose call takes
    ``pre_norm`` (``Attention``, ``Mlp``) gets the norm passed in, so that under 'elementwise' the
    norm's output is recomputed in the backward pass rather than kept (``chain``)."""
    if _takes_pre_norm(layer):
        return layer(x, pre_norm=norm, **kwargs)
    return layer(chain(x, norm), **kwargs)


def _takes_pre_norm(layer) -> bool:
    return "pre_norm" in inspect.signature(type(layer).__call__).parameters


def normed_each(norm, x: jax.Array, *layers) -> list[jax.Array]:
    """``[layer(norm(x)) for layer in layers]``: one norm's output feeding several layers, each a
    Linear or a layer that takes ``pre_norm`` (MViTv2's branch and projected shortcut,
    Perceiver's to_q and to_kv). The norm runs once, except under 'elementwise', where each layer
    gets its own chain (``normed``, or ``chain(x, norm, linear)``) so that every Linear's weight
    gradient recomputes the norm's output rather than keep it."""
    if _setting.get() == "elementwise":
        return [normed(layer, norm, x) if _takes_pre_norm(layer) else chain(x, norm, layer) for layer in layers]
    y = chain(x, norm)
    return [layer(y) for layer in layers]


def _recomputed(fn, params, others, args):
    """``fn(params, others, args)`` keeping only ``params`` and ``args`` for the backward pass,
    which runs ``fn`` again. Written as a custom VJP rather than ``jax.checkpoint`` so that the
    recomputation cannot be scheduled before it is needed: through an optimization barrier it
    waits for the block's output gradient, which exists only once the backward pass reaches the
    block (``jax.checkpoint`` ties it only to the block's inputs, which exist from the forward
    on). Measured on an H100 (README): ViT-B/16's peak 13.17 -> 3.11 GB. ``jax.checkpoint`` was
    not measured there; on this CPU neither form lowers XLA's temporaries. ``others`` (BatchNorm
    statistics, RNG counts) gets no gradient; the recomputation sees the values the forward saw,
    so dropout draws the same masks."""

    @jax.custom_vjp
    def f(params, others, args):
        return fn(params, others, args)

    def fwd(params, others, args):
        return fn(params, others, args), (params, others, args)

    def bwd(residuals, cotangents):
        params, others, args = residuals
        g = cotangents[0]
        params, others, args, g = jax.lax.optimization_barrier((params, others, args, g))
        _, vjp = jax.vjp(lambda p, a: fn(p, others, a)[0], params, args)
        d_params, d_args = vjp(g)
        return d_params, jax.tree.map(_zero_cotangent, others), d_args

    f.defvjp(fwd, bwd)
    return f(params, others, args)


def _zero_cotangent(x):
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.zeros_like(x)
    return np.zeros(x.shape, jax.dtypes.float0)  # integer counts, RNG keys
