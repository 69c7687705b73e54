"""Vision Transformer, DeiT (incl. distilled) and DeiT III, with timm's module tree, and the
timm names its keywords build (CLIP and SigLIP-gap towers, DINOv2, register and gap ViTs, ...).

Attribute names follow ``timm.models.vision_transformer``: ``patch_embed.proj``,
``cls_token``, ``reg_token``, ``dist_token``, ``pos_embed``, ``norm_pre``,
``blocks[i].{norm1,attn.{qkv,q_norm,k_norm,proj},ls1.gamma,norm2,mlp,ls2.gamma}``, ``norm``,
``fc_norm``, ``head``, ``head_dist``, so conversion is a rule per layer type.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxvit.errors import ConfigError
from jaxvit.layers import (
    Attention,
    AttentionPoolLatent,
    DropPath,
    GluMlp,
    LayerScale,
    Mlp,
    PatchEmbed,
    SwiGLU,
    attention,
    dropout,
    get_act,
    init,
    linear,
    make_norm,
)
from jaxvit.layers.classifier import global_pool, logits, make_fc
from jaxvit.layers.common import Dtype, gelu
from jaxvit.layers.pos_embed import resample_abs_pos_embed_traced
from jaxvit.layers.remat import block_call
from jaxvit.models.base import ClassifierModel
from jaxvit.registry import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    IMAGENET_INCEPTION_MEAN,
    IMAGENET_INCEPTION_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    build,
    register_model,
)

MLP_LAYERS = ("mlp", "swiglu_packed", "swiglu")  # timm's Mlp, SwiGLUPacked, SwiGLU


class Block(nnx.Module):
    """Pre-norm transformer block: x + ls1(attn(norm1(x))), x + ls2(mlp(norm2(x))); ``ls1``/``ls2``
    are LayerScales where ``init_values`` is given (timm's Identity otherwise)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_norm: bool = False,
        scale_attn_norm: bool = False,
        scale_mlp_norm: bool = False,
        init_values: float | None = None,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        act: Callable[[jax.Array], jax.Array] = gelu,
        mlp_layer: str = "mlp",
        proj_bias: bool = True,
        norm_layer: str | None = None,
        norm_eps: float = 1e-6,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        norm = partial(make_norm, norm_layer, eps=norm_eps, dtype=dtype, rngs=rngs)
        self.norm1 = norm(dim)
        self.attn = Attention(
            dim, num_heads, qkv_bias=qkv_bias, qk_norm=qk_norm, scale_norm=scale_attn_norm, proj_bias=proj_bias,
            norm_layer=norm_layer, norm_eps=norm_eps, attn_drop=attn_drop, proj_drop=proj_drop, dtype=dtype,
            rngs=rngs,
        )
        self.ls1 = LayerScale(dim, init_values) if init_values else None
        self.drop_path1 = DropPath(drop_path, rngs=rngs)
        self.norm2 = norm(dim)
        hidden = int(dim * mlp_ratio)
        if mlp_layer not in MLP_LAYERS:
            raise ConfigError(f"mlp_layer {mlp_layer!r} is not one of {MLP_LAYERS}; pass one of those names")
        if mlp_layer == "swiglu_packed":
            self.mlp = GluMlp(dim, hidden, act=act, gate_last=False, bias=proj_bias, drop=proj_drop, dtype=dtype,
                              rngs=rngs)
        else:
            self.mlp = (SwiGLU if mlp_layer == "swiglu" else Mlp)(
                dim, hidden, act=act, bias=proj_bias, drop=proj_drop, norm=scale_mlp_norm, norm_layer=norm_layer,
                norm_eps=norm_eps, dtype=dtype, rngs=rngs,
            )
        self.ls2 = LayerScale(dim, init_values) if init_values else None
        self.drop_path2 = DropPath(drop_path, rngs=rngs)

    def __call__(self, x: jax.Array, *, mask: jax.Array | None = None) -> jax.Array:
        y = self.attn(self.norm1(x), mask=mask)
        x = x + self.drop_path1(y if self.ls1 is None else self.ls1(y))
        y = self.mlp(self.norm2(x))
        return x + self.drop_path2(y if self.ls2 is None else self.ls2(y))


class ResPostBlock(Block):
    """timm's ``ResPostBlock``: the norms after each branch, x + norm1(attn(x)), x + norm2(mlp(x));
    ``init_values`` is the norms' initial scale (no LayerScale)."""

    def __init__(self, dim: int, num_heads: int, *, init_values: float | None = None, norm_eps: float = 1e-6,
                 dtype: Dtype = None, rngs: nnx.Rngs, **kwargs: Any):
        super().__init__(dim, num_heads, norm_eps=norm_eps, dtype=dtype, rngs=rngs, **kwargs)
        if init_values is not None:
            scale = nnx.initializers.constant(init_values)
            self.norm1, self.norm2 = (
                nnx.LayerNorm(dim, epsilon=norm_eps, dtype=dtype, param_dtype=jnp.float32, scale_init=scale, rngs=rngs)
                for _ in range(2)
            )

    def __call__(self, x: jax.Array, *, mask: jax.Array | None = None) -> jax.Array:
        x = x + self.drop_path1(self.norm1(self.attn(x, mask=mask)))
        return x + self.drop_path2(self.norm2(self.mlp(x)))


class _Branch(nnx.Module):
    """One branch of ``ParallelThingsBlock``, named as timm's Sequential: norm -> attn (or mlp) -> ls
    -> drop_path."""

    def __init__(self, norm: nnx.Module, body_name: str, body: nnx.Module, ls: LayerScale | None, drop_path: DropPath):
        self.norm = norm
        self.body_name = body_name
        setattr(self, body_name, body)
        self.ls = ls
        self.drop_path = drop_path

    def __call__(self, x: jax.Array) -> jax.Array:
        y = getattr(self, self.body_name)(self.norm(x))
        return self.drop_path(y if self.ls is None else self.ls(y))


class ParallelThingsBlock(nnx.Module):
    """timm's ``ParallelThingsBlock`` ("three things" ViT): ``num_parallel`` attention branches
    summed into the residual, then as many MLP branches; each branch is a Block's half."""

    def __init__(self, dim: int, num_heads: int, *, num_parallel: int = 2, **kwargs: Any):
        halves = [Block(dim, num_heads, **kwargs) for _ in range(num_parallel)]
        self.attns = nnx.List([_Branch(b.norm1, "attn", b.attn, b.ls1, b.drop_path1) for b in halves])
        self.ffns = nnx.List([_Branch(b.norm2, "mlp", b.mlp, b.ls2, b.drop_path2) for b in halves])

    def __call__(self, x: jax.Array, *, mask: jax.Array | None = None) -> jax.Array:
        if mask is not None:
            raise ConfigError("ParallelThingsBlock takes no attention mask")
        x = x + sum(branch(x) for branch in self.attns)
        return x + sum(branch(x) for branch in self.ffns)


class ParallelScalingBlock(nnx.Module):
    """timm's ``ParallelScalingBlock`` (ViT-22B style): one ``in_norm``, one fused ``in_proj`` for
    the MLP's hidden layer and q, k, v; attention and MLP in parallel, their ``attn_out_proj`` and
    ``mlp_out_proj`` summed into one residual through ``ls``. Without ``qkv_bias`` the MLP's
    bias is its own ``mlp_bias``."""

    def __init__(
        self, dim: int, num_heads: int, *, mlp_ratio: float = 4.0, qkv_bias: bool = False, qk_norm: bool = False,
        scale_attn_norm: bool = False, scale_mlp_norm: bool = False, init_values: float | None = None,
        proj_drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
        act: Callable[[jax.Array], jax.Array] = gelu, mlp_layer: str = "mlp", proj_bias: bool = True,
        norm_layer: str | None = None, norm_eps: float = 1e-6, dtype: Dtype = None, rngs: nnx.Rngs,
    ):
        if scale_attn_norm or scale_mlp_norm or mlp_layer != "mlp":
            raise ConfigError("block_fn='parallel_scaling' takes no scale norms and only mlp_layer='mlp'")
        if dim % num_heads:
            raise ConfigError(f"dim {dim} must be divisible by num_heads {num_heads}")
        norm = partial(make_norm, norm_layer, eps=norm_eps, dtype=dtype, rngs=rngs)
        self.num_heads = num_heads
        hidden = int(mlp_ratio * dim)
        self.in_split = (hidden, hidden + dim, hidden + 2 * dim)  # mlp | q | k | v
        self.in_norm = norm(dim)
        self.in_proj = linear(dim, hidden + 3 * dim, bias=qkv_bias, dtype=dtype, rngs=rngs)
        self.mlp_bias = None if qkv_bias else nnx.Param(jnp.zeros((hidden,), jnp.float32))
        self.q_norm = norm(dim // num_heads) if qk_norm else None
        self.k_norm = norm(dim // num_heads) if qk_norm else None
        self.attn_drop = dropout(attn_drop, rngs)
        self.mlp_drop = dropout(proj_drop, rngs)
        self.mlp_act = act
        self.attn_out_proj = linear(dim, dim, bias=proj_bias, dtype=dtype, rngs=rngs)
        self.mlp_out_proj = linear(hidden, dim, bias=proj_bias, dtype=dtype, rngs=rngs)
        self.ls = LayerScale(dim, init_values) if init_values is not None else None
        self.drop_path = DropPath(drop_path, rngs=rngs)

    def __call__(self, x: jax.Array, *, mask: jax.Array | None = None) -> jax.Array:
        b, n, c = x.shape
        h = self.num_heads
        x_mlp, q, k, v = jnp.split(self.in_proj(self.in_norm(x)), self.in_split, axis=-1)
        if self.mlp_bias is not None:
            x_mlp = x_mlp + self.mlp_bias[...].astype(x_mlp.dtype)
        q, k, v = (t.reshape(b, n, h, c // h) for t in (q, k, v))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        x_attn = attention(q, k, v, mask=mask, attn_drop=self.attn_drop).reshape(b, n, c)
        y = self.attn_out_proj(x_attn) + self.mlp_out_proj(self.mlp_drop(self.mlp_act(x_mlp)))
        return x + self.drop_path(y if self.ls is None else self.ls(y))


BLOCKS = {"block": Block, "res_post": ResPostBlock, "parallel": ParallelThingsBlock,
          "parallel_scaling": ParallelScalingBlock}


class VisionTransformer(ClassifierModel):
    """timm's ``VisionTransformer`` (and DeiT's ``VisionTransformerDistilled``, ``distilled=True``).

    The keywords are timm's, with timm's defaults, except ``norm_eps`` (timm passes
    ``norm_layer=partial(LayerNorm, eps=...)``; CLIP's 1e-5), and ``act_layer`` and ``mlp_layer``,
    which take names: one of ``jaxvit.layers.common.ACTIVATIONS``; one of ``MLP_LAYERS``; so do
    ``norm_layer``/``embed_norm_layer`` ('layernorm', 'rmsnorm', all of one ``norm_eps``) and
    ``block_fn`` ('block'; 'res_post': timm's ``ResPostBlock``; 'parallel': its two-way
    ``ParallelThingsBlock``; 'parallel_scaling': its ``ParallelScalingBlock``). A layer timm
    makes an Identity is None here.
    """

    pool_types = ("", "token", "avg", "max", "avgmax", "map")

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
        qk_norm: bool = False,
        scale_attn_norm: bool = False,
        scale_mlp_norm: bool = False,
        init_values: float | None = None,
        class_token: bool = True,
        no_embed_class: bool = False,
        reg_tokens: int = 0,
        pre_norm: bool = False,
        final_norm: bool = True,
        fc_norm: bool | None = None,
        dynamic_img_size: bool = False,
        distilled: bool = False,
        act_layer: str | None = None,
        mlp_layer: str = "mlp",
        block_fn: str = "block",
        proj_bias: bool = True,
        norm_layer: str | None = None,
        embed_norm_layer: str | None = None,
        norm_eps: float = 1e-6,
        drop_rate: float = 0.0,
        pos_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        if distilled and (not class_token or reg_tokens or no_embed_class):
            raise ConfigError(
                "VisionTransformer: distilled=True reads the class and distillation tokens; "
                "leave class_token=True, reg_tokens=0, no_embed_class=False"
            )
        self.num_classes = num_classes
        self.has_class_token = class_token
        self.distilled = distilled
        self.global_pool = self.checked_pool(global_pool)
        use_fc_norm = global_pool in ("avg", "avgmax", "max") if fc_norm is None else fc_norm
        self.embed_dim = self.num_features = embed_dim
        self.num_reg_tokens = reg_tokens
        self.num_prefix_tokens = int(class_token) + int(distilled) + reg_tokens
        self.no_embed_class = no_embed_class
        self.dynamic_img_size = dynamic_img_size
        self.dtype = dtype

        norm = partial(make_norm, norm_layer, eps=norm_eps, dtype=dtype, rngs=rngs)
        self.patch_embed = PatchEmbed(
            img_size, patch_size, in_chans, embed_dim, bias=not pre_norm, flatten=not dynamic_img_size,
            strict_img_size=not dynamic_img_size, dtype=dtype, rngs=rngs,
            norm=make_norm(embed_norm_layer, embed_dim, eps=norm_eps, dtype=dtype, rngs=rngs)
            if embed_norm_layer else None,
        )
        self.cls_token = nnx.Param(init.normal(1e-6)(rngs.params(), (1, 1, embed_dim))) if class_token else None
        self.reg_token = (
            nnx.Param(init.normal(1e-6)(rngs.params(), (1, reg_tokens, embed_dim))) if reg_tokens else None
        )
        self.dist_token = (
            nnx.Param(init.trunc_normal_02(rngs.params(), (1, 1, embed_dim))) if distilled else None
        )
        num_pos = self.patch_embed.num_patches + (0 if no_embed_class else self.num_prefix_tokens)
        self.pos_embed = nnx.Param(init.trunc_normal_02(rngs.params(), (1, num_pos, embed_dim)))
        self.pos_drop = dropout(pos_drop_rate, rngs)
        self.norm_pre = norm(embed_dim) if pre_norm else None
        act = get_act(act_layer)
        if block_fn not in BLOCKS:
            raise ConfigError(f"block_fn {block_fn!r} is not one of {tuple(BLOCKS)}; pass one of those names")
        dpr = [float(r) for r in np.linspace(0.0, drop_path_rate, depth)]
        self.blocks = nnx.List(
            [
                BLOCKS[block_fn](
                    embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_norm=qk_norm,
                    scale_attn_norm=scale_attn_norm, scale_mlp_norm=scale_mlp_norm, init_values=init_values,
                    proj_drop=proj_drop_rate, attn_drop=attn_drop_rate, drop_path=dpr[i], act=act,
                    mlp_layer=mlp_layer, proj_bias=proj_bias, norm_layer=norm_layer, norm_eps=norm_eps, dtype=dtype,
                    rngs=rngs,
                )
                for i in range(depth)
            ]
        )
        # timm's rule: the final norm moves after pooling (fc_norm) for 'avg'-style pooling
        final = final_norm and not use_fc_norm
        self.norm = norm(embed_dim) if final else None
        pooled = final_norm and use_fc_norm
        self.fc_norm = norm(embed_dim) if pooled else None
        # 'map': attention pooling by a learned latent (SigLIP); nnx.data: reset_classifier may drop it
        self.attn_pool = nnx.data(
            AttentionPoolLatent(
                embed_dim, num_heads, mlp_ratio=mlp_ratio, act=act, norm_layer=norm_layer, norm_eps=norm_eps,
                dtype=dtype, rngs=rngs,
            )
            if global_pool == "map" else None
        )
        self.head_drop = dropout(drop_rate, rngs)
        self._reset_head(num_classes, rngs)

    def checked_pool(self, global_pool: str) -> str:
        if global_pool != "token" and self.distilled:
            raise ConfigError(
                f"VisionTransformer: distilled=True pools its class and distillation tokens; "
                f"global_pool must be 'token', got {global_pool!r}"
            )
        if global_pool == "token" and not self.has_class_token:
            raise ConfigError(
                "VisionTransformer: global_pool='token' needs the class token (class_token=True), "
                "or pick global_pool='avg'"
            )
        return super().checked_pool(global_pool)

    def reset_classifier(
        self, num_classes: int, global_pool: str | None = None, *, rngs: nnx.Rngs | None = None
    ) -> None:
        """As timm's: another pooling than 'map' drops the attention pool; one cannot be added."""
        if global_pool == "map" and self.attn_pool is None:
            raise ConfigError(
                "VisionTransformer: reset_classifier cannot add attention pooling; build the model with "
                "global_pool='map'"
            )
        super().reset_classifier(num_classes, global_pool, rngs=rngs)
        if self.global_pool != "map":
            self.attn_pool = None

    def _reset_head(self, num_classes: int, rngs: nnx.Rngs) -> None:
        # nnx.data: a head that is None (num_classes=0) stays a data slot another reset can fill
        self.head = nnx.data(make_fc(self.embed_dim, num_classes, dtype=self.dtype, rngs=rngs))
        self.head_dist = nnx.data(
            make_fc(self.embed_dim, num_classes, dtype=self.dtype, rngs=rngs) if self.distilled else None
        )

    # --- timm's model interface -------------------------------------------------
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token", "reg_token", "dist_token"}

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Which parameters form a layer, for layer-wise LR decay (as timm's)."""
        return dict(
            stem=r"^cls_token|^reg_token|^pos_embed|^patch_embed|^dist_token|^norm_pre",
            blocks=[(r"^blocks\.(\d+)", None), (r"^norm", (99999,))],
        )

    def get_classifier(self):
        """The head; a distilled DeiT's two heads, (head, head_dist), as timm's."""
        return (self.head, self.head_dist) if self.distilled else self.head

    def _pos_embed(self, x: jax.Array) -> jax.Array:
        """Patch tokens (B, N, C), or (B, H, W, C) with ``dynamic_img_size``, -> the prefix
        tokens (class, distillation, registers) and the patches, position table added."""
        pos = self.pos_embed[...]
        if self.dynamic_img_size:
            grid = tuple(x.shape[1:3])
            if grid != tuple(self.patch_embed.grid_size):
                prefix = 0 if self.no_embed_class else self.num_prefix_tokens
                pos = resample_abs_pos_embed_traced(pos, grid, self.patch_embed.grid_size, prefix)
            x = x.reshape(x.shape[0], -1, x.shape[-1])
        b = x.shape[0]
        tokens = [t for t in (self.cls_token, self.dist_token, self.reg_token) if t is not None]
        prefix = [jnp.broadcast_to(t[...], (b, *t.shape[1:])).astype(x.dtype) for t in tokens]
        if self.no_embed_class:  # DeiT III, DINOv2 with registers: the table covers the patches only
            x = jnp.concatenate(prefix + [x + pos.astype(x.dtype)], axis=1)
        else:
            x = jnp.concatenate(prefix + [x], axis=1) + pos.astype(x.dtype)
        return self.pos_drop(x)

    def forward_features(self, x: jax.Array) -> jax.Array:
        x = self._pos_embed(self.patch_embed(self.cast_input(x)))
        if self.norm_pre is not None:
            x = self.norm_pre(x)
        for blk in self.blocks:
            x = block_call(blk, x)
        return x if self.norm is None else self.norm(x)

    def forward_head(self, x: jax.Array, pre_logits: bool = False) -> jax.Array:
        if self.distilled:
            x, x_dist = x[:, 0], x[:, 1]
            if pre_logits:
                return ((x + x_dist) / 2).astype(jnp.float32)
            x = logits(self.head, self.head_drop(x))
            x_dist = logits(self.head_dist, self.head_drop(x_dist))
            # timm averages the two heads except in distillation training,
            # which needs a teacher and is not part of jaxvit's trainer.
            return (x + x_dist) / 2
        if self.attn_pool is not None:
            x = self.attn_pool(x[:, self.num_prefix_tokens:])
        else:
            x = global_pool(x, self.global_pool, num_prefix_tokens=self.num_prefix_tokens)
        if self.fc_norm is not None:
            x = self.fc_norm(x)
        return logits(self.head, self.head_drop(x), pre_logits)


def _create(defaults: dict, kwargs: dict) -> VisionTransformer:
    return build(VisionTransformer, defaults, kwargs)


# --- the registered names ----------------------------------------------------------
# A name's width, depth and heads come from its size word (the second word of the name), its
# patch from ``patchN`` and its register count from ``regN``; a group adds its keywords, an
# entry its own. img_size and num_classes default to the cfg's, as timm's fixed-input cfgs do.
_SIZES = {
    "tiny": dict(embed_dim=192, depth=12, num_heads=3),
    "xsmall": dict(embed_dim=256, depth=10, num_heads=4),
    "wee": dict(embed_dim=256, depth=14, num_heads=4, mlp_ratio=5.0),
    "little": dict(embed_dim=320, depth=14, num_heads=5, mlp_ratio=5.6),
    "small": dict(embed_dim=384, depth=12, num_heads=6),
    "medium": dict(embed_dim=512, depth=12, num_heads=8),
    "mediumd": dict(embed_dim=512, depth=20, num_heads=8),
    "betwixt": dict(embed_dim=640, depth=12, num_heads=10),
    "base": dict(embed_dim=768, depth=12, num_heads=12),
    "so150m": dict(embed_dim=896, depth=18, num_heads=14, mlp_ratio=2.572),
    "so150m2": dict(embed_dim=832, depth=21, num_heads=13, mlp_ratio=34 / 13),
    "large": dict(embed_dim=1024, depth=24, num_heads=16),
    "intern300m": dict(embed_dim=1024, depth=24, num_heads=16),
    "huge": dict(embed_dim=1280, depth=32, num_heads=16),
    "so400m": dict(embed_dim=1152, depth=27, num_heads=16, mlp_ratio=3.7362),
    "giant": dict(embed_dim=1408, depth=40, num_heads=16, mlp_ratio=48 / 11),
    "giantopt": dict(embed_dim=1536, depth=40, num_heads=16),
    "gigantic": dict(embed_dim=1664, depth=48, num_heads=16, mlp_ratio=64 / 13),
}

_INCEPTION = dict(mean=IMAGENET_INCEPTION_MEAN, std=IMAGENET_INCEPTION_STD)
_IMAGENET = dict(mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD)
_CLIP = dict(mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD)
_RAW = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))

_CLIP_ARCH = dict(pre_norm=True, norm_eps=1e-5)
_GAP = dict(class_token=False, global_pool="avg", fc_norm=False)  # pooled after the final norm
_SBB = dict(init_values=1e-5, class_token=False, no_embed_class=True, global_pool="avg")
_DEIT3 = dict(no_embed_class=True, init_values=1e-6)
_AIMV2 = dict(class_token=False, global_pool="avg", fc_norm=False, qkv_bias=False, proj_bias=False, act_layer="silu",
              norm_layer="rmsnorm", embed_norm_layer="rmsnorm", norm_eps=1e-5, mlp_layer="swiglu")
_AIMV2_SIZES = {
    "large": dict(embed_dim=1024, depth=24, num_heads=8, mlp_ratio=2.75),
    "huge": dict(embed_dim=1536, depth=24, num_heads=12, mlp_ratio=2.6667),
    "1b": dict(embed_dim=2048, depth=24, num_heads=16, mlp_ratio=2.75),
    "3b": dict(embed_dim=3072, depth=24, num_heads=24, mlp_ratio=2.6667),
}
_GIANT_SWIGLU = dict(embed_dim=1536, num_heads=24, mlp_ratio=2.66667 * 2, mlp_layer="swiglu_packed", act_layer="silu")

# (keywords, mean/std, {name: (image size, crop_pct, num_classes[, the name's own keywords])}),
# as timm's entrypoints and the default (first) pretrained cfg of each name.
_GROUPS: list[tuple[dict, dict, dict[str, tuple]]] = [
    ({}, _INCEPTION, {
        "vit_tiny_patch16_224": (224, 0.9, 1000), "vit_tiny_patch16_384": (384, 1.0, 1000),
        "vit_small_patch32_224": (224, 0.9, 1000), "vit_small_patch32_384": (384, 1.0, 1000),
        "vit_small_patch16_224": (224, 0.9, 1000), "vit_small_patch16_384": (384, 1.0, 1000),
        "vit_base_patch32_224": (224, 0.9, 1000), "vit_base_patch32_384": (384, 1.0, 1000),
        "vit_base_patch16_224": (224, 0.9, 1000), "vit_base_patch16_384": (384, 1.0, 1000),
        "vit_base_patch8_224": (224, 0.9, 1000),
        "vit_large_patch32_224": (224, 0.9, 0), "vit_large_patch32_384": (384, 1.0, 1000),
        "vit_large_patch16_224": (224, 0.9, 1000), "vit_large_patch16_384": (384, 1.0, 1000),
        "vit_large_patch14_224": (224, 0.9, 1000), "vit_huge_patch14_224": (224, 0.9, 0),
        "vit_giant_patch14_224": (224, 0.9, 1000), "vit_gigantic_patch14_224": (224, 0.9, 1000),
        "vit_small_patch16_36x1_224": (224, 0.9, 1000, dict(depth=36, init_values=1e-5)),
        "vit_small_patch16_18x2_224": (224, 0.9, 1000, dict(depth=18, init_values=1e-5, block_fn="parallel")),
        "vit_base_patch16_18x2_224": (224, 0.9, 1000, dict(depth=18, init_values=1e-5, block_fn="parallel")),
        "vit_base_patch32_plus_256": (256, 0.95, 1000, dict(embed_dim=896, num_heads=14, init_values=1e-5)),
        "vit_base_patch16_plus_240": (240, 0.95, 1000, dict(embed_dim=896, num_heads=14, init_values=1e-5)),
        "vit_base_patch16_gap_224": (224, 0.9, 1000, dict(_GAP, num_heads=16)),
    }),
    ({}, _IMAGENET, {"vit_small_patch8_224": (224, 0.9, 0)}),  # DINO
    (dict(class_token=False, global_pool="avg", qkv_bias=False, init_values=1e-5, block_fn="res_post"), _INCEPTION, {
        "vit_base_patch16_rpn_224": (224, 0.9, 1000),
    }),
    (dict(scale_attn_norm=True, scale_mlp_norm=True, global_pool="avg", norm_eps=1e-5), _IMAGENET, {  # BEiT-3
        "beit3_base_patch16_224": (224, 1.0, 1000), "beit3_large_patch16_224": (224, 1.0, 1000),
        "beit3_giant_patch14_224": (224, 1.0, 1000, dict(mlp_ratio=4.3637)),
        "beit3_giant_patch14_336": (336, 1.0, 1000, dict(mlp_ratio=4.3637)),
    }),
    (dict(qkv_bias=False), dict(_RAW, interpolation="bilinear"), {
        "vit_base_patch16_224_miil": (224, 0.875, 11221),
    }),
    (dict(_GAP, qkv_bias=False, init_values=1e-6), _INCEPTION, {
        "vit_medium_patch16_gap_240": (240, 0.95, 11821), "vit_medium_patch16_gap_256": (256, 0.95, 1000),
        "vit_medium_patch16_gap_384": (384, 0.95, 1000), "vit_betwixt_patch16_gap_256": (256, 0.95, 1000),
    }),
    (_GAP, _IMAGENET, {  # I-JEPA
        "vit_huge_patch14_gap_224": (224, 0.9, 0), "vit_huge_patch16_gap_448": (448, 1.0, 0),
        "vit_giant_patch16_gap_224": (224, 0.9, 0),
    }),
    (_CLIP_ARCH, _CLIP, {
        "vit_xsmall_patch16_clip_224": (224, 0.9, 512), "vit_medium_patch32_clip_224": (224, 0.9, 512),
        "vit_medium_patch16_clip_224": (224, 0.9, 512), "vit_betwixt_patch32_clip_224": (224, 0.9, 512),
        "vit_base_patch32_clip_224": (224, 0.9, 1000), "vit_base_patch32_clip_256": (256, 1.0, 512),
        "vit_base_patch32_clip_384": (384, 1.0, 1000), "vit_base_patch32_clip_448": (448, 1.0, 1000),
        "vit_base_patch16_clip_224": (224, 0.95, 1000), "vit_base_patch16_clip_384": (384, 1.0, 1000),
        "vit_base_patch16_plus_clip_240": (240, 1.0, 640, dict(embed_dim=896, num_heads=14)),
        "vit_huge_patch14_clip_224": (224, 1.0, 1000), "vit_huge_patch14_clip_336": (336, 1.0, 1000),
        "vit_huge_patch14_clip_378": (378, 1.0, 1024), "vit_giant_patch14_clip_224": (224, 1.0, 1024),
        "vit_gigantic_patch14_clip_224": (224, 1.0, 1280), "vit_gigantic_patch14_clip_378": (378, 1.0, 1280),
    }),
    (_CLIP_ARCH, _INCEPTION, {
        "vit_large_patch14_clip_224": (224, 1.0, 1000), "vit_large_patch14_clip_336": (336, 1.0, 1000),
    }),
    (dict(_CLIP_ARCH, act_layer="quick_gelu"), _CLIP, {
        "vit_base_patch32_clip_quickgelu_224": (224, 0.9, 512),
        "vit_base_patch16_clip_quickgelu_224": (224, 1.0, 512),
        "vit_large_patch14_clip_quickgelu_224": (224, 1.0, 768),
        "vit_large_patch14_clip_quickgelu_336": (336, 1.0, 768),
        "vit_huge_patch14_clip_quickgelu_224": (224, 1.0, 1024),
        "vit_huge_patch14_clip_quickgelu_378": (378, 1.0, 1024),
        "vit_gigantic_patch14_clip_quickgelu_224": (224, 1.0, 1280),
    }),
    (dict(global_pool="avg"), _CLIP, {
        "eva_large_patch14_196": (196, 1.0, 1000), "eva_large_patch14_336": (336, 1.0, 1000),
    }),
    (dict(no_embed_class=True, patch_size=16), _INCEPTION, {
        "flexivit_small": (240, 0.95, 1000), "flexivit_base": (240, 0.95, 1000), "flexivit_large": (240, 0.95, 1000),
    }),
    (dict(init_values=1e-5), _IMAGENET, {
        "vit_small_patch14_dinov2": (518, 1.0, 0), "vit_base_patch14_dinov2": (518, 1.0, 0),
        "vit_large_patch14_dinov2": (518, 1.0, 0), "vit_giant_patch14_dinov2": (518, 1.0, 0, _GIANT_SWIGLU),
    }),
    (dict(init_values=1e-5, no_embed_class=True), _IMAGENET, {
        "vit_small_patch14_reg4_dinov2": (518, 1.0, 0), "vit_base_patch14_reg4_dinov2": (518, 1.0, 0),
        "vit_large_patch14_reg4_dinov2": (518, 1.0, 0), "vit_giant_patch14_reg4_dinov2": (518, 1.0, 0, _GIANT_SWIGLU),
    }),
    (dict(init_values=1.0, no_embed_class=True), _RAW, {
        "vit_base_patch14_reg1_tipsv2": (448, 1.0, 0), "vit_large_patch14_reg1_tipsv2": (448, 1.0, 0),
        "vit_so400m_patch14_reg1_tipsv2": (448, 1.0, 0, dict(mlp_ratio=4304 / 1152)),
        "vit_giant_patch14_reg1_tipsv2": (448, 1.0, 0, _GIANT_SWIGLU),
    }),
    (dict(class_token=False, global_pool="map"), _INCEPTION, {  # SigLIP's towers, attention-pooled
        "vit_base_patch32_siglip_256": (256, 0.9, 0, dict(act_layer="gelu_tanh")),
        "vit_base_patch16_siglip_224": (224, 0.9, 0), "vit_base_patch16_siglip_256": (256, 0.9, 0),
        "vit_base_patch16_siglip_384": (384, 0.9, 0), "vit_base_patch16_siglip_512": (512, 0.9, 0),
        "vit_large_patch16_siglip_256": (256, 0.9, 0), "vit_large_patch16_siglip_384": (384, 0.9, 0),
        "vit_large_patch16_siglip_512": (512, 0.9, 0, dict(act_layer="gelu_tanh")),
        # (not vit_so400m_patch14_siglip_384: see vit_so400m_patch14_siglip_gap_384 below)
        "vit_so400m_patch14_siglip_224": (224, 0.9, 0), "vit_so400m_patch14_siglip_378": (378, 0.9, 0),
        "vit_so400m_patch16_siglip_256": (256, 0.9, 0, dict(act_layer="gelu_tanh")),
        "vit_so400m_patch16_siglip_384": (384, 0.9, 0, dict(act_layer="gelu_tanh")),
        "vit_so400m_patch16_siglip_512": (512, 0.9, 0, dict(act_layer="gelu_tanh")),
        "vit_giantopt_patch16_siglip_256": (256, 0.9, 0, dict(act_layer="gelu_tanh")),
        "vit_giantopt_patch16_siglip_384": (384, 0.9, 0, dict(act_layer="gelu_tanh")),
        "vit_so150m_patch16_reg4_map_256": (256, 0.9, 1000),
    }),
    (_GAP, _INCEPTION, {  # SigLIP's towers pooled by averaging
        "vit_base_patch32_siglip_gap_256": (256, 0.9, 0, dict(act_layer="gelu_tanh")),
        "vit_base_patch16_siglip_gap_224": (224, 0.9, 0), "vit_base_patch16_siglip_gap_256": (256, 0.9, 0),
        "vit_base_patch16_siglip_gap_384": (384, 0.9, 0), "vit_base_patch16_siglip_gap_512": (512, 0.9, 0),
        "vit_large_patch16_siglip_gap_256": (256, 0.9, 0), "vit_large_patch16_siglip_gap_384": (384, 0.9, 0),
        "vit_large_patch16_siglip_gap_512": (512, 0.9, 0, dict(act_layer="gelu_tanh")),
        "vit_so400m_patch14_siglip_gap_224": (224, 0.9, 0), "vit_so400m_patch14_siglip_gap_378": (378, 0.9, 0),
        # (not vit_so400m_patch14_siglip_gap_384: 384 px is no multiple of patch 14; timm's conv drops
        # the last 6 pixels, jaxvit's PatchEmbed refuses such a size)
        "vit_so400m_patch14_siglip_gap_448": (448, 1.0, 0),
        "vit_so400m_patch14_siglip_gap_896": (896, 1.0, 0),
        "vit_so400m_patch16_siglip_gap_256": (256, 0.9, 0, dict(act_layer="gelu_tanh")),
        "vit_so400m_patch16_siglip_gap_384": (384, 0.9, 0, dict(act_layer="gelu_tanh")),
        "vit_so400m_patch16_siglip_gap_512": (512, 0.9, 0, dict(act_layer="gelu_tanh")),
        "vit_giantopt_patch16_siglip_gap_256": (256, 0.9, 0, dict(act_layer="gelu_tanh")),
        "vit_giantopt_patch16_siglip_gap_384": (384, 0.9, 0, dict(act_layer="gelu_tanh")),
    }),
    (_SBB, _INCEPTION, {  # timm's "searching for better baselines" ViTs
        "vit_wee_patch16_reg1_gap_256": (256, 0.95, 1000), "vit_little_patch16_reg1_gap_256": (256, 0.95, 1000),
        "vit_little_patch16_reg4_gap_256": (256, 0.95, 1000),
        "vit_pwee_patch16_reg1_gap_256": (256, 0.95, 1000, dict(_SIZES["wee"], depth=16, block_fn="parallel_scaling")),
        "vit_medium_patch16_reg1_gap_256": (256, 0.95, 1000),
        "vit_medium_patch16_reg4_gap_256": (256, 0.95, 1000), "vit_mediumd_patch16_reg4_gap_256": (256, 0.95, 1000),
        "vit_mediumd_patch16_reg4_gap_384": (384, 1.0, 1000), "vit_betwixt_patch16_reg1_gap_256": (256, 0.95, 1000),
        "vit_betwixt_patch16_reg4_gap_256": (256, 0.95, 1000), "vit_betwixt_patch16_reg4_gap_384": (384, 1.0, 1000),
        "vit_base_patch16_reg4_gap_256": (256, 0.9, 1000, dict(init_values=None)),
        "vit_so150m_patch16_reg4_gap_256": (256, 0.95, 1000, dict(_GAP, init_values=None, no_embed_class=False)),
        "vit_so150m_patch16_reg4_gap_384": (384, 1.0, 1000, dict(_GAP, init_values=None, no_embed_class=False)),
        "vit_so150m2_patch16_reg1_gap_256": (256, 1.0, 1000, dict(qkv_bias=False, no_embed_class=False)),
        "vit_so150m2_patch16_reg1_gap_384": (384, 1.0, 1000, dict(qkv_bias=False, no_embed_class=False)),
        "vit_so150m2_patch16_reg1_gap_448": (448, 1.0, 1000, dict(qkv_bias=False, no_embed_class=False)),
    }),
    (dict(no_embed_class=True, final_norm=False), _CLIP, {  # C-RADIO
        "vit_base_patch16_radio_v3": (512, 1.0, 0, dict(reg_tokens=7, init_values=1e-5)),
        "vit_large_patch16_radio_v3": (512, 1.0, 0, dict(reg_tokens=7, init_values=1e-5)),
        "vit_huge_patch16_radio_v3": (512, 1.0, 0, dict(reg_tokens=7)),
        "vit_giant_patch16_radio_v3": (512, 1.0, 0, dict(reg_tokens=7, embed_dim=1536, num_heads=24, mlp_ratio=4.0)),
        "vit_so400m_patch16_radio_v4": (512, 1.0, 0, dict(reg_tokens=9, mlp_ratio=4304 / 1152)),
        "vit_huge_patch16_radio_v4": (512, 1.0, 0, dict(reg_tokens=9)),
    }),
    (dict(pre_norm=True, no_embed_class=True, norm_layer="rmsnorm", block_fn="parallel_scaling", qkv_bias=False,
          qk_norm=True), _INCEPTION, {
        "vit_base_patch16_xp_224": (224, 0.9, 1000), "vit_large_patch14_xp_224": (224, 0.9, 1000),
        "vit_huge_patch14_xp_224": (224, 0.9, 1000),
    }),
    (_AIMV2, _CLIP, {
        f"aimv2_{size}_patch14_{img}": (img, 1.0, 0, arch)
        for size, arch in _AIMV2_SIZES.items() for img in (224, 336, 448)
    }),
    (dict(init_values=0.1, final_norm=False, dynamic_img_size=True), _IMAGENET, {
        "vit_intern300m_patch14_448": (448, 1.0, 0),
    }),
    ({}, _IMAGENET, {
        "deit_tiny_patch16_224": (224, 0.9, 1000), "deit_small_patch16_224": (224, 0.9, 1000),
        "deit_base_patch16_224": (224, 0.9, 1000), "deit_base_patch16_384": (384, 1.0, 1000),
    }),
    (dict(distilled=True), _IMAGENET, {
        "deit_tiny_distilled_patch16_224": (224, 0.9, 1000), "deit_small_distilled_patch16_224": (224, 0.9, 1000),
        "deit_base_distilled_patch16_224": (224, 0.9, 1000), "deit_base_distilled_patch16_384": (384, 1.0, 1000),
    }),
    (_DEIT3, _IMAGENET, {
        "deit3_small_patch16_224": (224, 0.9, 1000), "deit3_small_patch16_384": (384, 1.0, 1000),
        "deit3_medium_patch16_224": (224, 0.9, 1000), "deit3_base_patch16_224": (224, 0.9, 1000),
        "deit3_base_patch16_384": (384, 1.0, 1000), "deit3_large_patch16_224": (224, 0.9, 1000),
        "deit3_large_patch16_384": (384, 1.0, 1000), "deit3_huge_patch14_224": (224, 0.9, 1000),
    }),
]


def _from_name(name: str) -> dict:
    """The keywords a name spells: its size word, ``patchN``, ``regN``."""
    out = dict(_SIZES.get(name.split("_")[1], {}))  # AIMv2's 1b/3b: their entries say it all
    if patch := re.search(r"_patch(\d+)", name):
        out["patch_size"] = int(patch.group(1))
    if reg := re.search(r"_reg(\d+)_", name):
        out["reg_tokens"] = int(reg.group(1))
    return out


def _register(name: str, keywords: dict, cfg: dict) -> None:
    """Registers ``name``: a ViT built from ``keywords`` whose image size and class count
    default to the cfg's."""
    size = cfg["input_size"][0]
    defaults = dict(keywords, img_size=size, num_classes=cfg["num_classes"])

    def make(**kwargs) -> VisionTransformer:
        return _create(defaults, kwargs)

    make.__name__ = make.__qualname__ = name
    register_model("vit", cfg, name=name)(make)


for _keywords, _norm, _names in _GROUPS:
    for _name, (_size, _crop, _classes, *_own) in _names.items():
        _cfg = dict(_norm, input_size=(_size, _size, 3), crop_pct=_crop, num_classes=_classes)
        _register(_name, {**_from_name(_name), **_keywords, **(_own[0] if _own else {})}, _cfg)
