"""Vision Transformer and DeiT (incl. distilled), with timm's module tree.

Attribute names follow ``timm.models.vision_transformer``: ``patch_embed.proj``,
``cls_token``, ``dist_token``, ``pos_embed``, ``blocks[i].{norm1,attn,norm2,mlp}``,
``norm``, ``head``, ``head_dist``, so conversion is a rule per layer type.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxvit.layers import Attention, DropPath, Mlp, PatchEmbed, dropout, init, layer_norm
from jaxvit.layers.classifier import global_pool, logits, make_fc
from jaxvit.layers.common import Dtype
from jaxvit.models.base import ClassifierModel
from jaxvit.registry import IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD, build, register_model


class Block(nnx.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), x + mlp(norm2(x))."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        norm_eps: float = 1e-6,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        self.norm1 = layer_norm(dim, eps=norm_eps, dtype=dtype, rngs=rngs)
        self.attn = Attention(
            dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop,
            dtype=dtype, rngs=rngs,
        )
        self.drop_path1 = DropPath(drop_path, rngs=rngs)
        self.norm2 = layer_norm(dim, eps=norm_eps, dtype=dtype, rngs=rngs)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=proj_drop, dtype=dtype, rngs=rngs)
        self.drop_path2 = DropPath(drop_path, rngs=rngs)

    def __call__(self, x: jax.Array, *, mask: jax.Array | None = None) -> jax.Array:
        x = x + self.drop_path1(self.attn(self.norm1(x), mask=mask))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class VisionTransformer(ClassifierModel):
    pool_types = ("token", "avg")

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        *,
        global_pool: str = "token",
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        distilled: bool = False,
        drop_rate: float = 0.0,
        pos_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        self.num_classes = num_classes
        self.global_pool = self.checked_pool(global_pool)
        self.embed_dim = self.num_features = embed_dim
        self.distilled = distilled
        self.num_prefix_tokens = 2 if distilled else 1
        self.dtype = dtype

        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim, dtype=dtype, rngs=rngs)
        self.cls_token = nnx.Param(init.normal(1e-6)(rngs.params(), (1, 1, embed_dim)))
        self.dist_token = (
            nnx.Param(init.trunc_normal_02(rngs.params(), (1, 1, embed_dim))) if distilled else None
        )
        num_pos = self.patch_embed.num_patches + self.num_prefix_tokens
        self.pos_embed = nnx.Param(init.trunc_normal_02(rngs.params(), (1, num_pos, embed_dim)))
        self.pos_drop = dropout(pos_drop_rate, rngs)
        dpr = [float(r) for r in np.linspace(0.0, drop_path_rate, depth)]
        self.blocks = nnx.List(
            [
                Block(
                    embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                    proj_drop=proj_drop_rate, attn_drop=attn_drop_rate, drop_path=dpr[i],
                    dtype=dtype, rngs=rngs,
                )
                for i in range(depth)
            ]
        )
        self.norm = layer_norm(embed_dim, dtype=dtype, rngs=rngs)
        self.head_drop = dropout(drop_rate, rngs)
        self._reset_head(num_classes, rngs)

    def _reset_head(self, num_classes: int, rngs: nnx.Rngs) -> None:
        # nnx.data: a head that is None (num_classes=0) stays a data slot another reset can fill
        self.head = nnx.data(make_fc(self.embed_dim, num_classes, dtype=self.dtype, rngs=rngs))
        self.head_dist = nnx.data(
            make_fc(self.embed_dim, num_classes, dtype=self.dtype, rngs=rngs) if self.distilled else None
        )

    # --- timm's model interface -------------------------------------------------
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token", "dist_token"}

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Which parameters form a layer, for layer-wise LR decay (as timm's)."""
        return dict(
            stem=r"^cls_token|^pos_embed|^patch_embed|^dist_token",
            blocks=[(r"^blocks\.(\d+)", None), (r"^norm", (99999,))],
        )

    def get_classifier(self):
        """The head; a distilled DeiT's two heads, (head, head_dist), as timm's."""
        return (self.head, self.head_dist) if self.distilled else self.head

    def forward_features(self, x: jax.Array) -> jax.Array:
        x = self.patch_embed(self.cast_input(x))
        b = x.shape[0]
        prefix = [jnp.broadcast_to(self.cls_token[...], (b, 1, self.embed_dim))]
        if self.dist_token is not None:
            prefix.append(jnp.broadcast_to(self.dist_token[...], (b, 1, self.embed_dim)))
        x = jnp.concatenate([p.astype(x.dtype) for p in prefix] + [x], axis=1)
        x = self.pos_drop(x + self.pos_embed[...].astype(x.dtype))
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def forward_head(self, x: jax.Array, pre_logits: bool = False) -> jax.Array:
        if self.distilled:
            x, x_dist = x[:, 0], x[:, 1]
            if pre_logits:
                return (x + x_dist) / 2
            x = logits(self.head, self.head_drop(x))
            x_dist = logits(self.head_dist, self.head_drop(x_dist))
            # timm averages the two heads except in distillation training,
            # which needs a teacher and is not part of jaxvit's trainer.
            return (x + x_dist) / 2
        x = global_pool(x, self.global_pool, num_prefix_tokens=self.num_prefix_tokens)
        return logits(self.head, self.head_drop(x), pre_logits)


def _create(defaults: dict, kwargs: dict) -> VisionTransformer:
    return build(VisionTransformer, defaults, kwargs)


_VIT_CFG = dict(mean=IMAGENET_INCEPTION_MEAN, std=IMAGENET_INCEPTION_STD)
_SIZES = {
    "tiny": dict(embed_dim=192, depth=12, num_heads=3),
    "small": dict(embed_dim=384, depth=12, num_heads=6),
    "base": dict(embed_dim=768, depth=12, num_heads=12),
    "large": dict(embed_dim=1024, depth=24, num_heads=16),
}


def _variant(name: str) -> dict:
    size, patch = re.match(r"\w+?_(tiny|small|base|large)_(?:distilled_)?patch(\d+)", name).groups()
    return dict(_SIZES[size], patch_size=int(patch))


def _register(name: str, cfg: dict, **extra: Any) -> None:
    """Registers ``name``, a ViT whose size and patch the name says (as timm's names do)."""
    defaults = dict(_variant(name), **extra)

    def make(**kwargs) -> VisionTransformer:
        return _create(defaults, kwargs)

    make.__name__ = make.__qualname__ = name
    register_model("vit", cfg, name=name)(make)


for _name in ("vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224", "vit_base_patch32_224",
              "vit_large_patch16_224"):
    _register(_name, _VIT_CFG)
for _name in ("deit_tiny_patch16_224", "deit_small_patch16_224", "deit_base_patch16_224"):
    _register(_name, dict(crop_pct=0.875))
for _name in ("deit_tiny_distilled_patch16_224", "deit_small_distilled_patch16_224",
              "deit_base_distilled_patch16_224"):
    _register(_name, dict(crop_pct=0.875), distilled=True)
