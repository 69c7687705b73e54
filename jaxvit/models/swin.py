"""Swin Transformer (v1), with timm 1.0's module tree, NHWC throughout.

Attribute names follow ``timm.models.swin_transformer``: ``patch_embed.{proj,norm}``,
``layers[i].downsample.{norm,reduction}`` (stages 1..n-1; timm merges patches at the
start of a stage), ``layers[i].blocks[j].{norm1, attn.{qkv, proj,
relative_position_bias_table}, norm2, mlp.{fc1, fc2}}``, ``norm``, ``head.fc``.
The relative position index and shifted-window masks are shape constants
(``jaxvit.layers.window``), not state.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxvit.layers import Attention, DropPath, Mlp, PatchEmbed, init, layer_norm, linear, to_2tuple
from jaxvit.layers.classifier import ClassifierHead
from jaxvit.layers.common import Dtype
from jaxvit.layers.features import Prunable, map_to, run_stages
from jaxvit.layers.remat import block_call, normed
from jaxvit.layers.window import (
    clamp_window,
    pad_to_windows,
    relative_position_bias,
    shifted_window_mask,
    windows_last,
    windows_last_reverse,
)
from jaxvit.models.base import ClassifierModel
from jaxvit.registry import build, register_model

LN_EPS = init.TORCH_LN_EPS  # timm's Swin uses torch's nn.LayerNorm default


class SwinPatchEmbed(PatchEmbed):
    """timm's ``PatchEmbed(norm_layer=LayerNorm, output_fmt='NHWC')``: conv, then ``norm``."""

    def __init__(self, img_size, patch_size, in_chans, embed_dim, *, dtype: Dtype, rngs: nnx.Rngs):
        super().__init__(img_size, patch_size, in_chans, embed_dim, flatten=False, dtype=dtype, rngs=rngs)
        self.norm = layer_norm(embed_dim, eps=LN_EPS, dtype=dtype, rngs=rngs)  # PatchEmbed's forward applies it


class WindowAttention(Attention):
    """Multi-head attention inside (shifted) windows with a learned relative position bias."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: tuple[int, int],
        *,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        super().__init__(
            dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop,
            dtype=dtype, rngs=rngs,
        )
        self.window_size = tuple(window_size)
        num_rel = (2 * window_size[0] - 1) * (2 * window_size[1] - 1)
        self.relative_position_bias_table = nnx.Param(
            init.trunc_normal_02(rngs.params(), (num_rel, num_heads), jnp.float32)
        )

    def __call__(self, x: jax.Array, *, mask: np.ndarray | None = None, pre_norm=None) -> jax.Array:
        """``x``: (B, N, num_windows, C), the windows of each image (``windows_last``); ``mask``:
        (num_windows, N, N) additive, or None. The windows share the heads' axis
        (``Attention``), so the bias is one (1, num_windows * heads, N, N) array that broadcasts
        over the images (timm's fused path expands the mask to every window of the batch).
        ``pre_norm``: the block's norm and what takes its output to windows (shift, pad,
        partition), given here so that ``remat='elementwise'`` can recompute them; ``x`` is then
        the block's (B, H, W, C) map."""
        bias = relative_position_bias(self.relative_position_bias_table[...], self.window_size)
        bias = bias.astype(x.dtype)[None]  # (1, heads, N, N)
        n = bias.shape[-1]
        if mask is not None:
            bias = bias + jnp.asarray(mask, x.dtype)[:, None]  # (nW, heads, N, N)
        num_windows = self._num_windows(x, pre_norm)
        bias = jnp.broadcast_to(bias, (num_windows, self.num_heads, n, n))
        return super().__call__(x, bias=bias.reshape(1, num_windows * self.num_heads, n, n), pre_norm=pre_norm)

    def _num_windows(self, x: jax.Array, pre_norm) -> int:
        """Windows per image: ``x``'s window axis, or those of the padded map ``pre_norm`` cuts."""
        if pre_norm is None:
            return x.shape[2]
        _, h, w, _ = x.shape
        wh, ww = self.window_size
        return -(-h // wh) * -(-w // ww)


class SwinTransformerBlock(nnx.Module):
    """(Shifted) window attention and an MLP, pre-norm, on (B, H, W, C) maps."""

    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        num_heads: int,
        *,
        window_size: tuple[int, int] = (7, 7),
        shift_size: tuple[int, int] = (0, 0),
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        self.input_resolution = tuple(input_resolution)
        self.window_size, self.shift_size = clamp_window(self.input_resolution, window_size, shift_size)
        self.norm1 = layer_norm(dim, eps=LN_EPS, dtype=dtype, rngs=rngs)
        self.attn = WindowAttention(
            dim, num_heads, self.window_size, qkv_bias=qkv_bias, attn_drop=attn_drop,
            proj_drop=proj_drop, dtype=dtype, rngs=rngs,
        )
        self.drop_path1 = DropPath(drop_path, rngs=rngs)
        self.norm2 = layer_norm(dim, eps=LN_EPS, dtype=dtype, rngs=rngs)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=proj_drop, dtype=dtype, rngs=rngs)
        self.drop_path2 = DropPath(drop_path, rngs=rngs)

    def _attn(self, x: jax.Array) -> jax.Array:
        """The attention branch on the block's input: norm1, shift, windows, attention, back."""
        _, h, w, _ = x.shape
        shift, window = self.shift_size, self.window_size
        hp, wp = h + -h % window[0], w + -w % window[1]

        def to_windows(y):
            if any(shift):
                y = jnp.roll(y, (-shift[0], -shift[1]), axis=(1, 2))
            # As timm: pad after the shift, and the padded zeros are attended to (no padding mask).
            return windows_last(pad_to_windows(y, window), window)

        mask = shifted_window_mask(hp, wp, window, shift)
        x = self.attn(x, mask=mask, pre_norm=(self.norm1, to_windows))
        x = windows_last_reverse(x, window, hp, wp)[:, :h, :w]
        if any(shift):
            x = jnp.roll(x, shift, axis=(1, 2))
        return x

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.drop_path1(self._attn(x))
        return x + self.drop_path2(normed(self.mlp, self.norm2, x))


class PatchMerging(nnx.Module):
    """2x2 neighbourhoods concatenated (timm's channel order), normalized, projected to ``out_dim``."""

    def __init__(self, dim: int, out_dim: int | None = None, *, dtype: Dtype = None, rngs: nnx.Rngs):
        self.out_dim = out_dim or 2 * dim
        self.norm = layer_norm(4 * dim, eps=LN_EPS, dtype=dtype, rngs=rngs)
        self.reduction = linear(4 * dim, self.out_dim, bias=False, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
        h, w = x.shape[1] // 2, x.shape[2] // 2
        # (B, h, dy, w, dx, C) -> (B, h, w, dx, dy, C): timm flattens column offset outermost.
        x = x.reshape(b, h, 2, w, 2, c).transpose(0, 1, 3, 4, 2, 5).reshape(b, h, w, 4 * c)
        return self.reduction(self.norm(x))


class SwinTransformerStage(nnx.Module):
    """Optional patch merging, then ``depth`` blocks alternating plain and shifted windows."""

    def __init__(
        self,
        dim: int,
        out_dim: int,
        input_resolution: tuple[int, int],
        depth: int,
        *,
        downsample: bool,
        num_heads: int,
        window_size: tuple[int, int],
        mlp_ratio: float,
        qkv_bias: bool,
        proj_drop: float,
        attn_drop: float,
        drop_path: Sequence[float],
        dtype: Dtype,
        rngs: nnx.Rngs,
    ):
        if not downsample and dim != out_dim:
            raise ValueError(f"a stage without downsampling keeps its width ({dim} != {out_dim})")
        self.output_resolution = (
            tuple((r + 1) // 2 for r in input_resolution) if downsample else tuple(input_resolution)
        )
        self.downsample = PatchMerging(dim, out_dim, dtype=dtype, rngs=rngs) if downsample else None
        shift = tuple(w // 2 for w in window_size)
        self.blocks = nnx.List(
            [
                SwinTransformerBlock(
                    out_dim, self.output_resolution, num_heads, window_size=window_size,
                    shift_size=(0, 0) if i % 2 == 0 else shift, mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias, proj_drop=proj_drop, attn_drop=attn_drop,
                    drop_path=drop_path[i], dtype=dtype, rngs=rngs,
                )
                for i in range(depth)
            ]
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.downsample is not None:
            x = self.downsample(x)
        for blk in self.blocks:
            x = block_call(blk, x)
        return x


def _per_stage_window(window_size: Any, num_stages: int) -> list[tuple[int, int]]:
    """timm's resolve_stage_window_sizes: an int or an (h, w) pair for every stage, or one
    of those per stage (a sequence of two ints is always one (h, w))."""
    if not isinstance(window_size, (list, tuple)) or (
        len(window_size) == 2 and not isinstance(window_size[0], (list, tuple))
    ):
        return [to_2tuple(window_size)] * num_stages
    if len(window_size) != num_stages:
        raise ValueError(f"window_size {window_size} needs one entry per stage ({num_stages})")
    return [to_2tuple(w) for w in window_size]


class SwinTransformer(ClassifierModel, Prunable):
    pool_types = ("", "avg", "max", "avgmax")  # timm's ClassifierHead (its pretrained heads: 'avg')
    feature_blocks = "layers"  # what prune_intermediate_layers cuts (Prunable)

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 4,
        in_chans: int = 3,
        num_classes: int = 1000,
        *,
        global_pool: str = "avg",
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int | Sequence = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        self.global_pool = self.checked_pool(global_pool)
        if len(num_heads) != len(depths):
            raise ValueError(f"num_heads {tuple(num_heads)} needs one entry per stage of {tuple(depths)}")
        self.num_classes = num_classes
        self.dtype = dtype
        num_stages = len(depths)
        self.embed_dim = embed_dim
        dims = [int(embed_dim * 2**i) for i in range(num_stages)]
        self.num_features = dims[-1]

        self.patch_embed = SwinPatchEmbed(img_size, patch_size, in_chans, dims[0], dtype=dtype, rngs=rngs)
        windows = _per_stage_window(window_size, num_stages)
        # timm's schedule: linear over all blocks, handed out stage by stage.
        rates = [float(r) for r in np.linspace(0.0, drop_path_rate, sum(depths))]
        starts = np.cumsum([0, *depths])
        resolution = tuple(self.patch_embed.grid_size)
        stages = []
        for i in range(num_stages):
            stage = SwinTransformerStage(
                dims[max(i - 1, 0)], dims[i], resolution, depths[i], downsample=i > 0,
                num_heads=num_heads[i], window_size=windows[i], mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                proj_drop=proj_drop_rate, attn_drop=attn_drop_rate,
                drop_path=rates[starts[i] : starts[i + 1]], dtype=dtype, rngs=rngs,
            )
            resolution = stage.output_resolution
            stages.append(stage)
        self.layers = nnx.List(stages)
        self.default_out_indices = tuple(range(num_stages))  # timm's features_only default: every stage
        stride = max(to_2tuple(patch_size))
        self.feature_info = [dict(num_chs=d, reduction=stride * 2**i, module=f"layers.{i}") for i, d in enumerate(dims)]
        self.norm = layer_norm(self.num_features, eps=LN_EPS, dtype=dtype, rngs=rngs)
        self.head = ClassifierHead(
            self.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate, dtype=dtype, rngs=rngs
        )

    # --- timm's model interface -------------------------------------------------
    def no_weight_decay(self) -> set[str]:
        """Full names of every relative position bias table, as timm's."""
        return {
            ".".join(map(str, path))
            for path, _ in nnx.to_flat_state(nnx.state(self, nnx.Param))
            if path[-1] == "relative_position_bias_table"
        }

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Which parameters form a layer, for layer-wise LR decay (as timm's)."""
        return dict(
            stem=r"^patch_embed",
            blocks=r"^layers\.(\d+)" if coarse else [
                (r"^layers\.(\d+).downsample", (0,)),
                (r"^layers\.(\d+)\.\w+\.(\d+)", None),
                (r"^norm", (99999,)),
            ],
        )

    def get_classifier(self):
        return self.head.fc

    def _reset_head(self, num_classes: int, rngs: nnx.Rngs) -> None:
        self.head.reset(num_classes, self.global_pool, rngs=rngs)

    def forward_features(self, x: jax.Array) -> jax.Array:
        """(B, H, W, C) images -> (B, h, w, num_features) normalized features."""
        x = self.patch_embed(self.cast_input(x))
        for stage in self.layers:
            x = stage(x)
        return self._norm(x)

    def _intermediates(self, x, take, last, *, norm, stop_early, output_fmt):
        """``forward_intermediates`` (``Intermediates``): the maps after the stages. The final
        norm is sized for the last stage, so ``norm`` applies it to that stage's map only, and the
        final features are normalized only where the last stage ran (not after ``stop_early``
        short of it)."""
        final = len(self.layers) - 1
        x = self.patch_embed(self.cast_input(x))
        x, intermediates = run_stages(self.layers, x, take, last, stop_early,
                                      lambda i, y: map_to(self._norm(y) if norm and i == final else y, output_fmt))
        return (self._norm(x) if not stop_early or last == final else x), intermediates

    def forward_head(self, x: jax.Array, pre_logits: bool = False) -> jax.Array:
        return self.head(x, pre_logits=pre_logits)


def _create(defaults: dict, kwargs: dict) -> SwinTransformer:
    return build(SwinTransformer, defaults, kwargs)


_SIZES = {
    "tiny": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    "small": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    "base": dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
    "large": dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48)),
}


def _variant(name: str) -> dict:
    size, patch, window = re.match(r"swin_(tiny|small|base|large)_patch(\d+)_window(\d+)", name).groups()
    return dict(_SIZES[size], patch_size=int(patch), window_size=int(window))


_CFG_384 = dict(input_size=(384, 384, 3), crop_pct=1.0)


def _in22k_alias(name: str) -> dict[str, str]:
    """timm's deprecated ``*_in22k`` name for ``name``'s ImageNet-22k tag."""
    return {f"{name}_in22k": f"{name}.ms_in22k"}


@register_model("swin")
def swin_tiny_patch4_window7_224(**kwargs) -> SwinTransformer:
    return _create(_variant("swin_tiny_patch4_window7"), kwargs)


@register_model("swin")
def swin_small_patch4_window7_224(**kwargs) -> SwinTransformer:
    return _create(_variant("swin_small_patch4_window7"), kwargs)


@register_model("swin", aliases=_in22k_alias("swin_base_patch4_window7_224"))
def swin_base_patch4_window7_224(**kwargs) -> SwinTransformer:
    return _create(_variant("swin_base_patch4_window7"), kwargs)


@register_model("swin", _CFG_384, aliases=_in22k_alias("swin_base_patch4_window12_384"))
def swin_base_patch4_window12_384(**kwargs) -> SwinTransformer:
    return _create(dict(_variant("swin_base_patch4_window12"), img_size=384), kwargs)


@register_model("swin", aliases=_in22k_alias("swin_large_patch4_window7_224"))
def swin_large_patch4_window7_224(**kwargs) -> SwinTransformer:
    return _create(_variant("swin_large_patch4_window7"), kwargs)


@register_model("swin", _CFG_384, aliases=_in22k_alias("swin_large_patch4_window12_384"))
def swin_large_patch4_window12_384(**kwargs) -> SwinTransformer:
    return _create(dict(_variant("swin_large_patch4_window12"), img_size=384), kwargs)


# Swin-S3 (arXiv 2111.14725): Swin-T's widths and heads, a searched window size per stage.
_S3 = {
    "tiny": dict(depths=(2, 2, 6, 2), window_size=(7, 7, 14, 7)),
    "small": dict(depths=(2, 2, 18, 2), window_size=(14, 14, 14, 7)),
    "base": dict(depths=(2, 2, 30, 2), window_size=(7, 7, 14, 7)),
}


def _s3(size: str) -> dict:
    return {**_SIZES["tiny"], "patch_size": 4, **_S3[size]}


@register_model("swin")
def swin_s3_tiny_224(**kwargs) -> SwinTransformer:
    return _create(_s3("tiny"), kwargs)


@register_model("swin")
def swin_s3_small_224(**kwargs) -> SwinTransformer:
    return _create(_s3("small"), kwargs)


@register_model("swin")
def swin_s3_base_224(**kwargs) -> SwinTransformer:
    return _create(_s3("base"), kwargs)
