"""The one path for weights: every loader (``create_model(checkpoint=)``, the trainer's
``init_from``, ``python -m jaxvit.predict``, ``python -m convert.export``) reads and fits
weights here.

Where weights live (``locate``):
- a *model checkpoint*: ``DIR/jaxvit.json`` (model name, constructor keywords, ...) and
  ``DIR/weights/`` (orbax: ``params``, ``batch_stats`` and, optionally, ``ema_params``,
  ``ema_batch_stats``), as written by ``python -m convert`` or kept by a run as ``WORKDIR/best``;
- a *train workdir*, ``WORKDIR/checkpoints/<step>/{state,meta}`` (its latest step), the
  ``checkpoints`` dir, or one step dir; the EMA weights are the state's ``ema_params``.

How they fit a model (``load_into``), as timm's pretrained loading does: a classifier
(found through the model's own ``get_classifier()``) whose class count differs is
re-initialized, an absolute position table (``pos_embed``, TNT's ``patch_pos``) is resampled
to the model's grid with torch's antialiased bicubic kernel, and each change is logged.
Anything else that differs is an error (one line naming what the checkpoint was written
with, what was asked for, the first keys with both shapes, and the fix); ``strict=False``
loads what matches and lists the rest, as timm's ``load_state_dict(strict=False)``.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

# Where checkpoints live and how they are written: jaxvit/checkpoint_files.py, re-exported here
# (callers read and write weights through this one module).
from jaxvit.checkpoint_files import (  # noqa: F401  (re-exported)
    COLLECTIONS,
    COMMIT_FILE,
    EMA_COLLECTIONS,
    META_FILE,
    WEIGHTS_DIR,
    Located,
    latest_steps,
    locate,
    read_model_checkpoint,
    read_model_meta,
    read_weights,
    recover_interrupted_save,
    restore_on_one_device,
    save_model_checkpoint,
)
from jaxvit.errors import CheckpointError
from jaxvit.layers.pos_embed import resample_abs_pos_embed

log = logging.getLogger("jaxvit")

POSITION_TABLES = ("pos_embed", "patch_pos")  # absolute (1, prefix + H*W, D) tables, by name

Log = Callable[[str], None]


# --- flat names ----------------------------------------------------------------------
def flatten(tree: Mapping, prefix: tuple = ()) -> dict[str, Any]:
    """Nested dict -> {'params.blocks.0.attn.qkv.kernel': leaf} (keys stringified)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        path = prefix + (str(k),)
        if isinstance(v, Mapping):
            out.update(flatten(v, path))
        else:
            out[".".join(path)] = v
    return out


def unflatten_like(flat: dict[str, Any], like: Mapping, prefix: tuple = ()) -> dict:
    """Rebuilds ``like``'s nesting (int keys included) from a flat dict keyed as ``flatten``."""
    out = {}
    for k, v in like.items():
        path = prefix + (str(k),)
        out[k] = unflatten_like(flat, v, path) if isinstance(v, Mapping) else flat[".".join(path)]
    return out


def path_name(path: tuple) -> str:
    """A jax key path as a flat name, e.g. 'opt_state.0.mu.head.kernel'."""
    parts = []
    for key in path:
        for attr in ("key", "idx", "name"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return ".".join(parts)


def natural(name: str) -> tuple:
    """Sort key: params first (what a user recognizes), blocks.2 before blocks.10."""
    return (not name.startswith("params."), [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)])


def collections_of(model: nnx.Module) -> dict[str, dict]:
    """The model's persistent state as pure dicts: params and (if any) batch_stats."""
    out = {"params": nnx.to_pure_dict(nnx.state(model, nnx.Param))}
    stats = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
    if stats:
        out["batch_stats"] = stats
    return out


def _shape(x: Any) -> tuple:
    return tuple(np.shape(x)) if not hasattr(x, "shape") else tuple(x.shape)


def describe(name: str | None, kwargs: Mapping | None) -> str:
    """'vit_tiny_patch16_224(depth=2, embed_dim=32, ...)': a model by name and keywords."""
    kw = ", ".join(f"{k}={_plain(v)!r}" for k, v in sorted((kwargs or {}).items()) if k != "dtype")
    return f"{name or '<unnamed model>'}({kw})"


def _plain(v: Any) -> Any:
    return tuple(_plain(x) for x in v) if isinstance(v, (list, tuple)) else v


# --- writing into a model --------------------------------------------------------------
def assign(model: nnx.Module, trees: Mapping[str, Mapping], source: str = "checkpoint") -> None:
    """Writes ``trees`` into ``model`` exactly: every name and shape must match (else one-line
    CheckpointError). ``load_into`` is the forgiving entry point."""
    current = collections_of(model)
    want = flatten(current)
    have = flatten({k: v for k, v in trees.items() if k in current})
    diff = Diff.of(have, want)
    if diff:
        raise CheckpointError(
            f"{source} does not fit the model; {diff.summary()}; "
            "fix: build the model with the name and keywords the weights were made with"
        )
    for name, tree in current.items():
        values = unflatten_like(flatten({name: trees[name]}), {name: tree})[name]
        state = nnx.state(model, nnx.Param if name == "params" else nnx.BatchStat)
        nnx.replace_by_pure_dict(
            state,
            # jnp.array copies: the model must not alias the caller's buffers (e.g. a torch model's).
            jax.tree.map(lambda old, new: jnp.array(new, dtype=old.dtype), tree, values),
        )
        nnx.update(model, state)


@dataclasses.dataclass
class Diff:
    """Names and shapes that differ between a checkpoint (``have``) and a model (``want``)."""

    missing: dict[str, tuple]  # in the model only: name -> model shape
    unexpected: dict[str, tuple]  # in the checkpoint only: name -> checkpoint shape
    mismatched: dict[str, tuple[tuple, tuple]]  # name -> (checkpoint shape, model shape)

    @classmethod
    def of(cls, have: Mapping[str, Any], want: Mapping[str, Any]) -> Diff:
        return cls(
            {k: _shape(want[k]) for k in sorted(set(want) - set(have), key=natural)},
            {k: _shape(have[k]) for k in sorted(set(have) - set(want), key=natural)},
            {
                k: (_shape(have[k]), _shape(want[k]))
                for k in sorted(set(have) & set(want), key=natural)
                if _shape(have[k]) != _shape(want[k])
            },
        )

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.mismatched)

    def summary(self, first: int = 2) -> str:
        """One line: each kind with its count and the first ``first`` names, both shapes."""
        parts = []
        if self.mismatched:
            items = [
                f"{k} checkpoint {a} vs model {b}" for k, (a, b) in list(self.mismatched.items())[:first]
            ]
            parts.append(f"shape differs ({len(self.mismatched)}): {', '.join(items)}")
        if self.unexpected:
            items = [f"{k} {s}" for k, s in list(self.unexpected.items())[:first]]
            parts.append(f"in the checkpoint, not the model ({len(self.unexpected)}): {', '.join(items)}")
        if self.missing:
            items = [f"{k} {s}" for k, s in list(self.missing.items())[:first]]
            parts.append(f"in the model, not the checkpoint ({len(self.missing)}): {', '.join(items)}")
        more = (
            "" if all(len(d) <= first for d in (self.missing, self.unexpected, self.mismatched)) else ", ..."
        )
        return "; ".join(parts) + more


# --- the classifier --------------------------------------------------------------------
def classifier_paths(model: nnx.Module) -> list[str]:
    """Dotted paths of the module(s) ``model.get_classifier()`` returns: 'head', 'head.fc',
    'last_linear', 'to_logits.2', ('head', 'head_dist') for a distilled DeiT; [] when headless."""
    clf = model.get_classifier() if hasattr(model, "get_classifier") else None
    targets = [c for c in (clf if isinstance(clf, (tuple, list)) else (clf,)) if c is not None]
    paths = []
    for target in targets:
        paths += [".".join(map(str, p)) for p, node in nnx.iter_graph(model) if node is target]
    return list(dict.fromkeys(paths))


def _checkpoint_classifier_paths(meta: Mapping) -> list[str]:
    """The classifier paths of the model a checkpoint was written by, built abstractly (no
    compute): needed when the model it loads into is headless (``num_classes=0``)."""
    from jaxvit._compat import eval_shape
    from jaxvit.registry import get_entry

    name, kwargs = meta.get("model"), dict(meta.get("kwargs") or {})
    if not name:
        return []
    try:
        abstract = eval_shape(lambda: get_entry(name).fn(**kwargs))
    except Exception:  # an old or foreign meta: then the classifier is simply not found
        return []
    return classifier_paths(abstract)


def _under(flat_name: str, prefix: str) -> bool:
    rest = flat_name.split(".", 1)[1] if "." in flat_name else flat_name  # drop 'params.'
    return rest == prefix or rest.startswith(prefix + ".")


def _classes(shapes) -> str:
    return "/".join(str(c) for c in sorted({s[-1] for s in shapes if s}))


# --- fitting a checkpoint to a model -----------------------------------------------------
@dataclasses.dataclass
class LoadReport:
    """What ``load_into`` did: every change, and (strict=False) what it left at init."""

    changes: list[str]
    reinitialized: set[str]  # flat names kept at the model's init: a new classifier
    diff: Diff  # after adaptation; non-empty only with strict=False

    @property
    def kept_at_init(self) -> set[str]:
        """Every model tensor not taken from the checkpoint."""
        return self.reinitialized | set(self.diff.missing) | set(self.diff.mismatched)


def load_into(model: nnx.Module, trees: Mapping[str, Mapping], **options: Any) -> LoadReport:
    """Fits ``trees`` ({'params', ['batch_stats']}) to ``model`` and writes them into it;
    ``options`` are ``fit``'s (strict, source, meta, asked, fix, log_fn).

    A classifier with another class count is re-initialized and absolute position tables are
    resampled to the model's grid; any other difference raises CheckpointError (``strict``) or
    is listed and left at the model's init (``strict=False``). ``meta`` (the checkpoint's
    model and keywords) and ``asked`` (the model asked for) name both sides in the error.
    """
    current = collections_of(model)
    loaded, report = fit(model, flatten(current), trees, **options)
    assign(model, unflatten_like(loaded, current), source=options.get("source", "checkpoint"))
    return report


def fit(
    model: nnx.Module,
    current: Mapping[str, Any],
    trees: Mapping[str, Mapping],
    *,
    strict: bool = True,
    source: str = "checkpoint",
    meta: Mapping | None = None,
    asked: str | None = None,
    fix: str = "build the model with the checkpoint's name and keywords, or load with strict=False",
    log_fn: Log | None = None,
) -> tuple[dict[str, Any], LoadReport]:
    """``load_into`` without the writing: ``current`` holds the model's flat weights
    ('params.head.kernel': value) and ``model`` may be abstract (``nnx.eval_shape``: only its
    classifier and patch grid are read). Returns the flat weights to load, in which every
    tensor kept at init is ``current``'s own value (the same object), and the report."""
    say = log_fn or log.warning
    want = dict(current)
    have = dict(flatten({k: v for k, v in trees.items() if k in COLLECTIONS}))
    changes: list[str] = []
    reinit: set[str] = set()

    prefixes = classifier_paths(model) or _checkpoint_classifier_paths(meta or {})
    for prefix in prefixes:
        ours = {k for k in want if _under(k, prefix)}
        theirs = {k for k in have if _under(k, prefix)}
        if ours == theirs and all(_shape(have[k]) == _shape(want[k]) for k in ours):
            continue
        their_classes = _classes(_shape(have[k]) for k in theirs)
        if ours and theirs and their_classes == _classes(_shape(want[k]) for k in ours):
            continue  # the same class count: another width or layout is the diff's to report
        for k in theirs:
            del have[k]
        have.update({k: want[k] for k in ours})  # the model's own init
        reinit |= ours
        if not ours:
            changes.append(
                f"{prefix}: the checkpoint's {their_classes}-class classifier dropped "
                "(the model is built without one, num_classes=0)"
            )
        elif not theirs:
            changes.append(f"{prefix}: not in the checkpoint (written without a classifier); initialized")
        else:
            changes.append(
                f"{prefix}: the checkpoint has {their_classes} classes, the model "
                f"{_classes(_shape(want[k]) for k in ours)}; re-initialized"
            )

    for key in [k for k in have if k.rsplit(".", 1)[-1] in POSITION_TABLES and k in want]:
        resampled = _resample_position_table(model, key, have[key], _shape(want[key]))
        if resampled is not None:
            table, note = resampled
            have[key] = table
            changes.append(note)

    diff = Diff.of(have, want)
    if diff and strict:
        raise CheckpointError(_mismatch_message(source, meta, asked, diff, fix))
    for note in changes:
        say(f"{source}: {note}")
    if diff:
        loaded = len(set(have) & set(want)) - len(diff.mismatched) - len(reinit)
        say(
            f"{source} (strict=False): loaded {loaded} of {len(want)} tensors, the rest kept at init; "
            f"{diff.summary(first=10)}"
        )
    loaded = {k: (have[k] if k in have and k not in diff.mismatched else want[k]) for k in want}
    return loaded, LoadReport(changes, reinit, diff)


def _resample_position_table(model, key: str, table: Any, want: tuple) -> tuple[np.ndarray, str] | None:
    have = _shape(table)
    if have == want or len(have) != 3 or len(want) != 3 or have[::2] != want[::2]:
        return None  # equal, or not a (1, N, D) table of this width: the diff reports it
    embed = getattr(model, "patch_embed", None) or getattr(model, "pixel_embed", None)
    grid = tuple(getattr(embed, "grid_size", ()) or ())
    prefix = getattr(model, "num_prefix_tokens", None)
    if prefix is None:
        prefix = int(getattr(model, "cls_token", None) is not None)
    if getattr(model, "no_embed_class", False):
        prefix = 0  # DeiT III, DINOv2 with registers: the table has no rows for the prefix tokens
    if len(grid) != 2 or want[1] != prefix + grid[0] * grid[1]:
        return None
    side = int(round((have[1] - prefix) ** 0.5))
    if side * side != have[1] - prefix:
        return None
    name = key.split(".", 1)[1]
    out = resample_abs_pos_embed(np.asarray(table, np.float32), grid, num_prefix_tokens=prefix)
    return out, (
        f"{name} resampled from a {side}x{side} to a {grid[0]}x{grid[1]} grid "
        f"(bicubic as timm, {prefix} prefix token(s) kept)"
    )


def _mismatch_message(source: str, meta: Mapping | None, asked: str | None, diff: Diff, fix: str) -> str:
    parts = [f"{source} does not fit the model"]
    if meta and meta.get("model"):
        parts.append(f"written by {describe(meta.get('model'), meta.get('kwargs'))}")
    if asked:
        parts.append(f"asked for {asked}")
    parts.append(diff.summary())
    parts.append(f"fix: {fix}")
    return "; ".join(parts)


# --- reading into a model ------------------------------------------------------------
def load_checkpoint(
    model: nnx.Module,
    directory: str,
    *,
    ema: bool = False,
    strict: bool = True,
    asked: str | None = None,
    fix: str | None = None,
    source: str | None = None,
    log_fn: Log | None = None,
) -> tuple[LoadReport, dict]:
    """``read_model_checkpoint`` + ``load_into``: returns (report, the checkpoint's meta)."""
    found = locate(directory)
    trees = read_weights(found, ema)
    what = source or f"checkpoint {found.directory}" + (" (EMA weights)" if ema else "")
    kwargs = {} if fix is None else {"fix": fix}
    report = load_into(
        model, trees, strict=strict, source=what, meta=found.meta, asked=asked, log_fn=log_fn, **kwargs
    )
    return report, found.meta


def load_model_weights(model: nnx.Module, directory: str, ema: bool = False, strict: bool = True) -> dict:
    return load_checkpoint(model, directory, ema=ema, strict=strict)[1]
