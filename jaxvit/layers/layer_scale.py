"""timm's ``LayerScale``: a learned per-channel scale on a residual branch (CaiT, DeiT III,
DINOv2), its parameter named ``gamma`` as timm's, so it converts under its own path."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class LayerScale(nnx.Module):
    def __init__(self, dim: int, init_values: float = 1e-5):
        self.gamma = nnx.Param(jnp.full((dim,), init_values, jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        return x * self.gamma[...].astype(x.dtype)
