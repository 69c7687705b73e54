"""The training loop. ``run(config, workdir)``, what main.py calls, reads top to bottom in
sections: config -> mesh -> input -> state -> steps -> checkpoint -> loop -> final eval; the
helpers above it build each part, the runners (pjit or pmap) live in ``runner.py``."""

from __future__ import annotations

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

import jaxvit
from jaxvit import weights
from jaxvit.data import mix, pipeline
from jaxvit.errors import CheckpointNotFoundError, ConfigError, UserError
from jaxvit.registry import parse_model_args  # noqa: F401  (re-exported: its old home)
from jaxvit.train import checkpoint as ckpt_lib
from jaxvit.train import optim, sharding, xla_cpu
from jaxvit.train import state as train_state
from jaxvit.train.ema import ModelEma
from jaxvit.train.metrics import MetricWriter
from jaxvit.train.runner import create_runner, prefetch_to_device

log = logging.getLogger("jaxvit")

CHOICES = dict(
    optimizer=optim.OPTIMIZERS,
    schedule=optim.SCHEDULES,
    schedule_unit=optim.SCHEDULE_UNITS,
    mixup_mode=mix.MODES,
    parallelism=("pjit", "pmap"),
    dtype=("float32", "bfloat16", "float16"),
    attention=jaxvit.layers.attention_impl.IMPLEMENTATIONS,
    transfer_dtype=("float32", "uint8"),
    cpu_dots=xla_cpu.CPU_DOTS,
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
    xla_cpu.check_config(config)
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


def to_float(tree) -> dict[str, float]:
    return {k: float(np.mean(v)) for k, v in jax.device_get(tree).items()}


# --- the run -------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Preempted:
    """``run``'s answer when SIGTERM stopped it: the step whose checkpoint was saved."""

    step: int


@dataclasses.dataclass(frozen=True)
class Plan:
    """How long the run is and how often it evaluates and checkpoints, in steps."""

    steps_per_epoch: int
    total_steps: int
    eval_every: int
    ckpt_every: int

    @classmethod
    def from_config(cls, config, train_examples: int) -> Plan:
        steps_per_epoch = max(1, train_examples // config.global_batch_size)
        total = config.total_steps or int(round(optim.total_epochs(config) * steps_per_epoch))
        return cls(steps_per_epoch, total, every(config, "eval", steps_per_epoch),
                   every(config, "ckpt", steps_per_epoch))


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float] | Preempted:
    """Trains (resuming from ``workdir`` if it holds checkpoints) and returns the final eval
    (with the best kept eval), or ``Preempted`` when SIGTERM stopped it after a checkpoint."""
    # --- config ----------------------------------------------------------------------
    workdir = os.path.abspath(os.path.expanduser(workdir))  # orbax needs absolute paths
    validate(config)
    jaxvit.layers.attention_impl.set_implementation(config.attention)  # read when the step is traced
    jaxvit.layers.remat.set_policy(config.remat)  # likewise

    # --- mesh --------------------------------------------------------------------------
    mesh = create_mesh(config)
    local_batch = sharding.check_batch(config.global_batch_size)
    if config.global_batch_size % (config.grad_accum_steps * jax.device_count()):
        raise ConfigError(
            f"global_batch_size {config.global_batch_size} must split into grad_accum_steps="
            f"{config.grad_accum_steps} micro-batches over {jax.device_count()} devices"
        )

    # --- input: a bad dataset stops here, before the workdir is touched -------------------
    inp = create_input(config, local_batch)
    plan = Plan.from_config(config, inp.train_examples)

    # --- state: the model and optimizer as shapes, then materialized on their shardings ----
    schedules = optim.create_schedules(config, plan.steps_per_epoch, plan.total_steps)
    built = train_state.create(config, mesh, inp.num_classes, schedules)

    # --- steps ---------------------------------------------------------------------------
    runner = create_runner(config, mesh, built, schedules, inp.num_classes)
    state = built.state
    del built

    # --- checkpoint: checks, then resume (nothing is written to the workdir before the checks) --
    mngr, state, start_step = open_workdir(config, workdir, runner, state, inp.num_classes)
    model_meta = dict(model=config.model, kwargs=train_state.model_kwargs(config, inp.num_classes))
    best = BestCheckpoint(workdir, best_metric_key(config), dict(
        model_meta, class_names=inp.class_names, global_batch_size=config.global_batch_size,
        preprocess=dict(mean=list(config.mean), std=list(config.std), crop_pct=config.crop_pct,
                        interpolation=config.aug.interpolation),
    ))
    meta_base = dict(model=model_meta, class_names=inp.class_names, global_batch_size=config.global_batch_size)

    def checkpoint(state, step):
        meta = dict(meta_base, step=step, examples_seen=step * config.global_batch_size)
        save_checkpoint(mngr, runner.host_state(state), step, meta)

    writer = MetricWriter(workdir)
    try:
        if config.eval_only:
            return evaluate(runner, inp, writer, state, start_step)
        if start_step == 0 and jax.process_index() == 0:
            with open(os.path.join(workdir, "config.json"), "w") as f:
                f.write(config.to_json_best_effort(indent=2))

        # --- loop ----------------------------------------------------------------------
        state, preempted = train_loop(config, plan, runner, inp, writer, mngr, best, checkpoint, state,
                                      start_step)
        if preempted is not None:
            return preempted

        # --- final eval ------------------------------------------------------------------
        last = max(plan.total_steps, start_step)
        result = evaluate(runner, inp, writer, state, last)
        best.update(runner.host_state(state), last, result)
        if start_step >= plan.total_steps and mngr.latest_step() != plan.total_steps:
            checkpoint(state, plan.total_steps)
        return {**result, **best.summary()}
    finally:
        writer.close()
        mngr.close()


def open_workdir(config, workdir: str, runner, state, num_classes: int):
    """Checks the workdir against this run (eval_only needs a checkpoint; an earlier run's model,
    size, classes and batch must match), sets aside cut-short saves, and resumes from the latest
    checkpoint, restored straight onto this run's shardings whatever mesh wrote it. Returns the
    checkpoint manager, the state on the devices and the step to go on from."""
    if config.eval_only and not config.init_from and not ckpt_lib.latest_steps(
        os.path.join(workdir, "checkpoints")
    ):
        raise CheckpointNotFoundError(
            f"eval_only: no checkpoint in {workdir}/checkpoints; pass a trained workdir or "
            "--config.init_from=DIR (a converted checkpoint)"
        )
    target = runner.state_sharding
    abstract = jax.tree.map(
        lambda x, sh: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sh),
        state, target if isinstance(target, dict) else jax.tree.map(lambda _: target, state),
    )
    ckpt_lib.check_resumable(workdir, run_keys(config, num_classes), abstract)
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
    return mngr, runner.put_state(state), int(state["step"])


def train_loop(config, plan: Plan, runner, inp: Input, writer: MetricWriter, mngr, best: BestCheckpoint,
               checkpoint, state, start_step: int):
    """Steps ``start_step + 1 .. plan.total_steps``; the host syncs only at log, checkpoint and
    eval steps. Returns the state and ``Preempted`` (or None) once SIGTERM's checkpoint is saved."""
    batches: Iterator = prefetch_to_device(inp.train(start_step), runner.batch, config.prefetch_to_device)
    progress = None
    if config.progress_bar and jax.process_index() == 0:
        from tqdm import tqdm

        progress = tqdm(total=plan.total_steps, initial=start_step, desc="train", mininterval=1.0,
                        dynamic_ncols=True)
    preemption = PreemptionWatch()
    pending, t_log, last_log_step = [], time.time(), start_step
    try:
        for step in range(start_step + 1, plan.total_steps + 1):
            state, metrics = runner.train(state, next(batches))
            pending.append(metrics)
            if progress is not None:
                progress.update(1)
            is_log = step % config.log_every == 0 or step == plan.total_steps
            is_ckpt = bool(plan.ckpt_every and step % plan.ckpt_every == 0) or step == plan.total_steps
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
            if plan.eval_every and step % plan.eval_every == 0 and step != plan.total_steps:
                result = evaluate(runner, inp, writer, state, step)
                log.info("step %d: %s", step, result)
                best.update(runner.host_state(state), step, result)
            if is_ckpt or stop:
                checkpoint(state, step)
            if stop:
                log.warning("preempted: checkpoint saved at step %d; run the same command to resume", step)
                return state, Preempted(step)
    finally:
        preemption.close()
        if progress is not None:
            progress.close()
    return state, None


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
