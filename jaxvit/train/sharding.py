"""The device mesh and the shardings of the step: batch over every device, params over 'fsdp'.

The mesh has two axes, ``('data', 'fsdp')``. The batch is split over both (every
device holds a different slice of it); params, optimizer state and EMA are
replicated along 'data' and, when the 'fsdp' axis is larger than 1, each array
of at least ``MIN_SHARD_SIZE`` elements is split along its largest dimension
that the axis divides (big_vision's "fsdp" strategy). XLA inserts the
all-gathers and reduce-scatters; the numbers are those of plain data parallel.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxvit.errors import ConfigError

AXES = ("data", "fsdp")
MIN_SHARD_SIZE = 1024  # smaller arrays stay replicated: splitting them costs more than it saves


def mesh_shape(data: int = -1, fsdp: int = 1, n_devices: int | None = None) -> tuple[int, int]:
    """(data, fsdp) sizes over ``n_devices`` (default: all devices); -1 means "the rest"."""
    n = jax.device_count() if n_devices is None else n_devices
    if fsdp < 1 or n % fsdp:
        raise ConfigError(f"config.mesh.fsdp={fsdp} must be >= 1 and divide the {n} devices")
    if data == -1:
        data = n // fsdp
    if data * fsdp != n:
        raise ConfigError(
            f"config.mesh data={data} x fsdp={fsdp} = {data * fsdp} devices, but there are {n}; "
            "set --config.mesh.data=-1 to use the rest"
        )
    return data, fsdp


def create_mesh(data: int = -1, fsdp: int = 1) -> Mesh:
    """A ('data', 'fsdp') mesh over every device of every process.

    Devices come in process order, so each process's devices hold a contiguous
    part of the global batch (what ``make_array_from_process_local_data`` needs).
    """
    shape = mesh_shape(data, fsdp)
    return Mesh(np.asarray(jax.devices()).reshape(shape), AXES)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over every device of the mesh (all of its axes)."""
    return NamedSharding(mesh, P(tuple(mesh.axis_names)))


def fsdp_spec(shape: tuple[int, ...], fsdp: int) -> P:
    """Split the largest dimension that ``fsdp`` divides; replicate small or indivisible arrays."""
    if fsdp <= 1 or int(np.prod(shape, dtype=np.int64)) < MIN_SHARD_SIZE:
        return P()
    for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
        if shape[dim] % fsdp == 0:
            spec = [None] * len(shape)
            spec[dim] = "fsdp"
            return P(*spec)
    return P()


def state_shardings(mesh: Mesh, state: Any) -> Any:
    """A NamedSharding per leaf of ``state`` (arrays or ShapeDtypeStructs), by the fsdp rule."""
    fsdp = mesh.shape.get("fsdp", 1)
    return jax.tree.map(lambda x: NamedSharding(mesh, fsdp_spec(tuple(np.shape(x)), fsdp)), state)


def bytes_per_device(state: Any, shardings: Any) -> tuple[int, int]:
    """(bytes of ``state`` on one device under ``shardings``, bytes of the whole state)."""
    total = per_device = 0
    for x, sh in zip(jax.tree.leaves(state), jax.tree.leaves(shardings)):
        size = int(np.prod(np.shape(x), dtype=np.int64)) * np.dtype(x.dtype).itemsize
        shard = sh.shard_shape(tuple(np.shape(x)))
        total += size
        per_device += int(np.prod(shard, dtype=np.int64)) * np.dtype(x.dtype).itemsize
    return per_device, total


def check_batch(global_batch_size: int) -> int:
    """Returns the per-process batch; the global batch must split evenly over devices."""
    n_dev, n_proc = jax.device_count(), jax.process_count()
    if global_batch_size % n_dev:
        raise ConfigError(
            f"global_batch_size {global_batch_size} is not divisible by the {n_dev} devices; "
            f"use a multiple of {n_dev}"
        )
    return global_batch_size // n_proc


def to_global(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """Assembles each process's local batch into one global jax.Array sharded over the mesh."""
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
