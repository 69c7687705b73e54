"""Multiscale Vision Transformer v2 (MViTv2), with timm 1.0's module tree; images NHWC.

Attribute names follow ``timm.models.mvitv2``: ``patch_embed.proj``, ``cls_token``,
``pos_embed``, ``stages[i].blocks[j].{norm1, shortcut_proj_attn, attn.{qkv, pool_q,
norm_q, pool_k, norm_k, pool_v, norm_v, rel_pos_h, rel_pos_w, proj}, norm2,
shortcut_proj_mlp, mlp.{fc1, fc2}}``, ``norm``, ``head.fc``. Pooled resolutions and
the relative-position gather indices depend only on the input size, so they are worked
out once at build time (the input size is fixed, as in timm).

Sizes follow timm exactly, including at non-224 inputs: the ``rel_pos_h/w`` tables are
sized from timm's nominal feature sizes (``img_size // patch_stride``, then ``// stride``
per stage) while the forward pass sees the real conv/pool output sizes. Where those
disagree so much that timm's own forward would fail (an index past the table, a
shortcut that no longer lines up with the pooled query), building raises instead.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.linen import avg_pool, max_pool

from jaxvit.layers import DropPath, Mlp, PatchEmbed, attention, dropout, init, layer_norm, linear, to_2tuple
from jaxvit.layers.classifier import ClassifierHead, check_pool, global_pool
from jaxvit.layers.common import Dtype
from jaxvit.layers.remat import block_call
from jaxvit.models.base import ClassifierModel
from jaxvit.registry import build, register_model

Size = tuple[int, int]


def _pair_tuple(x: Any) -> tuple:
    return tuple(tuple(v) if isinstance(v, (list, tuple)) else v for v in x)


@dataclass
class MultiScaleVitCfg:
    """timm's ``MultiScaleVitCfg`` fields; ``embed_dim``/``num_heads`` may be one value
    (doubled per stage) and ``stride_kv`` is derived from ``stride_kv_adaptive``."""

    depths: Sequence[int] = (2, 3, 16, 3)
    embed_dim: int | Sequence[int] = 96
    num_heads: int | Sequence[int] = 1
    mlp_ratio: float = 4.0
    pool_first: bool = False
    expand_attn: bool = True
    qkv_bias: bool = True
    use_cls_token: bool = False
    use_abs_pos: bool = False
    residual_pooling: bool = True
    mode: str = "conv"
    kernel_qkv: Sequence[int] = (3, 3)
    stride_q: Sequence[Sequence[int]] | None = ((1, 1), (2, 2), (2, 2), (2, 2))
    stride_kv: Sequence[Sequence[int]] | None = None
    stride_kv_adaptive: Sequence[int] | None = (4, 4)
    patch_kernel: Sequence[int] = (7, 7)
    patch_stride: Sequence[int] = (4, 4)
    patch_padding: Sequence[int] = (3, 3)
    pool_type: str = "max"  # a field of timm's config that its model never reads
    rel_pos_type: str = "spatial"
    act_layer: str = "gelu"
    norm_layer: str = "layernorm"
    norm_eps: float = 1e-6

    def __post_init__(self):
        n = len(self.depths)
        self.depths = tuple(self.depths)
        if isinstance(self.embed_dim, int):
            self.embed_dim = tuple(self.embed_dim * 2**i for i in range(n))
        if isinstance(self.num_heads, int):
            self.num_heads = tuple(self.num_heads * 2**i for i in range(n))
        for name in ("embed_dim", "num_heads", "stride_q"):
            value = getattr(self, name)
            if value is None or len(value) != n:
                raise ValueError(f"{name}={value} needs one entry per stage of depths {self.depths}")
        self.embed_dim, self.num_heads = tuple(self.embed_dim), tuple(self.num_heads)
        self.stride_q = _pair_tuple(self.stride_q)
        if self.stride_kv is None and self.stride_kv_adaptive is not None:
            # The key/value stride shrinks with every query downsampling, never below 1.
            kv, strides = tuple(self.stride_kv_adaptive), []
            for sq in self.stride_q:
                if min(sq) > 1:
                    kv = tuple(max(a // b, 1) for a, b in zip(kv, sq))
                strides.append(kv)
            self.stride_kv = tuple(strides)
        if self.stride_kv is None or len(self.stride_kv) != n:
            raise ValueError(f"stride_kv={self.stride_kv} needs one entry per stage of depths {self.depths}")
        self.stride_kv = _pair_tuple(self.stride_kv)
        for name in ("kernel_qkv", "patch_kernel", "patch_stride", "patch_padding"):
            setattr(self, name, tuple(getattr(self, name)))
        if self.pool_first or self.mode == "conv_unshared":
            what = "pool_first=True" if self.pool_first else "mode='conv_unshared'"
            raise NotImplementedError(
                f"{what} is not supported: timm 1.0's MViTv2 cannot run it either (shape error in "
                "its forward); use the default pool-after-projection with mode 'conv', 'max' or 'avg'"
            )
        if self.mode not in ("conv", "max", "avg"):
            raise ValueError(f"mode must be 'conv', 'max' or 'avg', got {self.mode!r}")
        if self.act_layer != "gelu" or self.norm_layer != "layernorm":
            raise ValueError("jaxvit's MViTv2 supports act_layer='gelu' and norm_layer='layernorm' only")


def _out_size(size: Size, kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int]) -> Size:
    """A conv/pool output size with symmetric ``padding`` (torch's arithmetic)."""
    return tuple((s + 2 * p - k) // st + 1 for s, k, st, p in zip(size, kernel, stride, padding))


class Pool2d(nnx.Module):
    """torch ``MaxPool2d`` / ``AvgPool2d`` (padding counted in the average) on NHWC."""

    def __init__(self, kind: str, kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int]):
        self.kind = kind
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.padding = tuple((p, p) for p in padding)

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.kind == "max":
            return max_pool(x, self.kernel, self.stride, self.padding)
        return avg_pool(x, self.kernel, self.stride, self.padding, count_include_pad=True)


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
            size = _out_size(self.feat_size, kernel, stride, padding)
            if mode != "conv":
                return Pool2d(mode, kernel, stride, padding), None, size
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

    def __call__(self, x: jax.Array) -> jax.Array:
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim)
        q = self._pool(qkv[:, :, 0], self.pool_q, self.norm_q)
        k = self._pool(qkv[:, :, 1], self.pool_k, self.norm_k)
        v = self._pool(qkv[:, :, 2], self.pool_v, self.norm_v)
        bias = None if self.rel_pos_h is None else self._rel_pos_bias(q)
        out = attention(q, k, v, bias=bias, attn_drop=self.attn_drop)
        if self.residual_pooling:
            out = out + q
        return self.proj(out.reshape(b, -1, self.dim_out))


class MultiScaleBlock(nnx.Module):
    """x + attn(norm1(x)) with a pooled (and, on a width change, projected) shortcut, then
    the MLP; with ``expand_attn=False`` the width changes in the MLP instead."""

    def __init__(
        self,
        dim: int,
        dim_out: int,
        num_heads: int,
        feat_size: Size,
        nominal_size: int,
        *,
        cfg: MultiScaleVitCfg,
        stride_q: Sequence[int],
        stride_kv: Sequence[int],
        drop_path: float,
        attn_drop: float,
        dtype: Dtype,
        rngs: nnx.Rngs,
    ):
        eps = cfg.norm_eps
        proj_needed = dim != dim_out
        att_dim = dim_out if cfg.expand_attn else dim
        self.num_prefix = int(cfg.use_cls_token)
        self.feat_size = tuple(feat_size)
        self.norm1 = layer_norm(dim, eps=eps, dtype=dtype, rngs=rngs)
        self.shortcut_proj_attn = (
            linear(dim, dim_out, dtype=dtype, rngs=rngs) if proj_needed and cfg.expand_attn else None
        )
        kernel = tuple(s + 1 if s > 1 else s for s in stride_q)
        padding = tuple(k // 2 for k in kernel)
        pooled = math.prod(stride_q) > 1
        self.shortcut_pool_attn = Pool2d("max", kernel, stride_q, padding) if pooled else None
        self.attn = MultiScaleAttention(
            dim, att_dim, feat_size, nominal_size, num_heads, qkv_bias=cfg.qkv_bias, mode=cfg.mode,
            kernel_q=cfg.kernel_qkv, kernel_kv=cfg.kernel_qkv, stride_q=stride_q, stride_kv=stride_kv,
            has_cls_token=cfg.use_cls_token, rel_pos_type=cfg.rel_pos_type,
            residual_pooling=cfg.residual_pooling, norm_eps=eps, attn_drop=attn_drop, dtype=dtype, rngs=rngs,
        )
        self.out_size = self.attn.q_size
        if self.shortcut_pool_attn is not None:
            pool = self.shortcut_pool_attn
            skip = _out_size(feat_size, pool.kernel, pool.stride, [p for p, _ in pool.padding])
        else:
            skip = self.feat_size
        if skip != self.out_size:
            raise ValueError(
                f"the pooled query grid {self.out_size} and the pooled shortcut {skip} disagree for "
                f"kernel_qkv={cfg.kernel_qkv}, stride_q={tuple(stride_q)} (timm's forward fails the same way)"
            )
        self.drop_path1 = DropPath(drop_path, rngs=rngs)
        self.norm2 = layer_norm(att_dim, eps=eps, dtype=dtype, rngs=rngs)
        self.shortcut_proj_mlp = (
            linear(dim, dim_out, dtype=dtype, rngs=rngs) if proj_needed and not cfg.expand_attn else None
        )
        self.mlp = Mlp(att_dim, int(att_dim * cfg.mlp_ratio), dim_out, dtype=dtype, rngs=rngs)
        self.drop_path2 = DropPath(drop_path, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x_norm = self.norm1(x)
        # As in the original: the shortcut takes the un-normalized input unless it is projected.
        shortcut = x if self.shortcut_proj_attn is None else self.shortcut_proj_attn(x_norm)
        if self.shortcut_pool_attn is not None:
            # One "head" holding every channel: the same per-grid pooling as q/k/v.
            shortcut = pool_tokens(
                shortcut[:, :, None], self.feat_size, self.num_prefix, self.shortcut_pool_attn
            )[:, :, 0]
        x = shortcut + self.drop_path1(self.attn(x_norm))
        x_norm = self.norm2(x)
        shortcut = x if self.shortcut_proj_mlp is None else self.shortcut_proj_mlp(x_norm)
        return shortcut + self.drop_path2(self.mlp(x_norm))


class MultiScaleVitStage(nnx.Module):
    def __init__(
        self,
        dim: int,
        dim_out: int,
        depth: int,
        num_heads: int,
        feat_size: Size,
        nominal_size: Size,
        *,
        cfg: MultiScaleVitCfg,
        stride_q: Sequence[int],
        stride_kv: Sequence[int],
        drop_path: Sequence[float],
        attn_drop: float,
        dtype: Dtype,
        rngs: nnx.Rngs,
    ):
        out_dims = (dim_out,) * depth if cfg.expand_attn else (dim,) * (depth - 1) + (dim_out,)
        if nominal_size[0] != nominal_size[1] and cfg.rel_pos_type == "spatial":
            raise ValueError(f"relative positions need a square feature map, got {nominal_size} (as timm)")
        blocks = []
        for i in range(depth):
            blk = MultiScaleBlock(
                dim, out_dims[i], num_heads, feat_size, nominal_size[1], cfg=cfg,
                stride_q=stride_q if i == 0 else (1, 1), stride_kv=stride_kv, drop_path=drop_path[i],
                attn_drop=attn_drop, dtype=dtype, rngs=rngs,
            )
            blocks.append(blk)
            dim, feat_size = out_dims[i], blk.out_size
            if i == 0:
                nominal_size = tuple(s // st for s, st in zip(nominal_size, stride_q))
        self.blocks = nnx.List(blocks)
        self.feat_size = feat_size
        self.nominal_size = nominal_size

    def __call__(self, x: jax.Array) -> jax.Array:
        for blk in self.blocks:
            x = block_call(blk, x)
        return x


class ConvPatchEmbed(PatchEmbed):
    """timm's MViTv2 ``PatchEmbed``: an overlapping conv with symmetric padding, then tokens.
    The shared ``PatchEmbed`` forward (input-size check, conv, flatten) runs unchanged; only
    the conv differs, so its non-overlapping constructor is not called (and there is no
    ``patch_size``)."""

    def __init__(self, img_size, in_chans: int, embed_dim: int, cfg: MultiScaleVitCfg, *, dtype: Dtype,
                 rngs: nnx.Rngs):
        self.img_size = to_2tuple(img_size)
        self.grid_size = _out_size(self.img_size, cfg.patch_kernel, cfg.patch_stride, cfg.patch_padding)
        self.num_patches = math.prod(self.grid_size)
        self.flatten = True
        self.proj = nnx.Conv(
            in_chans, embed_dim, kernel_size=cfg.patch_kernel, strides=cfg.patch_stride,
            padding=tuple((p, p) for p in cfg.patch_padding), dtype=dtype, param_dtype=jnp.float32,
            kernel_init=init.torch_default_kernel, rngs=rngs,
        )


class MultiScaleVit(ClassifierModel):
    """timm's ``MultiScaleVit``; every ``MultiScaleVitCfg`` field is a keyword here."""

    pool_types = ("", "avg", "token")

    def checked_pool(self, global_pool: str) -> str:
        if global_pool == "token" and not self.num_prefix_tokens:
            raise ValueError("MultiScaleVit: global_pool='token' needs the class token (use_cls_token=True)")
        return check_pool(global_pool, self.pool_types, "MultiScaleVit")

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        in_chans: int = 3,
        num_classes: int = 1000,
        *,
        global_pool: str | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
        **cfg_fields: Any,
    ):
        known = {f.name for f in fields(MultiScaleVitCfg)}
        unknown = sorted(set(cfg_fields) - known)
        if unknown:
            raise TypeError(
                f"MultiScaleVit got unexpected keyword(s) {unknown}; MultiScaleVitCfg has {sorted(known)}"
            )
        cfg = MultiScaleVitCfg(**cfg_fields)
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.dtype = dtype
        self.depths = cfg.depths
        self.num_prefix_tokens = int(cfg.use_cls_token)
        if global_pool is None:
            global_pool = "token" if cfg.use_cls_token else "avg"
        self.global_pool = self.checked_pool(global_pool)

        embed_dim = cfg.embed_dim[0]
        self.patch_embed = ConvPatchEmbed(img_size, in_chans, embed_dim, cfg, dtype=dtype, rngs=rngs)
        nominal = tuple(s // st for s, st in zip(self.patch_embed.img_size, cfg.patch_stride))
        self.cls_token = (
            nnx.Param(init.trunc_normal_02(rngs.params(), (1, 1, embed_dim))) if cfg.use_cls_token else None
        )
        if cfg.use_abs_pos and nominal != self.patch_embed.grid_size:
            raise ValueError(
                f"use_abs_pos: timm sizes pos_embed for a {nominal} grid but the stem gives "
                f"{self.patch_embed.grid_size} at img_size {self.patch_embed.img_size}"
            )
        num_pos = math.prod(nominal) + self.num_prefix_tokens
        pos = init.trunc_normal_02(rngs.params(), (1, num_pos, embed_dim)) if cfg.use_abs_pos else None
        self.pos_embed = nnx.Param(pos) if cfg.use_abs_pos else None

        # timm's schedule: linear over all blocks, handed out stage by stage.
        rates = [float(r) for r in np.linspace(0.0, drop_path_rate, sum(cfg.depths))]
        starts = np.cumsum([0, *cfg.depths])
        feat_size = self.patch_embed.grid_size
        stages = []
        last = len(cfg.depths) - 1
        for i, depth in enumerate(cfg.depths):
            dim_out = cfg.embed_dim[i] if cfg.expand_attn else cfg.embed_dim[min(i + 1, last)]
            stage = MultiScaleVitStage(
                embed_dim, dim_out, depth, cfg.num_heads[i], feat_size, nominal, cfg=cfg,
                stride_q=cfg.stride_q[i], stride_kv=cfg.stride_kv[i],
                drop_path=rates[starts[i] : starts[i + 1]], attn_drop=attn_drop_rate, dtype=dtype, rngs=rngs,
            )
            stages.append(stage)
            embed_dim, feat_size, nominal = dim_out, stage.feat_size, stage.nominal_size
        self.stages = nnx.List(stages)
        self.num_features = embed_dim
        self.norm = layer_norm(embed_dim, eps=cfg.norm_eps, dtype=dtype, rngs=rngs)
        # timm's head: Sequential(drop, fc); pooling stays in forward_head (pre_logits comes before drop)
        self.head = ClassifierHead(embed_dim, num_classes, pool_type="", drop_rate=drop_rate, dtype=dtype, rngs=rngs)

    # --- timm's model interface -------------------------------------------------
    def no_weight_decay(self) -> set[str]:
        """Full names of the position embeddings, relative tables and class token, as timm's."""
        names = ("pos_embed", "rel_pos_h", "rel_pos_w", "cls_token")
        return {
            ".".join(map(str, path))
            for path, _ in nnx.to_flat_state(nnx.state(self, nnx.Param))
            if path[-1] in names
        }

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Which parameters form a layer, for layer-wise LR decay (as timm's)."""
        return dict(
            stem=r"^cls_token|pos_embed|patch_embed",
            blocks=[(r"^stages\.(\d+)", None), (r"^norm", (99999,))],
        )

    def get_classifier(self):
        return self.head.fc

    def _reset_head(self, num_classes: int, rngs: nnx.Rngs) -> None:
        self.head.reset(num_classes, rngs=rngs)

    def forward_features(self, x: jax.Array) -> jax.Array:
        """(B, H, W, C) images -> (B, prefix + h*w, num_features) normalized tokens."""
        x = self.patch_embed(self.cast_input(x))
        if self.cls_token is not None:
            cls = jnp.broadcast_to(self.cls_token[...].astype(x.dtype), (x.shape[0], 1, x.shape[-1]))
            x = jnp.concatenate([cls, x], axis=1)
        if self.pos_embed is not None:
            x = x + self.pos_embed[...].astype(x.dtype)
        for stage in self.stages:
            x = stage(x)
        return self.norm(x)

    def forward_head(self, x: jax.Array, pre_logits: bool = False) -> jax.Array:
        """Pools the tokens (class token or average; none with global_pool=''), then ``head``;
        as in timm, ``pre_logits`` returns the pooled features before the head's dropout."""
        x = global_pool(x, self.global_pool, num_prefix_tokens=self.num_prefix_tokens)
        return x.astype(jnp.float32) if pre_logits else self.head(x)


def _create(defaults: dict, kwargs: dict) -> MultiScaleVit:
    args = dict(kwargs)
    if args.pop("patch_size", None):  # the trainer's (and timm's ViT) keyword; MViTv2 has no patches
        raise ValueError(
            "MViTv2 has no patch_size: its stem is an overlapping conv, set with patch_kernel, "
            "patch_stride and patch_padding (e.g. (3, 3), (2, 2), (1, 1) at 32 px); in the trainer "
            "pass them in config.model_args and set config.patch_size=0"
        )
    return build(MultiScaleVit, defaults, args)


_CFG = dict(fixed_input_size=True)


@register_model("mvitv2", _CFG)
def mvitv2_tiny(**kwargs) -> MultiScaleVit:
    return _create(dict(depths=(1, 2, 5, 2)), kwargs)


@register_model("mvitv2", _CFG)
def mvitv2_small(**kwargs) -> MultiScaleVit:
    return _create(dict(depths=(1, 2, 11, 2)), kwargs)


@register_model("mvitv2", _CFG)
def mvitv2_base(**kwargs) -> MultiScaleVit:
    return _create(dict(depths=(2, 3, 16, 3)), kwargs)


@register_model("mvitv2", _CFG)
def mvitv2_small_cls(**kwargs) -> MultiScaleVit:
    return _create(dict(depths=(1, 2, 11, 2), use_cls_token=True), kwargs)
