"""Optimizers, learning-rate schedules and parameter groups as optax chains, with timm's meanings.

Weight decay follows timm: off for 1-d params (biases, norm scales) and for the
model's ``no_weight_decay()`` names (pos_embed, tokens). ``adamw`` decays
decoupled; ``adam`` and ``sgd`` add L2 to the gradient as torch does; ``lamb``
is timm's Lamb (global grad-norm clip at 1, Adam step plus decay, trust ratio
on the params that decay).

Parameter groups are rules over param paths (``blocks.3.attn.qkv.kernel``):

- layer ids: timm's ``group_matcher()`` grouping (``group_with_matcher``):
  0 = stem (patch/pos embeddings, tokens), one per block, the head last
  (``num_layers - 1``); models without ``group_matcher()`` use
  ``generic_group_matcher``;
- ``layer_decay``: timm/BEiT ``param_groups_layer_decay``: the lr of layer
  ``i`` is scaled by ``layer_decay ** (num_layers - 1 - i)``;
- non-binary transfer (seed 003): ``lr=(head, high, low)`` gives three parts
  their own base lr (each scheduled as timm schedules a param group, warmup
  and decay included): part 0 ``head`` = the last layer group (the
  classifier), part 2 ``low`` = the first ``num_lowlrs`` layer groups (stem
  first), part 1 ``high`` = the groups in between. (Seed 003 splits
  Inception-v4 by ``features.N < num_lowlrs``; here N counts layer groups, in
  which ``features.0-2`` are one stem group.) ``new_layers`` = the last N
  layer groups, the head counting as one, re-initialized after ``init_from``;
- L2-SP (``l2sp``, seed 003): instead of weight decay, ``rate * (w - w0)``
  toward the starting weights ``w0`` (kept in the optimizer state) for
  pretrained params and ``rate * w`` for new ones, on the params weight
  decay would touch; ``l2sp_rates`` is one rate or one per part.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvit.errors import ConfigError

log = logging.getLogger("jaxvit")

OPTIMIZERS = ("adamw", "adam", "sgd", "lamb")
SCHEDULES = ("cosine", "step", "multistep", "constant")
SCHEDULE_UNITS = ("", "epoch", "step")
PARTS = ("head", "high", "low")  # the order of lr=(a, b, c) and l2sp_rates=(a, b, c)
LAMB_MAX_GRAD_NORM = 1.0  # timm Lamb's max_grad_norm default


# --- learning rates and schedules ---------------------------------------------------
def _as_tuple(value) -> tuple[float, ...]:
    return tuple(float(v) for v in value) if isinstance(value, (tuple, list)) else (float(value),)


def base_lrs(config) -> tuple[float, ...]:
    """``(lr,)``, or seed 003's ``(head, high, low)``; ``blr > 0``: lr = blr * global_batch_size / 256."""
    lrs = _as_tuple(config.lr)
    if len(lrs) not in (1, 3):
        raise ConfigError(f"config.lr={config.lr!r}: give one learning rate or 3 for the parts {PARTS}")
    if config.blr > 0:
        if len(lrs) == 3:
            raise ConfigError("config.blr scales a single lr; with lr=(head, high, low) set config.blr=0")
        lrs = (config.blr * config.global_batch_size / 256,)
    return lrs


def create_learning_rate_fn(config, steps_per_epoch: int, total_steps: int, lr: float | None = None):
    """The schedule of base lr ``lr`` (default: the first of ``base_lrs``).

    ``schedule_unit=''``: linear warmup from ``warmup_lr`` to ``lr``, then cosine to ``min_lr`` over the
    remaining steps, step decay, milestones, or constant. ``'epoch'`` / ``'step'``: timm's scheduler.
    """
    lr = base_lrs(config)[0] if lr is None else lr
    if config.schedule not in SCHEDULES:
        raise ConfigError(f"unknown schedule {config.schedule!r}; choose one of {SCHEDULES}")
    if config.schedule_unit:
        return timm_lr_fn(config, lr, steps_per_epoch, total_steps)
    warmup = int(config.warmup_steps or round(config.warmup_epochs * steps_per_epoch))
    warmup = min(warmup, max(total_steps - 1, 0))
    if config.schedule == "cosine":
        after = optax.cosine_decay_schedule(lr, max(total_steps - warmup, 1), alpha=config.min_lr / lr)
    elif config.schedule == "step":
        every = int(config.decay_steps or round(config.decay_epochs * steps_per_epoch))
        if every <= 0:
            raise ConfigError("schedule 'step' needs --config.decay_epochs or --config.decay_steps > 0")
        after = optax.exponential_decay(lr, every, config.decay_rate, staircase=True)
    elif config.schedule == "multistep":
        bounds = {round(m * steps_per_epoch): config.decay_rate for m in config.decay_milestones}
        after = optax.piecewise_constant_schedule(lr, bounds)
    else:
        after = optax.constant_schedule(lr)
    if warmup == 0:
        return after
    ramp = optax.linear_schedule(config.warmup_lr, lr, warmup)
    return optax.join_schedules([ramp, after], [warmup])


def create_schedules(config, steps_per_epoch: int, total_steps: int) -> tuple[optax.Schedule, ...]:
    """One schedule per base lr (timm schedules each param group from its own initial lr)."""
    return tuple(create_learning_rate_fn(config, steps_per_epoch, total_steps, lr) for lr in base_lrs(config))


def timm_lr_fn(config, lr: float, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
    """timm's CosineLRScheduler / StepLRScheduler / MultiStepLRScheduler (as create_scheduler_v2 builds
    them: warmup_prefix=False, one cycle, no noise) as a function of the update count.

    ``schedule_unit='epoch'``: stepped per epoch (timm train.py's default; t = epoch), ``'step'``: per
    update (timm --sched-on-updates; t = update, epochs scaled by the updates per epoch).
    """
    per_update = config.schedule_unit == "step"

    def units(epochs: float, steps: int = 0) -> float:
        if per_update:
            return steps or epochs * steps_per_epoch
        return steps / steps_per_epoch if steps else epochs

    t_initial = units(0, total_steps)
    warmup_t = units(config.warmup_epochs, config.warmup_steps)
    warmup_step = (lr - config.warmup_lr) / warmup_t if warmup_t else 0.0
    kind, rate, min_lr = config.schedule, config.decay_rate, config.min_lr
    decay_t = units(config.decay_epochs, config.decay_steps)
    if kind == "step" and decay_t <= 0:
        raise ConfigError("schedule 'step' needs --config.decay_epochs or --config.decay_steps > 0")
    milestones = jnp.asarray(sorted(units(m) for m in config.decay_milestones) or [math.inf], jnp.float32)

    def schedule(count):
        count = jnp.asarray(count)
        t = (count if per_update else count // steps_per_epoch).astype(jnp.float32)
        if kind == "cosine":
            cos = min_lr + 0.5 * (lr - min_lr) * (1 + jnp.cos(math.pi * t / t_initial))
            after = jnp.where(t < t_initial, cos, min_lr)
        elif kind == "step":
            after = lr * rate ** jnp.floor_divide(t, decay_t)
        elif kind == "multistep":  # timm: milestone m applies from t == m - 1
            after = lr * rate ** jnp.sum(milestones <= t + 1).astype(jnp.float32)
        else:
            after = jnp.full_like(t, lr)
        return jnp.where(t < warmup_t, config.warmup_lr + t * warmup_step, after) if warmup_t else after

    return schedule


# --- parameter groups ---------------------------------------------------------------
MATCH_PREV_GROUP = 99999.0  # timm: an ordinal ending in this joins the group before it


def path_name(path) -> str:
    return ".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def leaf_names(tree: Any) -> list[str]:
    return [path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def generic_group_matcher(name: str) -> tuple[float, ...]:
    """The one fallback for models without ``group_matcher()``: ``blocks|layers|stages|features.N``
    are layers, a top-level ``norm*`` joins the last, ``head|fc|last_linear|classifier|to_logits``
    is the head (last), anything else (embeddings, tokens, latents) is the stem."""
    top, _, rest = name.partition(".")
    if top in ("head", "head_dist", "fc", "last_linear", "classifier", "to_logits"):
        return (math.inf,)
    index = re.match(r"(\d+)(\.|$)", rest)
    if top in ("blocks", "layers", "stages", "features") and index:
        return (1.0, float(index.group(1)))
    if top.startswith("norm") or top == "fc_norm":
        return (1.0, MATCH_PREV_GROUP)
    return (0.0,)


def _compile_matcher(matcher: dict) -> Callable[[str], tuple[float, ...]]:
    """timm's dict form: {group: regex | [(regex, suffix), ...]}, numbered by regex groups."""
    rules = []
    for ordinal, spec in enumerate(matcher.values()):
        if spec is None:
            continue
        for regex, suffix in (spec if isinstance(spec, (tuple, list)) else [(spec, None)]):
            rules.append((re.compile(regex), ordinal, suffix))

    def ordinal_of(name: str) -> tuple[float, ...]:
        for regex, ordinal, suffix in rules:
            m = regex.match(name)
            if m:
                groups = (float(g) for g in m.groups() if g is not None)
                return (float(ordinal), *groups, *map(float, suffix or ()))
        return (math.inf,)  # unmatched (neck, head): the last group

    return ordinal_of


def layer_ids(names: list[str], matcher: dict | Callable | None = None) -> dict[str, int]:
    """timm's ``group_with_matcher(..., reverse=True)``: name -> layer id (0 .. num_layers - 1)."""
    if matcher is None:
        matcher = generic_group_matcher
    ordinal_of = _compile_matcher(matcher) if isinstance(matcher, dict) else (lambda n: tuple(matcher(n)))
    ordinals = {n: ordinal_of(n) for n in names}
    group_of, lid = {}, -1
    for key in sorted(set(ordinals.values())):
        if lid < 0 or key[-1] != MATCH_PREV_GROUP:
            lid += 1
        group_of[key] = lid
    return {n: group_of[k] for n, k in ordinals.items()}


def model_layer_ids(model, names: list[str]) -> dict[str, int]:
    """Layer ids from the model's ``group_matcher(coarse=False)``, else ``generic_group_matcher``."""
    matcher = model.group_matcher(coarse=False) if hasattr(model, "group_matcher") else None
    return layer_ids(names, matcher)


def new_layer_names(ids: dict[str, int], new_layers: int) -> set[str]:
    """Names in the last ``new_layers`` layer groups (the head is the last group)."""
    num_layers = max(ids.values()) + 1
    if not 0 <= new_layers <= num_layers:
        raise ConfigError(f"config.new_layers={new_layers}: the model has {num_layers} layer groups")
    return {n for n, i in ids.items() if i >= num_layers - new_layers}


@dataclasses.dataclass(frozen=True)
class ParamGroups:
    """Per-param facts as trees shaped like the params (Python values, static under jit)."""

    num_layers: int
    layer: Any  # int: timm layer id
    decay: Any  # bool: weight decay (and L2-SP) applies
    new: Any  # bool: re-initialized, no pretrained value (L2-SP pulls it to 0)

    def part(self, num_lowlrs: int) -> Any:
        """0 head (last group), 2 low (the first ``num_lowlrs`` groups), 1 high (the rest)."""
        last = self.num_layers - 1
        if not 1 <= num_lowlrs <= last:
            raise ConfigError(f"config.num_lowlrs={num_lowlrs}: use 1..{last} (layer groups below the head)")
        return jax.tree.map(lambda i: 0 if i == last else (2 if i < num_lowlrs else 1), self.layer)

    def lr_scale(self, layer_decay: float) -> Any:
        """timm param_groups_layer_decay: ``layer_decay ** (num_layers - 1 - layer_id)``."""
        return jax.tree.map(lambda i: float(layer_decay ** (self.num_layers - 1 - i)), self.layer)


def param_groups(model, params: Any, new_names=frozenset()) -> ParamGroups:
    """The groups of ``params`` (a pure dict of ``model``'s nnx.Param state)."""
    ids = model_layer_ids(model, leaf_names(params))
    no_wd = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    return ParamGroups(
        num_layers=max(ids.values()) + 1,
        layer=_by_name(params, ids.__getitem__),
        decay=decay_mask(params, no_wd),
        new=_by_name(params, lambda n: n in new_names),
    )


def _by_name(tree: Any, fn: Callable[[str], Any]) -> Any:
    return jax.tree_util.tree_map_with_path(lambda p, _: fn(path_name(p)), tree)


def decay_mask(params: Any, no_weight_decay: set[str] | frozenset = frozenset()) -> Any:
    """True where weight decay applies: >1-d params not named in ``no_weight_decay``."""

    def keep(path, p):
        name = path_name(path)
        top = name.split(".")[0]
        return bool(np.ndim(p) > 1 and top not in no_weight_decay and name not in no_weight_decay)

    return jax.tree_util.tree_map_with_path(keep, params)


# --- transforms ---------------------------------------------------------------------
def scale_by_param_lr(schedules, part: Any, scale: Any) -> optax.GradientTransformation:
    """``-lr`` per param: ``schedules[part](count) * scale`` (timm: a group's scheduled lr times its
    ``lr_scale``)."""

    def init(params):
        del params
        return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

    def update(updates, state, params=None):
        del params
        lrs = [s(state.count) for s in schedules]
        out = jax.tree.map(lambda g, i, s: jnp.asarray(-lrs[i] * s, g.dtype) * g, updates, part, scale)
        return out, optax.ScaleByScheduleState(count=optax.safe_increment(state.count))

    return optax.GradientTransformation(init, update)


class L2SPState(NamedTuple):
    w0: Any  # the starting point: the params at init (pretrained weights from init_from)


def l2sp_penalty(params: Any, w0: Any, rates: Any, new: Any) -> jax.Array:
    """L2-SP: ``rate/2 * ||w - w0||^2`` for pretrained params, ``rate/2 * ||w||^2`` for new ones."""

    def term(p, p0, rate, is_new):
        return 0.0 if rate == 0 else 0.5 * rate * jnp.sum(jnp.square(p if is_new else p - p0))

    return sum(jax.tree.leaves(jax.tree.map(term, params, w0, rates, new)), jnp.zeros((), jnp.float32))


def add_l2sp(rates: Any, new: Any) -> optax.GradientTransformation:
    """Adds the gradient of ``l2sp_penalty`` (``rate * (w - w0)``, or ``rate * w``) to the updates;
    ``w0`` is the params ``init`` is called with."""

    def init(params):
        return L2SPState(jax.tree.map(jnp.array, params))  # a copy: the state is donated

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("add_l2sp needs the params: tx.update(grads, state, params)")
        grads = jax.grad(l2sp_penalty)(params, state.w0, rates, new)
        return jax.tree.map(lambda u, g, r: u if r == 0 else u + g, updates, grads, rates), state

    return optax.GradientTransformation(init, update)


# --- the optimizer ------------------------------------------------------------------
def per_part(value, groups: ParamGroups | None, num_lowlrs: int, what: str) -> Any:
    """A scalar for every param, or one value per part ``(head, high, low)`` mapped by part."""
    values = _as_tuple(value)
    if len(values) == 1:
        return values[0] if groups is None else jax.tree.map(lambda _: values[0], groups.layer)
    if len(values) != 3:
        raise ConfigError(f"config.{what}={value!r}: give one value or 3 for the parts {PARTS}")
    if groups is None:
        raise ValueError(f"config.{what} per part needs the layer groups: create_optimizer(groups=...)")
    return jax.tree.map(lambda i: values[i], groups.part(num_lowlrs))


def _learning_rate(config, schedules, groups: ParamGroups | None) -> optax.GradientTransformation:
    if len(schedules) == 1 and not config.layer_decay:
        return optax.scale_by_learning_rate(schedules[0])
    if groups is None:
        raise ValueError("lr per part / layer_decay need the layer groups: create_optimizer(groups=...)")
    part = groups.part(config.num_lowlrs) if len(schedules) == 3 else jax.tree.map(lambda _: 0, groups.layer)
    scale = groups.lr_scale(config.layer_decay or 1.0)
    return scale_by_param_lr(schedules, part, scale)


def create_optimizer(
    config, schedule, params: Any, no_weight_decay=frozenset(), groups: ParamGroups | None = None
) -> optax.GradientTransformation:
    """The optax chain for ``config.optimizer``: (L2-SP) -> clip -> (L2) -> update rule -> -lr.

    ``schedule`` is one schedule or one per base lr (``create_schedules``); ``groups`` (from
    ``param_groups``) are needed for layer_decay, lr per part and L2-SP.
    """
    schedules = tuple(schedule) if isinstance(schedule, (tuple, list)) else (schedule,)
    if config.filter_bias_and_bn:
        mask = groups.decay if groups is not None else decay_mask(params, no_weight_decay)
    else:
        mask = None
    wd = 0.0 if config.l2sp else config.weight_decay  # L2-SP replaces weight decay
    parts = []
    if config.l2sp:
        if groups is None:
            raise ValueError("l2sp needs the model's layer groups (create_optimizer(groups=...))")
        rates = per_part(config.l2sp_rates, groups, config.num_lowlrs, "l2sp_rates")
        if mask is not None:
            rates = jax.tree.map(lambda r, m: r if m else 0.0, rates, mask)
        parts.append(add_l2sp(rates, groups.new))
    if config.grad_clip_norm and config.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(config.grad_clip_norm))
    name = config.optimizer
    if name == "adamw":
        parts += [optax.scale_by_adam(config.b1, config.b2, config.eps), optax.add_decayed_weights(wd, mask)]
    elif name in ("adam", "sgd"):
        if wd:
            parts.append(optax.add_decayed_weights(wd, mask))
        if name == "adam":
            parts.append(optax.scale_by_adam(config.b1, config.b2, config.eps))
        elif config.momentum:
            parts.append(optax.trace(config.momentum, config.nesterov))
    elif name == "lamb":
        parts.append(optax.clip_by_global_norm(LAMB_MAX_GRAD_NORM))
        parts.append(optax.scale_by_adam(config.b1, config.b2, config.eps))
        if wd:  # timm Lamb: decay and trust ratio only in groups with weight_decay != 0
            trust = optax.scale_by_trust_ratio()
            parts.append(optax.add_decayed_weights(wd, mask))
            parts.append(trust if mask is None else optax.masked(trust, mask))
    else:
        raise ConfigError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")
    parts.append(_learning_rate(config, schedules, groups))
    return optax.chain(*parts)


def check_config(config) -> None:
    """Fails on a bad optimizer / schedule / param-group setting, naming the key to change."""
    lrs = base_lrs(config)
    if config.schedule_unit not in SCHEDULE_UNITS:
        raise ConfigError(f"config.schedule_unit={config.schedule_unit!r} is not one of {SCHEDULE_UNITS}")
    if (len(lrs) == 3 or len(_as_tuple(config.l2sp_rates)) == 3) and config.num_lowlrs < 1:
        raise ConfigError("lr / l2sp_rates per part (head, high, low) need --config.num_lowlrs=N >= 1: "
                         "the first N layer groups form the low part")
    if not 0.0 <= config.layer_decay <= 1.0:
        raise ConfigError(f"config.layer_decay={config.layer_decay} must be in (0, 1] (0: off; timm: 0.75)")
    for key in ("l2sp", "new_layers"):
        if config[key] and not config.init_from:  # runs (a smoke test), but is not what was meant
            log.warning("config.%s acts on weights loaded by init_from, which is unset: L2-SP pulls toward "
                        "the random init, new_layers does nothing; set --config.init_from=DIR", key)


def cross_entropy(logits: jax.Array, labels: jax.Array, num_classes: int, smoothing: float = 0.0):
    """Per-example label-smoothed cross-entropy (timm's LabelSmoothingCrossEntropy), in float32."""
    targets = jax.nn.one_hot(labels, num_classes)
    if smoothing:
        targets = optax.smooth_labels(targets, smoothing)
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def soft_target_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-example ``sum(-target * log_softmax(x))`` (timm's SoftTargetCrossEntropy), in float32."""
    return jnp.sum(-targets * jax.nn.log_softmax(logits.astype(jnp.float32), -1), -1)
