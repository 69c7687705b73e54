"""The device mesh and the shardings of a data-parallel step."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def create_mesh() -> Mesh:
    """A 1-d 'data' mesh over every device of every process."""
    return Mesh(np.asarray(jax.devices()).reshape(-1), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split along 'data'."""
    return NamedSharding(mesh, P("data"))


def check_batch(global_batch_size: int) -> int:
    """Returns the per-process batch; the global batch must split evenly over devices."""
    n_dev, n_proc = jax.device_count(), jax.process_count()
    if global_batch_size % n_dev:
        raise ValueError(
            f"global_batch_size {global_batch_size} is not divisible by the {n_dev} devices; "
            f"use a multiple of {n_dev}"
        )
    return global_batch_size // n_proc


def to_global(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """Assembles each process's local batch into one global jax.Array sharded over the mesh."""
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
