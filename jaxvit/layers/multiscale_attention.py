"""MViTv2's pooling attention (timm's ``MultiScaleAttention``) and its helpers, NHWC grids.

Each head's query, key and value token grids are pooled (a depthwise conv and LayerNorm, or
a max / average pool), the pooled keys get decomposed relative positions on the query grid,
and the pooled query is added back (residual pooling). The pooled sizes and the relative-
position gather indices depend only on static shapes, so they are worked out at build time.
Attribute names are timm's: ``qkv``, ``pool_{q,k,v}``, ``norm_{q,k,v}``, ``rel_pos_{h,w}``,
``proj``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxvit.layers import init, remat
from jaxvit.layers.attention import attention
from jaxvit.layers.common import Dtype, dropout, layer_norm, linear
from jaxvit.layers.conv_bn import AvgPool2d, MaxPool2d

Size = tuple[int, int]


def pooled_size(size: Size, kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int]) -> Size:
    """A conv/pool output size with symmetric ``padding`` (torch's arithmetic)."""
    return tuple((s + 2 * p - k) // st + 1 for s, k, st, p in zip(size, kernel, stride, padding))


def torch_pool(kind: str, kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int]) -> nnx.Module:
    """torch's ``MaxPool2d`` (``kind='max'``) or ``AvgPool2d`` (padding counted in the average)."""
    if kind == "max":
        return MaxPool2d(tuple(kernel), tuple(stride), tuple(padding))
    return AvgPool2d(tuple(kernel), tuple(stride), tuple(padding), count_include_pad=True)


def pool_tokens(tokens: jax.Array, feat_size: Size, num_prefix: int, pool) -> jax.Array:
    """Applies an NHWC ``pool`` to each head's token grid of (B, prefix + H*W, heads, C);
    prefix (class) tokens pass through unpooled, in front."""
    b, _, heads, c = tokens.shape
    h, w = feat_size
    prefix, grid = tokens[:, :num_prefix], tokens[:, num_prefix:]
    grid = grid.reshape(b, h, w, heads, c).transpose(0, 3, 1, 2, 4).reshape(b * heads, h, w, c)
    grid = pool(grid)
    grid = grid.reshape(b, heads, -1, c).transpose(0, 2, 1, 3)
    return jnp.concatenate([prefix, grid], axis=1)


@functools.cache
def rel_pos_index(q_len: int, k_len: int) -> np.ndarray:
    """(q_len, k_len) rows of a relative-position table, timm's ``cal_rel_pos_type`` along one
    axis: the shorter side is stretched to the longer one's spacing (float32, truncated)."""
    q_ratio = np.float32(max(k_len / q_len, 1.0))
    k_ratio = np.float32(max(q_len / k_len, 1.0))
    q_pos = np.arange(q_len, dtype=np.float32)[:, None] * q_ratio
    dist = q_pos - np.arange(k_len, dtype=np.float32)[None] * k_ratio
    index = (dist + np.float32((k_len - 1) * k_ratio)).astype(np.int32)
    index.setflags(write=False)
    return index


class MultiScaleAttention(nnx.Module):
    """Pooling attention: fused ``qkv``, then per-head pooling (+ LayerNorm) of q, k and v,
    decomposed relative positions on the query grid, and the pooled query added back."""

    def __init__(
        self,
        dim: int,
        dim_out: int,
        feat_size: Size,
        nominal_size: int,
        num_heads: int,
        *,
        qkv_bias: bool,
        mode: str,
        kernel_q: Sequence[int],
        kernel_kv: Sequence[int],
        stride_q: Sequence[int],
        stride_kv: Sequence[int],
        has_cls_token: bool,
        rel_pos_type: str,
        residual_pooling: bool,
        norm_eps: float,
        attn_drop: float = 0.0,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        self.head_dim, rest = divmod(dim_out, num_heads)
        if rest:
            raise ValueError(f"attention width {dim_out} must be divisible by num_heads {num_heads}")
        self.num_heads, self.dim_out = num_heads, dim_out
        self.num_prefix = int(has_cls_token)
        self.residual_pooling = residual_pooling
        self.feat_size = tuple(feat_size)
        self.qkv = linear(dim, dim_out * 3, bias=qkv_bias, dtype=dtype, rngs=rngs)
        self.attn_drop = dropout(attn_drop, rngs)
        self.proj = linear(dim_out, dim_out, dtype=dtype, rngs=rngs)

        def pooling(kernel, stride):
            if math.prod(kernel) == 1 and math.prod(stride) == 1:
                return None, None, self.feat_size
            padding = tuple(k // 2 for k in kernel)
            size = pooled_size(self.feat_size, kernel, stride, padding)
            if mode != "conv":
                return torch_pool(mode, kernel, stride, padding), None, size
            conv = nnx.Conv(
                self.head_dim, self.head_dim, kernel_size=tuple(kernel), strides=tuple(stride),
                padding=tuple((p, p) for p in padding), feature_group_count=self.head_dim,
                use_bias=False, dtype=dtype, param_dtype=jnp.float32, kernel_init=init.torch_default_kernel, rngs=rngs,
            )
            return conv, layer_norm(self.head_dim, eps=norm_eps, dtype=dtype, rngs=rngs), size

        self.pool_q, self.norm_q, self.q_size = pooling(kernel_q, stride_q)
        self.pool_k, self.norm_k, self.k_size = pooling(kernel_kv, stride_kv)
        self.pool_v, self.norm_v, _ = pooling(kernel_kv, stride_kv)

        spatial = rel_pos_type == "spatial"
        table = self._rel_pos_table_size(nominal_size, stride_q, stride_kv) if spatial else 0
        self.rel_pos_h = self._rel_pos_param(table, rngs) if spatial else None
        self.rel_pos_w = self._rel_pos_param(table, rngs) if spatial else None

    def _rel_pos_table_size(self, nominal_size: int, stride_q, stride_kv) -> int:
        # timm sizes the table from its nominal (integer-divided) sizes.
        table = 2 * max(nominal_size // stride_q[1], nominal_size // stride_kv[1]) - 1
        largest = max(int(rel_pos_index(q, k).max()) for q, k in zip(self.q_size, self.k_size))
        if largest >= table:
            raise ValueError(
                f"pooled sizes q {self.q_size} / kv {self.k_size} need a relative-position table of "
                f"{largest + 1} but timm sizes it {table} for this img_size (timm's forward fails "
                "the same way); pick an img_size that divides evenly by every stride"
            )
        return table

    def _rel_pos_param(self, table: int, rngs: nnx.Rngs) -> nnx.Param:
        return nnx.Param(init.trunc_normal_02(rngs.params(), (table, self.head_dim), jnp.float32))

    def _pool(self, t: jax.Array, pool, norm) -> jax.Array:
        if pool is not None:
            t = pool_tokens(t, self.feat_size, self.num_prefix, pool)
        return t if norm is None else norm(t)

    def _rel_pos_bias(self, q: jax.Array) -> jax.Array:
        """(B, heads, Nq, Nk) additive logits from q and the per-axis tables; zero for cls."""
        b, p = q.shape[0], self.num_prefix
        (qh, qw), (kh, kw) = self.q_size, self.k_size
        grid_q = q[:, p:].reshape(b, qh, qw, self.num_heads, self.head_dim)
        table_h = self.rel_pos_h[...][rel_pos_index(qh, kh)].astype(q.dtype)  # (qh, kh, C)
        table_w = self.rel_pos_w[...][rel_pos_index(qw, kw)].astype(q.dtype)  # (qw, kw, C)
        along_h = jnp.einsum("byxnc,ykc->bnyxk", grid_q, table_h)
        along_w = jnp.einsum("byxnc,xkc->bnyxk", grid_q, table_w)
        bias = (along_h[..., :, None] + along_w[..., None, :]).reshape(b, self.num_heads, qh * qw, kh * kw)
        return jnp.pad(bias, ((0, 0), (0, 0), (p, 0), (p, 0)))

    def __call__(self, x: jax.Array, *, pre_norm=None) -> jax.Array:
        """``pre_norm``: the block's norm1, given here so that remat='elementwise' recomputes its
        output for qkv's weight gradient (``remat.chain``)."""
        qkv = remat.chain(x, pre_norm, self.qkv)
        b, n = qkv.shape[:2]
        qkv = qkv.reshape(b, n, 3, self.num_heads, self.head_dim)
        q = self._pool(qkv[:, :, 0], self.pool_q, self.norm_q)
        k = self._pool(qkv[:, :, 1], self.pool_k, self.norm_k)
        v = self._pool(qkv[:, :, 2], self.pool_v, self.norm_v)
        bias = None if self.rel_pos_h is None else self._rel_pos_bias(q)
        out = attention(q, k, v, bias=bias, attn_drop=self.attn_drop)
        if self.residual_pooling:
            out = out + q
        return self.proj(out.reshape(b, -1, self.dim_out))
