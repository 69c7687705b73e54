"""FLOPs counted from a function's jaxpr: the matrix products and convolutions it asks for.

XLA's cost analysis on GPU leaves out the cuBLAS/cuDNN custom calls that do nearly all of a
vision transformer's work (issue 15: bench.py's MFU column read 1.2% for a 24.8% run), so the
benchmarks count the model's FLOPs here, from the program as traced, on any backend and without
compiling. Only ``dot_general`` and ``conv_general_dilated`` count (2 FLOPs per multiply-add);
elementwise work, softmax and norms are left out, as in the usual MFU convention (PaLM, timm's
GMACs column). Trace with attention implementation 'xla' so attention's two products are plain
dot_generals rather than a fused kernel's custom call.
"""

from __future__ import annotations

import math

import jax
from jax import core as _core

try:  # jax >= 0.4.36 moved the jaxpr types under jax.extend
    from jax.extend.core import ClosedJaxpr, Jaxpr
except ImportError:  # pragma: no cover
    ClosedJaxpr, Jaxpr = _core.ClosedJaxpr, _core.Jaxpr


def _dot_flops(eqn) -> int:
    lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
    (lhs_contract, rhs_contract), (_, rhs_batch) = eqn.params["dimension_numbers"]
    rhs_free = [d for i, d in enumerate(rhs) if i not in rhs_contract and i not in rhs_batch]
    return 2 * math.prod(lhs) * math.prod(rhs_free)


def _conv_flops(eqn) -> int:
    rhs = eqn.invars[1].aval.shape
    out = eqn.outvars[0].aval.shape
    out_features = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
    # each output element contracts one output feature's kernel slice: rhs.size / out_features
    return 2 * math.prod(out) * math.prod(rhs) // out_features


def _sub_jaxprs(value):
    if isinstance(value, ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, Jaxpr):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _sub_jaxprs(v)


def jaxpr_flops(jaxpr) -> int:
    """FLOPs of the products and convolutions in ``jaxpr`` (a Jaxpr or ClosedJaxpr), with each
    ``scan`` body counted ``length`` times and a ``cond`` by its costliest branch."""
    if isinstance(jaxpr, ClosedJaxpr):
        jaxpr = jaxpr.jaxpr
    total = 0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            total += _dot_flops(eqn)
        elif name == "conv_general_dilated":
            total += _conv_flops(eqn)
        elif name == "cond":
            total += max(jaxpr_flops(b) for b in eqn.params["branches"])
        else:
            inner = sum(jaxpr_flops(j) for v in eqn.params.values() for j in _sub_jaxprs(v))
            total += inner * (eqn.params["length"] if name == "scan" else 1)
    return total


def count_flops(fn, *args, **kwargs) -> int:
    """FLOPs of one call of ``fn(*args, **kwargs)``; args may be ``jax.ShapeDtypeStruct``s
    (nothing is computed or compiled)."""
    return jaxpr_flops(jax.make_jaxpr(fn)(*args, **kwargs))
