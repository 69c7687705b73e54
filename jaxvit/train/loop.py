"""The training loop, top to bottom: config -> input -> model -> optimizer -> sharding
-> steps -> checkpoint -> loop. ``run(config, workdir)`` is what main.py calls."""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

import jaxvit
from jaxvit import weights
from jaxvit.data import mix, pipeline
from jaxvit.errors import CheckpointNotFoundError, ConfigError, UserError
from jaxvit.registry import parse_model_args  # noqa: F401  (re-exported: its old home)
from jaxvit.train import checkpoint as ckpt_lib
from jaxvit.train import optim, sharding
from jaxvit.train.ema import ModelEma, copy_tree
from jaxvit.train.metrics import MetricWriter
from jaxvit.train.step import make_eval_step, make_train_step

log = logging.getLogger("jaxvit")

CHOICES = dict(
    optimizer=optim.OPTIMIZERS,
    schedule=optim.SCHEDULES,
    schedule_unit=optim.SCHEDULE_UNITS,
    mixup_mode=mix.MODES,
    parallelism=("pjit", "pmap"),
    dtype=("float32", "bfloat16", "float16"),
    attention=jaxvit.layers.attention_impl.IMPLEMENTATIONS,
)


def validate(config: ml_collections.ConfigDict) -> None:
    for key, allowed in CHOICES.items():
        if config[key] not in allowed:
            raise ConfigError(f"config.{key}={config[key]!r} is not one of {allowed}")
    jaxvit.registry.get_entry(config.model)  # unknown model names fail here, with close matches
    if config.aug.interpolation not in ("bilinear", "bicubic"):
        raise ConfigError("config.aug.interpolation must be 'bilinear' or 'bicubic'")
    optim.check_config(config)
    mix.check_config(config)
    ModelEma.from_config(config)
    best_metric_key(config)
    if config.init_from_ema and not config.init_from:
        raise ConfigError("config.init_from_ema=True needs --config.init_from=DIR (a workdir or a model "
                          "checkpoint)")
    if config.dataset != "synthetic":  # a bad augmentation string fails here, before anything is written
        from jaxvit.data import transforms

        transforms.train_transform(config)


# --- input ---------------------------------------------------------------------------
@dataclasses.dataclass
class Input:
    """What the loop needs from the data side."""

    num_classes: int
    class_names: list[str]
    train_examples: int
    eval_examples: int
    train: Any  # (start_step) -> iterator of local numpy batches
    eval: Any  # () -> iterator of local numpy batches with 'mask'
    eval_batches: int


def create_input(config, local_batch: int) -> Input:
    """Builds the input side (and fails on a bad dataset) before anything is written."""
    pi, pc = jax.process_index(), jax.process_count()
    if config.dataset == "synthetic":
        n_cls = config.num_classes if config.num_classes > 0 else 10
        n_eval = 2

        def synthetic_eval():
            batch = next(pipeline.synthetic_batches(config, local_batch, n_cls, seed=1))
            return iter([dict(batch, mask=np.ones(local_batch, np.float32))] * n_eval)

        return Input(
            n_cls, [str(i) for i in range(n_cls)], 10_000 * local_batch * pc, n_eval * local_batch * pc,
            lambda start: pipeline.synthetic_batches(config, local_batch, n_cls, seed=config.seed),
            synthetic_eval, n_eval,
        )
    from jaxvit.data.sources import get_source

    source = get_source(config)
    source.check_split(config.train_split)
    source.check_split(config.eval_split)
    pipeline.check_batch_fits(source, config.train_split, config.global_batch_size)
    n_cls = config.num_classes if config.num_classes > 0 else source.num_classes
    return Input(
        n_cls,
        source.class_names,
        source.size(config.train_split),
        source.size(config.eval_split),
        lambda start: pipeline.train_batches(config, source, config.global_batch_size, start, pi, pc),
        lambda: pipeline.eval_batches(config, source, config.eval_split, local_batch, pi, pc),
        pipeline.num_eval_batches(source, config.eval_split, local_batch, pc),
    )


# --- model ---------------------------------------------------------------------------
def model_kwargs(config, num_classes: int) -> dict:
    kw = dict(num_classes=num_classes, img_size=config.img_size)
    # only the rates a recipe sets: not every family has every one (MLP-Mixer has no attention)
    for rate in ("drop_rate", "attn_drop_rate", "drop_path_rate"):
        if config[rate]:
            kw[rate] = config[rate]
    if config.patch_size:
        kw["patch_size"] = config.patch_size
    kw.update(parse_model_args(config.model_args))
    return kw


def create_model(config, num_classes: int) -> tuple[nnx.Module, set[str]]:
    """The model, and the names of its params that init_from did not supply (``new_layers``: the last
    N layer groups, re-initialized as seed 003 does; a head with another class count; with
    init_from_strict=False, whatever did not match)."""
    kw = model_kwargs(config, num_classes)
    try:
        model = jaxvit.create_model(config.model, dtype=config.dtype, seed=config.seed, **kw)
    except (TypeError, ValueError) as e:  # keywords the family rejects: the config's to fix
        raise ConfigError(f"config.model={config.model!r} cannot be built with {kw}: {e}") from e
    if not config.init_from:
        return model, set()
    fresh = ckpt_lib.flatten(ckpt_lib.collections_of(model))
    new = init_from_checkpoint(model, config, kw)
    if config.new_layers:  # params and BatchNorm statistics of the last N layer groups back to init
        names = optim.new_layer_names(optim.model_layer_ids(model, [k.split(".", 1)[1] for k in fresh]),
                                      config.new_layers)
        again = {k: v for k, v in fresh.items() if k.split(".", 1)[1] in names}
        current = ckpt_lib.collections_of(model)
        ckpt_lib.assign(model, ckpt_lib.unflatten_like({**ckpt_lib.flatten(current), **again}, current),
                        source="new_layers")
        log.info("new_layers=%d: %d tensors re-initialized", config.new_layers, len(again))
        new |= set(again)
    return model, {k.split(".", 1)[1] for k in new if k.startswith("params.")}


def init_from_checkpoint(model: nnx.Module, config, kwargs: dict) -> set[str]:
    """Loads ``config.init_from`` (its EMA weights with init_from_ema) for fine-tuning through
    jaxvit.weights: a classifier with another class count re-initialized, position tables
    resampled, strict unless init_from_strict=False. Returns the flat names kept at init."""
    source = f"init_from {os.path.abspath(config.init_from)}"
    source += " (EMA weights)" if config.init_from_ema else ""
    report, _ = weights.load_checkpoint(
        model, config.init_from, ema=config.init_from_ema, strict=config.init_from_strict, source=source,
        asked=weights.describe(config.model, kwargs),
        fix="--config.init_from a checkpoint of this model (or set --config.model/model_args/patch_size "
            "to the ones above), or --config.init_from_strict=False to load the tensors that match",
    )
    return report.kept_at_init


def sync_batch_norm(model: nnx.Module, axis_name: str) -> None:
    """Under pmap, BatchNorm statistics are reduced over ``axis_name`` so they are global-batch
    statistics, as the jit-over-a-Mesh step computes them."""
    for _, module in nnx.iter_modules(model):
        if isinstance(module, nnx.BatchNorm):
            module.axis_name = axis_name


def every(config, what: str, steps_per_epoch: int) -> int:
    """Steps between evals / checkpoints: ``<what>_every_epochs`` (timm's and DeiT's --eval-freq,
    --ckpt_freq, in epochs of ``steps_per_epoch`` updates) when set, else ``<what>_every`` steps;
    0: only at the end."""
    epochs = float(config.get(f"{what}_every_epochs", 0.0))
    if epochs < 0:
        raise ConfigError(f"config.{what}_every_epochs={epochs} must be >= 0 (0: use {what}_every steps)")
    if epochs:
        return max(1, int(round(epochs * steps_per_epoch)))
    return int(config[f"{what}_every"])


def create_mesh(config):
    """The ('data', 'fsdp') mesh of ``config.mesh``; pmap has no 'fsdp' axis."""
    if config.parallelism == "pmap" and config.mesh.fsdp > 1:
        raise ConfigError("config.mesh.fsdp > 1 needs --config.parallelism=pjit (pmap replicates params)")
    return sharding.create_mesh(config.mesh.data, config.mesh.fsdp)


# --- checkpoints ---------------------------------------------------------------------
def run_keys(config, num_classes: int) -> dict:
    """What a workdir's checkpoints must have been written with for this config to resume them."""
    return dict(model=config.model, model_args=parse_model_args(config.model_args), img_size=config.img_size,
                patch_size=config.patch_size, num_classes=num_classes,
                global_batch_size=config.global_batch_size)


BEST_DIR = "best"
BEST_METRICS = {"top1": "eval_top1", "ema_top1": "eval_ema_top1", "": None}


def best_metric_key(config) -> str | None:
    """The eval result key ``best`` is kept by: 'auto' is timm train.py's choice, the EMA's
    top-1 when model EMA is on, else the model's."""
    name = config.best_metric
    if name == "auto":
        name = "ema_top1" if config.model_ema else "top1"
    if name not in BEST_METRICS:
        raise ConfigError(f"config.best_metric={config.best_metric!r} is not one of 'auto', 'top1', "
                          "'ema_top1', '' (no best checkpoint)")
    if name == "ema_top1" and not config.model_ema:
        raise ConfigError("config.best_metric='ema_top1' needs --config.model_ema=True")
    return BEST_METRICS[name]


class BestCheckpoint:
    """``WORKDIR/best``: a model checkpoint (weights and, with model EMA, the EMA weights) of the
    eval with the highest ``key`` so far, outside keep_checkpoints' rotation; its meta holds the
    step, the metric and that eval. Replaced atomically; a resumed run goes on from its value."""

    def __init__(self, workdir: str, key: str | None, meta: dict):
        self.directory = os.path.join(workdir, BEST_DIR)
        self.key, self.meta = key, meta
        self.value, self.step = -np.inf, None
        meta_file = os.path.join(self.directory, weights.META_FILE)
        if key and os.path.exists(meta_file):
            with open(meta_file) as f:
                kept = json.load(f)
            if kept.get("metric") == key:
                self.value, self.step = kept["value"], kept["step"]

    def update(self, state, step: int, result: dict[str, float]) -> None:
        if self.key is None or not result.get(self.key, -np.inf) > self.value:
            return
        trees = {k: state[k] for k in (*weights.COLLECTIONS, *weights.EMA_COLLECTIONS) if k in state}
        meta = dict(self.meta, step=step, metric=self.key, value=result[self.key], eval=result)
        weights.save_model_checkpoint(self.directory, trees, meta, replace=True)
        self.value, self.step = result[self.key], step
        log.info("step %d: best %s so far (%.4f), saved to %s", step, self.key, self.value, self.directory)

    def summary(self) -> dict[str, float]:
        if self.step is None:
            return {}
        return {"best_step": float(self.step), f"best_{self.key}": float(self.value)}


def checkpoint_manager(workdir: str, config) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=config.keep_checkpoints, enable_async_checkpointing=False, create=True
    )
    return ocp.CheckpointManager(
        os.path.join(workdir, "checkpoints"), options=options, item_names=("state", "meta")
    )


def save_checkpoint(mngr, state, step: int, meta: dict) -> None:
    mngr.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
        force=True,
    )
    mngr.wait_until_finished()


def restore_checkpoint(mngr, abstract_state) -> tuple[Any, dict] | None:
    step = mngr.latest_step()
    if step is None:
        return None
    restored = mngr.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
        ),
    )
    return restored["state"], restored["meta"]


# --- parallel forms ------------------------------------------------------------------
class PjitRunner:
    """One jit over the Mesh: batch split over every device, state replicated along 'data' and
    split along 'fsdp' (``state_sharding``; default replicated), state donated."""

    def __init__(self, mesh, train_step, eval_step, state_sharding=None):
        self.rep = sharding.replicated(mesh)
        self.data = sharding.batch_sharded(mesh)
        self.state_sharding = self.rep if state_sharding is None else state_sharding
        st = self.state_sharding
        params_sh = st if st is self.rep else st["params"]
        stats_sh = st if st is self.rep else st["batch_stats"]
        self.train = jax.jit(
            train_step, in_shardings=(st, self.data), out_shardings=(st, self.rep), donate_argnums=(0,)
        )
        self.evaluate = jax.jit(
            eval_step, in_shardings=(params_sh, stats_sh, self.data), out_shardings=self.rep
        )

    def put_state(self, state):
        return jax.device_put(state, self.state_sharding)

    def batch(self, local):
        return sharding.to_global(local, self.data)

    def host_state(self, state):
        return state


class PmapRunner:
    """The same step under ``jax.pmap`` over this process's devices."""

    def __init__(self, mesh, train_step_pmap, eval_step_pmap):
        self.n = jax.local_device_count()
        self.train = jax.pmap(train_step_pmap, axis_name="data", donate_argnums=(0,))
        self.evaluate = jax.pmap(eval_step_pmap, axis_name="data")

    def put_state(self, state):
        # a leading device axis; pmap places one slice per local device
        return jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (self.n, *np.shape(x))), state)

    def batch(self, local):
        return jax.tree.map(lambda x: x.reshape(self.n, -1, *x.shape[1:]), local)

    def host_state(self, state):
        return jax.tree.map(lambda x: x[0], state)


def prefetch_to_device(local_batches: Iterator, put, size: int) -> Iterator:
    """Keeps ``size`` batches already transferred (``put``: local numpy -> device arrays), so the
    host-to-device copy of the next batch overlaps the current step (transfers are async)."""
    queue: collections.deque = collections.deque()
    for local in local_batches:
        queue.append(put(local))
        if len(queue) > size:
            yield queue.popleft()
    while queue:
        yield queue.popleft()


def to_float(tree) -> dict[str, float]:
    return {k: float(np.mean(v)) for k, v in jax.device_get(tree).items()}


# --- the run -------------------------------------------------------------------------
def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Trains (resuming from ``workdir`` if it holds checkpoints) and returns the final eval."""
    workdir = os.path.abspath(os.path.expanduser(workdir))  # orbax needs absolute paths
    validate(config)
    jaxvit.layers.attention_impl.set_implementation(config.attention)  # read when the step is traced
    mesh = create_mesh(config)
    local_batch = sharding.check_batch(config.global_batch_size)
    if config.global_batch_size % (config.grad_accum_steps * jax.device_count()):
        raise ConfigError(
            f"global_batch_size {config.global_batch_size} must split into grad_accum_steps="
            f"{config.grad_accum_steps} micro-batches over {jax.device_count()} devices"
        )
    inp = create_input(config, local_batch)  # bad dataset -> error before the workdir is touched
    steps_per_epoch = max(1, inp.train_examples // config.global_batch_size)
    total_steps = config.total_steps or int(round(optim.total_epochs(config) * steps_per_epoch))
    eval_every = every(config, "eval", steps_per_epoch)
    ckpt_every = every(config, "ckpt", steps_per_epoch)

    # Model and optimizer.
    model, new_names = create_model(config, inp.num_classes)
    if config.parallelism == "pmap":
        sync_batch_norm(model, "data")
    eval_model = nnx.view(model, deterministic=True, use_running_average=True, raise_if_not_found=False)
    eval_graph, _, _, _ = nnx.split(eval_model, nnx.Param, nnx.BatchStat, ...)
    train_graph, params, batch_stats, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    params, batch_stats, rest = map(nnx.to_pure_dict, (params, batch_stats, rest))
    schedules = optim.create_schedules(config, steps_per_epoch, total_steps)
    groups = optim.param_groups(model, params, new_names)
    tx = optim.create_optimizer(config, schedules, params, groups=groups)
    state = dict(
        step=jnp.asarray(0, jnp.int32),
        params=params,
        batch_stats=batch_stats,
        opt_state=tx.init(params),
        rng=jax.random.PRNGKey(config.seed),
    )
    model_ema = ModelEma.from_config(config)
    if model_ema is not None:  # timm ModelEmaV3: params and buffers, evaluated as eval_ema_*
        state.update(ema_params=copy_tree(params), ema_batch_stats=copy_tree(batch_stats))
    del model

    # Steps, sharded.
    args = (train_graph, rest, tx, schedules[0], inp.num_classes, config.label_smoothing,
            config.grad_accum_steps)
    extras = dict(mixup=mix.Mixup.from_config(config, inp.num_classes), model_ema=model_ema)
    if config.parallelism == "pmap":
        runner = PmapRunner(
            mesh, make_train_step(*args, axis_name="data", **extras),
            make_eval_step(eval_graph, rest, inp.num_classes, axis_name="data"),
        )
    else:
        runner = PjitRunner(mesh, make_train_step(*args, **extras),
                            make_eval_step(eval_graph, rest, inp.num_classes),
                            state_sharding=sharding.state_shardings(mesh, state))
        per_device, total = sharding.bytes_per_device(state, runner.state_sharding)
        log.info("mesh %s: train state %.3f MiB, %.3f MiB per device",
                 dict(mesh.shape), total / 2**20, per_device / 2**20)

    # Checkpoint: resume if there is one. Nothing is written to the workdir before these checks.
    if config.eval_only and not config.init_from and not ckpt_lib.latest_steps(
        os.path.join(workdir, "checkpoints")
    ):
        raise CheckpointNotFoundError(
            f"eval_only: no checkpoint in {workdir}/checkpoints; pass a trained workdir or "
            "--config.init_from=DIR (a converted checkpoint)"
        )
    # restored straight onto this run's mesh, whatever mesh wrote the checkpoint
    target = runner.state_sharding if isinstance(runner, PjitRunner) else sharding.replicated(mesh)
    abstract = jax.tree.map(
        lambda x, sh: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sh),
        state, target if isinstance(target, dict) else jax.tree.map(lambda _: target, state),
    )
    ckpt_lib.check_resumable(workdir, run_keys(config, inp.num_classes), abstract)
    os.makedirs(workdir, exist_ok=True)
    if jax.process_index() == 0:
        for name in ckpt_lib.set_aside_incomplete(os.path.join(workdir, "checkpoints")):
            log.warning("a checkpoint save was cut short; set aside as %s (not resumed from)", name)
        weights.recover_interrupted_save(os.path.join(workdir, BEST_DIR))
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("checkpoints set aside")
    mngr = checkpoint_manager(workdir, config)
    restored = restore_checkpoint(mngr, abstract)
    if restored is not None:
        state, meta = restored
        log.info("resumed from step %d (%s)", meta["step"], mngr.directory)
    start_step = int(state["step"])
    state = runner.put_state(state)
    model_meta = dict(model=config.model, kwargs=model_kwargs(config, inp.num_classes))
    meta_base = dict(
        model=model_meta,
        class_names=inp.class_names,
        global_batch_size=config.global_batch_size,
    )
    best = BestCheckpoint(workdir, best_metric_key(config), dict(
        model_meta, class_names=inp.class_names, global_batch_size=config.global_batch_size,
        preprocess=dict(mean=list(config.mean), std=list(config.std), crop_pct=config.crop_pct,
                        interpolation=config.aug.interpolation),
    ))

    if config.eval_only:
        writer = MetricWriter(workdir)
        result = evaluate(runner, inp, writer, state, start_step)
        writer.close()
        mngr.close()
        return result

    writer = MetricWriter(workdir)
    if start_step == 0 and jax.process_index() == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))

    def checkpoint(state, step):
        meta = dict(meta_base, step=step, examples_seen=step * config.global_batch_size)
        save_checkpoint(mngr, runner.host_state(state), step, meta)

    # The loop: host syncs only at log, checkpoint and eval steps.
    batches: Iterator = prefetch_to_device(inp.train(start_step), runner.batch, config.prefetch_to_device)
    progress = None
    if config.progress_bar and jax.process_index() == 0:
        from tqdm import tqdm

        progress = tqdm(total=total_steps, initial=start_step, desc="train", mininterval=1.0, dynamic_ncols=True)
    preemption = PreemptionWatch()
    pending, t_log, last_log_step = [], time.time(), start_step
    try:
        for step in range(start_step + 1, total_steps + 1):
            state, metrics = runner.train(state, next(batches))
            pending.append(metrics)
            if progress is not None:
                progress.update(1)
            is_log = step % config.log_every == 0 or step == total_steps
            is_ckpt = bool(ckpt_every and step % ckpt_every == 0) or step == total_steps
            stop = preemption.requested(step)
            if is_log or is_ckpt or stop:
                fetched = jax.device_get(pending)
                check_finite(fetched, last_log_step, mngr)
            if is_log:
                means = {k: float(np.mean([np.mean(m[k]) for m in fetched])) for k in fetched[0]}
                dt = time.time() - t_log
                means["img_per_sec"] = (step - last_log_step) * config.global_batch_size / max(dt, 1e-9)
                writer.write(step, {k if k == "img_per_sec" else f"train_{k}": v for k, v in means.items()})
                if progress is not None:
                    progress.set_postfix(loss=f"{means['loss']:.4f}", lr=f"{means['lr']:.2e}",
                                         img_s=f"{means['img_per_sec']:.0f}")
                pending, t_log, last_log_step = [], time.time(), step
            if eval_every and step % eval_every == 0 and step != total_steps:
                result = evaluate(runner, inp, writer, state, step)
                log.info("step %d: %s", step, result)
                best.update(runner.host_state(state), step, result)
            if is_ckpt or stop:
                checkpoint(state, step)
            if stop:
                log.warning("preempted: checkpoint saved at step %d; run the same command to resume", step)
                return dict(preempted_step=float(step))
    finally:
        preemption.close()
        if progress is not None:
            progress.close()
    result = evaluate(runner, inp, writer, state, max(total_steps, start_step))
    best.update(runner.host_state(state), max(total_steps, start_step), result)
    if start_step >= total_steps and mngr.latest_step() != total_steps:
        checkpoint(state, total_steps)
    writer.close()
    mngr.close()
    return {**result, **best.summary()}


def evaluate(runner, inp: Input, writer: MetricWriter, state, step: int) -> dict[str, float]:
    """One pass over the eval split: loss, top-1, top-5 over every example exactly once; with
    model_ema, the EMA weights too (``eval_ema_*``)."""
    result = {}
    variants = (("eval", "params", "batch_stats"), ("eval_ema", "ema_params", "ema_batch_stats"))
    for prefix, params, stats in variants:
        if params not in state:
            continue
        sums = None
        for local in inp.eval():
            out = runner.evaluate(state[params], state[stats], runner.batch(local))
            sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
        sums = to_float(sums)
        n = max(sums["count"], 1.0)
        result.update({f"{prefix}_{k}": sums[k] / n for k in ("loss", "top1", "top5")})
        result[f"{prefix}_count"] = sums["count"]
    writer.write(step, result)
    return result


class NonFiniteLoss(UserError, FloatingPointError):
    """The loss went NaN/Inf: a setting or the data to change (main.py: one line, exit 2)."""


def check_finite(fetched: list[dict], first_step: int, mngr) -> None:
    """Stops on a NaN/Inf loss, naming the step and the last good checkpoint."""
    for i, m in enumerate(fetched):
        loss = float(np.mean(m["loss"]))
        if not np.isfinite(loss):
            last = mngr.latest_step()
            where = f"{mngr.directory}/{last}" if last is not None else "none (no checkpoint yet)"
            raise NonFiniteLoss(
                f"loss is {loss} at step {first_step + i + 1}; stopping. Last good checkpoint: {where}. "
                "Lower --config.lr, add --config.grad_clip_norm, or check the data."
            )


class PreemptionWatch:
    """SIGTERM (TPU maintenance, SLURM) asks for a checkpoint at the next step boundary.

    With several processes, JAX's preemption sync point makes every host stop at
    the same step; alone, the signal handler's flag is enough.
    """

    def __init__(self):
        self.flag = False
        self._old = None
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._on_term)

    def _on_term(self, signum, frame):
        self.flag = True

    def requested(self, step: int) -> bool:
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            return bool(multihost_utils.reached_preemption_sync_point(step))
        return self.flag

    def close(self):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)
