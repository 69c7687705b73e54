"""timm's ``ParallelScalingBlock`` (ViT-22B style): attention and MLP side by side from one
norm and one fused input projection, their outputs summed into one residual."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvit.errors import ConfigError
from jaxvit.layers.attention import attention
from jaxvit.layers.common import DropPath, Dtype, dropout, gelu, linear, make_norm
from jaxvit.layers.layer_scale import LayerScale


class ParallelScalingBlock(nnx.Module):
    """One ``in_norm``, one fused ``in_proj`` for the MLP's hidden layer and q, k, v; attention
    and MLP in parallel, their ``attn_out_proj`` and ``mlp_out_proj`` summed into one residual
    through ``ls`` (``fuse_out_proj``: one ``out_proj`` over both, concatenated). Without
    ``qkv_bias`` the MLP's bias is its own ``mlp_bias``.

    A subclass changes the attention through ``qk_split`` (q and k heads per v head) and
    ``_attend``: timm's ``DiffParallelScalingBlock`` (``jaxvit.layers.diff_attention``).
    """

    block_fn = "parallel_scaling"  # its name in VisionTransformer's block_fn, for errors
    qk_split = 1

    def __init__(
        self, dim: int, num_heads: int, *, mlp_ratio: float = 4.0, qkv_bias: bool = False, qk_norm: bool = False,
        scale_attn_norm: bool = False, scale_mlp_norm: bool = False, init_values: float | None = None,
        proj_drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
        act: Callable[[jax.Array], jax.Array] = gelu, mlp_layer: str = "mlp", proj_bias: bool = True,
        norm_layer: str | None = None, norm_eps: float = 1e-6, attn_layer: str = "attn", depth: int = 0,
        fuse_out_proj: bool = False, dtype: Dtype = None, rngs: nnx.Rngs,
    ):
        del depth  # the block index; only a differential subclass reads it
        if scale_attn_norm or scale_mlp_norm or mlp_layer != "mlp":
            raise ConfigError(f"block_fn={self.block_fn!r} takes no scale norms and only mlp_layer='mlp'")
        if attn_layer not in ("", "attn"):
            raise ConfigError(
                f"block_fn={self.block_fn!r} has its own attention, not attn_layer={attn_layer!r}; for "
                "differential attention in a parallel block pass block_fn='diff_parallel_scaling'"
            )
        if dim % (num_heads * self.qk_split):
            raise ConfigError(f"dim {dim} must be divisible by num_heads {num_heads} * {self.qk_split}")
        norm = partial(make_norm, norm_layer, eps=norm_eps, dtype=dtype, rngs=rngs)
        self.num_heads = num_heads
        hidden = int(mlp_ratio * dim)
        self.in_split = (hidden, hidden + dim, hidden + 2 * dim)  # mlp | q | k | v
        self.in_norm = norm(dim)
        self.in_proj = linear(dim, hidden + 3 * dim, bias=qkv_bias, dtype=dtype, rngs=rngs)
        self.mlp_bias = None if qkv_bias else nnx.Param(jnp.zeros((hidden,), jnp.float32))
        head_dim = dim // num_heads // self.qk_split
        self.q_norm = norm(head_dim) if qk_norm else None
        self.k_norm = norm(head_dim) if qk_norm else None
        self.attn_drop = dropout(attn_drop, rngs)
        self.mlp_drop = dropout(proj_drop, rngs)
        self.mlp_act = act
        out = partial(linear, out_features=dim, bias=proj_bias, dtype=dtype, rngs=rngs)
        self.out_proj = out(dim + hidden) if fuse_out_proj else None
        self.attn_out_proj = None if fuse_out_proj else out(dim)
        self.mlp_out_proj = None if fuse_out_proj else out(hidden)
        self.ls = LayerScale(dim, init_values) if init_values is not None else None
        self.drop_path = DropPath(drop_path, rngs=rngs)

    def _attend(self, q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None) -> jax.Array:
        """(B, N, C) q, k, v -> (B, N, C), heads merged."""
        b, n, c = q.shape
        q, k, v = (t.reshape(b, n, self.num_heads, c // self.num_heads) for t in (q, k, v))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        return attention(q, k, v, mask=mask, attn_drop=self.attn_drop).reshape(b, n, c)

    def __call__(self, x: jax.Array, *, mask: jax.Array | None = None) -> jax.Array:
        x_mlp, q, k, v = jnp.split(self.in_proj(self.in_norm(x)), self.in_split, axis=-1)
        if self.mlp_bias is not None:
            x_mlp = x_mlp + self.mlp_bias[...].astype(x_mlp.dtype)
        x_attn = self._attend(q, k, v, mask)
        x_mlp = self.mlp_drop(self.mlp_act(x_mlp))
        if self.out_proj is not None:
            y = self.out_proj(jnp.concatenate([x_attn, x_mlp], axis=-1))
        else:
            y = self.attn_out_proj(x_attn) + self.mlp_out_proj(x_mlp)
        return x + self.drop_path(y if self.ls is None else self.ls(y))
