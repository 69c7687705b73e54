"""MLP-Mixer, ResMLP, gMLP and gMixer with the module tree of ``timm.models.mlp_mixer.MlpMixer``.

One class, as timm's: the blocks differ by ``block_layer``. Attribute names: ``stem.proj``,
``blocks[i]`` (a ``MixerBlock``: ``norm1, mlp_tokens, drop_path, norm2, mlp_channels``; a
``ResBlock``: ``norm1, linear_tokens, ls1, norm2, mlp_channels, ls2``; a
``SpatialGatingBlock``: ``norm, mlp_channels.gate.{norm, proj}``), ``norm``, ``head``, so a
timm state dict converts with the per-layer-type rules and no table. Tokens are mixed along the
transposed (B, D, N) sequence; channels over (B, N, D).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvit.errors import ConfigError
from jaxvit.layers import Affine, DropPath, GatedMlp, GluMlp, Mlp, PatchEmbed, SpatialGatingUnit, init, remat
from jaxvit.layers.classifier import global_pool, logits, make_fc
from jaxvit.layers.common import Dtype, dropout, gelu, get_act, layer_norm, linear
from jaxvit.layers.features import Prunable, run_blocks, tokens_to
from jaxvit.layers.remat import block_call, normed
from jaxvit.models.base import ClassifierModel
from jaxvit.registry import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    IMAGENET_INCEPTION_MEAN,
    IMAGENET_INCEPTION_STD,
    build,
    register_model,
)

# timm's MlpMixer takes classes for these; jaxvit takes their names (config-friendly, as the
# ViT's ``block_fn``/``mlp_layer``): timm's Mlp, GluMlp, GatedMlp; its partial(LayerNorm,
# eps=1e-6) and ResMLP's Affine.
MLP_LAYERS = ("mlp", "glu", "gated")
NORM_LAYERS = ("layernorm", "affine")

# timm's _init_weights for Mixer (the non-flax branch): xavier-uniform Linear weights, biases
# N(0, 1e-6) inside the MLPs (a 'mlp' in the name) and zero elsewhere, a zero classifier;
# afterwards a module's own init_weights (GluMlp's gate half; SpatialGatingUnit's proj, built
# with it here) overrides.
_tiny_normal = init.normal(1e-6)


def _init_mlp_like_timm(mlp: nnx.Module, rngs: nnx.Rngs) -> None:
    # New Params rather than writing into the old ones: cheaper under nnx.eval_shape.
    for fc in (mlp.fc1, mlp.fc2):
        fc.kernel = nnx.Param(init.xavier_uniform(rngs.params(), fc.kernel.shape, jnp.float32))
        if fc.bias is not None:
            fc.bias = nnx.Param(_tiny_normal(rngs.params(), fc.bias.shape, jnp.float32))
    if isinstance(mlp, GluMlp):
        mlp.init_weights(rngs)


def _norm(kind: str, dim: int, *, dtype: Dtype, rngs: nnx.Rngs) -> nnx.Module:
    return Affine(dim) if kind == "affine" else layer_norm(dim, dtype=dtype, rngs=rngs)


def _mlp(kind: str, in_features: int, hidden: int, *, act, drop: float, dtype: Dtype, rngs: nnx.Rngs,
         gate_layer=None) -> nnx.Module:
    if kind == "gated":
        return GatedMlp(in_features, hidden, act=act, gate_layer=gate_layer, drop=drop, dtype=dtype, rngs=rngs)
    if gate_layer is not None:
        raise ConfigError(f"block_layer 'spatial_gating' needs mlp_layer='gated' (timm's GatedMlp), not {kind!r}")
    cls = GluMlp if kind == "glu" else Mlp
    return cls(in_features, hidden, act=act, drop=drop, dtype=dtype, rngs=rngs)


def _tokens_last(x: jax.Array) -> jax.Array:
    """(B, tokens, C) -> (B, C, tokens): the token-mixing MLP's input."""
    return x.swapaxes(1, 2)


class MixerBlock(nnx.Module):
    """x + mlp_tokens(norm1(x)^T)^T, then x + mlp_channels(norm2(x))."""

    def __init__(
        self,
        dim: int,
        seq_len: int,
        mlp_ratio: float | tuple[float, float] = (0.5, 4.0),
        *,
        mlp_layer: str = "mlp",
        norm_layer: str = "layernorm",
        act: Callable[[jax.Array], jax.Array] = gelu,
        drop: float = 0.0,
        drop_path: float = 0.0,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        ratios = mlp_ratio if isinstance(mlp_ratio, (tuple, list)) else (mlp_ratio, mlp_ratio)
        tokens_dim, channels_dim = (int(r * dim) for r in ratios)
        mlp = partial(_mlp, mlp_layer, act=act, drop=drop, dtype=dtype, rngs=rngs)
        self.norm1 = _norm(norm_layer, dim, dtype=dtype, rngs=rngs)
        self.mlp_tokens = mlp(seq_len, tokens_dim)
        self.drop_path = DropPath(drop_path, rngs=rngs)
        self.norm2 = _norm(norm_layer, dim, dtype=dtype, rngs=rngs)
        self.mlp_channels = mlp(dim, channels_dim)
        _init_mlp_like_timm(self.mlp_tokens, rngs)
        _init_mlp_like_timm(self.mlp_channels, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        mixed = normed(self.mlp_tokens, (self.norm1, _tokens_last), x).swapaxes(1, 2)
        x = x + self.drop_path(mixed)
        return x + self.drop_path(normed(self.mlp_channels, self.norm2, x))


class ResBlock(nnx.Module):
    """ResMLP's block: x + ls1 * linear_tokens(norm1(x)^T)^T, then x + ls2 * mlp_channels(norm2(x));
    ``ls1``/``ls2`` are per-channel scales at ``init_values`` (timm's parameters of those names)."""

    def __init__(
        self,
        dim: int,
        seq_len: int,
        mlp_ratio: float = 4,
        *,
        mlp_layer: str = "mlp",
        norm_layer: str = "affine",
        act: Callable[[jax.Array], jax.Array] = gelu,
        init_values: float = 1e-4,
        drop: float = 0.0,
        drop_path: float = 0.0,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        self.norm1 = _norm(norm_layer, dim, dtype=dtype, rngs=rngs)
        # timm: xavier weights, zero bias (no 'mlp' in its name)
        self.linear_tokens = linear(seq_len, seq_len, dtype=dtype, rngs=rngs, kernel_init=init.xavier_uniform)
        self.drop_path = DropPath(drop_path, rngs=rngs)
        self.norm2 = _norm(norm_layer, dim, dtype=dtype, rngs=rngs)
        self.mlp_channels = _mlp(mlp_layer, dim, int(dim * mlp_ratio), act=act, drop=drop,
                                 dtype=dtype, rngs=rngs)
        _init_mlp_like_timm(self.mlp_channels, rngs)
        self.ls1 = nnx.Param(jnp.full((dim,), init_values, jnp.float32))
        self.ls2 = nnx.Param(jnp.full((dim,), init_values, jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        mixed = remat.chain(x, self.norm1, _tokens_last, self.linear_tokens).swapaxes(1, 2)
        x = x + self.drop_path(self.ls1[...].astype(x.dtype) * mixed)
        return x + self.drop_path(self.ls2[...].astype(x.dtype) * normed(self.mlp_channels, self.norm2, x))


class SpatialGatingBlock(nnx.Module):
    """gMLP's block: x + mlp_channels(norm(x)), the channel MLP a ``GatedMlp`` whose gate is a
    ``SpatialGatingUnit`` over the tokens."""

    def __init__(
        self,
        dim: int,
        seq_len: int,
        mlp_ratio: float = 4,
        *,
        mlp_layer: str = "gated",
        norm_layer: str = "layernorm",
        act: Callable[[jax.Array], jax.Array] = gelu,
        drop: float = 0.0,
        drop_path: float = 0.0,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        self.norm = _norm(norm_layer, dim, dtype=dtype, rngs=rngs)
        sgu = partial(SpatialGatingUnit, seq_len=seq_len, dtype=dtype, rngs=rngs)
        self.mlp_channels = _mlp(mlp_layer, dim, int(dim * mlp_ratio), act=act, drop=drop,
                                 dtype=dtype, rngs=rngs, gate_layer=sgu)
        _init_mlp_like_timm(self.mlp_channels, rngs)  # fc1, fc2; the gate's proj keeps its own init
        self.drop_path = DropPath(drop_path, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.drop_path(normed(self.mlp_channels, self.norm, x))


# timm's block classes by name (MixerBlock, ResBlock, SpatialGatingBlock)
BLOCKS = {"mixer": MixerBlock, "res": ResBlock, "spatial_gating": SpatialGatingBlock}


def _check_choice(key: str, value: str, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{key} {value!r} is not one of {tuple(choices)}; pass one of those names")


class MlpMixer(ClassifierModel, Prunable):
    """timm's ``MlpMixer``. ``block_layer`` ('mixer', 'res', 'spatial_gating'), ``mlp_layer``
    ('mlp', 'glu', 'gated'), ``norm_layer`` ('layernorm' (eps 1e-6), 'affine') and
    ``act_layer`` (a name of ``jaxvit.layers.common.ACTIVATIONS``; None: GELU) are names where
    timm takes classes. ``init_values`` stands in for timm's ``partial(ResBlock,
    init_values=...)`` (ResMLP-24's 1e-5, ResMLP-36's 1e-6): 'res' blocks only, None for the
    block's default 1e-4."""

    pool_types = ("", "avg")
    default_out_indices = 3  # timm's features_only default: the last 3 blocks

    def __init__(
        self,
        num_classes: int = 1000,
        img_size: int | tuple[int, int] = 224,
        in_chans: int = 3,
        patch_size: int = 16,
        num_blocks: int = 8,
        embed_dim: int = 512,
        mlp_ratio: float | tuple[float, float] = (0.5, 4.0),
        *,
        block_layer: str = "mixer",
        mlp_layer: str = "mlp",
        norm_layer: str = "layernorm",
        act_layer: str | None = None,
        init_values: float | None = None,
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        nlhb: bool = False,
        stem_norm: bool = False,
        global_pool: str = "avg",
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        _check_choice("block_layer", block_layer, BLOCKS)
        _check_choice("mlp_layer", mlp_layer, MLP_LAYERS)
        _check_choice("norm_layer", norm_layer, NORM_LAYERS)
        if block_layer != "mixer" and isinstance(mlp_ratio, (tuple, list)):
            raise ConfigError(f"block_layer {block_layer!r} takes one mlp_ratio, not {tuple(mlp_ratio)}; "
                              "pass e.g. mlp_ratio=4")
        block_kwargs = {}
        if init_values is not None:
            if block_layer != "res":
                raise ConfigError(f"init_values is for block_layer='res' (ResMLP's layer scale), not {block_layer!r}")
            block_kwargs["init_values"] = init_values
        self.num_classes = num_classes
        self.global_pool = self.checked_pool(global_pool)
        self.embed_dim = self.num_features = embed_dim
        self.nlhb = nlhb
        self.dtype = dtype

        norm = partial(_norm, norm_layer, dtype=dtype, rngs=rngs)
        self.stem = PatchEmbed(img_size, patch_size, in_chans, embed_dim, norm=norm(embed_dim) if stem_norm else None,
                               dtype=dtype, rngs=rngs)
        # timm gives every block the full drop_path_rate (no linear ramp).
        self.blocks = nnx.List(
            [
                BLOCKS[block_layer](
                    embed_dim, self.stem.num_patches, mlp_ratio, mlp_layer=mlp_layer, norm_layer=norm_layer,
                    act=get_act(act_layer), drop=proj_drop_rate, drop_path=drop_path_rate, dtype=dtype, rngs=rngs,
                    **block_kwargs,
                )
                for _ in range(num_blocks)
            ]
        )
        self.feature_info = [
            dict(module=f"blocks.{i}", num_chs=embed_dim, reduction=max(self.stem.patch_size))
            for i in range(num_blocks)
        ]
        self.norm = norm(embed_dim)
        self.head_drop = dropout(drop_rate, rngs)
        self._reset_head(num_classes, rngs)

    def _reset_head(self, num_classes: int, rngs: nnx.Rngs) -> None:
        # timm: a zero classifier; with nlhb ("negative log head bias") bias -log(num_classes).
        bias = init.zeros
        if self.nlhb and num_classes > 0:
            bias = nnx.initializers.constant(-math.log(num_classes))
        self.head = nnx.data(make_fc(self.embed_dim, num_classes, dtype=self.dtype, rngs=rngs,
                                     kernel_init=init.zeros, bias_init=bias))

    # --- timm's model interface -------------------------------------------------
    def no_weight_decay(self) -> set[str]:
        return set()

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(stem=r"^stem", blocks=[(r"^blocks\.(\d+)", None), (r"^norm", (99999,))])

    def get_classifier(self):
        return self.head

    def forward_features(self, x: jax.Array) -> jax.Array:
        x = self.stem(self.cast_input(x))
        for blk in self.blocks:
            x = block_call(blk, x)
        return self._norm(x)

    def _intermediates(self, x, take, last, *, norm, stop_early, output_fmt):
        """``forward_intermediates`` (``Intermediates``): each block's tokens as a map."""
        grid = tuple(s // p for s, p in zip(x.shape[1:3], self.stem.patch_size))
        x = self.stem(self.cast_input(x))
        x, intermediates = run_blocks(self.blocks, x, take, last, stop_early,
                                      lambda x: tokens_to(self._norm(x) if norm else x, grid, output_fmt))
        return self._norm(x), intermediates

    def forward_head(self, x: jax.Array, pre_logits: bool = False) -> jax.Array:
        return logits(self.head, self.head_drop(global_pool(x, self.global_pool)), pre_logits)


def _create(defaults: dict, kwargs: dict) -> MlpMixer:
    return build(MlpMixer, defaults, kwargs)


# timm's Mixer default cfg: inception mean/std (0.5), crop 0.875, bicubic.
_MIXER_CFG = dict(mean=IMAGENET_INCEPTION_MEAN, std=IMAGENET_INCEPTION_STD, crop_pct=0.875)
_SIZES = {
    "s": dict(num_blocks=8, embed_dim=512),
    "b": dict(num_blocks=12, embed_dim=768),
    "l": dict(num_blocks=24, embed_dim=1024),
}
# timm's register_model_deprecations for the mixer names (old name -> name.tag).
_B16_ALIASES = {
    "mixer_b16_224_in21k": "mixer_b16_224.goog_in21k_ft_in1k",
    "mixer_b16_224_miil": "mixer_b16_224.miil_in21k_ft_in1k",
    "mixer_b16_224_miil_in21k": "mixer_b16_224.miil_in21k",
}
_L16_ALIASES = {"mixer_l16_224_in21k": "mixer_l16_224.goog_in21k_ft_in1k"}


def _variant(size: str, patch: int) -> dict:
    return dict(_SIZES[size], patch_size=patch)


@register_model("mixer", _MIXER_CFG)
def mixer_s32_224(**kwargs) -> MlpMixer:
    return _create(_variant("s", 32), kwargs)


@register_model("mixer", _MIXER_CFG)
def mixer_s16_224(**kwargs) -> MlpMixer:
    return _create(_variant("s", 16), kwargs)


@register_model("mixer", _MIXER_CFG)
def mixer_b32_224(**kwargs) -> MlpMixer:
    return _create(_variant("b", 32), kwargs)


@register_model("mixer", _MIXER_CFG, aliases=_B16_ALIASES)
def mixer_b16_224(**kwargs) -> MlpMixer:
    return _create(_variant("b", 16), kwargs)


@register_model("mixer", _MIXER_CFG)
def mixer_l32_224(**kwargs) -> MlpMixer:
    return _create(_variant("l", 32), kwargs)


@register_model("mixer", _MIXER_CFG, aliases=_L16_ALIASES)
def mixer_l16_224(**kwargs) -> MlpMixer:
    return _create(_variant("l", 16), kwargs)


# gMixer, ResMLP: imagenet mean/std, crop 0.875 (timm's _cfg with mean/std overridden); gMLP: the
# Mixer cfg. Each name's first tag has 1000 classes.
_IMAGENET_CFG = dict(mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, crop_pct=0.875)
# Ross Wightman's GLU Mixer: MLP-Mixer with SiLU-gated GluMlps
_GMIXER = dict(patch_size=16, embed_dim=384, mlp_ratio=(1.0, 4.0), mlp_layer="glu", act_layer="silu")
_RESMLP = dict(patch_size=16, embed_dim=384, mlp_ratio=4, block_layer="res", norm_layer="affine")
_GMLP = dict(patch_size=16, num_blocks=30, mlp_ratio=6, block_layer="spatial_gating", mlp_layer="gated")


def _resmlp_aliases(name: str, depth: str, dino: bool = False) -> dict:
    """timm's register_model_deprecations for a ResMLP name (old name -> name.tag)."""
    out = {f"resmlp_{depth}_distilled_224": f"{name}.fb_distilled_in1k"}
    if dino:
        out[f"{name}_dino"] = name
    return out


@register_model("mixer", _IMAGENET_CFG)
def gmixer_12_224(**kwargs) -> MlpMixer:
    return _create(dict(_GMIXER, num_blocks=12), kwargs)


@register_model("mixer", _IMAGENET_CFG)
def gmixer_24_224(**kwargs) -> MlpMixer:
    return _create(dict(_GMIXER, num_blocks=24), kwargs)


@register_model("mixer", _IMAGENET_CFG, aliases=_resmlp_aliases("resmlp_12_224", "12", dino=True))
def resmlp_12_224(**kwargs) -> MlpMixer:
    return _create(dict(_RESMLP, num_blocks=12), kwargs)


@register_model("mixer", _IMAGENET_CFG, aliases=_resmlp_aliases("resmlp_24_224", "24", dino=True))
def resmlp_24_224(**kwargs) -> MlpMixer:
    return _create(dict(_RESMLP, num_blocks=24, init_values=1e-5), kwargs)


@register_model("mixer", _IMAGENET_CFG, aliases=_resmlp_aliases("resmlp_36_224", "36"))
def resmlp_36_224(**kwargs) -> MlpMixer:
    return _create(dict(_RESMLP, num_blocks=36, init_values=1e-6), kwargs)


@register_model("mixer", _IMAGENET_CFG, aliases=dict(
    _resmlp_aliases("resmlp_big_24_224", "big_24"), resmlp_big_24_224_in22ft1k="resmlp_big_24_224.fb_in22k_ft_in1k"))
def resmlp_big_24_224(**kwargs) -> MlpMixer:
    return _create(dict(_RESMLP, patch_size=8, num_blocks=24, embed_dim=768, init_values=1e-6), kwargs)


@register_model("mixer", _MIXER_CFG)
def gmlp_ti16_224(**kwargs) -> MlpMixer:
    return _create(dict(_GMLP, embed_dim=128), kwargs)


@register_model("mixer", _MIXER_CFG)
def gmlp_s16_224(**kwargs) -> MlpMixer:
    return _create(dict(_GMLP, embed_dim=256), kwargs)


@register_model("mixer", _MIXER_CFG)
def gmlp_b16_224(**kwargs) -> MlpMixer:
    return _create(dict(_GMLP, embed_dim=512), kwargs)
