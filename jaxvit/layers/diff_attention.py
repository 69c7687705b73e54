"""timm's differential attention (Ye et al. 2024, 'Differential Transformer'): ``DiffAttention``
(a ViT Block's ``attn_layer='diff'``) and ``DiffParallelScalingBlock``.

Each head's q and k are two half-width heads, giving two softmax maps over the same v (the
full head width); the second is subtracted, scaled by a learned lambda:

    out = (softmax(q1 k1^T / sqrt(d)) - lambda softmax(q2 k2^T / sqrt(d))) v
    lambda = exp(lambda_q1 . lambda_k1) - exp(lambda_q2 . lambda_k2) + lambda_init

then an RMSNorm over each head (``sub_norm``, eps 1e-5) and the factor (1 - lambda_init), where
lambda_init = 0.8 - 0.6 exp(-0.3 depth) grows with the block's index ``depth``. The lambda
vectors are plain parameters under timm's names, so they convert by path.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvit.errors import ConfigError
from jaxvit.layers import init
from jaxvit.layers.attention import attention
from jaxvit.layers.common import Dtype, dropout, linear, make_norm, rms_norm
from jaxvit.layers.parallel_scaling import ParallelScalingBlock


class Differential:
    """The lambdas, ``sub_norm`` and the two-map attention shared by the two modules below
    (a mixin of an ``nnx.Module``)."""

    num_heads: int

    def init_differential(self, head_dim: int, depth: int, *, dtype: Dtype, rngs: nnx.Rngs) -> None:
        """``head_dim``: the width of q's and k's half heads; v's heads are twice as wide."""
        self.lambda_init = 0.8 - 0.6 * math.exp(-0.3 * depth)
        draw = init.normal(0.1)
        self.lambda_q1, self.lambda_k1, self.lambda_q2, self.lambda_k2 = (
            nnx.Param(draw(rngs.params(), (head_dim,), jnp.float32)) for _ in range(4)
        )
        self.sub_norm = rms_norm(2 * head_dim, eps=1e-5, dtype=dtype, rngs=rngs)

    def differential(
        self, q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None, attn_drop: nnx.Dropout | None
    ) -> jax.Array:
        """q, k (B, N, heads, 2, head_dim): timm's 2 * heads half heads, a head's two adjacent;
        v (B, N, heads, 2 * head_dim) -> (B, N, heads * 2 * head_dim)."""
        b, n = q.shape[:2]
        lam = (
            jnp.exp(jnp.sum(self.lambda_q1[...] * self.lambda_k1[...]))
            - jnp.exp(jnp.sum(self.lambda_q2[...] * self.lambda_k2[...]))
            + self.lambda_init
        ).astype(q.dtype)
        first, second = (attention(q[:, :, :, i], k[:, :, :, i], v, mask=mask, attn_drop=attn_drop) for i in (0, 1))
        out = self.sub_norm(first - lam * second) * (1 - self.lambda_init)
        return out.reshape(b, n, -1)


class DiffAttention(nnx.Module, Differential):
    """timm's ``DiffAttention`` as a ViT Block builds it: fused ``qkv``, ``q_norm``/``k_norm`` over
    the half heads, ``norm`` (``scale_norm``) and ``proj`` as ``Attention``'s; ``norm_layer``
    None is LayerNorm (the ViT's; timm's class alone defaults to RMSNorm, which no ViT uses)."""

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        *,
        qkv_bias: bool = False,
        qk_norm: bool = False,
        scale_norm: bool = False,
        proj_bias: bool = True,
        norm_layer: str | None = None,
        norm_eps: float = 1e-6,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        depth: int = 0,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        if dim % (2 * num_heads):
            raise ConfigError(f"dim {dim} must be divisible by 2 * num_heads {num_heads} for differential attention")
        self.num_heads = num_heads
        head_dim = dim // num_heads // 2
        norm = partial(make_norm, norm_layer, eps=norm_eps, dtype=dtype, rngs=rngs)
        self.qkv = linear(dim, dim * 3, bias=qkv_bias, dtype=dtype, rngs=rngs)
        self.q_norm = norm(head_dim) if qk_norm else None
        self.k_norm = norm(head_dim) if qk_norm else None
        self.attn_drop = dropout(attn_drop, rngs)
        self.norm = norm(dim) if scale_norm else None
        self.proj = linear(dim, dim, bias=proj_bias, dtype=dtype, rngs=rngs)
        self.proj_drop = dropout(proj_drop, rngs)
        self.init_differential(head_dim, depth, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, *, mask: jax.Array | None = None) -> jax.Array:
        b, n, c = x.shape
        q, k, v = jnp.split(self.qkv(x), 3, axis=-1)
        q, k = (t.reshape(b, n, self.num_heads, 2, -1) for t in (q, k))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        out = self.differential(q, k, v.reshape(b, n, self.num_heads, -1), mask, self.attn_drop)
        if self.norm is not None:
            out = self.norm(out)
        return self.proj_drop(self.proj(out))


class DiffParallelScalingBlock(ParallelScalingBlock, Differential):
    """timm's ``DiffParallelScalingBlock``: ``ParallelScalingBlock`` with differential attention
    and one ``out_proj`` over the concatenated attention and MLP outputs."""

    block_fn = "diff_parallel_scaling"
    qk_split = 2

    def __init__(self, dim: int, num_heads: int, *, depth: int = 0, dtype: Dtype = None, rngs: nnx.Rngs, **kwargs):
        super().__init__(dim, num_heads, fuse_out_proj=True, dtype=dtype, rngs=rngs, **kwargs)
        self.init_differential(dim // num_heads // 2, depth, dtype=dtype, rngs=rngs)

    def _attend(self, q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None) -> jax.Array:
        b, n, _ = q.shape
        q, k = (t.reshape(b, n, self.num_heads, 2, -1) for t in (q, k))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        return self.differential(q, k, v.reshape(b, n, self.num_heads, -1), mask, self.attn_drop)
