"""The two ways to run the train and eval steps, behind one interface: one jit over the Mesh
(``PjitRunner``) or ``jax.pmap`` (``PmapRunner``); each puts the state on the devices, shapes a
host batch for its step and hands the state back to the host. pmap gives pjit's numbers."""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterator

import jax
import numpy as np
from flax import nnx

from jaxvit.data import mix
from jaxvit.train import sharding, xla_cpu
from jaxvit.train.step import make_eval_step, make_train_step

log = logging.getLogger("jaxvit")


def sync_batch_norm(model: nnx.Module, axis_name: str) -> None:
    """Under pmap, BatchNorm statistics are reduced over ``axis_name`` so they are global-batch
    statistics, as the jit-over-a-Mesh step computes them."""
    for _, module in nnx.iter_modules(model):
        if isinstance(module, nnx.BatchNorm):
            module.axis_name = axis_name


class PjitRunner:
    """One jit over the Mesh: batch split over every device, state replicated along 'data' and
    split along 'fsdp' (``state_sharding``; default replicated), state donated."""

    def __init__(self, mesh, train_step, eval_step, state_sharding=None, compiler_options=None):
        self.rep = sharding.replicated(mesh)
        self.data = sharding.batch_sharded(mesh)
        self.state_sharding = self.rep if state_sharding is None else state_sharding
        st = self.state_sharding
        params_sh = st if st is self.rep else st["params"]
        stats_sh = st if st is self.rep else st["batch_stats"]
        self.train = jax.jit(
            train_step, in_shardings=(st, self.data), out_shardings=(st, self.rep), donate_argnums=(0,),
            compiler_options=compiler_options,
        )
        self.evaluate = jax.jit(
            eval_step, in_shardings=(params_sh, stats_sh, self.data), out_shardings=self.rep,
            compiler_options=compiler_options,
        )

    def put_state(self, state):
        return jax.device_put(state, self.state_sharding)

    def batch(self, local):
        return sharding.to_global(local, self.data)

    def host_state(self, state):
        return state


class PmapRunner:
    """The same step under ``jax.pmap`` over this process's devices; the state is replicated
    (``state_sharding``: how a checkpoint is restored before ``put_state``)."""

    def __init__(self, mesh, train_step_pmap, eval_step_pmap):
        self.n = jax.local_device_count()
        self.state_sharding = sharding.replicated(mesh)
        self.train = jax.pmap(train_step_pmap, axis_name="data", donate_argnums=(0,))
        self.evaluate = jax.pmap(eval_step_pmap, axis_name="data")

    def put_state(self, state):
        # a leading device axis; pmap places one slice per local device
        return jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (self.n, *np.shape(x))), state)

    def batch(self, local):
        return jax.tree.map(lambda x: x.reshape(self.n, -1, *x.shape[1:]), local)

    def host_state(self, state):
        return jax.tree.map(lambda x: x[0], state)


def create_runner(config, mesh, built, schedules, num_classes: int):
    """The train and eval steps (pure functions of the state and a batch) of ``built``
    (state.create's), wrapped as the config's parallelism asks: one jit over the Mesh (pjit) or
    pmap."""
    model, rest, tx, model_ema = built.model, built.rest, built.tx, built.model_ema
    eval_model = nnx.view(model, deterministic=True, use_running_average=True, raise_if_not_found=False)
    eval_graph = nnx.split(eval_model, nnx.Param, nnx.BatchStat, ...)[0]
    train_graph = nnx.split(model, nnx.Param, nnx.BatchStat, ...)[0]
    args = (train_graph, rest, tx, schedules[0], num_classes, config.label_smoothing, config.grad_accum_steps)
    norm = dict(mean=tuple(config.mean), std=tuple(config.std))  # for uint8 batches (transfer_dtype)
    extras = dict(mixup=mix.Mixup.from_config(config, num_classes), model_ema=model_ema, **norm)
    if config.parallelism == "pmap":
        return PmapRunner(mesh, make_train_step(*args, axis_name="data", **extras),
                          make_eval_step(eval_graph, rest, num_classes, axis_name="data", **norm))
    options = xla_cpu.compiler_options(config.cpu_dots, mesh.devices.flat[0].platform)
    runner = PjitRunner(mesh, make_train_step(*args, **extras), make_eval_step(eval_graph, rest, num_classes, **norm),
                        state_sharding=built.sharding, compiler_options=options)
    per_device, total = sharding.bytes_per_device(built.state, runner.state_sharding)
    log.info("mesh %s: train state %.3f MiB, %.3f MiB per device (built in at most %.3f MiB per device)",
             dict(mesh.shape), total / 2**20, per_device / 2**20, built.build_bytes / 2**20)
    return runner


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


