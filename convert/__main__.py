"""``python -m convert``: a timm checkpoint (or a fresh timm init) -> a jaxvit model checkpoint.

    python -m convert --model vit_tiny_patch16_224 --checkpoint vit_tiny.pth --out ckpt/vit_tiny
    python -m convert --model vit_tiny_patch16_224 --random-init --num-classes 10 --img-size 32 \
        --patch-size 4 --out ckpt/vit_tiny_c10

Exit status 2 with a one-paragraph message on bad input; --out is then not created.
"""

from __future__ import annotations

import argparse
import os
import sys

from convert import ConversionError, convert_state_dict, load_state_dict, save, timm_state_dict
from jaxvit.errors import report
from jaxvit.registry import get_entry, parse_model_args


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m convert", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="timm model name, e.g. vit_base_patch16_224")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help=".pth / .pth.tar / .bin / .safetensors file")
    src.add_argument("--random-init", action="store_true", help="convert timm's own init (no download)")
    p.add_argument("--out", required=True, help="new directory for the jaxvit checkpoint")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="unpickle objects beyond plain values (runs code from the file: unsafe unless you trust it)")
    p.add_argument("--checkpoint-key", help="entry holding the weights (default: model, state_dict, ...)")
    p.add_argument("--strip-prefix", help="take the weights under this key prefix, e.g. 'encoder.'")
    p.add_argument("--num-classes", type=int, help="default: the checkpoint's head; another count: new head")
    p.add_argument("--img-size", type=int, help="resamples pos_embed when the grid changes")
    p.add_argument("--patch-size", type=int, help="resamples the patch-embedding kernel when it changes")
    p.add_argument("--seed", type=int, default=0, help="init of re-initialized heads (and --random-init)")
    p.add_argument("--model-args", default="",
                   help="more constructor keywords of a reduced model, e.g. 'depth=4,embed_dim=192,num_heads=3'")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> str:
    out = os.path.abspath(args.out)
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise ConversionError(f"--out {out} already exists; choose a new directory")
    get_entry(args.model)  # an unknown name fails before a large file is read
    size = dict(num_classes=args.num_classes, img_size=args.img_size, patch_size=args.patch_size,
                **parse_model_args(args.model_args))
    if args.random_init:
        sd = timm_state_dict(args.model, seed=args.seed, **size)
        source = f"timm.create_model({args.model!r}, pretrained=False) seed {args.seed}"
    else:
        sd = load_state_dict(args.checkpoint, key=args.checkpoint_key, strip_prefix=args.strip_prefix,
                             trust=args.trust_checkpoint)
        source = os.path.abspath(args.checkpoint)
    model, meta = convert_state_dict(args.model, sd, seed=args.seed, **size)
    del sd
    meta["source"] = source
    save(out, model, meta)
    kw = ", ".join(f"{k}={v!r}" for k, v in meta["kwargs"].items())
    print(f"wrote {out}\n  load with jaxvit.create_model({args.model!r}, checkpoint={out!r})  # {kw}")
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except (ConversionError, ValueError, OSError, NotImplementedError) as e:
        return report(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
