"""Multiscale Vision Transformer v2 (MViTv2), with timm 1.0's module tree; images NHWC.

Attribute names follow ``timm.models.mvitv2``: ``patch_embed.proj``, ``cls_token``,
``pos_embed``, ``stages[i].blocks[j].{norm1, shortcut_proj_attn, attn.{qkv, pool_q,
norm_q, pool_k, norm_k, pool_v, norm_v, rel_pos_h, rel_pos_w, proj}, norm2,
shortcut_proj_mlp, mlp.{fc1, fc2}}``, ``norm``, ``head.fc``. Pooled resolutions and
the relative-position gather indices depend only on the input size, so they are worked
out once at build time (the input size is fixed, as in timm). The pooling attention itself
(``MultiScaleAttention``) is ``jaxvit/layers/multiscale_attention.py``.

Sizes follow timm exactly, including at non-224 inputs: the ``rel_pos_h/w`` tables are
sized from timm's nominal feature sizes (``img_size // patch_stride``, then ``// stride``
per stage) while the forward pass sees the real conv/pool output sizes. Where those
disagree so much that timm's own forward would fail (an index past the table, a
shortcut that no longer lines up with the pooled query), building raises instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxvit.layers import DropPath, Mlp, PatchEmbed, init, layer_norm, linear, remat, to_2tuple
from jaxvit.layers.classifier import ClassifierHead, check_pool, global_pool
from jaxvit.layers.common import Dtype
from jaxvit.layers.conv_bn import MaxPool2d
from jaxvit.layers.features import Prunable, run_stages, tokens_to
from jaxvit.layers.multiscale_attention import MultiScaleAttention, Size, pool_tokens, pooled_size
from jaxvit.layers.remat import block_call, normed
from jaxvit.models.base import ClassifierModel
from jaxvit.registry import build, register_model


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
        self.shortcut_pool_attn = MaxPool2d(kernel, tuple(stride_q), padding) if pooled else None
        self.attn = MultiScaleAttention(
            dim, att_dim, feat_size, nominal_size, num_heads, qkv_bias=cfg.qkv_bias, mode=cfg.mode,
            kernel_q=cfg.kernel_qkv, kernel_kv=cfg.kernel_qkv, stride_q=stride_q, stride_kv=stride_kv,
            has_cls_token=cfg.use_cls_token, rel_pos_type=cfg.rel_pos_type,
            residual_pooling=cfg.residual_pooling, norm_eps=eps, attn_drop=attn_drop, dtype=dtype, rngs=rngs,
        )
        self.out_size = self.attn.q_size
        skip = pooled_size(feat_size, kernel, stride_q, padding) if pooled else self.feat_size
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
        # As in the original: the shortcut takes the un-normalized input unless it is projected.
        shortcut, out = _branch_and_shortcut(self.attn, self.norm1, self.shortcut_proj_attn, x)
        if self.shortcut_pool_attn is not None:
            # One "head" holding every channel: the same per-grid pooling as q/k/v.
            shortcut = pool_tokens(
                shortcut[:, :, None], self.feat_size, self.num_prefix, self.shortcut_pool_attn
            )[:, :, 0]
        x = shortcut + self.drop_path1(out)
        shortcut, out = _branch_and_shortcut(self.mlp, self.norm2, self.shortcut_proj_mlp, x)
        return shortcut + self.drop_path2(out)


def _branch_and_shortcut(layer, norm, proj, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(the shortcut: ``x``, or ``proj(norm(x))``; ``layer(norm(x))``), the norm's output
    recomputed for the Linears' weight gradients under remat='elementwise'."""
    if proj is None:
        return x, normed(layer, norm, x)
    out, shortcut = remat.normed_each(norm, x, layer, proj)
    return shortcut, out


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
        self.grid_size = pooled_size(self.img_size, cfg.patch_kernel, cfg.patch_stride, cfg.patch_padding)
        self.num_patches = math.prod(self.grid_size)
        self.flatten = True
        self.proj = nnx.Conv(
            in_chans, embed_dim, kernel_size=cfg.patch_kernel, strides=cfg.patch_stride,
            padding=tuple((p, p) for p in cfg.patch_padding), dtype=dtype, param_dtype=jnp.float32,
            kernel_init=init.torch_default_kernel, rngs=rngs,
        )


class MultiScaleVit(ClassifierModel, Prunable):
    """timm's ``MultiScaleVit``; every ``MultiScaleVitCfg`` field is a keyword here."""

    pool_types = ("", "avg", "token")
    feature_blocks = "stages"  # what prune_intermediate_layers cuts (Prunable)
    default_out_indices = 4  # timm's features_only default: the last 4 stages

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
        stages, self.feature_info, stride = [], [], max(cfg.patch_stride)
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
            stride *= max(cfg.stride_q[i])
            self.feature_info.append(dict(module=f"block.{i}", num_chs=dim_out, reduction=stride))  # timm's name
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

    def _embed(self, x: jax.Array) -> jax.Array:
        x = self.patch_embed(self.cast_input(x))
        if self.cls_token is not None:
            cls = jnp.broadcast_to(self.cls_token[...].astype(x.dtype), (x.shape[0], 1, x.shape[-1]))
            x = jnp.concatenate([cls, x], axis=1)
        if self.pos_embed is not None:
            x = x + self.pos_embed[...].astype(x.dtype)
        return x

    def forward_features(self, x: jax.Array) -> jax.Array:
        """(B, H, W, C) images -> (B, prefix + h*w, num_features) normalized tokens."""
        x = self._embed(x)
        for stage in self.stages:
            x = stage(x)
        return self._norm(x)

    def _intermediates(self, x, take, last, *, norm, stop_early, output_fmt):
        """``forward_intermediates`` (``Intermediates``): the tokens after the stages, as Swin's
        (the final norm on the last stage only); maps drop the class token, 'NLC' keeps it (as timm)."""
        final = len(self.stages) - 1

        def tap(i, y):
            y = self._norm(y) if norm and i == final else y
            if output_fmt == "NLC":
                return y
            return tokens_to(y[:, self.num_prefix_tokens :], self.stages[i].feat_size, output_fmt)

        x, intermediates = run_stages(self.stages, self._embed(x), take, last, stop_early, tap)
        return (self._norm(x) if not stop_early or last == final else x), intermediates

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
# timm's first tag of the larger *_cls names is their ImageNet-21k-winter one ('fb_inw21k'),
# whose head has 19,168 classes: the class count these names default to, as in timm.
_INW21K = 19168
_LARGE = dict(depths=(2, 6, 36, 4), embed_dim=144, num_heads=2)
_HUGE = dict(depths=(4, 8, 60, 8), embed_dim=192, num_heads=3)


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


@register_model("mvitv2", _CFG)
def mvitv2_large(**kwargs) -> MultiScaleVit:
    return _create(dict(_LARGE, expand_attn=False), kwargs)


@register_model("mvitv2", dict(_CFG, num_classes=_INW21K))
def mvitv2_base_cls(**kwargs) -> MultiScaleVit:
    return _create(dict(depths=(2, 3, 16, 3), use_cls_token=True, num_classes=_INW21K), kwargs)


@register_model("mvitv2", dict(_CFG, num_classes=_INW21K))
def mvitv2_large_cls(**kwargs) -> MultiScaleVit:
    return _create(dict(_LARGE, use_cls_token=True, num_classes=_INW21K), kwargs)


@register_model("mvitv2", dict(_CFG, num_classes=_INW21K))
def mvitv2_huge_cls(**kwargs) -> MultiScaleVit:
    return _create(dict(_HUGE, use_cls_token=True, num_classes=_INW21K), kwargs)
