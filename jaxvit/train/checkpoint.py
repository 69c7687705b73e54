"""Orbax checkpoints: model weights (converter output, init_from) and full train state.

Two layouts, both plain orbax:
- a *model checkpoint* directory: ``weights/`` (a pytree ``{'params': ..., ['batch_stats': ...]}``)
  and ``jaxvit.json`` (model name and constructor keywords), written by ``python -m convert``;
- a *train workdir*: ``checkpoints/<step>/{state,meta}`` managed by ``CheckpointManager``.
``load_model_weights`` accepts either, taking the latest step of a workdir.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

META_FILE = "jaxvit.json"


# --- flat path helpers -------------------------------------------------------------
def flatten(tree: dict, prefix: tuple = ()) -> dict[str, Any]:
    """Nested dict -> {'blocks.0.attn.qkv.kernel': leaf} (keys stringified)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        path = prefix + (str(k),)
        if isinstance(v, dict):
            out.update(flatten(v, path))
        else:
            out[".".join(path)] = v
    return out


def unflatten_like(flat: dict[str, Any], like: dict, prefix: tuple = ()) -> dict:
    """Rebuilds ``like``'s nesting (int keys included) from a flat dict keyed as ``flatten``."""
    out = {}
    for k, v in like.items():
        path = prefix + (str(k),)
        out[k] = unflatten_like(flat, v, path) if isinstance(v, dict) else flat[".".join(path)]
    return out


def collections_of(model: nnx.Module) -> dict[str, dict]:
    """The model's persistent state as pure dicts: params and (if any) batch_stats."""
    out = {"params": nnx.to_pure_dict(nnx.state(model, nnx.Param))}
    stats = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
    if stats:
        out["batch_stats"] = stats
    return out


def assign(model: nnx.Module, trees: dict[str, dict], source: str = "checkpoint") -> None:
    """Writes ``trees`` into ``model``, checking every name and shape first."""
    current = collections_of(model)
    want = flatten(current)
    have = flatten({k: v for k, v in trees.items() if k in current})
    missing = sorted(set(want) - set(have))
    unexpected = sorted(set(have) - set(want))
    bad = [
        f"{k}: {source} {tuple(np.shape(have[k]))} vs model {tuple(np.shape(want[k]))}"
        for k in sorted(set(want) & set(have))
        if tuple(np.shape(have[k])) != tuple(np.shape(want[k]))
    ]
    if missing or unexpected or bad:
        lines = [f"{source} does not fit the model:"]
        if missing:
            lines.append(f"  missing from {source}: {', '.join(missing[:10])}")
        if unexpected:
            lines.append(f"  not in the model: {', '.join(unexpected[:10])}")
        lines += [f"  shape mismatch {b}" for b in bad[:10]]
        lines.append("  (build the model with the same name and keywords the checkpoint was made with)")
        raise ValueError("\n".join(lines))
    for name, tree in current.items():
        values = unflatten_like(flatten({name: trees[name]}), {name: tree})[name]
        state = nnx.state(model, nnx.Param if name == "params" else nnx.BatchStat)
        nnx.replace_by_pure_dict(
            state,
            # jnp.array copies: the model must not alias the caller's buffers (e.g. a torch model's).
            jax.tree.map(lambda old, new: jnp.array(new, dtype=old.dtype), tree, values),
        )
        nnx.update(model, state)


# --- model checkpoints -------------------------------------------------------------
def save_model_checkpoint(directory: str, trees: dict[str, dict], meta: dict) -> None:
    """Writes weights and metadata to ``directory`` atomically: a staging dir, then a rename.

    An existing non-empty ``directory`` is refused rather than overwritten.
    """
    directory = os.path.abspath(directory)
    if os.path.exists(directory) and os.listdir(directory):
        raise FileExistsError(f"{directory} exists and is not empty; pick a new --out directory")
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".partial-", dir=parent)
    try:
        with ocp.StandardCheckpointer() as ckptr:
            ckptr.save(os.path.join(staging, "weights"), jax.tree.map(np.asarray, trees))
        with open(os.path.join(staging, META_FILE), "w") as f:
            json.dump(meta, f, indent=2, sort_keys=True)
        if os.path.exists(directory):
            os.rmdir(directory)
        os.rename(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _locate(directory: str) -> tuple[str, str, bool]:
    """(weights dir, meta file, is a model checkpoint) for a model checkpoint, a train
    workdir or its checkpoints dir (the latest step)."""
    directory = os.path.abspath(directory)
    if os.path.exists(os.path.join(directory, META_FILE)):
        return os.path.join(directory, "weights"), os.path.join(directory, META_FILE), True
    ckpt_dir = directory
    if os.path.isdir(os.path.join(directory, "checkpoints")):
        ckpt_dir = os.path.join(directory, "checkpoints")
    steps = latest_steps(ckpt_dir)
    if not steps:
        raise FileNotFoundError(
            f"no jaxvit checkpoint in {directory}: expected {META_FILE} (from `python -m convert`) "
            "or a train workdir with checkpoints/<step>/"
        )
    step_dir = os.path.join(ckpt_dir, str(steps[-1]))
    return os.path.join(step_dir, "state"), os.path.join(step_dir, "meta", "metadata"), False


def read_model_meta(directory: str) -> dict:
    """Just the metadata, ``{'model': name, 'kwargs': {...}}``: cheap, reads no weights."""
    _, meta_file, is_model = _locate(directory)
    with open(meta_file) as f:
        meta = json.load(f)
    return meta if is_model else meta.get("model", {})


def read_model_checkpoint(directory: str) -> tuple[dict[str, dict], dict]:
    """Returns (trees, meta) from a model checkpoint or a train workdir / its checkpoints dir."""
    weights, _, is_model = _locate(directory)
    meta = read_model_meta(directory)
    state = restore_on_one_device(weights)
    if is_model:
        return state, meta
    trees = {"params": state["params"]}
    if state.get("batch_stats"):
        trees["batch_stats"] = state["batch_stats"]
    return trees, meta


def restore_on_one_device(path: str) -> dict:
    """Restores an orbax pytree onto this process's first device, whatever mesh wrote it
    (orbax otherwise insists on the saving topology)."""
    one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    with ocp.StandardCheckpointer() as ckptr:
        tree = ckptr.metadata(path).item_metadata
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one), tree)
        return ckptr.restore(path, target)


COMMIT_FILE = "commit_success.txt"  # orbax writes it last, on every filesystem


def _step_dirs(ckpt_dir: str) -> list[str]:
    return [d for d in os.listdir(ckpt_dir) if d.isdigit()] if os.path.isdir(ckpt_dir) else []


def latest_steps(ckpt_dir: str) -> list[int]:
    """Completed checkpoint steps in ``ckpt_dir``: orbax's ``*.orbax-checkpoint-tmp-*`` dirs and
    step dirs without its commit marker (a save cut short where rename is not atomic) are not."""
    return sorted(int(d) for d in _step_dirs(ckpt_dir) if os.path.exists(os.path.join(ckpt_dir, d, COMMIT_FILE)))


def set_aside_incomplete(ckpt_dir: str) -> list[str]:
    """Renames step dirs lacking orbax's commit marker to ``<step>.incomplete-<time>`` (nothing is
    deleted), so neither resume nor a later save at that step takes them; returns the new names."""
    moved = []
    for d in _step_dirs(ckpt_dir):
        if not os.path.exists(os.path.join(ckpt_dir, d, COMMIT_FILE)):
            new = f"{d}.incomplete-{int(time.time())}"
            os.rename(os.path.join(ckpt_dir, d), os.path.join(ckpt_dir, new))
            moved.append(new)
    return moved


def load_model_weights(model: nnx.Module, directory: str) -> dict:
    trees, meta = read_model_checkpoint(directory)
    assign(model, trees, source=f"checkpoint {directory}")
    return meta
