"""timm's ``AttentionPoolLatent`` as a ViT's ``global_pool='map'`` head builds it (SigLIP):
a learned latent query attends over the tokens; ``proj``, then a residual ``mlp`` on the
``norm``-ed result; the first latent is the pooled feature. Parameter names are timm's
(``latent``, ``q``, ``kv``, ``proj``, ``norm``, ``mlp.fc1``/``fc2``)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvit.errors import ConfigError
from jaxvit.layers.attention import attention
from jaxvit.layers.common import Dtype, gelu, linear, make_norm
from jaxvit.layers.mlp import Mlp


class AttentionPoolLatent(nnx.Module):
    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        *,
        mlp_ratio: float = 4.0,
        latent_len: int = 1,
        qkv_bias: bool = True,
        act: Callable[[jax.Array], jax.Array] = gelu,
        norm_layer: str | None = None,
        norm_eps: float = 1e-6,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        if dim % num_heads:
            raise ConfigError(f"attention pooling: dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        init = nnx.initializers.truncated_normal(stddev=dim**-0.5)
        self.latent = nnx.Param(init(rngs.params(), (1, latent_len, dim), jnp.float32))
        self.q = linear(dim, dim, bias=qkv_bias, dtype=dtype, rngs=rngs)
        self.kv = linear(dim, dim * 2, bias=qkv_bias, dtype=dtype, rngs=rngs)
        self.proj = linear(dim, dim, dtype=dtype, rngs=rngs)
        self.norm = make_norm(norm_layer, dim, eps=norm_eps, dtype=dtype, rngs=rngs)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act=act, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """(B, N, C) tokens -> (B, C)."""
        b, n, c = x.shape
        h = self.num_heads
        latent = self.latent[...].astype(x.dtype)
        q = self.q(jnp.broadcast_to(latent, (b, *latent.shape[1:]))).reshape(b, latent.shape[1], h, c // h)
        kv = self.kv(x).reshape(b, n, 2, h, c // h)
        out = self.proj(attention(q, kv[:, :, 0], kv[:, :, 1]).reshape(b, latent.shape[1], c))
        out = out + self.mlp(self.norm(out))
        return out[:, 0]
