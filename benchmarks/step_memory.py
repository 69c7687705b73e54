"""How much memory the train step needs, per model, as the backend compiles it: XLA's temp buffers
(activations kept for the gradient, workspace) and its arguments (parameters, optimizer state, the
batch). Compiles only, runs nothing: on a CPU too (its figures are XLA:CPU's, which fuses and keeps
differently from a GPU's XLA; compare commits on one backend).

python benchmarks/step_memory.py --models vit_base_patch16_224,swin_tiny_patch4_window7_224 \
    --dtype bfloat16 --batch 32 [--residuals lean,plain] [--remat none,elementwise,block]

``--residuals lean,plain`` prints each model twice: with LayerNorm and GELU keeping only their
inputs for the gradient (jaxvit's default) and as autodiff of nnx's LayerNorm and jax.nn.gelu
keeps them (jaxvit.layers.common.residuals). ``--remat`` likewise, under each policy of the
trainer's --config.remat (jaxvit.layers.remat). Beside XLA's figures, "kept MiB": what the
forward keeps for the backward as jax traces it (the residuals of the step's loss, before XLA
schedules anything; the same on every backend), besides the parameters.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="vit_base_patch16_224")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="bfloat16")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--model-args", default="", help="extra constructor keywords, e.g. depth=2")
    p.add_argument("--residuals", default="lean", help="comma list of lean|plain (LayerNorm/GELU residuals)")
    p.add_argument("--remat", default="none", help="comma list of the trainer's --config.remat policies")
    return p.parse_args(argv)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    import jax
    from profile_step import synthetic_train_step

    import jaxvit
    from jaxvit._compat import kept_bytes
    from jaxvit.layers import common, remat
    from jaxvit.registry import get_entry, parse_model_args

    rows = []
    print(f"{'model':<36}{'residuals':>10}{'remat':>12}{'kept MiB':>10}{'temp MiB':>10}{'args MiB':>10}"
          f"{'compile s':>11}   ({jax.devices()[0].device_kind}, {args.dtype}, batch {args.batch})")
    for name in [m for m in args.models.split(",") if m]:
        kwargs = parse_model_args(args.model_args)
        size = kwargs.get("img_size", get_entry(name).default_cfg["input_size"][0])
        for residuals in [r for r in args.residuals.split(",") if r]:
            for policy in [r for r in args.remat.split(",") if r]:
                model = jaxvit.create_model(name, dtype=args.dtype, num_classes=1000, **kwargs)
                step, state, batch = synthetic_train_step(model, args.batch, size)  # a new step: its own trace
                start = time.perf_counter()
                with common.residuals(residuals), remat.policy(policy):
                    analysis = jax.jit(step, donate_argnums=(0,)).lower(state, batch).compile().memory_analysis()
                    kept = kept_bytes(model_loss(model), state["params"], batch["image"])
                row = dict(model=name, residuals=residuals, remat=policy, kept_mib=kept / 2**20,
                           temp_mib=analysis.temp_size_in_bytes / 2**20,
                           args_mib=analysis.argument_size_in_bytes / 2**20, compile_s=time.perf_counter() - start)
                rows.append(row)
                print(f"{name:<36}{residuals:>10}{policy:>12}{row['kept_mib']:>10.1f}{row['temp_mib']:>10.1f}"
                      f"{row['args_mib']:>10.1f}{row['compile_s']:>11.1f}", flush=True)
    return rows


def model_loss(model):
    """loss(params, images): the mean square of ``model``'s logits, its other state held fixed."""
    import jax.numpy as jnp
    from flax import nnx

    graph, _, stats, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    stats, rest = nnx.to_pure_dict(stats), nnx.to_pure_dict(rest)  # made afresh in the trace (RNG counts)

    def loss(params, images):
        return jnp.mean(nnx.merge(graph, params, stats, rest)(images).astype(jnp.float32) ** 2)

    return loss


if __name__ == "__main__":
    main()
