"""Inception-v4 (Szegedy et al. 2016, https://arxiv.org/abs/1602.07261) with timm's module tree.

Attribute names follow ``timm.models.inception_v4``: ``features[0..21]`` (three stem
``ConvNormAct``s, ``Mixed3a``/``Mixed4a``/``Mixed5a``, four ``InceptionA``,
``ReductionA``, seven ``InceptionB``, ``ReductionB``, three ``InceptionC``), each
conv a ``conv``/``bn`` pair, branches that timm builds as ``nn.Sequential`` held
in ``nnx.List`` (so ``features.4.branch1.2.conv.weight`` is
``features[4].branch1[2].conv.kernel``), and the classifier ``last_linear``.

Every conv declares its torch padding explicitly; BatchNorm uses eps 1e-3 and
torch momentum 0.1, and is built in train mode: ``model.eval()`` (in place) or
``nnx.view(model, use_running_average=True)`` reads the running statistics. Weights
start from torch's default init, as timm's do. The network is fully convolutional:
any input of at least 75 px works (``img_size`` is accepted and checked against that).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvit.layers import dropout, to_2tuple
from jaxvit.layers.classifier import global_pool, logits, make_fc
from jaxvit.layers.common import Dtype
from jaxvit.layers.conv_bn import AvgPool2d, ConvNormAct, MaxPool2d
from jaxvit.layers.features import Intermediates, feature_take_indices, map_to
from jaxvit.layers.init import torch_default_bias, torch_default_kernel
from jaxvit.layers.remat import block_call
from jaxvit.models.base import ClassifierModel
from jaxvit.registry import IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD, build, register_model

ConvFactory = Callable[..., ConvNormAct]
MIN_SIZE = 75  # the smallest input whose ReductionB output is still 1x1
# Factorized convs as (kernel, stride, padding): a 1xk row or kx1 column, padded to keep the size.
ROW7, COL7 = ((1, 7), 1, (0, 3)), ((7, 1), 1, (3, 0))
ROW3, COL3 = ((1, 3), 1, (0, 1)), ((3, 1), 1, (1, 0))


def _chain(layers: nnx.List, x: jax.Array) -> jax.Array:
    for layer in layers:
        x = layer(x)
    return x


def _convs(conv: ConvFactory, *specs: tuple) -> nnx.List:
    """An ``nn.Sequential`` of ConvNormActs, each spec ``(in, out, kernel[, stride[, padding]])``."""
    return nnx.List([conv(*spec) for spec in specs])


def _cat(*xs: jax.Array) -> jax.Array:
    return jnp.concatenate(xs, axis=-1)


def _same_pool() -> AvgPool2d:
    # The Inception A/B/C pooling branch: 3x3, stride 1, pad 1, the padding left out of the mean.
    return AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class Mixed3a(nnx.Module):
    def __init__(self, conv: ConvFactory):
        self.maxpool = MaxPool2d(3, stride=2)
        self.conv = conv(64, 96, 3, 2)

    def __call__(self, x: jax.Array) -> jax.Array:
        return _cat(self.maxpool(x), self.conv(x))


class Mixed4a(nnx.Module):
    def __init__(self, conv: ConvFactory):
        self.branch0 = _convs(conv, (160, 64, 1), (64, 96, 3))
        self.branch1 = _convs(conv, (160, 64, 1), (64, 64, *ROW7), (64, 64, *COL7), (64, 96, 3))

    def __call__(self, x: jax.Array) -> jax.Array:
        return _cat(_chain(self.branch0, x), _chain(self.branch1, x))


class Mixed5a(nnx.Module):
    def __init__(self, conv: ConvFactory):
        self.conv = conv(192, 192, 3, 2)
        self.maxpool = MaxPool2d(3, stride=2)

    def __call__(self, x: jax.Array) -> jax.Array:
        return _cat(self.conv(x), self.maxpool(x))


class InceptionA(nnx.Module):
    def __init__(self, conv: ConvFactory):
        self.branch0 = conv(384, 96, 1)
        self.branch1 = _convs(conv, (384, 64, 1), (64, 96, 3, 1, 1))
        self.branch2 = _convs(conv, (384, 64, 1), (64, 96, 3, 1, 1), (96, 96, 3, 1, 1))
        self.branch3 = nnx.List([_same_pool(), conv(384, 96, 1)])

    def __call__(self, x: jax.Array) -> jax.Array:
        return _cat(self.branch0(x), *(_chain(b, x) for b in (self.branch1, self.branch2, self.branch3)))


class ReductionA(nnx.Module):
    """Mixed6a: 35x35x384 -> 17x17x1024."""

    def __init__(self, conv: ConvFactory):
        self.branch0 = conv(384, 384, 3, 2)
        self.branch1 = _convs(conv, (384, 192, 1), (192, 224, 3, 1, 1), (224, 256, 3, 2))
        self.branch2 = MaxPool2d(3, stride=2)

    def __call__(self, x: jax.Array) -> jax.Array:
        return _cat(self.branch0(x), _chain(self.branch1, x), self.branch2(x))


class InceptionB(nnx.Module):
    def __init__(self, conv: ConvFactory):
        self.branch0 = conv(1024, 384, 1)
        self.branch1 = _convs(conv, (1024, 192, 1), (192, 224, *ROW7), (224, 256, *COL7))
        self.branch2 = _convs(
            conv, (1024, 192, 1), (192, 192, *COL7), (192, 224, *ROW7), (224, 224, *COL7), (224, 256, *ROW7)
        )
        self.branch3 = nnx.List([_same_pool(), conv(1024, 128, 1)])

    def __call__(self, x: jax.Array) -> jax.Array:
        return _cat(self.branch0(x), *(_chain(b, x) for b in (self.branch1, self.branch2, self.branch3)))


class ReductionB(nnx.Module):
    """Mixed7a: 17x17x1024 -> 8x8x1536."""

    def __init__(self, conv: ConvFactory):
        self.branch0 = _convs(conv, (1024, 192, 1), (192, 192, 3, 2))
        self.branch1 = _convs(conv, (1024, 256, 1), (256, 256, *ROW7), (256, 320, *COL7), (320, 320, 3, 2))
        self.branch2 = MaxPool2d(3, stride=2)

    def __call__(self, x: jax.Array) -> jax.Array:
        return _cat(_chain(self.branch0, x), _chain(self.branch1, x), self.branch2(x))


class InceptionC(nnx.Module):
    """Two of its branches fork: a 1x3 and a 3x1 conv read the same input, concatenated."""

    def __init__(self, conv: ConvFactory):
        self.branch0 = conv(1536, 256, 1)
        self.branch1_0 = conv(1536, 384, 1)
        self.branch1_1a = conv(384, 256, *ROW3)
        self.branch1_1b = conv(384, 256, *COL3)
        self.branch2_0 = conv(1536, 384, 1)
        self.branch2_1 = conv(384, 448, *COL3)
        self.branch2_2 = conv(448, 512, *ROW3)
        self.branch2_3a = conv(512, 256, *ROW3)
        self.branch2_3b = conv(512, 256, *COL3)
        self.branch3 = nnx.List([_same_pool(), conv(1536, 256, 1)])

    def __call__(self, x: jax.Array) -> jax.Array:
        x1 = self.branch1_0(x)
        x2 = self.branch2_2(self.branch2_1(self.branch2_0(x)))
        return _cat(
            self.branch0(x),
            self.branch1_1a(x1), self.branch1_1b(x1),
            self.branch2_3a(x2), self.branch2_3b(x2),
            _chain(self.branch3, x),
        )


class InceptionV4(ClassifierModel, Intermediates):
    pool_types = ("avg", "max", "avgmax", "catavgmax", "")  # timm's SelectAdaptivePool2d
    default_out_indices = (0, 1, 2, 3, 4)  # timm's features_only default: every stage
    feature_blocks = "stage_ends"  # what forward_intermediates' indices count (Intermediates)
    intermediate_fmts = ("NHWC", "NCHW")  # maps, no tokens

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        *,
        img_size: int | tuple[int, int] = 299,
        output_stride: int = 32,
        drop_rate: float = 0.0,
        global_pool: str = "avg",
        norm_eps: float = 1e-3,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        if output_stride != 32:
            raise ValueError(f"inception_v4 supports output_stride=32 only, got {output_stride}")
        if min(to_2tuple(img_size)) < MIN_SIZE:
            raise ValueError(f"inception_v4 needs inputs of at least {MIN_SIZE} px, got img_size={img_size}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.img_size = to_2tuple(img_size)
        self.num_features = 1536
        self.dtype = dtype

        conv = partial(ConvNormAct, eps=norm_eps, momentum=0.1, dtype=dtype, rngs=rngs)
        self.features = nnx.List(
            [
                conv(in_chans, 32, 3, 2),
                conv(32, 32, 3, 1),
                conv(32, 64, 3, 1, 1),
                Mixed3a(conv),
                Mixed4a(conv),
                Mixed5a(conv),
                *(InceptionA(conv) for _ in range(4)),
                ReductionA(conv),
                *(InceptionB(conv) for _ in range(7)),
                ReductionB(conv),
                *(InceptionC(conv) for _ in range(3)),
            ]
        )
        self.feature_info = [
            dict(num_chs=64, reduction=2, module="features.2"),
            dict(num_chs=160, reduction=4, module="features.3"),
            dict(num_chs=384, reduction=8, module="features.9"),
            dict(num_chs=1024, reduction=16, module="features.17"),
            dict(num_chs=1536, reduction=32, module="features.21"),
        ]
        self.stage_ends = [int(info["module"].split(".")[-1]) for info in self.feature_info]
        self.head_drop = dropout(drop_rate, rngs)
        self.global_pool = self.checked_pool(global_pool)
        self._reset_head(num_classes, rngs)

    def _reset_head(self, num_classes: int, rngs: nnx.Rngs) -> None:
        if not self.global_pool and num_classes > 0:
            raise ValueError("global_pool='' (no pooling) needs num_classes=0, as in timm")
        self.head_hidden_size = self.num_features * (2 if self.global_pool == "catavgmax" else 1)
        self.last_linear = nnx.data(make_fc(
            self.head_hidden_size, num_classes, dtype=self.dtype, rngs=rngs, kernel_init=torch_default_kernel,
            bias_init=torch_default_bias(self.head_hidden_size),
        ))

    # --- timm's model interface -------------------------------------------------
    def no_weight_decay(self) -> set[str]:
        return set()

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(stem=r"^features\.[012]\.", blocks=r"^features\.(\d+)")

    def get_classifier(self):
        return self.last_linear

    def forward_features(self, x: jax.Array) -> jax.Array:
        """NHWC images -> (B, H/32, W/32, 1536) features (8x8 at 299)."""
        x = self.cast_input(x)
        for layer in self.features:  # each a block for config.remat
            x = block_call(layer, x)
        return x

    def _intermediates(self, x, take, last, *, norm, stop_early, output_fmt):
        """``forward_intermediates`` (``Intermediates``): the feature maps at the ends of the stages
        ``feature_info`` lists (strides 2, 4, 8, 16, 32). ``norm`` is accepted and does nothing (no
        norm layer, as timm's); ``stop_early``: no layer after the last stage taken runs."""
        take = [self.stage_ends[i] for i in take]
        x = self.cast_input(x)
        intermediates = []
        for i, layer in enumerate(list(self.features)[: self.stage_ends[last] + 1] if stop_early else self.features):
            x = block_call(layer, x)
            if i in take:
                intermediates.append(map_to(x, output_fmt))
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """timm's: drops the layers after the last stage of ``indices``, and the classifier
        (0 classes) when ``prune_head`` or when the features end before the last stage (the head
        was sized for it). Returns the stage indices, absolute."""
        take, last = feature_take_indices(len(self.stage_ends), indices, what="stages")
        prune_end = last < len(self.stage_ends) - 1
        if prune_end:
            self.num_features = self.feature_info[last]["num_chs"]
        self.features = nnx.List(list(self.features)[: self.stage_ends[last] + 1])
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return take

    def forward_head(self, x: jax.Array, pre_logits: bool = False) -> jax.Array:
        return logits(self.last_linear, self.head_drop(global_pool(x, self.global_pool)), pre_logits)


def _create(defaults: dict, kwargs: dict) -> InceptionV4:
    return build(InceptionV4, defaults, kwargs)


@register_model(
    "inception",
    dict(
        input_size=(299, 299, 3),
        crop_pct=0.875,
        interpolation="bicubic",
        mean=IMAGENET_INCEPTION_MEAN,
        std=IMAGENET_INCEPTION_STD,
        pool_size=(8, 8),
        first_conv="features.0.conv",
        classifier="last_linear",
    ),
)
def inception_v4(**kwargs) -> InceptionV4:
    return _create({}, kwargs)
