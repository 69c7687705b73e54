"""Perceiver and Perceiver IO for images, with perceiver-pytorch's module tree.

Attribute names follow ``perceiver_pytorch`` (lucidrains, the version with
``PerceiverBlock``): ``latents``, ``layers[i].cross_attn.{norm,norm_context,fn.to_q,
fn.to_kv,fn.to_out}``, ``layers[i].cross_ff.{norm,fn.net[0],fn.net[2]}``,
``layers[i].self_attns[j][0|1]``, ``to_logits[1]`` (LayerNorm) / ``to_logits[2]``
(Linear) for the Perceiver; ``cross_attend_block``, ``layers``,
``decoder_cross_attn``, ``decoder_ff``, ``queries``, ``to_logits`` for Perceiver IO.
Conversion of a perceiver-pytorch state dict is therefore convert's rule per layer type.

Images are NHWC; every pixel is one input token: its channels, then (with
``fourier_encode_data``) the Fourier features of its (row, col) position in [-1, 1]
exactly as perceiver-pytorch's ``fourier_encode`` (``num_freq_bands`` sin and cos at
frequencies ``linspace(1, max_freq / 2)`` * pi, then the raw position, per axis).
No parameter depends on the image size, so one model takes any size.

Weight tying (``weight_tie_layers``) shares one module object, as perceiver-pytorch's
``cache_fn`` does: the Perceiver ties layers 1.. (layer 0 stays its own), Perceiver IO
ties all latent blocks. The NNX state then holds one copy; convert maps the duplicate
keys torch's state dict emits for the tied layers onto it.

Presets (every hyper-parameter is also a keyword):

==================  =======  ==========  =====  ===========  ============  =========  ==========
name                latents  latent_dim  depth  self/cross   heads x dim   tied       queries
==================  =======  ==========  =====  ===========  ============  =========  ==========
perceiver_tiny      64       128         2      2            1x64 / 4x32   no         -
perceiver_small     128      256         4      2            1x64 / 8x32   1..3       -
perceiver_base      256      512         6      4            1x64 / 8x64   1..5       -
perceiver_medium    32       32          4      2            1x16 / 8x16   no         -
perceiver_large     32       64          4      2            1x32 / 8x32   no         -
perceiver_xlarge    48       96          6      2            1x32 / 8x64   no         -
perceiver_io_tiny   32       64          2      1            1x128 / 8x128 no         10
perceiver_io_small  96       192         2      1            1x64 / 8x64   no         10
==================  =======  ==========  =====  ===========  ============  =========  ==========

(heads: cross x cross_dim_head / latent x latent_dim_head.) ``perceiver_medium`` / ``_large`` /
``_xlarge`` are seed 001's "Medium / Large / XLarge" CIFAR-10 and STL-10 Perceivers, from its
repository's configs (395t/coding-assignment-week-8-vit-2 ``src/perceiver/configs/
perceiver_cifar10{,_large,_xl}.py``); with 10 classes they have the seed's 293,362 /
1,151,730 / 4,428,262 parameters. The IO presets are seed 001's CIFAR-10 and STL-10
Perceiver IO models. All use 6 Fourier bands, max_freq 10
(perceiver-pytorch's README example). ``python -m jaxvit.models.perceiver`` prints the
parameter counts.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvit.layers import attention, dropout, gelu, init, layer_norm, linear, remat
from jaxvit.layers.classifier import logits, make_fc
from jaxvit.layers.common import Dtype
from jaxvit.layers.pos_embed import position_features
from jaxvit.layers.remat import block_call
from jaxvit.models.base import ClassifierModel, param_count
from jaxvit.registry import build, register_model

# torch's default Linear weight init, U(+-1/sqrt(fan_in)), which perceiver-pytorch trains from.
# (timm's N(0, 0.02) leaves the cross-attention uniform over pixels and training stalls.)
# (LayerNorms: torch's default eps, init.TORCH_LN_EPS, as perceiver-pytorch throughout.)


def _linear(din: int, dout: int, *, bias: bool = True, dtype: Dtype, rngs: nnx.Rngs) -> nnx.Linear:
    return linear(din, dout, bias=bias, dtype=dtype, rngs=rngs, kernel_init=init.torch_default_kernel)


class GEGLU(nnx.Module):
    def __call__(self, x: jax.Array) -> jax.Array:
        x, gates = jnp.split(x, 2, axis=-1)
        return x * gelu(gates)


class MeanPool(nnx.Module):
    """einops ``Reduce('b n d -> b d', 'mean')``."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return x.mean(axis=1)


class FeedForward(nnx.Module):
    """``net = Sequential(Linear(dim, 2 * mult * dim), GEGLU, Linear(mult * dim, dim), Dropout)``."""

    def __init__(self, dim: int, mult: int = 4, drop: float = 0.0, *, dtype: Dtype, rngs: nnx.Rngs):
        self.net = nnx.List(
            [
                _linear(dim, dim * mult * 2, dtype=dtype, rngs=rngs),
                GEGLU(),
                _linear(dim * mult, dim, dtype=dtype, rngs=rngs),
                dropout(drop, rngs),
            ]
        )

    def __call__(self, x: jax.Array, *, pre_norm=None) -> jax.Array:
        """``pre_norm``: PreNorm's norm, given here (as to GEGLU's output, the second Linear's
        input) so that remat='elementwise' recomputes its output for the first Linear's weight
        gradient (``remat.chain``)."""
        fc1, geglu, fc2, drop = self.net
        return drop(remat.chain(remat.chain(x, pre_norm, fc1), geglu, fc2))


class Attention(nnx.Module):
    """Multi-head (cross-)attention: ``to_q``, ``to_kv`` (bias-free, k then v), ``to_out``."""

    def __init__(
        self,
        query_dim: int,
        context_dim: int | None = None,
        heads: int = 8,
        dim_head: int = 64,
        drop: float = 0.0,
        *,
        dtype: Dtype,
        rngs: nnx.Rngs,
    ):
        inner = heads * dim_head
        context_dim = context_dim or query_dim
        self.heads = heads
        self.to_q = _linear(query_dim, inner, bias=False, dtype=dtype, rngs=rngs)
        self.to_kv = _linear(context_dim, inner * 2, bias=False, dtype=dtype, rngs=rngs)
        self.dropout = dropout(drop, rngs)
        self.to_out = _linear(inner, query_dim, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, context: jax.Array | None = None, *, pre_norm=None,
                 context_norm=None) -> jax.Array:
        """``pre_norm`` / ``context_norm``: PreNorm's norms of ``x`` and ``context``, given here so
        that remat='elementwise' recomputes their outputs for ``to_q``'s and ``to_kv``'s weight
        gradients (``remat.chain``)."""
        b, n, _ = x.shape
        if context is None:  # self-attention: one norm's output into both Linears
            q, kv = remat.normed_each(pre_norm, x, self.to_q, self.to_kv)
        else:
            q, kv = remat.chain(x, pre_norm, self.to_q), remat.chain(context, context_norm, self.to_kv)
        k, v = jnp.split(kv, 2, axis=-1)
        q, k, v = (t.reshape(b, t.shape[1], self.heads, -1) for t in (q, k, v))
        out = attention(q, k, v, attn_drop=self.dropout)
        return self.to_out(out.reshape(b, n, -1))


class PreNorm(nnx.Module):
    def __init__(self, dim: int, fn: nnx.Module, context_dim: int | None = None, *, dtype: Dtype,
                 rngs: nnx.Rngs):
        self.fn = fn
        self.norm = layer_norm(dim, eps=init.TORCH_LN_EPS, dtype=dtype, rngs=rngs)
        self.norm_context = (
            layer_norm(context_dim, eps=init.TORCH_LN_EPS, dtype=dtype, rngs=rngs) if context_dim else None
        )

    def __call__(self, x: jax.Array, context: jax.Array | None = None) -> jax.Array:
        # ``fn`` (Attention, FeedForward) applies the norms itself: see their ``pre_norm``
        if self.norm_context is not None:
            return self.fn(x, context, pre_norm=self.norm, context_norm=self.norm_context)
        return self.fn(x, pre_norm=self.norm)


class PerceiverBlock(nnx.Module):
    """Optional cross-attention (+ feed-forward) from latents to the input, then
    ``self_per_cross_attn`` latent self-attention blocks; all pre-norm and residual."""

    def __init__(
        self,
        dim: int,
        context_dim: int | None = None,
        *,
        cross_heads: int = 1,
        latent_heads: int = 8,
        cross_dim_head: int = 64,
        latent_dim_head: int = 64,
        self_per_cross_attn: int = 1,
        attn_dropout: float = 0.0,
        ff_dropout: float = 0.0,
        has_cross_attn: bool = True,
        dtype: Dtype,
        rngs: nnx.Rngs,
    ):
        kw = dict(dtype=dtype, rngs=rngs)
        if has_cross_attn:
            context_dim = context_dim or dim
            self.cross_attn = PreNorm(
                dim, Attention(dim, context_dim, cross_heads, cross_dim_head, attn_dropout, **kw),
                context_dim, **kw,
            )
            self.cross_ff = PreNorm(dim, FeedForward(dim, drop=ff_dropout, **kw), **kw)
        else:
            self.cross_attn = self.cross_ff = None
        self.self_attns = nnx.List(
            [
                nnx.List(
                    [
                        PreNorm(dim, Attention(dim, None, latent_heads, latent_dim_head, attn_dropout, **kw), **kw),
                        PreNorm(dim, FeedForward(dim, drop=ff_dropout, **kw), **kw),
                    ]
                )
                for _ in range(self_per_cross_attn)
            ]
        )

    def __call__(self, x: jax.Array, context: jax.Array | None = None) -> jax.Array:
        if self.cross_attn is not None:
            x = self.cross_attn(x, context) + x
            x = self.cross_ff(x) + x
        for self_attn, self_ff in self.self_attns:
            x = self_attn(x) + x
            x = self_ff(x) + x
        return x


class _PerceiverBase(ClassifierModel):
    """Shared input handling: NHWC images -> (B, H*W, C [+ Fourier]) tokens; latents."""

    def _init_input(self, input_channels, num_freq_bands, max_freq, fourier_encode_data, num_latents,
                    latent_dim, num_classes, dtype, rngs):
        self.num_classes = num_classes
        self.input_channels = input_channels
        self.num_freq_bands = num_freq_bands
        self.max_freq = max_freq
        self.fourier_encode_data = fourier_encode_data
        self.num_features = latent_dim
        self.dtype = dtype
        self.input_dim = input_channels + (2 * (2 * num_freq_bands + 1) if fourier_encode_data else 0)
        self.latents = nnx.Param(nnx.initializers.normal(1.0)(rngs.params(), (num_latents, latent_dim)))

    def input_array(self, x: jax.Array) -> jax.Array:
        """(B, H, W, C) images -> (B, H * W, C + Fourier channels) input tokens."""
        x = self.cast_input(x)
        b, h, w, c = x.shape
        if c != self.input_channels:
            raise ValueError(f"expected {self.input_channels} input channels, got images of shape {x.shape}")
        if self.fourier_encode_data:
            enc = jnp.asarray(position_features((h, w), self.max_freq, self.num_freq_bands), x.dtype)
            x = jnp.concatenate([x, jnp.broadcast_to(enc, (b, *enc.shape))], axis=-1)
        return x.reshape(b, h * w, x.shape[-1])

    def _latents(self, b: int, dtype) -> jax.Array:
        lat = self.latents[...]
        return jnp.broadcast_to(lat.astype(dtype), (b, *lat.shape))

    def no_weight_decay(self) -> set[str]:
        return {"latents", "queries"}


class Perceiver(_PerceiverBase):
    """perceiver-pytorch ``Perceiver`` (input_axis=2) for NHWC images."""

    def __init__(
        self,
        *,
        num_freq_bands: int = 6,
        depth: int = 2,
        max_freq: float = 10.0,
        input_channels: int = 3,
        num_latents: int = 64,
        latent_dim: int = 128,
        cross_heads: int = 1,
        latent_heads: int = 4,
        cross_dim_head: int = 64,
        latent_dim_head: int = 32,
        num_classes: int = 1000,
        attn_dropout: float = 0.0,
        ff_dropout: float = 0.0,
        weight_tie_layers: bool = False,
        fourier_encode_data: bool = True,
        self_per_cross_attn: int = 1,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        self._init_input(input_channels, num_freq_bands, max_freq, fourier_encode_data, num_latents,
                         latent_dim, num_classes, dtype, rngs)
        self.weight_tie_layers = weight_tie_layers

        def block():
            return PerceiverBlock(
                latent_dim, self.input_dim, cross_heads=cross_heads, latent_heads=latent_heads,
                cross_dim_head=cross_dim_head, latent_dim_head=latent_dim_head,
                self_per_cross_attn=self_per_cross_attn, attn_dropout=attn_dropout,
                ff_dropout=ff_dropout, dtype=dtype, rngs=rngs,
            )

        layers, tied = [], None
        for i in range(depth):
            if i > 0 and weight_tie_layers:
                if tied is None:  # perceiver-pytorch: layers 1.. are one cached block
                    tied = block()
                layers.append(tied)
            else:
                layers.append(block())
        self.layers = nnx.List(layers)
        self.to_logits = nnx.List(
            [MeanPool(), layer_norm(latent_dim, eps=init.TORCH_LN_EPS, dtype=dtype, rngs=rngs),
             self._make_head(num_classes, rngs)]
        )

    def _make_head(self, num_classes: int, rngs: nnx.Rngs) -> nnx.Linear | None:
        return make_fc(self.num_features, num_classes, dtype=self.dtype, rngs=rngs,
                       kernel_init=init.torch_default_kernel)

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Layer groups for layer-wise LR decay: latents, then each cross+latent block; the rest
        (``to_logits``: mean, LayerNorm, Linear) is the head group."""
        return dict(stem=r"^latents", blocks=r"^layers\.(\d+)")

    def get_classifier(self):
        return self.to_logits[2]

    def _reset_head(self, num_classes: int, rngs: nnx.Rngs) -> None:
        self.to_logits[2] = self._make_head(num_classes, rngs)

    def forward_features(self, x: jax.Array) -> jax.Array:
        """Images -> final latents (B, num_latents, latent_dim)."""
        data = self.input_array(x)
        z = self._latents(data.shape[0], data.dtype)
        for block in self.layers:
            z = block_call(block, z, data)
        return z

    def forward_head(self, z: jax.Array, pre_logits: bool = False) -> jax.Array:
        return logits(self.to_logits[2], self.to_logits[1](self.to_logits[0](z)), pre_logits)


class PerceiverIO(_PerceiverBase):
    """perceiver-pytorch ``PerceiverIO`` classifying images with one learned query.

    The encoder cross-attends once (``cross_attend_block``) then runs ``depth``
    latent blocks (``layers``); the decoder's query (``queries``, (1, queries_dim))
    cross-attends to the latents (``decoder_cross_attn``, no residual, as in
    perceiver-pytorch), optionally through ``decoder_ff``, then ``to_logits``.
    ``attn_dropout``/``ff_dropout`` apply to the encoder (perceiver-pytorch's
    PerceiverIO has none; at 0 the two agree exactly).
    """

    def __init__(
        self,
        *,
        depth: int = 2,
        queries_dim: int = 10,
        num_classes: int = 1000,
        num_latents: int = 32,
        latent_dim: int = 64,
        cross_heads: int = 1,
        latent_heads: int = 8,
        cross_dim_head: int = 64,
        latent_dim_head: int = 64,
        self_per_cross_attn: int = 1,
        weight_tie_layers: bool = False,
        decoder_ff: bool = False,
        input_channels: int = 3,
        num_freq_bands: int = 6,
        max_freq: float = 10.0,
        fourier_encode_data: bool = True,
        attn_dropout: float = 0.0,
        ff_dropout: float = 0.0,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        self._init_input(input_channels, num_freq_bands, max_freq, fourier_encode_data, num_latents,
                         latent_dim, num_classes, dtype, rngs)
        self.queries_dim = queries_dim
        self.weight_tie_layers = weight_tie_layers
        kw = dict(dtype=dtype, rngs=rngs)
        heads = dict(cross_heads=cross_heads, latent_heads=latent_heads, cross_dim_head=cross_dim_head,
                     latent_dim_head=latent_dim_head, attn_dropout=attn_dropout, ff_dropout=ff_dropout)
        self.cross_attend_block = PerceiverBlock(latent_dim, self.input_dim, self_per_cross_attn=0,
                                                 **heads, **kw)

        def block():
            return PerceiverBlock(latent_dim, self_per_cross_attn=self_per_cross_attn, has_cross_attn=False,
                                  **heads, **kw)

        tied = block() if weight_tie_layers and depth else None
        self.layers = nnx.List([tied if weight_tie_layers else block() for _ in range(depth)])
        self.decoder_cross_attn = PreNorm(
            queries_dim, Attention(queries_dim, latent_dim, cross_heads, cross_dim_head, **kw), latent_dim, **kw
        )
        self.decoder_ff = PreNorm(queries_dim, FeedForward(queries_dim, **kw), **kw) if decoder_ff else None
        self.queries = nnx.Param(nnx.initializers.normal(1.0)(rngs.params(), (1, queries_dim)))
        self._reset_head(num_classes, rngs)

    def _reset_head(self, num_classes: int, rngs: nnx.Rngs) -> None:
        self.to_logits = nnx.data(make_fc(self.queries_dim, num_classes, dtype=self.dtype, rngs=rngs,
                                          kernel_init=init.torch_default_kernel))

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Layer groups: latents and the encoder's cross-attention, then each latent block; the
        decoder (query, cross-attention, feed-forward) and ``to_logits`` are the head group."""
        return dict(stem=r"^latents|^cross_attend_block", blocks=r"^layers\.(\d+)")

    def get_classifier(self):
        return self.to_logits

    def forward_features(self, x: jax.Array) -> jax.Array:
        """Images -> encoded latents (B, num_latents, latent_dim)."""
        data = self.input_array(x)
        z = self.cross_attend_block(self._latents(data.shape[0], data.dtype), data)
        for block in self.layers:
            z = block_call(block, z)
        return z

    def forward_head(self, z: jax.Array, pre_logits: bool = False) -> jax.Array:
        q = self.queries[...].astype(z.dtype)
        q = jnp.broadcast_to(q, (z.shape[0], *q.shape))
        out = self.decoder_cross_attn(q, z)
        if self.decoder_ff is not None:
            out = out + self.decoder_ff(out)
        return logits(self.to_logits, out[:, 0], pre_logits)


def _create(cls: type, defaults: dict, kwargs: dict) -> nnx.Module:
    args = dict(kwargs)
    # The trainer's generic keywords: no patches or size-dependent params here.
    args.pop("img_size", None)
    if args.pop("patch_size", 0):
        raise ValueError("Perceiver models have no patches: set --config.patch_size=0")
    if args.pop("drop_path_rate", 0.0):
        raise ValueError("Perceiver models have no stochastic depth (drop_path_rate must be 0)")
    # --config.drop_rate / attn_drop_rate, when set, stand for ff_dropout / attn_dropout.
    if drop := args.pop("drop_rate", 0.0):
        args["ff_dropout"] = drop
    if drop := args.pop("attn_drop_rate", 0.0):
        args["attn_dropout"] = drop
    if "in_chans" in args:
        args["input_channels"] = args.pop("in_chans")
    return build(cls, defaults, args)


_CFG = dict(input_size=(32, 32, 3), crop_pct=1.0, interpolation="bilinear")
_FOURIER = dict(num_freq_bands=6, max_freq=10.0)
_CROSS = dict(_FOURIER, cross_heads=1, cross_dim_head=64)
PRESETS: dict[str, dict[str, Any]] = {
    "perceiver_tiny": dict(_CROSS, num_latents=64, latent_dim=128, depth=2, self_per_cross_attn=2,
                           latent_heads=4, latent_dim_head=32, weight_tie_layers=False),
    "perceiver_small": dict(_CROSS, num_latents=128, latent_dim=256, depth=4, self_per_cross_attn=2,
                            latent_heads=8, latent_dim_head=32, weight_tie_layers=True),
    "perceiver_base": dict(_CROSS, num_latents=256, latent_dim=512, depth=6, self_per_cross_attn=4,
                           latent_heads=8, latent_dim_head=64, weight_tie_layers=True),
    # seed 001's Perceiver Medium / Large / XLarge (its src/perceiver/configs/perceiver_cifar10*.py)
    "perceiver_medium": dict(_FOURIER, num_latents=32, latent_dim=32, depth=4, self_per_cross_attn=2,
                             cross_heads=1, cross_dim_head=16, latent_heads=8, latent_dim_head=16,
                             weight_tie_layers=False),
    "perceiver_large": dict(_FOURIER, num_latents=32, latent_dim=64, depth=4, self_per_cross_attn=2,
                            cross_heads=1, cross_dim_head=32, latent_heads=8, latent_dim_head=32,
                            weight_tie_layers=False),
    "perceiver_xlarge": dict(_FOURIER, num_latents=48, latent_dim=96, depth=6, self_per_cross_attn=2,
                             cross_heads=1, cross_dim_head=32, latent_heads=8, latent_dim_head=64,
                             weight_tie_layers=False),
    # seed 001's CIFAR-10 and STL-10 Perceiver IO models
    "perceiver_io_tiny": dict(_FOURIER, num_latents=32, latent_dim=64, depth=2, cross_heads=1, latent_heads=8,
                              cross_dim_head=128, latent_dim_head=128, queries_dim=10),
    "perceiver_io_small": dict(_FOURIER, num_latents=96, latent_dim=192, depth=2, cross_heads=1, latent_heads=8,
                               cross_dim_head=64, latent_dim_head=64, queries_dim=10),
}


@register_model("perceiver", _CFG)
def perceiver_tiny(**kwargs) -> Perceiver:
    return _create(Perceiver, PRESETS["perceiver_tiny"], kwargs)


@register_model("perceiver", _CFG)
def perceiver_small(**kwargs) -> Perceiver:
    return _create(Perceiver, PRESETS["perceiver_small"], kwargs)


@register_model("perceiver", _CFG)
def perceiver_base(**kwargs) -> Perceiver:
    return _create(Perceiver, PRESETS["perceiver_base"], kwargs)


@register_model("perceiver", _CFG)
def perceiver_medium(**kwargs) -> Perceiver:
    return _create(Perceiver, PRESETS["perceiver_medium"], kwargs)


@register_model("perceiver", _CFG)
def perceiver_large(**kwargs) -> Perceiver:
    return _create(Perceiver, PRESETS["perceiver_large"], kwargs)


@register_model("perceiver", _CFG)
def perceiver_xlarge(**kwargs) -> Perceiver:
    return _create(Perceiver, PRESETS["perceiver_xlarge"], kwargs)


@register_model("perceiver", _CFG)
def perceiver_io_tiny(**kwargs) -> PerceiverIO:
    return _create(PerceiverIO, PRESETS["perceiver_io_tiny"], kwargs)


@register_model("perceiver", _CFG)
def perceiver_io_small(**kwargs) -> PerceiverIO:
    return _create(PerceiverIO, PRESETS["perceiver_io_small"], kwargs)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Parameter counts of the Perceiver presets")
    parser.add_argument("--num-classes", type=int, default=10, help="10: CIFAR-10, as seed 001 counts")
    args = parser.parse_args()
    import jaxvit

    for name in PRESETS:
        model = jaxvit.create_model(name, num_classes=args.num_classes)
        print(f"{name:20s} {param_count(model):>12,d}")
