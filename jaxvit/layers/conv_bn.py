"""Convolutional building blocks with PyTorch semantics: timm's ``ConvNormAct``
(conv -> BatchNorm -> activation, children ``conv``/``bn``) and parameter-free
pooling modules.

Padding is explicit and symmetric, as a torch ``padding=p`` declares it; never
'SAME', whose asymmetric split under stride 2 would shift every window.
BatchNorm takes torch's ``momentum`` (the weight of the new batch) and turns it
into Flax's (the weight of the running value): torch 0.1 == Flax 0.9.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvit.layers.common import Dtype, to_2tuple
from jaxvit.layers.init import torch_default_kernel

IntPair = int | tuple[int, int]

def torch_padding(padding: IntPair) -> tuple[tuple[int, int], tuple[int, int]]:
    """torch's per-dimension symmetric ``padding`` as Flax's explicit (low, high) pairs."""
    ph, pw = to_2tuple(padding)
    return ((ph, ph), (pw, pw))


def batch_norm(
    num_features: int, *, eps: float = 1e-5, momentum: float = 0.1, dtype: Dtype, rngs: nnx.Rngs
) -> nnx.BatchNorm:
    """``nn.BatchNorm2d(num_features, eps, momentum)`` over the channel (last) axis.

    Built in train mode (batch statistics, running averages updated) like a torch
    module; ``model.eval()`` or ``nnx.view(model, use_running_average=True)``
    switches it to the running averages.
    """
    return nnx.BatchNorm(
        num_features,
        use_running_average=False,
        momentum=1.0 - momentum,
        epsilon=eps,
        dtype=dtype,
        param_dtype=jnp.float32,
        rngs=rngs,
    )


class ConvNormAct(nnx.Module):
    """timm's ``ConvNormAct`` with a bias-free conv: ``conv`` -> ``bn`` -> ``act``.

    Torch keys ``conv.weight``, ``bn.{weight,bias,running_mean,running_var}``
    map to ``conv.kernel``, ``bn.{scale,bias,mean,var}``.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: IntPair = 1,
        stride: IntPair = 1,
        padding: IntPair = 0,
        *,
        eps: float = 1e-5,
        momentum: float = 0.1,
        act: Callable[[jax.Array], jax.Array] | None = jax.nn.relu,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        self.conv = nnx.Conv(
            in_chs,
            out_chs,
            to_2tuple(kernel_size),
            strides=to_2tuple(stride),
            padding=torch_padding(padding),
            use_bias=False,
            dtype=dtype,
            param_dtype=jnp.float32,
            kernel_init=torch_default_kernel,
            rngs=rngs,
        )
        self.bn = batch_norm(out_chs, eps=eps, momentum=momentum, dtype=dtype, rngs=rngs)
        self.act = act

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.bn(self.conv(x))
        return x if self.act is None else self.act(x)


class MaxPool2d(nnx.Module):
    """``nn.MaxPool2d(kernel_size, stride, padding)`` (floor mode) on NHWC; padding never wins."""

    def __init__(self, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0):
        self.kernel_size = to_2tuple(kernel_size)
        self.stride = to_2tuple(stride if stride is not None else kernel_size)
        self.padding = torch_padding(padding)

    def __call__(self, x: jax.Array) -> jax.Array:
        return nnx.max_pool(x, self.kernel_size, self.stride, self.padding)


class AvgPool2d(nnx.Module):
    """``nn.AvgPool2d(kernel_size, stride, padding, count_include_pad)`` (floor mode) on NHWC.

    With ``count_include_pad=False`` a border window averages only the pixels it
    covers, as the Inception blocks want.
    """

    def __init__(
        self,
        kernel_size: IntPair,
        stride: IntPair | None = None,
        padding: IntPair = 0,
        count_include_pad: bool = True,
    ):
        self.kernel_size = to_2tuple(kernel_size)
        self.stride = to_2tuple(stride if stride is not None else kernel_size)
        self.padding = torch_padding(padding)
        self.count_include_pad = count_include_pad

    def __call__(self, x: jax.Array) -> jax.Array:
        return nnx.avg_pool(
            x, self.kernel_size, self.stride, self.padding, count_include_pad=self.count_include_pad
        )
