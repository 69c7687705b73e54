"""timm's ``Mlp`` (fc1 -> act -> drop -> fc2 -> drop), ``GluMlp`` (its gated form, whose
``SwiGLUPacked`` DINOv2-giant uses, and gMixer's), ``SwiGLU`` (the gate and value as two Linears:
AIMv2), and gMLP's ``GatedMlp`` with its ``SpatialGatingUnit``."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvit.errors import ConfigError
from jaxvit.layers import init, remat
from jaxvit.layers.common import Dtype, dropout, gelu, layer_norm, linear, make_norm
from jaxvit.layers.init import TORCH_LN_EPS


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

    def __call__(self, x: jax.Array, *, pre_norm: nnx.Module | None = None) -> jax.Array:
        """``pre_norm``: the block's norm before this MLP (or a tuple: the norm and what follows it
        before fc1), given here rather than applied by the caller so that ``remat='elementwise'``
        can recompute its output (``remat.chain``)."""
        h = remat.chain(x, pre_norm, self.fc1)
        return self.drop2(remat.chain(h, self.act, self.drop1, self.norm, self.fc2))


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

    def init_weights(self, rngs: nnx.Rngs) -> None:
        """timm's ``GluMlp.init_weights``, which timm's model inits call after their own Linear
        init: the gate half of ``fc1`` (its second half of outputs, whichever ``gate_last``) to
        weights N(0, 1e-6) and bias 1, so each gate starts open at act(1)."""
        kernel = self.fc1.kernel[...]
        half = kernel.shape[-1] // 2
        gate = init.normal(1e-6)(rngs.params(), (kernel.shape[0], kernel.shape[-1] - half), kernel.dtype)
        # new Params rather than writing into the old ones: cheaper under nnx.eval_shape
        self.fc1.kernel = nnx.Param(jnp.concatenate([kernel[:, :half], gate], axis=-1))
        if self.fc1.bias is not None:
            bias = self.fc1.bias[...]
            self.fc1.bias = nnx.Param(jnp.concatenate([bias[:half], jnp.ones_like(bias[half:])]))

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


class SpatialGatingUnit(nnx.Module):
    """timm's ``SpatialGatingUnit`` (gMLP): the channels split in halves ``u, v``; ``v`` is
    normed (torch's LayerNorm, eps 1e-5, as timm builds it) and mixed across tokens by ``proj``
    (seq_len -> seq_len), then gates ``u``. ``proj`` starts at weights N(0, 1e-6) and bias 1
    (timm's ``init_weights``), so each unit starts as the identity on ``u``."""

    def __init__(self, dim: int, seq_len: int, *, dtype: Dtype = None, rngs: nnx.Rngs):
        self.norm = layer_norm(dim // 2, eps=TORCH_LN_EPS, dtype=dtype, rngs=rngs)
        self.proj = linear(seq_len, seq_len, dtype=dtype, rngs=rngs, kernel_init=init.normal(1e-6),
                           bias_init=init.ones)

    def __call__(self, x: jax.Array) -> jax.Array:
        u, v = jnp.split(x, 2, axis=-1)
        v = self.proj(self.norm(v).swapaxes(-1, -2)).swapaxes(-1, -2)
        return u * v


class GatedMlp(nnx.Module):
    """timm's ``GatedMlp``: fc1 -> act -> drop -> gate -> [norm] -> fc2 -> drop. ``gate_layer``
    (a ``SpatialGatingUnit`` with its sequence length bound, as timm's partial) takes the hidden
    width and halves it; without one the gate is the identity."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        *,
        act: Callable[[jax.Array], jax.Array] = gelu,
        gate_layer: Callable[[int], nnx.Module] | None = None,
        bias: bool = True,
        drop: float = 0.0,
        norm: bool = False,
        norm_layer: str | None = None,
        norm_eps: float = 1e-6,
        dtype: Dtype = None,
        rngs: nnx.Rngs,
    ):
        hidden_features = hidden_features or in_features
        self.fc1 = linear(in_features, hidden_features, bias=bias, dtype=dtype, rngs=rngs)
        self.act = act
        self.drop1 = dropout(drop, rngs)
        if gate_layer is not None and hidden_features % 2:
            raise ConfigError(f"GatedMlp: hidden_features {hidden_features} must be even (the gate halves it)")
        self.gate = gate_layer(hidden_features) if gate_layer is not None else None
        if self.gate is not None:
            hidden_features //= 2
        self.norm = make_norm(norm_layer, hidden_features, eps=norm_eps, dtype=dtype, rngs=rngs) if norm else None
        self.fc2 = linear(hidden_features, out_features or in_features, bias=bias, dtype=dtype, rngs=rngs)
        self.drop2 = dropout(drop, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.drop1(self.act(self.fc1(x)))
        if self.gate is not None:
            x = self.gate(x)
        if self.norm is not None:
            x = self.norm(x)
        return self.drop2(self.fc2(x))
