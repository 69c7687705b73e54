"""Multi-head self-attention with timm's parameter layout (fused ``qkv``, ``proj``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvit.layers.common import Dtype, dropout, linear
from jaxvit.errors import ConfigError


def attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    bias: jax.Array | None = None,
    mask: jax.Array | None = None,
    attn_drop: nnx.Dropout | None = None,
) -> jax.Array:
    """Scaled dot-product attention on (B, T, heads, head_dim) tensors.

    Goes through ``jax.nn.dot_product_attention`` (cuDNN flash attention on
    GPU where shapes allow) unless attention dropout is active, which that API
    does not offer; then the weights are formed explicitly.
    """
    if attn_drop is None or attn_drop.rate == 0.0 or attn_drop.deterministic:
        return jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask)
    scale = q.shape[-1] ** -0.5
    logits = jnp.einsum("bqhd,bkhd->bhqk", q * scale, k)
    if bias is not None:
        logits = logits + bias
    if mask is not None:
        logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(q.dtype)
    return jnp.einsum("bhqk,bkhd->bqhd", attn_drop(weights), v)


class Attention(nnx.Module):
    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        *,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        if dim % num_heads:
            raise ConfigError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = linear(dim, dim * 3, bias=qkv_bias, dtype=dtype, rngs=rngs)
        self.attn_drop = dropout(attn_drop, rngs)
        self.proj = linear(dim, dim, dtype=dtype, rngs=rngs)
        self.proj_drop = dropout(proj_drop, rngs)

    def __call__(self, x: jax.Array, *, bias: jax.Array | None = None, mask=None) -> jax.Array:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        out = attention(
            qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], bias=bias, mask=mask, attn_drop=self.attn_drop
        )
        return self.proj_drop(self.proj(out.reshape(b, n, c)))
