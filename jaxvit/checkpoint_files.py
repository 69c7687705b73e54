"""Model checkpoints on disk: where they live and how they are written.

``locate`` finds the weights in a model checkpoint (``DIR/jaxvit.json`` + ``DIR/weights/``,
as ``python -m convert`` writes it or a run keeps as ``WORKDIR/best``) or a train workdir
(``WORKDIR/checkpoints/<step>/{state,meta}``, its latest completed step); ``read_weights``
restores them onto one device whatever mesh wrote them; ``save_model_checkpoint`` writes one
atomically (a staging dir, then a rename). How weights then fit a model: ``jaxvit.weights``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxvit.errors import CheckpointError, CheckpointNotFoundError

META_FILE = "jaxvit.json"
WEIGHTS_DIR = "weights"
COMMIT_FILE = "commit_success.txt"  # orbax writes it last, on every filesystem
COLLECTIONS = ("params", "batch_stats")
EMA_COLLECTIONS = ("ema_params", "ema_batch_stats")


# --- where checkpoints live -------------------------------------------------------------
@dataclasses.dataclass
class Located:
    """A checkpoint found on disk, its weights not yet read."""

    directory: str
    weights: str  # the orbax pytree dir
    meta: dict  # {'model': name, 'kwargs': {...}, 'class_names': [...], 'step': N, ...}
    kind: str  # 'model' | 'workdir'
    workdir: str | None = None  # the train workdir it belongs to, if any


def _item_metadata(path: str) -> dict:
    """The orbax pytree's metadata (shapes and dtypes per leaf): one read of its index, which
    for a model of ~2,000 tensors (Inception-v4) takes about a second here."""
    with ocp.StandardCheckpointer() as ckptr:
        return dict(ckptr.metadata(path).item_metadata)


def _step_dirs(ckpt_dir: str) -> list[str]:
    return [d for d in os.listdir(ckpt_dir) if d.isdigit()] if os.path.isdir(ckpt_dir) else []


def latest_steps(ckpt_dir: str) -> list[int]:
    """Completed checkpoint steps in ``ckpt_dir``: orbax's ``*.orbax-checkpoint-tmp-*`` dirs and
    step dirs without its commit marker (a save cut short where rename is not atomic) are not."""
    return sorted(
        int(d) for d in _step_dirs(ckpt_dir) if os.path.exists(os.path.join(ckpt_dir, d, COMMIT_FILE))
    )


def locate(directory: str) -> Located:
    """Finds the weights in a model checkpoint, a train workdir, its ``checkpoints`` dir or one
    of its step dirs (CheckpointNotFoundError, one line, if there are none)."""
    directory = os.path.abspath(os.path.expanduser(directory))
    if os.path.exists(os.path.join(directory, META_FILE)):
        with open(os.path.join(directory, META_FILE)) as f:
            meta = json.load(f)
        return Located(directory, os.path.join(directory, WEIGHTS_DIR), meta, "model")
    if os.path.isdir(os.path.join(directory, "state")) and os.path.isdir(os.path.join(directory, "meta")):
        step_dir = directory  # WORKDIR/checkpoints/<step>
    else:
        ckpt_dir = directory
        if os.path.isdir(os.path.join(directory, "checkpoints")):
            ckpt_dir = os.path.join(directory, "checkpoints")
        steps = latest_steps(ckpt_dir)
        if not steps:
            what = "does not exist" if not os.path.exists(directory) else "holds no jaxvit checkpoint"
            raise CheckpointNotFoundError(
                f"{directory} {what}: expected {META_FILE} (from `python -m convert`, or a run's best/) "
                "or a train workdir with checkpoints/<step>/"
            )
        step_dir = os.path.join(ckpt_dir, str(steps[-1]))
    with open(os.path.join(step_dir, "meta", "metadata")) as f:
        run_meta = json.load(f)
    meta = dict(run_meta.get("model") or {})
    meta.update({k: v for k, v in run_meta.items() if k != "model"})
    workdir = os.path.dirname(os.path.dirname(step_dir))
    return Located(directory, os.path.join(step_dir, "state"), meta, "workdir", workdir)


def read_model_meta(directory: str) -> dict:
    """Just the metadata, ``{'model': name, 'kwargs': {...}, ...}``: cheap, reads no weights."""
    return locate(directory).meta


def read_model_checkpoint(directory: str, ema: bool = False) -> tuple[dict[str, dict], dict]:
    """(trees {'params', ['batch_stats']}, meta) from any place ``locate`` accepts; ``ema``
    takes the EMA weights instead (CheckpointError if there are none)."""
    found = locate(directory)
    return read_weights(found, ema), found.meta


def read_weights(found: Located, ema: bool = False, on_host: bool = False) -> dict[str, dict]:
    """The checkpoint's {'params', ['batch_stats']} (its EMA weights with ``ema``), on this
    process's first device, or as numpy arrays ``on_host`` (for a model larger than a device)."""
    metadata = _item_metadata(found.weights)
    keys = {k for k, v in metadata.items() if jax.tree.leaves(v)}
    names = EMA_COLLECTIONS if ema else COLLECTIONS
    if names[0] not in keys:
        if ema:
            raise CheckpointError(
                f"{found.directory} holds no EMA weights (written without --config.model_ema=True); "
                "drop --ema / init_from_ema, or train with --config.model_ema=True"
            )
        raise CheckpointError(f"{found.directory}: its weights hold no params (keys {sorted(keys)})")
    tree = restore_on_one_device(found.weights, only=[n for n in names if n in keys], on_host=on_host,
                                 metadata=metadata)
    return {plain: tree[name] for plain, name in zip(COLLECTIONS, names) if name in tree}


def restore_on_one_device(path: str, only: list[str] | None = None, on_host: bool = False,
                          metadata: dict | None = None) -> dict:
    """Restores an orbax pytree (or its top-level entries ``only``) onto this process's first
    device (``on_host``: as numpy arrays), whatever mesh wrote it (orbax otherwise insists on
    the saving topology). ``metadata``: the pytree's, where the caller has read it already."""
    one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    tree = dict(metadata if metadata is not None else _item_metadata(path))
    if only is not None:
        tree = {k: v for k, v in tree.items() if k in only}
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one), tree)
    if on_host:
        restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target)
    else:
        restore_args = ocp.checkpoint_utils.construct_restore_args(target)
    with ocp.PyTreeCheckpointer() as ckptr:
        return ckptr.restore(
            path,
            args=ocp.args.PyTreeRestore(item=target, restore_args=restore_args, partial_restore=only is not None),
        )


# --- writing a model checkpoint -----------------------------------------------------------
def _sync(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def save_model_checkpoint(
    directory: str, trees: Mapping[str, Any], meta: dict, *, replace: bool = False
) -> None:
    """Writes ``trees`` ({'params', ['batch_stats'], ['ema_params', 'ema_batch_stats']}) and
    ``meta`` to ``directory`` atomically: a staging dir, then a rename; a reader never sees a
    half-written one. An existing non-empty ``directory`` is refused unless ``replace``.

    Every process calls it (orbax writes sharded arrays from all hosts); process 0 renames.
    """
    directory = os.path.abspath(directory)
    if not replace and os.path.exists(directory) and os.listdir(directory):
        raise FileExistsError(f"{directory} exists and is not empty; pick a new --out directory")
    parent, base = os.path.split(directory)
    staging, old = os.path.join(parent, f".{base}.partial"), os.path.join(parent, f".{base}.old")
    primary = jax.process_index() == 0
    if primary:
        os.makedirs(parent, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)  # a save cut short before
    _sync(f"save {directory}: staging")
    trees = {k: v for k, v in trees.items() if jax.tree.leaves(v)}
    meta = dict(meta, ema="ema_params" in trees)
    try:
        with ocp.StandardCheckpointer() as ckptr:
            ckptr.save(os.path.join(staging, WEIGHTS_DIR), trees)
        if primary:
            with open(os.path.join(staging, META_FILE), "w") as f:
                json.dump(meta, f, indent=2, sort_keys=True)
            shutil.rmtree(old, ignore_errors=True)
            if os.path.exists(directory):
                os.rename(directory, old)
            os.rename(staging, directory)
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        if primary:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    _sync(f"save {directory}: done")


def recover_interrupted_save(directory: str) -> None:
    """A replace cut short between its two renames leaves ``.<name>.old`` and no ``<name>``:
    put the old one back."""
    parent, base = os.path.split(os.path.abspath(directory))
    old = os.path.join(parent, f".{base}.old")
    if not os.path.exists(directory) and os.path.isdir(old):
        os.rename(old, directory)
