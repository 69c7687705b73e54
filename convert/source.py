"""Reading a timm/PyTorch checkpoint file into a flat ``{key: np.ndarray}`` state dict.

Handles the wrappers real checkpoints come in: a training dict holding the
weights under ``model``/``state_dict``/``model_ema``, DataParallel's ``module.``
prefix, and MoCo v3's ``module.base_encoder.`` with its momentum encoder and
predictor alongside.
"""

from __future__ import annotations

import argparse
import os
import pickle
from collections.abc import Callable, Mapping
from typing import Any

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


def _plain_value_globals() -> list:
    """The globals of plain values training scripts save next to their weights: numpy scalars,
    arrays and dtypes (``best_metric = np.float64(...)``) and argparse options (DeiT, MoCo).
    Loading them runs no code beyond building those values."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    found = [argparse.Namespace, np.dtype, np.ndarray, core.multiarray.scalar, core.multiarray._reconstruct]
    found += [t for t in vars(np.dtypes).values() if isinstance(t, type) and issubclass(t, np.dtype)]
    # numpy 1.x pickles name numpy.core.*, numpy 2.x numpy._core.*: accept both spellings
    aliases = [(f, f"numpy.core.multiarray.{f.__name__}") for f in found[3:5]]
    aliases += [(f, f"numpy._core.multiarray.{f.__name__}") for f in found[3:5]]
    return found + aliases


class _Unsafe:
    """Stands in for a global that weights-only loading refuses, so the diagnostic load can say
    where it sits; it never calls the real thing."""

    name = "?"

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


def _where(obj: Any, path: str = "") -> list[tuple[str, str]]:
    """(key path, global name) of every stand-in inside ``obj``."""
    if isinstance(obj, _Unsafe):
        return [(path or "(top level)", obj.name)]
    if isinstance(obj, Mapping):
        return [w for k, v in obj.items() for w in _where(v, f"{path}[{k!r}]")]
    if isinstance(obj, (list, tuple)):
        return [w for i, v in enumerate(obj) for w in _where(v, f"{path}[{i}]")]
    return []


def _refused_globals(path: str, names: list[str]) -> ConversionError:
    """Loads once more with each refused global replaced by a stand-in, to name its key."""
    stand_ins = [(type(f"Unsafe_{i}", (_Unsafe,), {"name": n}), n) for i, n in enumerate(names)]
    try:
        with torch.serialization.safe_globals(_plain_value_globals() + stand_ins):
            where = _where(torch.load(path, map_location="cpu", weights_only=True))
    except Exception:  # the stand-ins could not take the object's place: name the globals only
        where = []
    at = "; ".join(f"{g} under {k}" for k, g in where[:3]) or ", ".join(names[:5])
    return ConversionError(
        f"{path} holds objects that safe (weights-only) loading does not build: {at}; the file is not "
        "corrupt. Either re-save the weights alone (torch.save(ckpt['state_dict'], 'weights.pth')) or, "
        "for a file you trust, pass --trust-checkpoint (unpickles arbitrary code: unsafe for files "
        "from others)"
    )


def _read(path: str, trust: bool = False) -> Any:
    if not os.path.isfile(path):
        raise ConversionError(f"checkpoint {path} does not exist; check the --checkpoint path")
    if path.endswith(".safetensors"):
        try:
            from safetensors.torch import load_file

            return load_file(path)
        except Exception as e:
            raise _corrupt(path, e) from None
    if trust:
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:
            raise _corrupt(path, e) from None
    try:
        refused = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as e:  # not a zip, truncated, or damaged: the file itself is bad
        raise _corrupt(path, e) from None
    allowed = {f"{getattr(f, '__module__', '')}.{getattr(f, '__qualname__', '')}" for f in _plain_value_globals()
               if not isinstance(f, tuple)}
    allowed |= {f[1] for f in _plain_value_globals() if isinstance(f, tuple)}
    refused = [g for g in refused if g not in allowed]
    if refused:
        raise _refused_globals(path, refused)
    try:
        with torch.serialization.safe_globals(_plain_value_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # a global our scan missed: still not corruption
        raise ConversionError(
            f"{path}: safe (weights-only) loading refused it ({str(e).splitlines()[0][:200]}); the file "
            "is not corrupt: re-save the weights alone, or pass --trust-checkpoint for a file you trust"
        ) from None
    except Exception as e:
        raise _corrupt(path, e) from None


def _corrupt(path: str, e: Exception) -> ConversionError:
    reason = (str(e).strip() or type(e).__name__).splitlines()[0].split(". ")[0][:200]
    return ConversionError(
        f"cannot read {path} as a PyTorch/safetensors checkpoint ({type(e).__name__}: {reason}); "
        "the file is truncated or corrupt, download or copy it again"
    )


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
    path: str, *, key: str | None = None, strip_prefix: str | None = None, log: Log = print,
    trust: bool = False,
) -> dict[str, np.ndarray]:
    """The backbone weights in ``path`` (.pth/.pth.tar/.bin/.safetensors) as numpy, torch layout.

    Loading is weights-only (no code runs) with the plain values training scripts keep beside the
    weights allowed; ``trust=True`` unpickles anything (only for files you trust)."""
    raw = _unwrap(_read(path, trust), path, key, log)
    return {k: to_numpy(v) for k, v in clean_keys(raw, strip_prefix, log).items()}
