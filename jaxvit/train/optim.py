"""Optimizers and learning-rate schedules as optax chains, with timm's meanings.

Weight decay follows timm: off for 1-d params (biases, norm scales) and for the
model's ``no_weight_decay()`` names (pos_embed, tokens). ``adamw`` decays
decoupled; ``adam`` and ``sgd`` add L2 to the gradient as torch does.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "step", "constant")


def create_learning_rate_fn(config, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
    """Linear warmup from ``warmup_lr`` to ``lr``, then cosine to ``min_lr``, step decay, or constant."""
    warmup = int(config.warmup_steps or round(config.warmup_epochs * steps_per_epoch))
    warmup = min(warmup, max(total_steps - 1, 0))
    lr = config.lr
    if config.schedule == "cosine":
        after = optax.cosine_decay_schedule(lr, max(total_steps - warmup, 1), alpha=config.min_lr / lr)
    elif config.schedule == "step":
        every = int(config.decay_steps or round(config.decay_epochs * steps_per_epoch))
        if every <= 0:
            raise ValueError("schedule 'step' needs --config.decay_epochs or --config.decay_steps > 0")
        after = optax.exponential_decay(lr, every, config.decay_rate, staircase=True)
    elif config.schedule == "constant":
        after = optax.constant_schedule(lr)
    else:
        raise ValueError(f"unknown schedule {config.schedule!r}; choose one of {SCHEDULES}")
    if warmup == 0:
        return after
    ramp = optax.linear_schedule(config.warmup_lr, lr, warmup)
    return optax.join_schedules([ramp, after], [warmup])


def _path_name(path) -> str:
    return ".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def decay_mask(params: Any, no_weight_decay: set[str] | frozenset = frozenset()) -> Any:
    """True where weight decay applies: >1-d params not named in ``no_weight_decay``."""

    def keep(path, p):
        name = _path_name(path)
        top = name.split(".")[0]
        return bool(np.ndim(p) > 1 and top not in no_weight_decay and name not in no_weight_decay)

    return jax.tree_util.tree_map_with_path(keep, params)


def create_optimizer(config, schedule: optax.Schedule, params: Any, no_weight_decay=frozenset()):
    """The optax chain for ``config.optimizer``: clip -> (L2) -> update rule -> -lr."""
    mask = decay_mask(params, no_weight_decay) if config.filter_bias_and_bn else None
    wd = config.weight_decay
    parts = []
    if config.grad_clip_norm and config.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(config.grad_clip_norm))
    name = config.optimizer
    if name == "adamw":
        parts.append(optax.adamw(schedule, config.b1, config.b2, config.eps, weight_decay=wd, mask=mask))
    elif name == "adam":
        if wd:
            parts.append(optax.add_decayed_weights(wd, mask))
        parts.append(optax.adam(schedule, config.b1, config.b2, config.eps))
    elif name == "sgd":
        if wd:
            parts.append(optax.add_decayed_weights(wd, mask))
        parts.append(optax.sgd(schedule, momentum=config.momentum or None, nesterov=config.nesterov))
    else:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")
    return optax.chain(*parts)


def cross_entropy(logits: jax.Array, labels: jax.Array, num_classes: int, smoothing: float = 0.0):
    """Per-example label-smoothed cross-entropy (timm's LabelSmoothingCrossEntropy), in float32."""
    targets = jax.nn.one_hot(labels, num_classes)
    if smoothing:
        targets = optax.smooth_labels(targets, smoothing)
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)

