"""timm's ``Mlp``: fc1 -> act -> drop -> fc2 -> drop."""

from __future__ import annotations

from collections.abc import Callable

import jax
from flax import nnx

from jaxvit.layers.common import Dtype, dropout, gelu, linear


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
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = linear(in_features, hidden_features, bias=bias, dtype=dtype, rngs=rngs)
        self.act = act
        self.drop1 = dropout(drop, rngs)
        self.fc2 = linear(hidden_features, out_features, bias=bias, dtype=dtype, rngs=rngs)
        self.drop2 = dropout(drop, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.drop1(self.act(self.fc1(x)))
        return self.drop2(self.fc2(x))
