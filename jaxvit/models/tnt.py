"""Transformer in Transformer (TNT) with the module tree of ``timm.models.tnt.TNT``.

Attribute names: ``pixel_embed.proj``, ``norm1_proj``, ``proj``, ``norm2_proj``,
``cls_token``, ``patch_pos``, ``pixel_pos``, ``blocks[i].{norm_in, attn_in.{qk, v,
proj}, norm_mlp_in, mlp_in, norm1_proj, proj, norm2_proj, norm_out, attn_out,
drop_path, norm_mlp, mlp}``, ``norm``, ``head``. ``pixel_pos`` keeps timm's
(1, C, h, w) layout so it converts as it is. Images are NHWC; the patch unfold is a
reshape whose token order equals ``F.unfold``'s (patches row-major, pixels
row-major within a patch, channels last per pixel after the conv).

``legacy=True`` is timm's original layout (conv over the whole image, then unfold
the feature map; per-block norm over the inner dim and a biased projection, no
``norm2_proj``); the default runs the conv per patch.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxvit.layers import DropPath, Mlp, attention, dropout, init, layer_norm, linear
from jaxvit.layers.classifier import global_pool, logits, make_fc
from jaxvit.layers.common import Dtype
from jaxvit.layers.features import (
    Prunable,
    run_blocks,
    split_prefix,
    tokens_to,
)
from jaxvit.layers.patch_embed import patch_grid
from jaxvit.layers.remat import block_call, normed
from jaxvit.models.base import ClassifierModel
from jaxvit.registry import IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD, build, register_model


class TntAttention(nnx.Module):
    """timm's TNT attention: separate ``qk`` (dim -> 2 * hidden) and ``v`` (dim -> dim)."""

    def __init__(
        self,
        dim: int,
        hidden_dim: int,
        num_heads: int = 8,
        *,
        qkv_bias: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        if hidden_dim % num_heads or dim % num_heads:
            raise ValueError(f"dims {dim}/{hidden_dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = hidden_dim // num_heads
        self.qk = linear(dim, hidden_dim * 2, bias=qkv_bias, dtype=dtype, rngs=rngs)
        self.v = linear(dim, dim, bias=qkv_bias, dtype=dtype, rngs=rngs)
        self.attn_drop = dropout(attn_drop, rngs)
        self.proj = linear(dim, dim, dtype=dtype, rngs=rngs)
        self.proj_drop = dropout(proj_drop, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, n, c = x.shape
        qk = self.qk(x).reshape(b, n, 2, self.num_heads, self.head_dim)
        v = self.v(x).reshape(b, n, self.num_heads, -1)
        out = attention(qk[:, :, 0], qk[:, :, 1], v, attn_drop=self.attn_drop)
        return self.proj_drop(self.proj(out.reshape(b, n, c)))


class Block(nnx.Module):
    """Inner transformer over the pixels of each patch, folded into the outer patch tokens,
    then the outer transformer over patches (one DropPath module for all four branches)."""

    def __init__(
        self,
        dim: int,
        dim_out: int,
        num_pixel: int,
        *,
        num_heads_in: int = 4,
        num_heads_out: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        legacy: bool = False,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        dd = dict(dtype=dtype, rngs=rngs)
        drops = dict(qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop)
        self.norm_in = layer_norm(dim, eps=init.TORCH_LN_EPS, **dd)
        self.attn_in = TntAttention(dim, dim, num_heads_in, **drops, **dd)
        self.norm_mlp_in = layer_norm(dim, eps=init.TORCH_LN_EPS, **dd)
        self.mlp_in = Mlp(dim, dim * 4, dim, drop=proj_drop, **dd)
        self.legacy = legacy
        if legacy:
            self.norm1_proj = layer_norm(dim, eps=init.TORCH_LN_EPS, **dd)
            self.proj = linear(dim * num_pixel, dim_out, bias=True, **dd)
            self.norm2_proj = None
        else:
            self.norm1_proj = layer_norm(dim * num_pixel, eps=init.TORCH_LN_EPS, **dd)
            self.proj = linear(dim * num_pixel, dim_out, bias=False, **dd)
            self.norm2_proj = layer_norm(dim_out, eps=init.TORCH_LN_EPS, **dd)
        self.norm_out = layer_norm(dim_out, eps=init.TORCH_LN_EPS, **dd)
        self.attn_out = TntAttention(dim_out, dim_out, num_heads_out, **drops, **dd)
        self.drop_path = DropPath(drop_path, rngs=rngs)
        self.norm_mlp = layer_norm(dim_out, eps=init.TORCH_LN_EPS, **dd)
        self.mlp = Mlp(dim_out, int(dim_out * mlp_ratio), dim_out, drop=proj_drop, **dd)

    def _pixels_to_patches(self, pixel_embed: jax.Array, b: int, n: int) -> jax.Array:
        if self.norm2_proj is None:  # legacy: norm per pixel, then flatten
            return self.proj(self.norm1_proj(pixel_embed).reshape(b, n, -1))
        return self.norm2_proj(self.proj(self.norm1_proj(pixel_embed.reshape(b, n, -1))))

    def __call__(self, pixel_embed: jax.Array, patch_embed: jax.Array) -> tuple[jax.Array, jax.Array]:
        pixel_embed = pixel_embed + self.drop_path(normed(self.attn_in, self.norm_in, pixel_embed))
        pixel_embed = pixel_embed + self.drop_path(normed(self.mlp_in, self.norm_mlp_in, pixel_embed))
        b, n, _ = patch_embed.shape
        inner = self._pixels_to_patches(pixel_embed, b, n - 1)
        patch_embed = jnp.concatenate([patch_embed[:, :1], patch_embed[:, 1:] + inner], axis=1)
        patch_embed = patch_embed + self.drop_path(normed(self.attn_out, self.norm_out, patch_embed))
        patch_embed = patch_embed + self.drop_path(normed(self.mlp, self.norm_mlp, patch_embed))
        return pixel_embed, patch_embed


def _unfold(x: jax.Array, window: tuple[int, int]) -> jax.Array:
    """Non-overlapping ``F.unfold`` (kernel = stride = window) of an NHWC map:
    (B, H, W, C) -> (B * gh * gw, wh, ww, C), patches row-major per image. Rows and
    columns past the last whole window are dropped, as unfold does."""
    b, h, w, c = x.shape
    (wh, ww), gh, gw = window, h // window[0], w // window[1]
    x = x[:, : gh * wh, : gw * ww]
    x = x.reshape(b, gh, wh, gw, ww, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b * gh * gw, wh, ww, c)


class PixelEmbed(nnx.Module):
    """Image -> (B * num_patches, pixels per patch, inner_dim) pixel tokens."""

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        in_chans: int = 3,
        in_dim: int = 48,
        stride: int = 4,
        *,
        legacy: bool = False,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        self.img_size, self.patch_size, self.grid_size, self.num_patches = patch_grid(img_size, patch_size)
        if not self.num_patches:
            raise ValueError(f"img_size {self.img_size} is smaller than patch_size {self.patch_size}")
        self.legacy = legacy
        self.in_dim = in_dim
        self.new_patch_size = tuple(math.ceil(p / stride) for p in self.patch_size)
        if legacy:
            # The unfold over the conv output must give exactly one window per patch.
            feat = tuple((s - 1) // stride + 1 for s in self.img_size)
            if any(f // n != g for f, n, g in zip(feat, self.new_patch_size, self.grid_size)):
                raise ValueError(
                    f"legacy TNT needs img_size {self.img_size} / stride {stride} to hold "
                    f"{self.grid_size} windows of {self.new_patch_size}; pick a patch_size dividing img_size"
                )
        self.proj = nnx.Conv(
            in_chans, in_dim, kernel_size=(7, 7), strides=(stride, stride), padding=((3, 3), (3, 3)),
            dtype=dtype, param_dtype=jnp.float32, kernel_init=init.torch_default_kernel,
            bias_init=init.zeros, rngs=rngs,
        )

    def __call__(self, x: jax.Array, pixel_pos: jax.Array) -> jax.Array:
        if tuple(x.shape[1:3]) != self.img_size:
            raise ValueError(
                f"input is {tuple(x.shape[1:3])} but the model was built for img_size "
                f"{self.img_size}; create the model with img_size={x.shape[1]}"
            )
        if self.legacy:
            x = _unfold(self.proj(x), self.new_patch_size)
        else:
            x = self.proj(_unfold(x, self.patch_size))
        # pixel_pos is (1, C, h, w) as in timm.
        x = x + pixel_pos.transpose(0, 2, 3, 1).astype(x.dtype)
        return x.reshape(x.shape[0], -1, self.in_dim)


class TNT(ClassifierModel, Prunable):
    pool_types = ("", "token", "avg")
    default_out_indices = 3  # timm's features_only default: the last 3 blocks
    intermediate_options = ("return_prefix_tokens",)  # forward_intermediates' own (Intermediates)

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "token",
        embed_dim: int = 768,
        inner_dim: int = 48,
        depth: int = 12,
        num_heads_inner: int = 4,
        num_heads_outer: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        drop_rate: float = 0.0,
        pos_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        first_stride: int = 4,
        legacy: bool = False,
        *,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        self.num_classes = num_classes
        self.global_pool = self.checked_pool(global_pool)
        self.embed_dim = self.num_features = embed_dim
        self.num_prefix_tokens = 1
        self.dtype = dtype
        dd = dict(dtype=dtype, rngs=rngs)

        self.pixel_embed = PixelEmbed(
            img_size, patch_size, in_chans, inner_dim, first_stride, legacy=legacy, **dd
        )
        self.num_patches = num_patches = self.pixel_embed.num_patches
        new_patch = self.pixel_embed.new_patch_size
        num_pixel = new_patch[0] * new_patch[1]

        self.norm1_proj = layer_norm(num_pixel * inner_dim, eps=init.TORCH_LN_EPS, **dd)
        self.proj = linear(num_pixel * inner_dim, embed_dim, **dd)
        self.norm2_proj = layer_norm(embed_dim, eps=init.TORCH_LN_EPS, **dd)

        self.cls_token = nnx.Param(init.trunc_normal_02(rngs.params(), (1, 1, embed_dim)))
        self.patch_pos = nnx.Param(init.trunc_normal_02(rngs.params(), (1, num_patches + 1, embed_dim)))
        self.pixel_pos = nnx.Param(init.trunc_normal_02(rngs.params(), (1, inner_dim, *new_patch)))
        self.pos_drop = dropout(pos_drop_rate, rngs)

        dpr = [float(r) for r in np.linspace(0.0, drop_path_rate, depth)]
        self.blocks = nnx.List(
            [
                Block(
                    inner_dim, embed_dim, num_pixel, num_heads_in=num_heads_inner,
                    num_heads_out=num_heads_outer, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                    proj_drop=proj_drop_rate, attn_drop=attn_drop_rate, drop_path=dpr[i],
                    legacy=legacy, **dd,
                )
                for i in range(depth)
            ]
        )
        self.feature_info = [
            dict(module=f"blocks.{i}", num_chs=embed_dim, reduction=max(self.pixel_embed.patch_size))
            for i in range(depth)
        ]
        self.norm = layer_norm(embed_dim, eps=init.TORCH_LN_EPS, **dd)
        self.head_drop = dropout(drop_rate, rngs)
        self._reset_head(num_classes, rngs)

    def _reset_head(self, num_classes: int, rngs: nnx.Rngs) -> None:
        self.head = nnx.data(make_fc(self.embed_dim, num_classes, dtype=self.dtype, rngs=rngs))

    # --- timm's model interface -------------------------------------------------
    def no_weight_decay(self) -> set[str]:
        return {"patch_pos", "pixel_pos", "cls_token"}

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(
            stem=r"^cls_token|patch_pos|pixel_pos|pixel_embed|norm[12]_proj|proj",
            blocks=[(r"^blocks\.(\d+)", None), (r"^norm", (99999,))],
        )

    def get_classifier(self):
        return self.head

    def _embed(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Images -> (pixel tokens, patch tokens with the class token and positions)."""
        x = self.cast_input(x)
        b = x.shape[0]
        pixel_embed = self.pixel_embed(x, self.pixel_pos[...])
        patch_embed = pixel_embed.reshape(b, self.num_patches, -1)
        patch_embed = self.norm2_proj(self.proj(self.norm1_proj(patch_embed)))
        cls = jnp.broadcast_to(self.cls_token[...], (b, 1, self.embed_dim)).astype(patch_embed.dtype)
        patch_embed = jnp.concatenate([cls, patch_embed], axis=1)
        return pixel_embed, self.pos_drop(patch_embed + self.patch_pos[...].astype(patch_embed.dtype))

    def forward_features(self, x: jax.Array) -> jax.Array:
        pixel_embed, patch_embed = self._embed(x)
        for blk in self.blocks:
            pixel_embed, patch_embed = block_call(blk, pixel_embed, patch_embed)
        return self._norm(patch_embed)

    def _intermediates(self, x, take, last, *, norm, stop_early, output_fmt, return_prefix_tokens: bool = False):
        """``forward_intermediates`` (``Intermediates``): the patch tokens after each block, the
        class token split off; ``return_prefix_tokens``: (patches, class token) pairs."""
        pixel_embed, patch_embed = self._embed(x)
        (pixel_embed, patch_embed), intermediates = run_blocks(
            self.blocks, (pixel_embed, patch_embed), take, last, stop_early,
            lambda xs: self._norm(xs[1]) if norm else xs[1])
        patches, prefix = split_prefix(intermediates, self.num_prefix_tokens)
        intermediates = [tokens_to(y, self.pixel_embed.grid_size, output_fmt) for y in patches]
        if return_prefix_tokens:
            intermediates = list(zip(intermediates, prefix))
        return self._norm(patch_embed), intermediates

    def forward_head(self, x: jax.Array, pre_logits: bool = False) -> jax.Array:
        x = global_pool(x, self.global_pool, num_prefix_tokens=self.num_prefix_tokens)
        return logits(self.head, self.head_drop(x), pre_logits)


def _create(defaults: dict, kwargs: dict) -> TNT:
    return build(TNT, defaults, kwargs)


_TNT_CFG = dict(mean=IMAGENET_INCEPTION_MEAN, std=IMAGENET_INCEPTION_STD)
_S = dict(patch_size=16, embed_dim=384, inner_dim=24, depth=12, num_heads_outer=6, qkv_bias=False)
_B = dict(patch_size=16, embed_dim=640, inner_dim=40, depth=12, num_heads_outer=10, qkv_bias=False)


@register_model("tnt", _TNT_CFG)
def tnt_s_legacy_patch16_224(**kwargs) -> TNT:
    return _create(dict(_S, legacy=True), kwargs)


@register_model("tnt", _TNT_CFG)
def tnt_s_patch16_224(**kwargs) -> TNT:
    return _create(_S, kwargs)


@register_model("tnt", _TNT_CFG)
def tnt_b_patch16_224(**kwargs) -> TNT:
    return _create(_B, kwargs)
