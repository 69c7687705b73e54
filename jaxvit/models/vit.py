"""Vision Transformer, DeiT (incl. distilled) and DeiT III, with timm's module tree; the timm
names its keywords build (CLIP and SigLIP towers, DINOv2, register and gap ViTs, ...) are
registered by ``jaxvit.models.vit_names``.

Attribute names follow ``timm.models.vision_transformer``: ``patch_embed.proj``,
``cls_token``, ``reg_token``, ``dist_token``, ``pos_embed``, ``norm_pre``,
``blocks[i].{norm1,attn.{qkv,q_norm,k_norm,proj},ls1.gamma,norm2,mlp,ls2.gamma}``, ``norm``,
``fc_norm``, ``head``, ``head_dist``, so conversion is a rule per layer type.
"""

from __future__ import annotations

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
    dropout,
    get_act,
    init,
    make_norm,
)
from jaxvit.layers.classifier import global_pool, logits, make_fc
from jaxvit.layers.common import Dtype, gelu, layer_norm
from jaxvit.layers.diff_attention import DiffAttention, DiffParallelScalingBlock
from jaxvit.layers.features import (
    Prunable,
    prune_blocks,
    run_blocks,
    split_prefix,
    tokens_to,
)
from jaxvit.layers.parallel_scaling import ParallelScalingBlock
from jaxvit.layers.pos_embed import resample_abs_pos_embed_traced
from jaxvit.layers.remat import block_call, normed
from jaxvit.models.base import ClassifierModel

MLP_LAYERS = ("mlp", "swiglu_packed", "swiglu")  # timm's Mlp, SwiGLUPacked, SwiGLU
ATTN_LAYERS = {"": Attention, "attn": Attention, "diff": DiffAttention}  # timm's attn_layer names


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
        attn_layer: str = "attn",
        depth: int = 0,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        norm = partial(make_norm, norm_layer, eps=norm_eps, dtype=dtype, rngs=rngs)
        self.norm1 = norm(dim)
        if attn_layer not in ATTN_LAYERS:
            raise ConfigError(f"attn_layer {attn_layer!r} is not one of {tuple(ATTN_LAYERS)}; pass one of those names")
        # depth: the block's index, which differential attention's lambda_init grows with
        self.attn = ATTN_LAYERS[attn_layer](
            dim, num_heads, qkv_bias=qkv_bias, qk_norm=qk_norm, scale_norm=scale_attn_norm, proj_bias=proj_bias,
            norm_layer=norm_layer, norm_eps=norm_eps, attn_drop=attn_drop, proj_drop=proj_drop, dtype=dtype,
            rngs=rngs, **(dict(depth=depth) if attn_layer == "diff" else {}),
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
        y = normed(self.attn, self.norm1, x, mask=mask)
        x = x + self.drop_path1(y if self.ls1 is None else self.ls1(y))
        y = normed(self.mlp, self.norm2, x)
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
                layer_norm(dim, eps=norm_eps, dtype=dtype, scale_init=scale, rngs=rngs)
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


BLOCKS = {"block": Block, "res_post": ResPostBlock, "parallel": ParallelThingsBlock,
          "parallel_scaling": ParallelScalingBlock, "diff_parallel_scaling": DiffParallelScalingBlock}


class VisionTransformer(ClassifierModel, Prunable):
    """timm's ``VisionTransformer`` (and DeiT's ``VisionTransformerDistilled``, ``distilled=True``).

    The keywords are timm's, with timm's defaults, except ``norm_eps`` (timm passes
    ``norm_layer=partial(LayerNorm, eps=...)``; CLIP's 1e-5), and ``act_layer`` and ``mlp_layer``,
    which take names: one of ``jaxvit.layers.common.ACTIVATIONS``; one of ``MLP_LAYERS``; so do
    ``norm_layer``/``embed_norm_layer`` ('layernorm', 'rmsnorm', all of one ``norm_eps``) and
    ``block_fn`` ('block'; 'res_post': timm's ``ResPostBlock``; 'parallel': its two-way
    ``ParallelThingsBlock``; 'parallel_scaling': its ``ParallelScalingBlock``;
    'diff_parallel_scaling': its ``DiffParallelScalingBlock``) and ``attn_layer`` ('attn';
    'diff': timm's ``DiffAttention``, in every block kind but the parallel-scaling ones, which
    have their own). ``dynamic_img_size``: any input the patch divides, the position table
    resampled to its grid in the forward pass; ``pool_include_prefix``: the pooling ('avg', 'map',
    ...) takes the class and register tokens too. A layer timm makes an Identity is None here.
    """

    pool_types = ("", "token", "avg", "max", "avgmax", "map")
    default_out_indices = 3  # timm's features_only default: the last 3 blocks
    intermediate_options = ("return_prefix_tokens",)  # forward_intermediates' own (Intermediates)

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
        pool_include_prefix: bool = False,
        dynamic_img_size: bool = False,
        distilled: bool = False,
        act_layer: str | None = None,
        mlp_layer: str = "mlp",
        block_fn: str = "block",
        attn_layer: str = "attn",
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
        self.pool_include_prefix = pool_include_prefix
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
                    mlp_layer=mlp_layer, proj_bias=proj_bias, norm_layer=norm_layer, norm_eps=norm_eps,
                    attn_layer=attn_layer, depth=i, dtype=dtype, rngs=rngs,
                )
                for i in range(depth)
            ]
        )
        self.feature_info = [
            dict(module=f"blocks.{i}", num_chs=embed_dim, reduction=max(self.patch_embed.patch_size))
            for i in range(depth)
        ]
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

    def _embed(self, x: jax.Array) -> jax.Array:
        x = self._pos_embed(self.patch_embed(self.cast_input(x)))
        return x if self.norm_pre is None else self.norm_pre(x)

    def forward_features(self, x: jax.Array) -> jax.Array:
        x = self._embed(x)
        for blk in self.blocks:
            x = block_call(blk, x)
        return self._norm(x)

    def _intermediates(self, x, take, last, *, norm, stop_early, output_fmt, return_prefix_tokens: bool = False):
        """``forward_intermediates`` (``Intermediates``): the prefix tokens (class, distillation,
        registers) split off each block's output; ``return_prefix_tokens``: (patches, prefix) pairs."""
        grid = tuple(s // p for s, p in zip(x.shape[1:3], self.patch_embed.patch_size))
        x = self._embed(x)
        x, intermediates = run_blocks(self.blocks, x, take, last, stop_early, lambda x: self._norm(x) if norm else x)
        patches, prefix = split_prefix(intermediates, self.num_prefix_tokens)
        intermediates = [tokens_to(y, grid, output_fmt) for y in patches]
        if return_prefix_tokens and self.num_prefix_tokens:
            intermediates = list(zip(intermediates, prefix))
        return self._norm(x), intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """timm's: drops the blocks after the last of ``indices`` (``prune_norm``: the final norm;
        ``prune_head``: the pooling and classifier, 0 classes). Returns the indices, absolute."""
        if prune_head:
            self.fc_norm = None
        # a distilled DeiT keeps its token pooling, as timm's (its heads read both tokens)
        return prune_blocks(self, indices, prune_norm, prune_head, None if self.distilled else "")

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
        prefix = 0 if self.pool_include_prefix else self.num_prefix_tokens  # the tokens pooling leaves out
        if self.attn_pool is not None:
            x = self.attn_pool(x[:, prefix:])
        else:
            x = global_pool(x, self.global_pool, num_prefix_tokens=prefix)
        if self.fc_norm is not None:
            x = self.fc_norm(x)
        return logits(self.head, self.head_drop(x), pre_logits)
