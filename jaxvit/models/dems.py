"""DEMS-ViT: a ViT fed four patch scales at once, merged down twice inside the stack.

The model seed 004 trains as ``dems_tiny_patch2_32`` ("Data-Efficient Multi-Scale fusion
ViT"). Source: erow/vitookit ``vitookit/models/dmes.py`` at d6f4dd1 (the commit whose
``doc/mvit.md`` is the seed), itself a port of visresearch/dems: the ``DEMS_ViT`` class and its
``get_patch_contrast_labels`` helper. Attribute names follow that class, so a vitookit state
dict maps onto this module by jaxvit's per-layer rules (convert/rules.py):
``patch_embed{,_2}.proj``, ``patch_embed_{4,8}.proj.{proj-1,proj-2,point_wise}``,
``cls_token``, ``blocks[i]`` (timm's ``Block``), ``norm``, ``norm_merge{1,2}``,
``mlp{1,2}.{fc1,fc2,fc3,scale}`` (``mlp{1,2}.norm`` *is* ``norm_merge{1,2}``: one shared
module, two keys in torch's state dict), ``head``.

What it does, at 32 px with patch 2 (tiny: dim 192, 12 blocks, 3 heads):

- four embeddings of the same image: 2x2 patches (a 16x16 grid), 4x4 patches (8x8), and two
  depth-wise stacks with a 1x1 point-wise projection (``PatchEmbed_DW``) for 8x8 (4x4) and
  16x16 (2x2) patches; each adds a fixed 2-D sin-cos table (not trained, ``requires_grad``
  False in the source, so not an ``nnx.Param`` here);
- the 16x16 patches define ``num_region`` regions (4 at 32 px); every finer token is
  gathered into the region it lies in (``get_patch_contrast_labels``), so a region holds
  64 + 16 + 4 + 1 = 85 tokens, and the sequence is the class token plus 4 x 85 tokens;
- before block ``merge_layer[0] - 1`` (index 5) and block ``merge_layer[1] - 1`` (index 9) an
  ``Interaction`` MLP turns each region's tokens into ``merge_num`` (64, then 32) softmax-
  weighted mixtures of them (a learned per-region token merger); the class token passes by;
- head on the final-normed class token.

Choices where the source is silent or odd (each one written down, none guessed silently):

- Norms are ``nn.LayerNorm`` with PyTorch's default eps 1e-5 (the source passes no eps).
- The convolutions keep PyTorch's default init (the source's ``_init_weights`` touches only
  Linear and LayerNorm): kaiming-uniform(a=sqrt 5), i.e. U(+-1/sqrt(fan_in)), for kernels;
  biases start at zero here (torch draws them from the same range; it makes no difference
  to training worth a second code path).
- ``attn_drop``: seed 004 passes ``build_model.attn_drop=0.05``, but ``DEMS_ViT`` names the
  argument ``attn_drop_rate`` and swallows unknown keywords (``**kwargs``), so the seed's runs
  had no attention dropout. This module takes timm's ``attn_drop_rate``; the configs that
  follow the seed leave it at 0 and say why.
- ``num_classes`` defaults to timm's 1000 (the source: 100); ``create_model`` passes the
  dataset's.
- The sin-cos tables follow the source exactly, including its ``meshgrid`` order (the first
  half of the channels encodes the row, the second the column).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxvit.layers import PatchEmbed, dropout, gelu, init, layer_norm, linear, to_2tuple
from jaxvit.layers.classifier import logits, make_fc
from jaxvit.layers.common import Dtype
from jaxvit.layers.remat import block_call
from jaxvit.models.base import ClassifierModel
from jaxvit.models.vit import Block
from jaxvit.registry import build, register_model

TORCH_EPS = init.TORCH_LN_EPS  # nn.LayerNorm's default; the source never sets another


def get_patch_contrast_labels(img_size: int, patch_size1: int, patch_size2: int, stride2: int) -> np.ndarray:
    """For each patch of the coarse view (size ``patch_size2``, stride ``stride2``), the indices of
    the fine view's tokens (size = stride ``patch_size1``) it covers: (grid2**2, n**2), row-major
    regions, row-major inside a region, n = patch_size2 // patch_size1. (The source's
    ``is_hflip`` mirror is unused by the model and left out.)"""
    grid1 = img_size // patch_size1
    grid2 = (img_size - patch_size2) // stride2 + 1
    n = patch_size2 // patch_size1
    first = np.arange(grid2) * stride2 // patch_size1  # fine-grid row (col) where each region starts
    rows = first[:, None] + np.arange(n)[None, :]  # (grid2, n)
    labels = rows[:, None, :, None] * grid1 + rows[None, :, None, :]  # (grid2, grid2, n, n)
    return labels.reshape(grid2 * grid2, n * n)


def sincos_2d(grid_size: tuple[int, int], dim: int, temperature: float = 10000.0) -> np.ndarray:
    """The source's ``build_2d_sincos_position_embedding`` (no class-token slot): (1, h*w, dim)."""
    if dim % 4:
        raise ValueError(f"embed_dim {dim} must be divisible by 4 for the 2-D sin-cos position embedding")
    h, w = grid_size
    # torch.meshgrid(arange(w), arange(h)) with 'ij' indexing: the first grid varies slowest.
    a, b = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32), indexing="ij")
    omega = 1.0 / temperature ** (np.arange(dim // 4, dtype=np.float32) / (dim // 4))
    out_a = a.reshape(-1)[:, None] * omega[None]
    out_b = b.reshape(-1)[:, None] * omega[None]
    table = np.concatenate([np.sin(out_a), np.cos(out_a), np.sin(out_b), np.cos(out_b)], axis=1)
    return table[None].astype(np.float32)


def _conv(cin: int, cout: int, k: int, *, groups: int = 1, bias: bool, dtype: Dtype, rngs: nnx.Rngs) -> nnx.Conv:
    return nnx.Conv(
        cin, cout, kernel_size=(k, k), strides=(k, k), padding="VALID", feature_group_count=groups,
        use_bias=bias, dtype=dtype, param_dtype=jnp.float32, kernel_init=init.torch_default_kernel, rngs=rngs,
    )


class PatchEmbedDW(nnx.Module):
    """The source's ``PatchEmbed_DW``: patches of ``init_patch_size * s`` pixels from two
    depth-wise strided convs (kernel = stride ``patch // 4``, then 4; no bias) and a 1x1
    point-wise conv to ``embed_dim``. ``proj`` keeps the source's Sequential keys."""

    def __init__(self, img_size: int, init_patch_size: int, s: int, in_chans: int, embed_dim: int, *,
                 dtype: Dtype = None, rngs: nnx.Rngs):
        self.img_size = to_2tuple(img_size)
        self.patch_size = to_2tuple(init_patch_size * s)
        first = self.patch_size[0] // 4
        if first < 1 or self.img_size[0] % self.patch_size[0] or self.img_size[1] % self.patch_size[1]:
            raise ValueError(
                f"DEMS: img_size {self.img_size} must be a multiple of the {self.patch_size} patches "
                f"(patch_size * {s}); use img_size divisible by {self.patch_size[0]}"
            )
        self.grid_size = (self.img_size[0] // self.patch_size[0], self.img_size[1] // self.patch_size[1])
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nnx.Dict({
            "proj-1": _conv(in_chans, in_chans, first, groups=in_chans, bias=False, dtype=dtype, rngs=rngs),
            "proj-2": _conv(in_chans, in_chans, 4, groups=in_chans, bias=False, dtype=dtype, rngs=rngs),
            "point_wise": _conv(in_chans, embed_dim, 1, bias=True, dtype=dtype, rngs=rngs),
        })

    def __call__(self, x: jax.Array) -> jax.Array:
        for key in ("proj-1", "proj-2", "point_wise"):
            x = self.proj[key](x)
        return x.reshape(x.shape[0], -1, x.shape[-1])


class Interaction(nnx.Module):
    """Per region, ``out_feature`` softmax-weighted mixtures of its tokens: weights from
    norm -> fc1 (2x) -> GELU -> fc2 (1/2x) -> GELU -> fc3 (to ``out_feature``), softmax over the
    region's tokens after a learned ``scale``. ``norm`` is passed in (the model's
    ``norm_merge1/2``), as in the source."""

    def __init__(self, in_feature: int, out_feature: int, norm: nnx.LayerNorm, *, dtype: Dtype = None,
                 rngs: nnx.Rngs):
        self.norm = norm
        self.fc1 = linear(in_feature, in_feature * 2, dtype=dtype, rngs=rngs)
        self.fc2 = linear(in_feature * 2, in_feature // 2, dtype=dtype, rngs=rngs)
        self.fc3 = linear(in_feature // 2, out_feature, dtype=dtype, rngs=rngs)
        self.scale = nnx.Param(jnp.ones((1, 1, 1, 1), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:  # (B, regions, tokens, C) -> (B, regions, out, C)
        w = self.fc3(gelu(self.fc2(gelu(self.fc1(self.norm(x))))))
        w = jax.nn.softmax((w * self.scale[...].astype(w.dtype)).astype(jnp.float32), axis=-2).astype(x.dtype)
        return jnp.einsum("brnc,brno->broc", x, w)


class DemsViT(ClassifierModel):
    pool_types = ("token",)  # the source pools the class token only

    def __init__(
        self,
        img_size: int = 32,
        patch_size: int = 2,
        in_chans: int = 3,
        num_classes: int = 1000,
        *,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        merge_num: Sequence[int] = (64, 32),
        merge_layer: Sequence[int] = (6, 10),
        mlp_ratio: Sequence[float] | float = (4.0, 4.0, 4.0),
        qkv_bias: bool = False,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        global_pool: str = "token",
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        if isinstance(img_size, (tuple, list)):
            if img_size[0] != img_size[1]:
                raise ValueError(f"DEMS takes square images, got img_size {tuple(img_size)}")
            img_size = img_size[0]
        if not 1 <= merge_layer[0] < merge_layer[1] <= depth:
            raise ValueError(f"need 1 <= merge_layer[0] < merge_layer[1] <= depth ({depth}), got {tuple(merge_layer)}")
        ratios = tuple(mlp_ratio) if isinstance(mlp_ratio, (tuple, list)) else (float(mlp_ratio),) * 3
        self.num_classes = num_classes
        self.global_pool = self.checked_pool(global_pool)
        self.embed_dim = self.num_features = embed_dim
        self.num_prefix_tokens = 1
        self.dtype = dtype

        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim, dtype=dtype, rngs=rngs)
        self.patch_embed_2 = PatchEmbed(img_size, patch_size * 2, in_chans, embed_dim, dtype=dtype, rngs=rngs)
        self.patch_embed_4 = PatchEmbedDW(img_size, patch_size, 4, in_chans, embed_dim, dtype=dtype, rngs=rngs)
        self.patch_embed_8 = PatchEmbedDW(img_size, patch_size, 8, in_chans, embed_dim, dtype=dtype, rngs=rngs)
        self.num_region = self.patch_embed_8.num_patches
        self.cls_token = nnx.Param(init.trunc_normal_02(rngs.params(), (1, 1, embed_dim)))
        self.pos_drop = dropout(drop_rate, rngs)

        self.merge_num1, self.merge_num2 = merge_num
        self.merge_layer1, self.merge_layer2 = merge_layer[0] - 1, merge_layer[1] - 1
        dpr = [float(r) for r in np.linspace(0.0, drop_path_rate, depth)]
        stage_ratio = [ratios[0] if i < self.merge_layer1 else ratios[1] if i < self.merge_layer2 else ratios[2]
                       for i in range(depth)]
        self.blocks = nnx.List([
            Block(embed_dim, num_heads, mlp_ratio=stage_ratio[i], qkv_bias=qkv_bias, proj_drop=drop_rate,
                  attn_drop=attn_drop_rate, drop_path=dpr[i], norm_eps=TORCH_EPS, dtype=dtype, rngs=rngs)
            for i in range(depth)
        ])
        self.norm = layer_norm(embed_dim, eps=TORCH_EPS, dtype=dtype, rngs=rngs)
        self.norm_merge1 = layer_norm(embed_dim, eps=TORCH_EPS, dtype=dtype, rngs=rngs)
        self.norm_merge2 = layer_norm(embed_dim, eps=TORCH_EPS, dtype=dtype, rngs=rngs)
        self._reset_head(num_classes, rngs)
        self.mlp1 = Interaction(embed_dim, self.merge_num1, self.norm_merge1, dtype=dtype, rngs=rngs)
        self.mlp2 = Interaction(embed_dim, self.merge_num2, self.norm_merge2, dtype=dtype, rngs=rngs)

    def _reset_head(self, num_classes: int, rngs: nnx.Rngs) -> None:
        self.head = nnx.data(make_fc(self.embed_dim, num_classes, dtype=self.dtype, rngs=rngs))

    # --- timm's model interface -------------------------------------------------
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "pos_embed_2", "pos_embed_4", "pos_embed_8", "cls_token"}

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Embeddings are the stem; each merger joins the block it feeds (as it runs just before it)."""
        return dict(
            stem=r"^cls_token|^patch_embed",
            blocks=[
                (r"^blocks\.(\d+)", None),
                (r"^mlp1\.|^norm_merge1", (float(self.merge_layer1),)),
                (r"^mlp2\.|^norm_merge2", (float(self.merge_layer2),)),
                (r"^norm\.", (99999,)),
            ],
        )

    def get_classifier(self):
        return self.head

    def _merge(self, x: jax.Array, mlp: Interaction) -> jax.Array:
        b, _, c = x.shape
        regions = x[:, 1:].reshape(b, self.num_region, -1, c)
        return jnp.concatenate([x[:, :1], mlp(regions).reshape(b, -1, c)], axis=1)

    def forward_features(self, x: jax.Array) -> jax.Array:
        x = self.cast_input(x)
        b = x.shape[0]
        embeds = (self.patch_embed, self.patch_embed_2, self.patch_embed_4, self.patch_embed_8)
        c = self.embed_dim
        # The fixed sin-cos tables (requires_grad=False in the source): trace-time constants here.
        scales = [pe(x) + jnp.asarray(sincos_2d(pe.grid_size, c), x.dtype) for pe in embeds]
        # Each scale's tokens gathered by region: (B, regions, n_s**2, C); the coarsest is one per region.
        img, coarse = self.patch_embed.img_size[0], self.patch_embed_8.patch_size[0]
        grouped = [
            tokens[:, get_patch_contrast_labels(img, pe.patch_size[0], coarse, coarse)]
            for tokens, pe in zip(scales, embeds[:3])
        ]
        grouped.append(scales[3][:, :, None])
        x = jnp.concatenate(grouped, axis=2).reshape(b, -1, c)
        cls = jnp.broadcast_to(self.cls_token[...].astype(x.dtype), (b, 1, c))
        x = self.pos_drop(jnp.concatenate([cls, x], axis=1))
        for i, blk in enumerate(self.blocks):
            if i == self.merge_layer1:
                x = self._merge(x, self.mlp1)
            if i == self.merge_layer2:
                x = self._merge(x, self.mlp2)
            x = block_call(blk, x)
        return self.norm(x)

    def forward_head(self, x: jax.Array, pre_logits: bool = False) -> jax.Array:
        return logits(self.head, x[:, 0], pre_logits)


def _create(defaults: dict, kwargs: dict) -> DemsViT:
    return build(DemsViT, defaults, kwargs)


# CIFAR-sized models: the source's registry names; mean/std are the seed's CIFAR-10 statistics.
_CFG = dict(input_size=(32, 32, 3), mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
            crop_pct=0.875, interpolation="bicubic")


@register_model("dems", _CFG)
def dems_tiny_patch2_32(**kwargs) -> DemsViT:
    return _create(dict(img_size=32, patch_size=2, embed_dim=192, depth=12, num_heads=3), kwargs)


@register_model("dems", _CFG)
def dems_small_patch2_32(**kwargs) -> DemsViT:
    return _create(dict(img_size=32, patch_size=2, embed_dim=384, depth=12, num_heads=6), kwargs)
