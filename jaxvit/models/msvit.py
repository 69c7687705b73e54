"""vitookit's multi-resolution ViT, the model seed 004 trains as ``mvit2_tiny_patch2``.

Despite the name this is not MViTv2 (Li et al., ``jaxvit/models/mvitv2.py``): in seed 004's
source, erow/vitookit ``vitookit/models/mvit.py`` at d6f4dd1 (the commit whose
``doc/mvit.md`` is the seed), ``mvit2_tiny_patch2`` builds ``MultiScaleVisionTransformer``, a
plain DeiT-III-style ViT that sees the image at several resolutions at once:

- the image is resized (bilinear, half-pixel centres) to each of ``img_sizes`` (16 and 32 px);
  one shared ``patch_embed`` (2x2 patches) embeds every frame; the one ``pos_embed`` table
  (for the largest frame's 16x16 grid) is resampled to each frame's grid (timm's
  ``resample_abs_pos_embed``: bicubic, antialiased), a class token is prepended per frame and
  a ``temporal_pos_embed`` row (1-D sin-cos init, trained) added per frame;
- all frames' tokens run through one stack of LayerScale blocks (``gamma_1``/``gamma_2``,
  init 1e-4) under a block-causal mask: a frame attends to itself and the coarser frames
  before it, never to finer ones;
- ``attn_pool`` (an attention-pooling latent per frame, timm's ``AttentionPoolLatent`` as the
  source redefines it: q from the frame's latent row, k/v from the frame's tokens, proj, then
  a residual norm + MLP) pools the *last* frame's tokens; ``head`` maps it to logits (the
  source computes every frame's logits and returns the last).

Attribute names follow the source (``patch_embed.proj``, ``cls_token``, ``pos_embed``,
``temporal_pos_embed``, ``blocks[i].{norm1,attn.{qkv,proj},norm2,mlp.{fc1,fc2},gamma_1,
gamma_2}``, ``norm``, ``attn_pool.{latent,q,kv,proj,norm,mlp}``, ``head``), so its state
dict converts by jaxvit's per-layer rules.

What the source does that one would not guess, kept here because it is what ran:

- ``num_heads`` is 12, not 3: ``mvit2_tiny_patch2`` passes ``heads=3``, a keyword the class
  does not take; its ``**kwargs`` swallow it (it prints "Warn: unknow args") and the default
  ``num_heads=12`` builds 12 heads of 16 channels. The pooling attention has 12 heads too.
- Stochastic depth is the same rate in every block (``dpr = [drop_path_rate] * depth``), and
  ``attn_drop``, as seed 004's fine-tuning passes it, is swallowed the same way (the class
  takes ``attn_drop_rate``); the configs say so.
- Every Linear is initialised xavier-uniform with zero bias (the source's ``_init_weights``),
  LayerNorms eps 1e-6, the patch conv keeps PyTorch's default init here as there.
Left out: the source's unshared per-frame embeddings and per-frame heads (``shared_embed`` /
``shared_head`` False), which ``mvit2_tiny_patch2`` does not use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxvit.layers import Mlp, PatchEmbed, init, layer_norm, linear
from jaxvit.layers.attention import attention
from jaxvit.layers.classifier import logits, make_fc
from jaxvit.layers.common import Dtype
from jaxvit.layers.remat import block_call, normed
from jaxvit.models.base import ClassifierModel
from jaxvit.models.vit import Block
from jaxvit.registry import build, register_model


def sincos_1d(length: int, dim: int, temperature: float = 10000.0) -> np.ndarray:
    """The source's ``build_sincos1d_pos_embed`` as it is written (frequencies
    ``1 / temperature ** exp(k / half)``): (length, dim), sines then cosines."""
    half = dim // 2
    div = 1.0 / temperature ** np.exp(np.arange(half, dtype=np.float32) / half)
    angle = np.arange(length, dtype=np.float32)[:, None] * div[None]
    return np.concatenate([np.sin(angle), np.cos(angle)], axis=1).astype(np.float32)


def frame_mask(tokens_per_frame: Sequence[int]) -> np.ndarray:
    """Block-causal (T, T) mask, True = may attend: frame i sees frames 0..i."""
    ends = np.cumsum(tokens_per_frame)
    frame_of = np.repeat(np.arange(len(tokens_per_frame)), tokens_per_frame)
    return np.arange(ends[-1])[None, :] < ends[frame_of][:, None]


class LayerScaleBlock(Block):
    """The source's ``Layer_scale_init_Block``: a pre-norm block whose two branches are scaled
    per channel by ``gamma_1`` / ``gamma_2`` (DeiT III)."""

    def __init__(self, dim: int, num_heads: int, *, init_values: float = 1e-4, **kwargs):
        super().__init__(dim, num_heads, **kwargs)
        self.gamma_1 = nnx.Param(jnp.full((dim,), init_values, jnp.float32))
        self.gamma_2 = nnx.Param(jnp.full((dim,), init_values, jnp.float32))

    def __call__(self, x: jax.Array, *, mask: jax.Array | None = None) -> jax.Array:
        x = x + self.drop_path1(self.gamma_1[...].astype(x.dtype) * normed(self.attn, self.norm1, x, mask=mask))
        return x + self.drop_path2(self.gamma_2[...].astype(x.dtype) * normed(self.mlp, self.norm2, x))


class AttentionPoolLatent(nnx.Module):
    """One learned latent per frame queries that frame's tokens (``forward(x, idx)`` in the source)."""

    def __init__(self, dim: int, latent_len: int, num_heads: int, mlp_ratio: float, *, norm_eps: float,
                 dtype: Dtype = None, rngs: nnx.Rngs):
        if dim % num_heads:
            raise ValueError(f"attention pooling: embed_dim {dim} must be divisible by its {num_heads} heads")
        self.num_heads = num_heads
        self.latent = nnx.Param(
            nnx.initializers.truncated_normal(stddev=dim**-0.5)(rngs.params(), (1, latent_len, dim))
        )
        self.q = linear(dim, dim, dtype=dtype, rngs=rngs)
        self.kv = linear(dim, dim * 2, dtype=dtype, rngs=rngs)
        self.proj = linear(dim, dim, dtype=dtype, rngs=rngs)
        self.norm = layer_norm(dim, eps=norm_eps, dtype=dtype, rngs=rngs)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, idx: int) -> jax.Array:
        b, n, c = x.shape
        h = self.num_heads
        latent = jnp.broadcast_to(self.latent[...][:, idx : idx + 1].astype(x.dtype), (b, 1, c))
        q = self.q(latent).reshape(b, 1, h, c // h)
        kv = self.kv(x).reshape(b, n, 2, h, c // h)
        out = self.proj(attention(q, kv[:, :, 0], kv[:, :, 1]).reshape(b, 1, c))
        out = out + normed(self.mlp, self.norm, out)
        return out[:, 0]


class MultiScaleVisionTransformer(ClassifierModel):
    # pools by attention (attn_pool) over the last frame's tokens; global_pool is fixed
    def __init__(
        self,
        img_sizes: Sequence[int] = (16, 32),
        patch_size: int = 2,
        in_chans: int = 3,
        num_classes: int = 1000,
        *,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        init_scale: float = 1e-4,
        causal: bool = True,
        pool_heads: int = 12,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        self.img_sizes = tuple(int(s) for s in img_sizes)
        if any(s % patch_size for s in self.img_sizes):
            raise ValueError(f"every frame size {self.img_sizes} must be a multiple of patch_size {patch_size}")
        self.num_frames = len(self.img_sizes)
        self.num_classes = num_classes
        self.embed_dim = self.num_features = embed_dim
        self.num_prefix_tokens = 1
        self.causal = causal
        self.dtype = dtype
        grid = self.img_sizes[-1] // patch_size

        self.patch_embed = PatchEmbed(self.img_sizes[-1], patch_size, in_chans, embed_dim, dtype=dtype, rngs=rngs)
        self.patch_embed.proj.kernel[...] = init.torch_default_kernel(rngs.params(), self.patch_embed.proj.kernel.shape)
        self.cls_token = nnx.Param(init.normal(0.02)(rngs.params(), (1, 1, embed_dim)))
        self.pos_embed = nnx.Param(init.normal(0.02)(rngs.params(), (1, grid * grid, embed_dim)))
        self.temporal_pos_embed = nnx.Param(
            jnp.asarray(sincos_1d(self.num_frames, embed_dim)).reshape(1, self.num_frames, 1, embed_dim)
        )
        self.blocks = nnx.List([
            LayerScaleBlock(embed_dim, num_heads, init_values=init_scale, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                            attn_drop=attn_drop_rate, drop_path=drop_path_rate, dtype=dtype, rngs=rngs)
            for _ in range(depth)
        ])
        self.attn_pool = AttentionPoolLatent(embed_dim, self.num_frames, pool_heads, mlp_ratio, norm_eps=1e-6,
                                             dtype=dtype, rngs=rngs)
        self.norm = layer_norm(embed_dim, dtype=dtype, rngs=rngs)
        self._reset_head(num_classes, rngs)
        for _, node in nnx.iter_graph(self):  # the source's _init_weights: xavier-uniform Linear
            if isinstance(node, nnx.Linear):
                node.kernel[...] = init.xavier_uniform(rngs.params(), node.kernel.shape)

    def _reset_head(self, num_classes: int, rngs: nnx.Rngs) -> None:
        self.head = nnx.data(
            make_fc(self.embed_dim, num_classes, dtype=self.dtype, rngs=rngs, kernel_init=init.xavier_uniform)
        )

    @property
    def tokens_per_frame(self) -> tuple[int, ...]:
        p = self.patch_embed.patch_size[0]
        return tuple(1 + (s // p) ** 2 for s in self.img_sizes)

    # --- timm's model interface -------------------------------------------------
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token", "temporal_pos_embed", "attn_pool.latent"}

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(
            stem=r"^cls_token|^pos_embed|^patch_embed",
            blocks=[(r"^blocks\.(\d+)", None), (r"^norm\.", (99999,))],
            head=r"^head|^attn_pool|^temporal_pos_embed",
        )

    def get_classifier(self):
        return self.head

    def _frame_tokens(self, x: jax.Array, size: int, index: int) -> jax.Array:
        b, _, _, c_in = x.shape
        if x.shape[1:3] != (size, size):
            x = jax.image.resize(x, (b, size, size, c_in), method="linear", antialias=False)
        x = self.patch_embed.proj(x)
        h, w, c = x.shape[1:]
        pos = self.pos_embed[...]
        g = self.patch_embed.grid_size
        if (h, w) != tuple(g):
            pos = jax.image.resize(pos.reshape(1, *g, c), (1, h, w, c), method="bicubic", antialias=True)
        x = x.reshape(b, h * w, c) + pos.reshape(1, h * w, c).astype(x.dtype)
        cls = jnp.broadcast_to(self.cls_token[...].astype(x.dtype), (b, 1, c))
        return jnp.concatenate([cls, x], axis=1) + self.temporal_pos_embed[:, index].astype(x.dtype)

    def forward_features(self, x: jax.Array) -> jax.Array:
        x = self.cast_input(x)
        x = jnp.concatenate([self._frame_tokens(x, s, i) for i, s in enumerate(self.img_sizes)], axis=1)
        mask = jnp.asarray(frame_mask(self.tokens_per_frame))[None, None] if self.causal else None
        for blk in self.blocks:
            x = block_call(blk, x, mask=mask)
        return self.norm(x)

    def forward_head(self, x: jax.Array, pre_logits: bool = False) -> jax.Array:
        last = self.tokens_per_frame[-1]
        return logits(self.head, self.attn_pool(x[:, -last:], self.num_frames - 1), pre_logits)


def _create(defaults: dict, kwargs: dict) -> MultiScaleVisionTransformer:
    args = dict(kwargs)
    # The trainer's generic keywords: img_size is the largest frame, halved for the first.
    if "img_size" in args:
        size = args.pop("img_size")
        size = size[0] if isinstance(size, (tuple, list)) else size
        args.setdefault("img_sizes", (size // 2, size))
    if args.pop("drop_rate", 0.0):
        raise ValueError("mvit2 (vitookit) has no dropout besides attn_drop_rate and drop_path_rate")
    return build(MultiScaleVisionTransformer, defaults, args)


_CFG = dict(input_size=(32, 32, 3), mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
            crop_pct=0.875, interpolation="bicubic")


@register_model("msvit", _CFG)
def mvit2_tiny_patch2(**kwargs) -> MultiScaleVisionTransformer:
    # num_heads=12: the source's heads=3 never reaches the model (see the module docstring).
    return _create(dict(img_sizes=(16, 32), patch_size=2, embed_dim=192, depth=12, num_heads=12), kwargs)
