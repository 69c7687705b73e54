"""Fine-tune adaptation of a timm state dict to a differently configured model, as timm's
pretrained loading does: a new classifier, a resampled position embedding, a resampled
patch-embedding kernel. Everything here works in torch layout, before the rules run.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from flax import nnx
from timm.layers import resample_patch_embed

from convert.rules import Entry, plan
from jaxvit.layers import resample_abs_pos_embed
from jaxvit.weights import classifier_paths

Log = Callable[[str], None]
CLASSIFIER_NAMES = ("head", "head_dist")


def classifier_prefixes(model: nnx.Module) -> list[str]:
    """Key prefixes of the classifier(s): the modules ``get_classifier()`` returns (as
    jaxvit.weights finds them), plus the conventional ``head``/``head_dist`` (a timm state
    dict has them even when the model is built headless)."""
    return list(dict.fromkeys([*CLASSIFIER_NAMES, *classifier_paths(model)]))


def _adapt_classifiers(
    model: nnx.Module, sd: dict, entries: dict[str, Entry], log: Log
) -> set[str]:
    """Drops checkpoint heads whose class count (or layout, e.g. MoCo's projection MLP)
    differs; the model keeps its freshly initialized head for those keys, and for a head the
    checkpoint lacks (a headless one, as timm's loading of a num_classes=0 cfg)."""
    keep: set[str] = set()
    for prefix in classifier_prefixes(model):
        ours = {k for k in entries if k.startswith(prefix + ".")}
        theirs = {k for k in sd if k.startswith(prefix + ".")}
        if not theirs:
            if ours and prefix in CLASSIFIER_NAMES:  # a headless checkpoint (DINOv2's, CLIP towers)
                keep |= ours
                log(f"{prefix}: not in the checkpoint (built with num_classes=0); initialized as a "
                    f"{_fmt(_out_dims(entries[k].torch_shape for k in ours))}-class head")
            continue
        ckpt_classes = _out_dims(tuple(sd[k].shape) for k in theirs)
        model_classes = _out_dims(entries[k].torch_shape for k in ours)
        if ours == theirs and ckpt_classes == model_classes:
            continue
        for k in theirs:
            del sd[k]
        keep |= ours
        if not ours:
            log(f"{prefix}: dropped from the checkpoint (the model is built without it, num_classes=0)")
        elif ours != theirs:
            log(f"{prefix}: checkpoint has {', '.join(sorted(theirs))} (not a linear classifier); "
                f"re-initialized as a {_fmt(model_classes)}-class head")
        else:
            log(f"{prefix}: checkpoint has {_fmt(ckpt_classes)} classes, the model "
                f"{_fmt(model_classes)}; re-initialized")
    return keep


def _out_dims(shapes) -> set[int]:
    # A classifier's leading torch dim is its class count (weight (C, D), bias (C,)).
    return {s[0] for s in shapes if len(s)}


def _fmt(classes: set[int]) -> str:
    return "/".join(str(c) for c in sorted(classes))


def _adapt_pos_embed(model: nnx.Module, sd: dict, entries: dict[str, Entry], log: Log) -> None:
    key = "pos_embed"
    if key not in sd or key not in entries or not hasattr(model, "patch_embed"):
        return
    have, want = tuple(sd[key].shape), entries[key].torch_shape
    if have == want or len(have) != 3 or have[::2] != want[::2]:
        return  # equal, or another model altogether: the strict check reports that
    # no_embed_class (DeiT III, DINOv2 with registers): the table has no rows for the prefix tokens
    prefix = 0 if getattr(model, "no_embed_class", False) else getattr(model, "num_prefix_tokens", 1)
    new_grid = tuple(model.patch_embed.grid_size)
    # jaxvit.layers' kernel: torch's antialiased bicubic, in numpy (what init_from uses too)
    sd[key] = resample_abs_pos_embed(np.asarray(sd[key], np.float32), new_grid, num_prefix_tokens=prefix)
    old = int(round((have[1] - prefix) ** 0.5))
    log(f"{key}: resampled from a {old}x{old} to a {new_grid[0]}x{new_grid[1]} grid "
        f"(bicubic, {prefix} prefix token(s) kept)")


def _adapt_patch_embed(sd: dict, entries: dict[str, Entry], log: Log) -> None:
    for key in [k for k in sd if k.endswith("patch_embed.proj.weight") and k in entries]:
        have, want = tuple(sd[key].shape), entries[key].torch_shape
        if have == want or len(have) != 4 or have[:2] != want[:2]:
            continue
        kernel = torch.from_numpy(np.ascontiguousarray(sd[key], dtype=np.float32))
        sd[key] = resample_patch_embed(kernel, list(want[2:])).numpy()
        log(f"{key}: patch {have[2]}x{have[3]} resampled to {want[2]}x{want[3]} (pseudo-inverse resize)")


def adapt(
    model: nnx.Module, state_dict: dict[str, np.ndarray], log: Log = print
) -> tuple[dict[str, np.ndarray], set[str]]:
    """Returns (adapted state dict, keys to keep from ``model``'s own init). Only differences
    that fine-tuning expects are adapted; anything else is left for the strict check."""
    sd = dict(state_dict)
    entries = {e.torch_key: e for e in plan(model)}
    keep = _adapt_classifiers(model, sd, entries, log)
    _adapt_patch_embed(sd, entries, log)
    _adapt_pos_embed(model, sd, entries, log)
    return sd, keep
