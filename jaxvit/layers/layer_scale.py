"""timm's ``LayerScale``: a learned per-channel scale on a residual branch (CaiT, DeiT III,
DINOv2), its parameter named ``gamma`` as timm's, so it converts under its own path; and
ResMLP's ``Affine``, a learned per-channel scale and shift."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class LayerScale(nnx.Module):
    def __init__(self, dim: int, init_values: float = 1e-5):
        self.gamma = nnx.Param(jnp.full((dim,), init_values, jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        return x * self.gamma[...].astype(x.dtype)


class Affine(nnx.Module):
    """timm's ``Affine`` (ResMLP's stand-in for a norm): ``beta + alpha * x`` per channel, no
    statistics. ``alpha``/``beta`` keep timm's (1, 1, dim) shape, so they convert under their
    own path with no rule, and the optimizer decays them as timm's does (they are not 1-d)."""

    def __init__(self, dim: int):
        self.alpha = nnx.Param(jnp.ones((1, 1, dim), jnp.float32))
        self.beta = nnx.Param(jnp.zeros((1, 1, dim), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.beta[...].astype(x.dtype) + self.alpha[...].astype(x.dtype) * x
