"""Reading a timm/PyTorch checkpoint file into a flat ``{key: np.ndarray}`` state dict.

Handles the wrappers real checkpoints come in: a training dict holding the
weights under ``model``/``state_dict``/``model_ema``, DataParallel's ``module.``
prefix, and MoCo v3's ``module.base_encoder.`` with its momentum encoder and
predictor alongside.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Callable, Mapping

import numpy as np
import torch

from convert.rules import ConversionError

Log = Callable[[str], None]

CONTAINER_KEYS = ("model", "state_dict", "model_ema", "state_dict_ema")
AUTO_PREFIXES = ("module.base_encoder.", "module.")
# Parts of a self-supervised training checkpoint that are not the backbone.
DROPPED_PREFIXES = ("module.momentum_encoder.", "module.predictor.", "momentum_encoder.", "predictor.")


def to_numpy(value: Any) -> np.ndarray:
    """A tensor as numpy; floating tensors (bf16/fp16 included) become float32, like jaxvit params."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def _read(path: str) -> Any:
    if not os.path.isfile(path):
        raise ConversionError(f"checkpoint {path} does not exist; check the --checkpoint path")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(path)
        # Training checkpoints (DeiT's) store their argparse options next to the weights;
        # that plain container is safe to allow, nothing else beyond weights_only's defaults.
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch/safetensors raise many types for a damaged file
        reason = (str(e).strip() or type(e).__name__).splitlines()[0].split(". ")[0][:200]
        raise ConversionError(
            f"cannot read {path} as a PyTorch/safetensors checkpoint ({type(e).__name__}: {reason}); "
            "the file is truncated or corrupt, download or copy it again"
        ) from None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _unwrap(obj: Any, path: str, key: str | None, log: Log) -> Mapping:
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            have = sorted(obj) if isinstance(obj, Mapping) else type(obj).__name__
            raise ConversionError(f"--checkpoint-key {key!r} is not in {path} (it has {have})")
        obj = obj[key]
        if not _is_state_dict(obj):
            raise ConversionError(
                f"{path}[{key!r}] is not a state dict of tensors; pick another --checkpoint-key"
            )
        return obj
    if _is_state_dict(obj):
        return obj
    found = [k for k in CONTAINER_KEYS if isinstance(obj, Mapping) and _is_state_dict(obj.get(k))]
    if not found:
        have = sorted(map(str, obj)) if isinstance(obj, Mapping) else type(obj).__name__
        raise ConversionError(
            f"no state dict found in {path} (top level: {have}); name the entry with --checkpoint-key"
        )
    others = f" (it also has {', '.join(found[1:])}: choose with --checkpoint-key)" if found[1:] else ""
    log(f"using the weights under {found[0]!r}{others}")
    return obj[found[0]]


def clean_keys(state_dict: Mapping[str, Any], strip_prefix: str | None = None, log: Log = print) -> dict:
    """Drops momentum-encoder/predictor tensors and strips a wrapper prefix.

    With ``strip_prefix`` the sub-model under that prefix is taken (other keys
    are dropped, with a note); without it ``module.base_encoder.`` or
    ``module.`` is stripped when every key carries it.
    """
    sd = dict(state_dict)
    dropped = [k for k in sd if k.startswith(DROPPED_PREFIXES)]
    if dropped:
        for k in dropped:
            del sd[k]
        parts = sorted(
            {p.strip(".").split(".")[-1] for p in DROPPED_PREFIXES if any(k.startswith(p) for k in dropped)}
        )
        log(f"dropped {len(dropped)} tensors of the {' and '.join(parts)} (not part of the backbone)")
    if strip_prefix:
        outside = [k for k in sd if not k.startswith(strip_prefix)]
        if len(outside) == len(sd):
            raise ConversionError(
                f"no key starts with --strip-prefix {strip_prefix!r} (first key: {next(iter(sd))!r})"
            )
        if outside:
            log(f"dropped {len(outside)} tensors outside {strip_prefix!r}, e.g. {outside[0]!r}")
        return {k[len(strip_prefix):]: v for k, v in sd.items() if k.startswith(strip_prefix)}
    for prefix in AUTO_PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            log(f"stripped the {prefix!r} prefix")
            return {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def load_state_dict(
    path: str, *, key: str | None = None, strip_prefix: str | None = None, log: Log = print
) -> dict[str, np.ndarray]:
    """The backbone weights in ``path`` (.pth/.pth.tar/.bin/.safetensors) as numpy, torch layout."""
    raw = _unwrap(_read(path), path, key, log)
    return {k: to_numpy(v) for k, v in clean_keys(raw, strip_prefix, log).items()}
