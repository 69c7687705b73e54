"""Convolutional building blocks with PyTorch semantics: timm's ``ConvNormAct``
(conv -> BatchNorm -> activation, children ``conv``/``bn``) and parameter-free
pooling modules.

Padding is explicit and symmetric, as a torch ``padding=p`` declares it; never
'SAME', whose asymmetric split under stride 2 would shift every window.
BatchNorm takes torch's ``momentum`` (the weight of the new batch) and turns it
into Flax's (the weight of the running value): torch 0.1 == Flax 0.9.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvit.layers.common import Dtype

IntPair = int | tuple[int, int]

def _uniform(key: jax.Array, shape: tuple[int, ...], bound: float, dtype) -> jax.Array:
    """U(-bound, bound) of ``shape``, drawn as a power-of-two-long stream and cut to size.

    Eagerly every new shape handed to ``jax.random`` compiles a threefry program
    (about a second on a busy CPU); a deep CNN has dozens of kernel shapes. Drawing
    by length bucket compiles threefry once per bucket; the cut is a cheap program.
    """
    n = math.prod(shape)
    flat = jax.random.uniform(key, (1 << max(n - 1, 1).bit_length(),), dtype, -1.0, 1.0)
    return _cut(flat, jnp.asarray(bound, dtype), shape)


@partial(jax.jit, static_argnums=2)
def _cut(flat: jax.Array, bound: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    return flat[: math.prod(shape)].reshape(shape) * bound


def torch_default_kernel(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """torch's default Conv2d/Linear weight init, kaiming_uniform(a=sqrt(5)), i.e.
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)); fan_in is every axis but the last (HWIO, or (in, out))."""
    return _uniform(key, tuple(shape), 1.0 / max(math.prod(shape[:-1]), 1) ** 0.5, dtype)


def torch_default_bias(fan_in: int) -> nnx.Initializer:
    """torch's default bias init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return _uniform(key, tuple(shape), 1.0 / max(fan_in, 1) ** 0.5, dtype)

    return init


def pair(v: IntPair) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def torch_padding(padding: IntPair) -> tuple[tuple[int, int], tuple[int, int]]:
    """torch's per-dimension symmetric ``padding`` as Flax's explicit (low, high) pairs."""
    ph, pw = pair(padding)
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
            pair(kernel_size),
            strides=pair(stride),
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
        self.kernel_size = pair(kernel_size)
        self.stride = pair(stride if stride is not None else kernel_size)
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
        self.kernel_size = pair(kernel_size)
        self.stride = pair(stride if stride is not None else kernel_size)
        self.padding = torch_padding(padding)
        self.count_include_pad = count_include_pad

    def __call__(self, x: jax.Array) -> jax.Array:
        return nnx.avg_pool(
            x, self.kernel_size, self.stride, self.padding, count_include_pad=self.count_include_pad
        )
