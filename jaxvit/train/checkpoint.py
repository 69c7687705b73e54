"""The train state of a workdir: ``WORKDIR/checkpoints/<step>/{state,meta}`` (orbax,
``CheckpointManager``), what it was written with, and whether this run may resume it.

Model checkpoints (weights for create_model, init_from, predict, convert) are
``jaxvit.weights``; its names are re-exported here for older imports.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxvit.checkpoint_files import _step_dirs
from jaxvit.errors import CheckpointError
from jaxvit.registry import parse_model_args
from jaxvit.weights import (  # noqa: F401  (re-exported)
    COMMIT_FILE,
    META_FILE,
    Diff,
    assign,
    collections_of,
    describe,
    flatten,
    latest_steps,
    load_model_weights,
    path_name,
    read_model_checkpoint,
    read_model_meta,
    restore_on_one_device,
    save_model_checkpoint,
    unflatten_like,
)

# What a resumed run must share with the one that wrote the workdir: the model's shapes and
# the input position (step x global batch).
RUN_KEYS = ("model", "model_args", "img_size", "patch_size", "num_classes", "global_batch_size")


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


def written_with(workdir: str) -> tuple[int, dict] | None:
    """(latest step, the RUN_KEYS it was written with) from the workdir's config.json and its
    latest checkpoint's meta; None when there is nothing to resume."""
    steps = latest_steps(os.path.join(workdir, "checkpoints"))
    if not steps:
        return None
    with open(os.path.join(workdir, "checkpoints", str(steps[-1]), "meta", "metadata")) as f:
        meta = json.load(f)
    kwargs = (meta.get("model") or {}).get("kwargs") or {}
    run = dict(
        model=(meta.get("model") or {}).get("model"),
        num_classes=kwargs.get("num_classes"),
        global_batch_size=meta.get("global_batch_size"),
        img_size=kwargs.get("img_size"),
        patch_size=kwargs.get("patch_size", 0),
        model_args=None,
    )
    config_file = os.path.join(workdir, "config.json")
    if os.path.exists(config_file):
        with open(config_file) as f:
            config = json.load(f)
        run.update(
            model=config.get("model", run["model"]),
            img_size=config.get("img_size", run["img_size"]),
            patch_size=config.get("patch_size", run["patch_size"]),
            global_batch_size=config.get("global_batch_size", run["global_batch_size"]),
            model_args=parse_model_args(config.get("model_args", "")),
        )
    return steps[-1], run


def check_resumable(workdir: str, asked: Mapping[str, Any], abstract_state: Any) -> None:
    """Raises CheckpointError (one line) before anything is restored or written when the
    workdir's checkpoints were written by another model or config than ``asked`` (RUN_KEYS),
    or hold a train state of other names or shapes (another optimizer, EMA on or off)."""
    found = written_with(workdir)
    if found is None:
        return
    step, written = found
    differs = [
        f"{k} {_show(written[k])} -> {_show(asked[k])}"
        for k in RUN_KEYS
        if written.get(k) is not None and _norm(written[k]) != _norm(asked[k])
    ]
    state_dir = os.path.join(workdir, "checkpoints", str(step), "state")
    with ocp.StandardCheckpointer() as ckptr:
        have = {
            path_name(p): m
            for p, m in jax.tree_util.tree_flatten_with_path(ckptr.metadata(state_dir).item_metadata)[0]
        }
    want = {path_name(p): x for p, x in jax.tree_util.tree_flatten_with_path(abstract_state)[0]}
    diff = Diff.of(have, want)
    if not differs and not diff:
        return
    parts = [
        f"workdir {workdir} holds a run (step {step}) of {_run(written)}; this config asks for {_run(asked)}"
    ]
    if differs:
        parts.append("differs: " + ", ".join(differs))
    if diff:
        parts.append(diff.summary().replace("checkpoint", "workdir"))
    parts.append(
        f"fix: a new --workdir for this config, or --workdir=NEW --config.init_from={workdir} to start "
        "from its weights (with --config.init_from_strict=False where shapes differ)"
    )
    raise CheckpointError("; ".join(parts))


def _norm(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return tuple(_norm(x) for x in v)
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    return v


def _show(v: Any) -> str:
    if isinstance(v, dict):
        return repr(",".join(f"{k}={_norm(x)!r}" for k, x in v.items()))
    return repr(_norm(v))


def _run(run: Mapping[str, Any]) -> str:
    kwargs = dict(run.get("model_args") or {})
    kwargs.update({k: run[k] for k in ("num_classes", "img_size", "patch_size") if run.get(k)})
    return f"{describe(run.get('model'), kwargs)} at global_batch_size {run.get('global_batch_size')}"
