"""What building a model costs: eager init, the abstract model, and a timm conversion.

python benchmarks/bench_convert.py [--names vit_large_patch16_224,swin_tiny_patch4_window7_224]
                                   [--root OTHER_CHECKOUT]  (e.g. a git worktree of an older commit)

Per name, each in a fresh process (the first build of a family in a process pays its eager
op compiles, which is what a user's ``python -m convert`` run pays):
- ``eager``: ``jaxvit.create_model(name)``, every initializer run;
- ``abstract``: ``jaxvit.abstract_model(name)`` (shapes only), and ``nnx.eval_shape`` without
  jaxvit's tracer-probe work-around (jaxvit/_compat.py) next to it;
- ``convert``: ``convert_state_dict`` of a random-init timm state dict (the model built
  without weights, the checkpoint's tensors assigned).
Needs the torch extra (timm) for ``convert``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r'''
import json, sys, time
sys.path.insert(0, sys.argv[3])
name, what = sys.argv[1], sys.argv[2]
import jax
from flax import nnx
import jaxvit
t = time.perf_counter()
if what == "eager":
    jax.block_until_ready(nnx.state(jaxvit.create_model(name)))
elif what == "abstract":
    jaxvit.abstract_model(name)
elif what == "eval_shape":
    nnx.eval_shape(lambda: jaxvit.create_model(name))
else:
    from convert import convert_state_dict, timm_state_dict
    sd = timm_state_dict(name)
    t = time.perf_counter()
    model, _ = convert_state_dict(name, sd, log=lambda _: None)
    jax.block_until_ready(nnx.state(model))
print("RESULT" + json.dumps(time.perf_counter() - t))
'''


def measure(name: str, what: str, root: str = ROOT) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, name, what, root], capture_output=True, text=True,
                         env=dict(os.environ, JAX_PLATFORMS="cpu"), check=True).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT"))[6:])


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--names", default="vit_large_patch16_224,mixer_l32_224,swin_tiny_patch4_window7_224,"
                                      "mvitv2_tiny,inception_v4")
    p.add_argument("--what", default="eager,abstract,eval_shape,convert")
    p.add_argument("--root", default=ROOT, help="the checkout whose jaxvit and convert are timed")
    args = p.parse_args(argv)
    rows = []
    kinds = args.what.split(",")
    print(f"{'model':32s}" + "".join(f"{k:>12s}" for k in kinds) + "   (seconds, one fresh process each)")
    for name in args.names.split(","):
        row = {"model": name, **{k: measure(name, k, args.root) for k in kinds}}
        rows.append(row)
        print(f"{name:32s}" + "".join(f"{row[k]:12.2f}" for k in kinds), flush=True)
    return rows


if __name__ == "__main__":
    main()
