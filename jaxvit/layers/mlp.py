"""timm's ``Mlp`` (fc1 -> act -> drop -> fc2 -> drop), ``GluMlp`` (its gated form, whose
``SwiGLUPacked`` DINOv2-giant uses) and ``SwiGLU`` (the gate and value as two Linears: AIMv2)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvit.errors import ConfigError
from jaxvit.layers.common import Dtype, dropout, gelu, linear, make_norm


class Mlp(nnx.Module):
    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        *,
        act: Callable[[jax.Array], jax.Array] = gelu,
        bias: bool = True,
        drop: float = 0.0,
        norm: bool = False,
        norm_layer: str | None = None,
        norm_eps: float = 1e-6,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = linear(in_features, hidden_features, bias=bias, dtype=dtype, rngs=rngs)
        self.act = act
        self.drop1 = dropout(drop, rngs)
        # norm: a LayerNorm on the hidden features before fc2 (timm's norm_layer; BEiT-3)
        self.norm = make_norm(norm_layer, hidden_features, eps=norm_eps, dtype=dtype, rngs=rngs) if norm else None
        self.fc2 = linear(hidden_features, out_features, bias=bias, dtype=dtype, rngs=rngs)
        self.drop2 = dropout(drop, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.drop1(self.act(self.fc1(x)))
        if self.norm is not None:
            x = self.norm(x)
        return self.drop2(self.fc2(x))


class GluMlp(nnx.Module):
    """timm's ``GluMlp``: ``fc1`` to ``hidden_features``, split in halves, one half through
    ``act`` gating the other, then ``fc2`` from half the width. ``gate_last=False`` with SiLU is
    timm's ``SwiGLUPacked``."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        *,
        act: Callable[[jax.Array], jax.Array] = jax.nn.sigmoid,
        gate_last: bool = True,
        bias: bool = True,
        drop: float = 0.0,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        hidden_features = hidden_features or in_features
        if hidden_features % 2:
            raise ConfigError(f"GluMlp: hidden_features {hidden_features} must be even (it is split in two)")
        self.fc1 = linear(in_features, hidden_features, bias=bias, dtype=dtype, rngs=rngs)
        self.act = act
        self.drop1 = dropout(drop, rngs)
        self.fc2 = linear(hidden_features // 2, out_features or in_features, bias=bias, dtype=dtype, rngs=rngs)
        self.drop2 = dropout(drop, rngs)
        self.gate_last = gate_last

    def __call__(self, x: jax.Array) -> jax.Array:
        x1, x2 = jnp.split(self.fc1(x), 2, axis=-1)
        x = x1 * self.act(x2) if self.gate_last else self.act(x1) * x2
        return self.drop2(self.fc2(self.drop1(x)))


class SwiGLU(nnx.Module):
    """timm's ``SwiGLU``: act(fc1_g(x)) * fc1_x(x) -> drop -> [norm] -> fc2 -> drop."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        *,
        act: Callable[[jax.Array], jax.Array] = jax.nn.silu,
        bias: bool = True,
        drop: float = 0.0,
        norm: bool = False,
        norm_layer: str | None = None,
        norm_eps: float = 1e-6,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        hidden_features = hidden_features or in_features
        self.fc1_g = linear(in_features, hidden_features, bias=bias, dtype=dtype, rngs=rngs)
        self.fc1_x = linear(in_features, hidden_features, bias=bias, dtype=dtype, rngs=rngs)
        self.act = act
        self.drop1 = dropout(drop, rngs)
        self.norm = make_norm(norm_layer, hidden_features, eps=norm_eps, dtype=dtype, rngs=rngs) if norm else None
        self.fc2 = linear(hidden_features, out_features or in_features, bias=bias, dtype=dtype, rngs=rngs)
        self.drop2 = dropout(drop, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.drop1(self.act(self.fc1_g(x)) * self.fc1_x(x))
        if self.norm is not None:
            x = self.norm(x)
        return self.drop2(self.fc2(x))
