"""Model EMA as timm's ModelEmaV3 (what timm's train.py builds for --model-ema).

"Keep a moving average of everything in the model state_dict (parameters and
buffers)": here the params and the BatchNorm statistics, kept in the train
state as ``ema_params`` and ``ema_batch_stats`` and updated in the train step
after every optimizer update, with ``step`` = the number of updates so far.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxvit.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ModelEma:
    """timm ModelEmaV3(decay=model_ema_decay, use_warmup=model_ema_warmup), updated with
    ``step=num_updates`` as timm's train loop does."""

    decay: float = 0.9998
    warmup: bool = False
    warmup_gamma: float = 1.0
    warmup_power: float = 2 / 3

    @classmethod
    def from_config(cls, config) -> ModelEma | None:
        if not config.model_ema:
            return None
        if not 0.0 <= config.model_ema_decay <= 1.0:
            raise ConfigError(f"config.model_ema_decay={config.model_ema_decay}: use [0, 1] (timm: 0.9998)")
        return cls(config.model_ema_decay, config.model_ema_warmup)

    def decay_at(self, step: jax.Array) -> jax.Array:
        """ModelEmaV3.get_decay(step): 0 at the first update (the EMA starts as a copy), then
        ``decay``, or with warmup ``min(decay, 1 - (1 + s / gamma) ** -power)`` for s = step - 1."""
        s = jnp.maximum(jnp.asarray(step, jnp.float32) - 1.0, 0.0)
        if self.warmup:
            d = jnp.clip(1.0 - (1.0 + s / self.warmup_gamma) ** -self.warmup_power, 0.0, self.decay)
        else:
            d = jnp.asarray(self.decay, jnp.float32)
        return jnp.where(s <= 0, 0.0, d)

    def update(self, ema: Any, model: Any, step: jax.Array) -> Any:
        """``ema.lerp_(model, 1 - decay)`` for every leaf."""
        weight = 1.0 - self.decay_at(step)
        return jax.tree.map(lambda e, m: lerp(e, m.astype(e.dtype), weight.astype(e.dtype)), ema, model)


def lerp(start: jax.Array, end: jax.Array, weight: jax.Array) -> jax.Array:
    """torch.lerp's formula (exact at both ends)."""
    diff = end - start
    return jnp.where(weight < 0.5, start + weight * diff, end - diff * (1 - weight))


def copy_tree(tree: Any) -> Any:
    """Fresh buffers (the EMA must not alias the params it starts from: the state is donated)."""
    return jax.tree.map(jnp.array, tree)
