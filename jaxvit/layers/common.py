"""Small building blocks shared by every family: Linear, LayerNorm, activations, DropPath, Dropout,
to_2tuple."""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvit.errors import ConfigError
from jaxvit.layers import init

Dtype = jnp.dtype | type | None


def to_2tuple(x: int | tuple[int, int]) -> tuple[int, int]:
    """An int ``n`` as ``(n, n)``; a pair (of sizes, or of Mixer's mlp ratios) as a tuple."""
    return (x, x) if isinstance(x, int) else tuple(x)


def linear(
    in_features: int,
    out_features: int,
    *,
    bias: bool = True,
    dtype: Dtype,
    rngs: nnx.Rngs,
    kernel_init: nnx.Initializer = init.trunc_normal_02,
    bias_init: nnx.Initializer = init.zeros,
) -> nnx.Linear:
    """A float32-param Linear computing in ``dtype`` (timm's default ViT init)."""
    return nnx.Linear(
        in_features,
        out_features,
        use_bias=bias,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=kernel_init,
        bias_init=bias_init,
        rngs=rngs,
    )


def layer_norm(dim: int, *, eps: float = 1e-6, dtype: Dtype, rngs: nnx.Rngs) -> nnx.LayerNorm:
    """LayerNorm with float32 statistics; output in ``dtype``."""
    return nnx.LayerNorm(dim, epsilon=eps, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)


def rms_norm(dim: int, *, eps: float = 1e-6, dtype: Dtype, rngs: nnx.Rngs) -> nnx.RMSNorm:
    """timm's ``RmsNorm``: x / sqrt(mean(x^2) + eps) * weight."""
    return nnx.RMSNorm(dim, epsilon=eps, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)


# timm's norm_layer names for the norms jaxvit's ViT takes.
NORMS = {"layernorm": layer_norm, "rmsnorm": rms_norm}


def make_norm(kind: str | None, dim: int, *, eps: float, dtype: Dtype, rngs: nnx.Rngs) -> nnx.Module:
    """A norm by timm's ``norm_layer`` name (None: LayerNorm)."""
    if (kind or "layernorm") not in NORMS:
        raise ConfigError(f"norm_layer {kind!r} is not one of {tuple(NORMS)}; pass one of those names")
    return NORMS[kind or "layernorm"](dim, eps=eps, dtype=dtype, rngs=rngs)


def gelu(x: jax.Array) -> jax.Array:
    # PyTorch's nn.GELU default is the exact erf form; parity needs it.
    return jax.nn.gelu(x, approximate=False)


def gelu_tanh(x: jax.Array) -> jax.Array:
    """nn.GELU(approximate='tanh'): timm's ``gelu_tanh`` (SigLIP)."""
    return jax.nn.gelu(x, approximate=True)


def quick_gelu(x: jax.Array) -> jax.Array:
    """x * sigmoid(1.702 x): timm's ``quick_gelu`` (OpenAI CLIP)."""
    return x * jax.nn.sigmoid(1.702 * x)


# timm's act_layer names for the activations jaxvit's models take.
ACTIVATIONS = {"gelu": gelu, "gelu_tanh": gelu_tanh, "quick_gelu": quick_gelu, "silu": jax.nn.silu}


def get_act(name: str | None):
    """timm's ``get_act_layer`` for a name (None: GELU) -> the function."""
    if name is None:
        return gelu
    if name not in ACTIVATIONS:
        raise ConfigError(f"act_layer {name!r} is not one of {tuple(ACTIVATIONS)}; pass one of those names")
    return ACTIVATIONS[name]


class DropPath(nnx.Module):
    """Stochastic depth per sample (timm ``DropPath``): zero a residual branch, rescale the rest."""

    def __init__(self, rate: float = 0.0, *, rngs: nnx.Rngs | None = None):
        self.rate = rate
        self.deterministic = False
        self.rngs = rngs["dropout"].fork() if (rngs is not None and rate > 0) else None

    def set_view(self, deterministic: bool | None = None):
        if deterministic is not None:
            self.deterministic = deterministic

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.rate == 0.0 or self.deterministic:
            return x
        keep = 1.0 - self.rate
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = jax.random.bernoulli(self.rngs(), keep, shape)
        return jnp.where(mask, x / keep, jnp.zeros_like(x))


def dropout(rate: float, rngs: nnx.Rngs) -> nnx.Dropout:
    return nnx.Dropout(rate, rngs=rngs if rate > 0 else None)


class TraceSetting:
    """A choice read when a model is traced rather than stored in it (the attention kernel, the
    remat policy): ``set``, ``get`` and ``using(name)``, a context for what is traced inside."""

    def __init__(self, label: str, choices: tuple[str, ...], default: str):
        self.label, self.choices, self.value = label, choices, default

    def set(self, name: str) -> None:
        if name not in self.choices:
            raise ConfigError(f"{self.label} {name!r} is not one of {self.choices}")
        self.value = name

    def get(self) -> str:
        return self.value

    @contextlib.contextmanager
    def using(self, name: str):
        old = self.value
        self.set(name)
        try:
            yield
        finally:
            self.value = old
