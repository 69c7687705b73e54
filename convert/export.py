"""``python -m convert.export``: a jaxvit checkpoint -> a timm state dict file.

    python -m convert.export --model vit_tiny_patch16_224 --checkpoint ckpt/vit_tiny \
        --out vit_tiny.safetensors
    python -m convert.export --checkpoint runs/c10/best --ema --out vit_tiny_c10_ema.safetensors

The file loads with ``timm.create_model(NAME, pretrained=False, **kwargs).load_state_dict(sd, strict=True)``
where kwargs are the ones printed (and stored in the checkpoint's meta).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import torch
from flax import nnx

import jaxvit
from convert.rules import ConversionError, to_timm
from jaxvit.errors import report
from jaxvit.registry import get_entry
from jaxvit.weights import read_model_meta

# Keywords a jaxvit checkpoint records (the trainer writes img_size for every model) that timm's
# constructor for that family rejects: timm's InceptionV4 takes no img_size (any input of at
# least 75 px runs), so create_model('inception_v4', img_size=...) would be a TypeError.
NOT_TIMM_KWARGS = {"inception": ("img_size",)}


def timm_kwargs(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The recorded keywords that ``timm.create_model(name, ...)`` takes."""
    drop = NOT_TIMM_KWARGS.get(get_entry(name).family, ())
    return {k: v for k, v in kwargs.items() if k not in drop}


def to_timm_state_dict(model: nnx.Module) -> dict[str, torch.Tensor]:
    """``model``'s weights as a timm state dict (torch tensors, timm's names and layouts)."""
    return {k: torch.from_numpy(v) for k, v in to_timm(model).items()}


def export_checkpoint(
    directory: str, out: str, name: str | None = None, ema: bool = False
) -> tuple[str, dict[str, Any]]:
    """Writes ``directory``'s weights (``ema``: its EMA weights) to ``out`` (.safetensors, or
    torch.save for .pth/.bin).

    Returns (model name, kwargs for timm.create_model). Written via a temp file
    so a failed export leaves no partial ``out``.
    """
    meta = read_model_meta(directory)
    name = name or meta.get("model")
    if not name:
        raise ConversionError(f"{directory} does not record its model name; pass --model")
    model = jaxvit.create_model(name, checkpoint=directory, ema=ema)
    kwargs = timm_kwargs(name, dict(meta.get("kwargs") or {}))
    sd = to_timm_state_dict(model)
    tmp = f"{out}.partial"
    try:
        if out.endswith(".safetensors"):
            from safetensors.torch import save_file

            save_file(sd, tmp, metadata={"model": name, "kwargs": json.dumps(kwargs)})
        else:
            torch.save(sd, tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return name, kwargs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m convert.export", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="jaxvit checkpoint directory (or train workdir)")
    p.add_argument("--out", required=True, help="FILE.safetensors (or .pth/.bin)")
    p.add_argument("--model", help="timm model name (default: the one recorded in the checkpoint)")
    p.add_argument("--ema", action="store_true", help="export the EMA weights (a run with model_ema)")
    args = p.parse_args(argv)
    try:
        name, kwargs = export_checkpoint(args.checkpoint, args.out, args.model, ema=args.ema)
    except (ConversionError, ValueError, OSError) as e:
        return report(e)
    kw = "".join(f", {k}={v!r}" for k, v in kwargs.items())
    print(f"wrote {args.out}\n  load with "
          f"timm.create_model({name!r}, pretrained=False{kw}).load_state_dict(sd)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
