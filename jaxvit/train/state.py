"""The train state, built as big_vision builds it: first as shapes (``jax.eval_shape``: no
weight is drawn), its shardings decided on those shapes (sharding.py's fsdp rule; replicated
when the mesh has no 'fsdp' axis), then materialized by ``jit(init, out_shardings=...)``, so
each device computes only its own shards and an fsdp run creates a state larger than one
device. ``init_from`` weights are read into host memory first and placed shard by shard; only
the weights it does not supply are drawn (fine-tuning ViT-L draws its new head, not 304M
random numbers).

``create(config, mesh, num_classes, schedules)`` returns the abstract model (the graph the
steps merge the state into), its non-weight state, the state on its shardings, the optax
transformation and the names of the params that init_from did not supply.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxvit
from jaxvit import weights
from jaxvit._compat import eval_shape, quick_tracer_probes
from jaxvit.errors import ConfigError
from jaxvit.registry import parse_model_args
from jaxvit.train import optim, sharding
from jaxvit.train.ema import ModelEma, copy_tree
from jaxvit.train.runner import sync_batch_norm

log = logging.getLogger("jaxvit")


@dataclasses.dataclass
class Built:
    model: nnx.Module  # abstract (shapes only): the graph of the train and eval steps
    rest: dict  # the model's state that is not a weight (dropout RNG streams), replicated
    state: dict  # step, params, batch_stats, opt_state, rng [, ema_params, ema_batch_stats]
    sharding: Any  # a NamedSharding per leaf of ``state``
    tx: optax.GradientTransformation
    new_names: set[str]  # params kept at init (a new classifier, new_layers, strict=False misses)
    model_ema: ModelEma | None
    build_bytes: int  # the most one device held while the state was built (XLA's accounting)


def model_kwargs(config, num_classes: int) -> dict:
    """The keywords the trainer builds ``config.model`` with (and records in checkpoints)."""
    kw = dict(num_classes=num_classes, img_size=config.img_size)
    # only the rates a recipe sets: not every family has every one (MLP-Mixer has no attention)
    for rate in ("drop_rate", "attn_drop_rate", "drop_path_rate"):
        if config[rate]:
            kw[rate] = config[rate]
    if config.patch_size:
        kw["patch_size"] = config.patch_size
    kw.update(parse_model_args(config.model_args))
    return kw


def _weights(model: nnx.Module) -> tuple[dict, dict, dict]:
    """(params, batch_stats, the rest) of ``model`` as pure dicts: values, or shapes when abstract."""
    _, params, batch_stats, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    return nnx.to_pure_dict(params), nnx.to_pure_dict(batch_stats), nnx.to_pure_dict(rest)


def create(config, mesh, num_classes: int, schedules) -> Built:
    # --- the model, as shapes -----------------------------------------------------------
    kw = model_kwargs(config, num_classes)

    def make():
        return jaxvit.create_model(config.model, dtype=config.dtype, seed=config.seed, **kw)

    try:
        model = eval_shape(make)
    except (TypeError, ValueError) as e:  # keywords the family rejects: the config's to fix
        raise ConfigError(f"config.model={config.model!r} cannot be built with {kw}: {e}") from e
    if config.parallelism == "pmap":
        sync_batch_norm(model, "data")

    # --- its weights: read from init_from, the others drawn shard by shard ------------------
    abstract = _weights(model)
    shardings = sharding.state_shardings(mesh, abstract)
    flat_abstract = weights.flatten({"params": abstract[0], "batch_stats": abstract[1]})
    flat_shardings = weights.flatten({"params": shardings[0], "batch_stats": shardings[1]})
    loaded: dict[str, Any] = {}
    new: set[str] = set()
    if config.init_from:  # read first: only the weights it does not supply are drawn
        loaded, new = init_from(config, model, flat_abstract, kw)
    draw = [k for k in flat_shardings if k not in loaded]

    def drawn():  # XLA drops the initializers of the weights not returned
        params, batch_stats, rest = _weights(make())
        flat = weights.flatten({"params": params, "batch_stats": batch_stats})
        return {k: flat[k] for k in draw}, rest

    with quick_tracer_probes():  # the shapes are the abstract model's: the constructor is traced once more, here
        (fresh, rest), init_bytes = _materialize(drawn, ({k: flat_shardings[k] for k in draw}, shardings[2]))
    placed = {k: _place(v, flat_shardings[k], flat_abstract[k].dtype) for k, v in loaded.items()}
    trees = weights.unflatten_like({**fresh, **placed}, {"params": abstract[0], "batch_stats": abstract[1]})
    params, batch_stats = trees["params"], trees["batch_stats"]

    # --- optimizer and EMA ----------------------------------------------------------------
    tx = optim.create_optimizer(config, schedules, params, groups=optim.param_groups(model, params, new))
    model_ema = ModelEma.from_config(config)  # timm ModelEmaV3: params and buffers, evaluated as eval_ema_*

    def finish(params, batch_stats):
        state = dict(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                     opt_state=tx.init(params), rng=jax.random.PRNGKey(config.seed))
        if model_ema is not None:
            state.update(ema_params=copy_tree(params), ema_batch_stats=copy_tree(batch_stats))
        return state

    shapes = jax.eval_shape(finish, params, batch_stats)
    state_sharding = sharding.state_shardings(mesh, shapes)
    state, finish_bytes = _materialize(finish, state_sharding, params, batch_stats, donate=(0, 1))
    return Built(model, rest, state, state_sharding, tx, new, model_ema, max(init_bytes, finish_bytes))


def _materialize(fn: Callable, out_shardings: Any, *args: Any, donate: tuple[int, ...] = ()) -> tuple[Any, int]:
    """``jit(fn, out_shardings)(*args)``, and the most memory one device needs to run it
    (arguments + outputs + temporaries, as XLA's buffer assignment counts them)."""
    compiled = jax.jit(fn, out_shardings=out_shardings, donate_argnums=donate).lower(*args).compile()
    return compiled(*args), peak_bytes(compiled)


def peak_bytes(compiled) -> int:
    """Per device: what a compiled program's arguments, outputs and temporaries take."""
    m = compiled.memory_analysis()
    if m is None:  # a backend without the analysis
        return 0
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes)


def init_from(config, model: nnx.Module, abstract: dict[str, Any], kw: dict) -> tuple[dict, set]:
    """Reads ``config.init_from`` (its EMA weights with init_from_ema) for fine-tuning, through
    jaxvit.weights, against the abstract model's flat weights (``abstract``: 'params.head.kernel'
    -> shape): a classifier with another class count re-initialized, position tables resampled,
    strict unless init_from_strict=False; then ``new_layers`` (the last N layer groups, as seed
    003 does) back to init. Returns the weights it supplies (host arrays, flat names) and the
    param names left to their fresh init."""
    source = f"init_from {os.path.abspath(config.init_from)}"
    source += " (EMA weights)" if config.init_from_ema else ""
    found = weights.locate(config.init_from)
    trees = weights.read_weights(found, ema=config.init_from_ema, on_host=True)
    loaded, report = weights.fit(
        model, abstract, trees, strict=config.init_from_strict, source=source, meta=found.meta,
        asked=weights.describe(config.model, kw),
        fix="--config.init_from a checkpoint of this model (or set --config.model/model_args/patch_size "
            "to the ones above), or --config.init_from_strict=False to load the tensors that match",
    )
    new = set(report.kept_at_init)
    if config.new_layers:  # params and BatchNorm statistics of the last N layer groups back to init
        ids = optim.model_layer_ids(model, [k.split(".", 1)[1] for k in abstract])
        names = optim.new_layer_names(ids, config.new_layers)
        again = {k for k in abstract if k.split(".", 1)[1] in names}
        log.info("new_layers=%d: %d tensors re-initialized", config.new_layers, len(again))
        new |= again
    supplied = {k: v for k, v in loaded.items() if k not in new}  # the others are abstract[k] itself
    return supplied, {k.split(".", 1)[1] for k in new if k.startswith("params.")}


def _place(host: Any, target: jax.sharding.Sharding, dtype: Any) -> jax.Array:
    """A host array on ``target``: each device receives only its own shard (every process
    passes the same array, so this holds on several hosts too)."""
    value = np.asarray(host, dtype=dtype)
    return jax.make_array_from_callback(value.shape, target, lambda index: value[index])
