"""MLP-Mixer with the module tree of ``timm.models.mlp_mixer.MlpMixer``.

Attribute names: ``stem.proj``, ``blocks[i].{norm1, mlp_tokens, drop_path, norm2,
mlp_channels}``, ``norm``, ``head``, so a timm state dict converts with the
per-layer-type rules and no table. Tokens are mixed by an ``Mlp`` applied to the
transposed (B, D, N) sequence; channels by an ``Mlp`` over (B, N, D).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvit.layers import DropPath, Mlp, PatchEmbed, dropout, init, layer_norm, to_2tuple
from jaxvit.layers.classifier import global_pool, logits, make_fc
from jaxvit.layers.common import Dtype
from jaxvit.layers.remat import block_call
from jaxvit.models.base import ClassifierModel
from jaxvit.registry import IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD, build, register_model

# timm's _init_weights for Mixer (the non-flax branch): xavier-uniform Linear
# weights, N(0, 1e-6) biases inside the MLPs, a zero classifier.
_tiny_normal = init.normal(1e-6)


def _init_mlp_like_timm(mlp: Mlp, rngs: nnx.Rngs) -> None:
    # New Params rather than writing into the old ones: cheaper under nnx.eval_shape.
    for fc in (mlp.fc1, mlp.fc2):
        fc.kernel = nnx.Param(init.xavier_uniform(rngs.params(), fc.kernel.shape, jnp.float32))
        if fc.bias is not None:
            fc.bias = nnx.Param(_tiny_normal(rngs.params(), fc.bias.shape, jnp.float32))


class MixerBlock(nnx.Module):
    """x + mlp_tokens(norm1(x)^T)^T, then x + mlp_channels(norm2(x))."""

    def __init__(
        self,
        dim: int,
        seq_len: int,
        *,
        mlp_ratio: float | tuple[float, float] = (0.5, 4.0),
        drop: float = 0.0,
        drop_path: float = 0.0,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        tokens_dim, channels_dim = (int(r * dim) for r in to_2tuple(mlp_ratio))
        self.norm1 = layer_norm(dim, dtype=dtype, rngs=rngs)
        self.mlp_tokens = Mlp(seq_len, tokens_dim, drop=drop, dtype=dtype, rngs=rngs)
        self.drop_path = DropPath(drop_path, rngs=rngs)
        self.norm2 = layer_norm(dim, dtype=dtype, rngs=rngs)
        self.mlp_channels = Mlp(dim, channels_dim, drop=drop, dtype=dtype, rngs=rngs)
        _init_mlp_like_timm(self.mlp_tokens, rngs)
        _init_mlp_like_timm(self.mlp_channels, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        mixed = self.mlp_tokens(self.norm1(x).swapaxes(1, 2)).swapaxes(1, 2)
        x = x + self.drop_path(mixed)
        return x + self.drop_path(self.mlp_channels(self.norm2(x)))


class MlpMixer(ClassifierModel):
    pool_types = ("", "avg")

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
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        nlhb: bool = False,
        global_pool: str = "avg",
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        self.num_classes = num_classes
        self.global_pool = self.checked_pool(global_pool)
        self.embed_dim = self.num_features = embed_dim
        self.nlhb = nlhb
        self.dtype = dtype

        self.stem = PatchEmbed(img_size, patch_size, in_chans, embed_dim, dtype=dtype, rngs=rngs)
        # timm gives every block the full drop_path_rate (no linear ramp).
        self.blocks = nnx.List(
            [
                MixerBlock(
                    embed_dim, self.stem.num_patches, mlp_ratio=mlp_ratio, drop=proj_drop_rate,
                    drop_path=drop_path_rate, dtype=dtype, rngs=rngs,
                )
                for _ in range(num_blocks)
            ]
        )
        self.norm = layer_norm(embed_dim, dtype=dtype, rngs=rngs)
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
        return self.norm(x)

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
