"""Initializers and LayerNorm constants, written once for every family.

timm's transformers draw Linear weights and position embeddings from N(0, 0.02); the
families that keep PyTorch's own defaults (Inception-v4's convs, TnT's and MViTv2's patch
convs, Perceiver's Linears, DEMS/MSViT) draw torch's kaiming_uniform(a=sqrt(5)).
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

# LayerNorm eps: timm's ViT-style models build partial(nn.LayerNorm, eps=1e-6); torch's
# nn.LayerNorm default (Swin, TnT, Perceiver, DEMS) is 1e-5.
TIMM_LN_EPS = 1e-6
TORCH_LN_EPS = 1e-5

# timm draws Linear weights and position embeddings from N(0, 0.02) truncated
# at +-2 (absolute, so effectively untruncated); Flax's truncated_normal cuts
# at +-2 std. The difference is immaterial for training.
trunc_normal_02 = nnx.initializers.truncated_normal(stddev=0.02)
zeros = nnx.initializers.zeros_init()
ones = nnx.initializers.ones_init()
lecun_normal = nnx.initializers.lecun_normal()
xavier_uniform = nnx.initializers.xavier_uniform()


def normal(stddev: float) -> nnx.Initializer:
    return nnx.initializers.normal(stddev=stddev)


@partial(jax.jit, static_argnums=2)
def _cut(flat: jax.Array, bound: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    return flat[: math.prod(shape)].reshape(shape) * bound


def _uniform(key: jax.Array, shape: tuple[int, ...], bound: float, dtype) -> jax.Array:
    """U(-bound, bound) of ``shape``, drawn as a power-of-two-long stream and cut to size.

    Eagerly every new shape handed to ``jax.random`` compiles a threefry program
    (about a second on a busy CPU); a deep CNN has dozens of kernel shapes. Drawing
    by length bucket compiles threefry once per bucket; the cut is a cheap program.
    """
    n = math.prod(shape)
    flat = jax.random.uniform(key, (1 << max(n - 1, 1).bit_length(),), dtype, -1.0, 1.0)
    return _cut(flat, jnp.asarray(bound, dtype), shape)


def torch_default_kernel(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """torch's default Conv2d/Linear weight init, kaiming_uniform(a=sqrt(5)), i.e.
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)); fan_in is every axis but the last (HWIO, with I
    already divided by the groups, or (in, out))."""
    return _uniform(key, tuple(shape), 1.0 / max(math.prod(shape[:-1]), 1) ** 0.5, dtype)


def torch_default_bias(fan_in: int) -> nnx.Initializer:
    """torch's default bias init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return _uniform(key, tuple(shape), 1.0 / max(fan_in, 1) ** 0.5, dtype)

    return init
