"""The classifier head every family shares: global pooling, dropout, ``fc``, ``pre_logits``,
float32 logits.

timm spells a classifier two ways and jaxvit keeps both trees, so weights convert by name:
a bare Linear on the model (ViT's ``head``, Inception-v4's ``last_linear``, Perceiver's
``to_logits``), pooled and dropped by the model's ``forward_head``; or a ``ClassifierHead``
module holding ``drop`` and ``fc`` (Swin's and MViTv2's ``head``). Both go through
``global_pool``, ``make_fc`` and ``logits`` below.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvit.layers import init
from jaxvit.layers.common import Dtype, dropout, linear

# '' keeps the features as they are; 'token' takes the first (class) token; the others
# reduce every spatial position (NHWC) or every token after the prefix (B, N, C).
POOL_TYPES = ("", "token", "avg", "max", "avgmax", "catavgmax")


def check_pool(global_pool: str, allowed: Sequence[str], model: str) -> str:
    if global_pool not in allowed:
        raise ValueError(f"{model}: global_pool must be one of {tuple(allowed)}, got {global_pool!r}")
    return global_pool


def global_pool(x: jax.Array, pool_type: str, *, num_prefix_tokens: int = 0) -> jax.Array:
    """timm's pooling for tokens (B, N, C) and NHWC maps (B, H, W, C) -> (B, C) (2C for
    'catavgmax'); prefix tokens (class, distillation) are left out of the reductions."""
    if pool_type not in POOL_TYPES:
        raise ValueError(f"global_pool must be one of {POOL_TYPES}, got {pool_type!r}")
    if not pool_type:
        return x
    if pool_type == "token":
        return x[:, 0]
    if x.ndim == 3:
        x = x[:, num_prefix_tokens:]
    axes = tuple(range(1, x.ndim - 1))
    if pool_type == "avg":
        return x.mean(axis=axes)
    if pool_type == "max":
        return x.max(axis=axes)
    avg, mx = x.mean(axis=axes), x.max(axis=axes)
    return 0.5 * (avg + mx) if pool_type == "avgmax" else jnp.concatenate([avg, mx], axis=-1)


def make_fc(
    in_features: int,
    num_classes: int,
    *,
    dtype: Dtype,
    rngs: nnx.Rngs,
    kernel_init: nnx.Initializer = init.trunc_normal_02,
    bias_init: nnx.Initializer = init.zeros,
) -> nnx.Linear | None:
    """The classifier Linear, or None for ``num_classes=0`` (timm's Identity head)."""
    if num_classes <= 0:
        return None
    return linear(in_features, num_classes, dtype=dtype, rngs=rngs, kernel_init=kernel_init, bias_init=bias_init)


def logits(fc: nnx.Linear | None, x: jax.Array, pre_logits: bool = False) -> jax.Array:
    """``fc(x)`` in float32, or the pooled features themselves (``pre_logits``, or no ``fc``)."""
    if pre_logits or fc is None:
        return x.astype(jnp.float32)
    return fc(x).astype(jnp.float32)


class ClassifierHead(nnx.Module):
    """timm's ``ClassifierHead``: ``global_pool`` -> ``drop`` -> ``fc``, logits in float32.

    ``pool_type=''`` for a model that pools in its own ``forward_head`` (MViTv2)."""

    def __init__(self, in_features: int, num_classes: int, *, pool_type: str = "avg", drop_rate: float = 0.0,
                 dtype: Dtype, rngs: nnx.Rngs):
        self.in_features = in_features
        self.pool_type = pool_type
        self.dtype = dtype
        self.drop = dropout(drop_rate, rngs)
        self.reset(num_classes, rngs=rngs)

    def reset(self, num_classes: int, pool_type: str | None = None, *, rngs: nnx.Rngs) -> None:
        if pool_type is not None:
            self.pool_type = pool_type
        # nnx.data: no fc (num_classes=0) stays a data slot another reset can fill
        self.fc = nnx.data(make_fc(self.in_features, num_classes, dtype=self.dtype, rngs=rngs))

    def __call__(self, x: jax.Array, pre_logits: bool = False) -> jax.Array:
        return logits(self.fc, self.drop(global_pool(x, self.pool_type)), pre_logits)
