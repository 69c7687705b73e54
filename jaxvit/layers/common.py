"""Small building blocks shared by every family: Linear, LayerNorm, activations, DropPath, Dropout,
to_2tuple."""

from __future__ import annotations

import contextlib
from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from jaxvit.errors import ConfigError
from jaxvit.layers import init

Dtype = jnp.dtype | type | None


def to_2tuple(x: int | tuple[int, int]) -> tuple[int, int]:
    """An int ``n`` as ``(n, n)``; a pair (of sizes, or of Mixer's mlp ratios) as a tuple."""
    return (x, x) if isinstance(x, int) else tuple(x)


def flat_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None,
                     out_sharding=None) -> jax.Array:
    """nnx.Linear's product with the input's leading axes merged first: (..., in) -> (rows, in) @
    (in, out), then back. The values are those of ``lax.dot_general`` on the unmerged input; what
    changes is the gradient: autodiff then gives the kernel's gradient as one 2-D product that
    contracts the rows of the input and of the output gradient, which XLA:CPU runs straight from
    their row-major buffers. Contracting the (batch, tokens) axes of 3-D operands instead, as
    jax's transpose of the unmerged product does, made XLA:CPU write each output gradient
    transposed first (ViT-S/16, batch 32: 48 copies a step, about 0.7 s of an 8-9 s step; README,
    "the dense layers' kernel gradients")."""
    (lhs_contract, rhs_contract), batch = dimension_numbers
    kw = {} if preferred_element_type is None else {"preferred_element_type": preferred_element_type}
    plain = (lhs.ndim - 1,), (0,), ((), ())
    if (tuple(lhs_contract), tuple(rhs_contract), batch) != plain or lhs.ndim <= 2 or rhs.ndim != 2 \
            or out_sharding is not None or _linear_rows.get() == "unmerged":
        if out_sharding is not None:
            kw["out_sharding"] = out_sharding
        return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision, **kw)
    out = jax.lax.dot_general(lhs.reshape(-1, lhs.shape[-1]), rhs, (((1,), (0,)), ((), ())), precision=precision, **kw)
    return out.reshape(*lhs.shape[:-1], rhs.shape[-1])


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
    """A float32-param Linear computing in ``dtype`` (timm's default ViT init); its product merges
    the input's leading axes into rows first (``flat_dot_general``)."""
    return nnx.Linear(
        in_features,
        out_features,
        use_bias=bias,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=kernel_init,
        bias_init=bias_init,
        dot_general=flat_dot_general,
        rngs=rngs,
    )


def _layer_norm(x, scale, bias, epsilon: float, dtype, fast_variance: bool) -> jax.Array:
    """nnx.LayerNorm's arithmetic over the last axis, step for step (the same casts and the same
    operations, so the same values): x, scale and bias promoted to ``dtype``, statistics in at
    least float32, the result in ``dtype``."""
    x, scale, bias = nnx.nn.dtypes.promote_dtype((x, scale, bias), dtype=dtype)
    x_stats = jnp.asarray(x, jnp.promote_types(x.dtype, jnp.float32))
    mean = x_stats.mean(-1, keepdims=True)
    if fast_variance:
        var = jnp.maximum(0.0, jax.lax.square(x_stats).mean(-1, keepdims=True) - jax.lax.square(mean))
    else:
        var = jax.lax.square(x_stats - mean).mean(-1, keepdims=True)
    mean, var = (checkpoint_name(v, "layer_norm_stats") for v in (mean, var))
    mul = jax.lax.rsqrt(var + epsilon)
    if scale is not None:
        mul = mul * scale
    y = (x - mean) * mul
    if bias is not None:
        y = y + bias
    return jnp.asarray(y, nnx.nn.dtypes.canonicalize_dtype(x, scale, bias, dtype=dtype))


# Rematerialized but for the per-token statistics: a gradient keeps the norm's input, its mean and
# variance, and recomputes the rest. Autodiff of the plain form kept three float32 arrays of the
# input's size per norm (x - mean, x^2 and the scaled product).
_layer_norm_remat = jax.checkpoint(
    _layer_norm, static_argnums=(3, 4, 5), policy=jax.checkpoint_policies.save_only_these_names("layer_norm_stats")
)


class LayerNorm(nnx.LayerNorm):
    """``nnx.LayerNorm`` (its parameters, names and values) whose gradient keeps only the input and
    the per-token statistics (``_layer_norm_remat``); masked, distributed or other-axis norms, and
    every norm traced under ``residuals('plain')``, take nnx's own path."""

    def __call__(self, x, *, mask=None):
        if mask is not None or self.axis_name is not None or self.reduction_axes not in (-1, (-1,)) or (
            self.feature_axes not in (-1, (-1,))
        ) or _residuals.get() == "plain":
            return super().__call__(x, mask=mask)
        scale = self.scale[...] if self.scale is not None else None
        bias = self.bias[...] if self.bias is not None else None
        return _layer_norm_remat(x, scale, bias, self.epsilon, self.dtype, self.use_fast_variance)


def layer_norm(dim: int, *, eps: float = 1e-6, dtype: Dtype, rngs: nnx.Rngs, **kwargs) -> LayerNorm:
    """LayerNorm with float32 statistics; output in ``dtype``."""
    return LayerNorm(dim, epsilon=eps, dtype=dtype, param_dtype=jnp.float32, rngs=rngs, **kwargs)


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


@jax.custom_jvp
def _gelu(x: jax.Array) -> jax.Array:
    return jax.nn.gelu(x, approximate=False)


@_gelu.defjvp
def _gelu_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    # d/dx x Phi(x) = Phi(x) + x phi(x), in at least float32, then in x's dtype
    x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    slope = 0.5 * jax.lax.erfc(-x32 * 0.7071067811865476) + x32 * jnp.exp(-0.5 * x32 * x32) * 0.3989422804014327
    return jax.nn.gelu(x, approximate=False), slope.astype(x.dtype) * t


# A gradient keeps only the input and computes the slope from it in the backward pass (the
# written-out derivative above); autodiff of the erf form kept four arrays of the input's size (the
# product, erfc, exp and a copy).
_gelu_lean = jax.checkpoint(_gelu)


def gelu(x: jax.Array) -> jax.Array:
    """PyTorch's nn.GELU default, the exact erf form (parity needs it), keeping only its input for
    the gradient; under ``residuals('plain')``, jax.nn.gelu's own autodiff."""
    if _residuals.get() == "plain":
        return jax.nn.gelu(x, approximate=False)
    return _gelu_lean(x)


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
        return _drop_path(x, mask, keep)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _drop_path(x: jax.Array, mask: jax.Array, keep: float) -> jax.Array:
    """x / keep where the per-sample ``mask`` holds, else 0. Its gradient keeps only the mask (one
    value per sample); autodiff of the plain ``jnp.where`` kept the mask broadcast to x's shape
    and an array of zeros as large as x (Swin-T, which drops paths by default, bf16, batch 128:
    8104 -> 7277 MiB kept, README). The values and gradients are the same."""
    return jnp.where(mask, x / keep, jnp.zeros_like(x))


def _drop_path_fwd(x, mask, keep):
    return _drop_path(x, mask, keep), mask


def _drop_path_bwd(keep, mask, g):
    return jnp.where(mask, g / keep, jnp.zeros_like(g)), None


_drop_path.defvjp(_drop_path_fwd, _drop_path_bwd)


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


# What LayerNorm and GELU keep for the gradient, read when a model is traced: 'lean' (the default:
# the input, and LayerNorm's per-token mean and variance) or 'plain' (nnx.LayerNorm and
# jax.nn.gelu as autodiff keeps them; the same values). For comparisons: ``with residuals('plain')``
# around a trace, or benchmarks/step_memory.py --residuals lean,plain.
_residuals = TraceSetting("residuals", ("lean", "plain"), "lean")
set_residuals, residuals = _residuals.set, _residuals.using

# How Linear multiplies, read when a model is traced: 'merged' (the default: the input's leading
# axes merged into rows first, flat_dot_general) or 'unmerged' (lax.dot_general on the input as it
# is, nnx.Linear's own; the same values). For comparisons: ``with linear_rows('unmerged')`` around
# a trace, or benchmarks/ab_step.py --variants "auto;auto linear_rows=unmerged".
_linear_rows = TraceSetting("linear_rows", ("merged", "unmerged"), "merged")
set_linear_rows, linear_rows = _linear_rows.set, _linear_rows.using
