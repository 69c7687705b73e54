"""timm (PyTorch) weights -> jaxvit checkpoints and back. The only package that imports torch.

Python API::

    from convert import convert_state_dict, load_state_dict, timm_state_dict
    model, meta = convert_state_dict("vit_tiny_patch16_224", load_state_dict("w.pth"), num_classes=10)

CLI: ``python -m convert`` (import) and ``python -m convert.export`` (export).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from flax import nnx

import jaxvit
from convert.adapt import adapt
from convert.rules import ConversionError, plan, to_jaxvit, to_timm
from convert.source import Log, load_state_dict, to_numpy
from jaxvit._compat import without_weights
from jaxvit.weights import assign, collections_of, save_model_checkpoint

# The constructor keywords conversion may change; all are recorded in the checkpoint's meta.
SIZE_KWARGS = ("num_classes", "img_size", "patch_size")
CLASSIFIER_WEIGHTS = (
    "head.weight", "head.fc.weight", "last_linear.weight", "to_logits.2.weight", "to_logits.weight",
)


def _compact(size: Any) -> Any:
    size = tuple(size)
    return size[0] if len(set(size)) == 1 else list(size)


def rebuild_kwargs(model: nnx.Module) -> dict[str, Any]:
    """The size keywords a model was built with, read back from it (JSON-friendly)."""
    out: dict[str, Any] = {}
    if hasattr(model, "num_classes"):
        out["num_classes"] = int(model.num_classes)
    patch_embed = getattr(model, "patch_embed", None)
    for name in ("img_size", "patch_size"):
        if hasattr(patch_embed, name):
            out[name] = _compact(getattr(patch_embed, name))
    return out


def _given(**kwargs: Any) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if v is not None}


def convert_state_dict(
    name: str,
    state_dict: Mapping[str, Any],
    *,
    num_classes: int | None = None,
    img_size: int | None = None,
    patch_size: int | None = None,
    seed: int = 0,
    log: Log = print,
    **model_kwargs: Any,
) -> tuple[nnx.Module, dict]:
    """Builds jaxvit ``name`` and loads a timm state dict (torch or numpy values) into it.

    Differences fine-tuning expects (class count, grid, patch size) are adapted
    and reported through ``log``; anything else raises ConversionError.
    ``num_classes`` defaults to the checkpoint's own head so a fine-tuned
    checkpoint keeps its classifier. Returns (model, meta for the checkpoint).
    """
    sd = {k: to_numpy(v) for k, v in state_dict.items()}
    # the classifier's name differs by family (timm's default_cfg 'classifier')
    head = next((sd[k] for k in CLASSIFIER_WEIGHTS if k in sd), None)
    if num_classes is None and head is not None and head.ndim == 2:
        num_classes = int(head.shape[0])
        log(f"num_classes={num_classes}, from the checkpoint's head (pass --num-classes for a new head)")
    kwargs = dict(model_kwargs, **_given(num_classes=num_classes, img_size=img_size, patch_size=patch_size))

    def make():
        return jaxvit.create_model(name, seed=seed, **kwargs)

    # shapes only: the checkpoint supplies every weight, unless a classifier is re-initialized
    model = without_weights(make)
    sd, keep = adapt(model, sd, log)
    if keep:
        model = make()
    assign(model, to_jaxvit(model, sd, keep=keep), source="converted checkpoint")
    meta = {"model": name, "kwargs": {**kwargs, **rebuild_kwargs(model)}}
    if keep:
        meta["reinitialized"] = sorted(keep)
    return model, meta


def timm_state_dict(name: str, *, seed: int = 0, **kwargs: Any) -> dict[str, np.ndarray]:
    """A freshly initialized timm model's state dict (pretrained=False: no network)."""
    import timm
    import torch

    torch.manual_seed(seed)
    try:
        model = timm.create_model(name, pretrained=False, **_given(**kwargs))
    except RuntimeError as e:  # timm's "Unknown model"
        raise ConversionError(f"timm cannot build {name!r}: {e}") from None
    return {k: to_numpy(v) for k, v in model.state_dict().items()}


def save(out: str, model: nnx.Module, meta: dict) -> None:
    """Writes a model checkpoint that ``jaxvit.create_model(name, checkpoint=out)`` loads."""
    save_model_checkpoint(out, collections_of(model), meta)


__all__ = [
    "ConversionError",
    "convert_state_dict",
    "load_state_dict",
    "plan",
    "rebuild_kwargs",
    "save",
    "timm_state_dict",
    "to_jaxvit",
    "to_timm",
]
