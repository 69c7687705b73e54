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

``--kept-only`` traces and compiles nothing else: with ``--attention cudnn`` it gives, on any
machine, what a GPU's train step keeps with cuDNN's fused attention (jax's cuDNN path traced, its
version check answered for the trace; nothing compiled or run):

python benchmarks/step_memory.py --models vit_base_patch16_224 --batch 128 --attention cudnn \
    --kept-only --remat none,elementwise [--pad-multiple 2]
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
    p.add_argument("--attention", default="auto", help="the trainer's --config.attention")
    p.add_argument("--pad-multiple", type=int, default=0, help="as bench.py's (0: jaxvit's)")
    p.add_argument("--kept-only", action="store_true", help="only the kept MiB column: nothing compiled")
    return p.parse_args(argv)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    import jax
    from profile_step import synthetic_train_step

    import jaxvit
    from jaxvit._compat import kept_bytes
    from jaxvit.layers import common, remat
    from jaxvit.registry import get_entry, parse_model_args

    if args.attention == "cudnn" and jax.default_backend() != "gpu":
        if not args.kept_only:
            print("error: step_memory.py: --attention cudnn compiles only on a GPU; add --kept-only to trace "
                  "what a GPU's step keeps", file=sys.stderr)
            raise SystemExit(2)
        allow_cudnn_trace()
    jaxvit.layers.attention_impl.set_implementation(args.attention)
    jaxvit.layers.attention_impl.set_pad_multiple(args.pad_multiple or jaxvit.layers.attention_impl.PAD_MULTIPLE)
    rows = []
    print(f"{'model':<36}{'residuals':>10}{'remat':>12}{'kept MiB':>10}{'temp MiB':>10}{'args MiB':>10}"
          f"{'compile s':>11}   ({jax.devices()[0].device_kind}, {args.dtype}, batch {args.batch}, "
          f"attention {args.attention}{f', pad {args.pad_multiple}' if args.pad_multiple else ''})")
    for name in [m for m in args.models.split(",") if m]:
        kwargs = parse_model_args(args.model_args)
        size = kwargs.get("img_size", get_entry(name).default_cfg["input_size"][0])
        for residuals in [r for r in args.residuals.split(",") if r]:
            for policy in [r for r in args.remat.split(",") if r]:
                model = jaxvit.create_model(name, dtype=args.dtype, num_classes=1000, **kwargs)
                step, state, batch = synthetic_train_step(model, args.batch, size)  # a new step: its own trace
                start = time.perf_counter()
                with common.residuals(residuals), remat.policy(policy):
                    analysis = None if args.kept_only else \
                        jax.jit(step, donate_argnums=(0,)).lower(state, batch).compile().memory_analysis()
                    compile_s = None if args.kept_only else time.perf_counter() - start
                    kept = kept_bytes(model_loss(model), state["params"], batch["image"])
                row = dict(model=name, residuals=residuals, remat=policy, kept_mib=kept / 2**20,
                           temp_mib=analysis and analysis.temp_size_in_bytes / 2**20,
                           args_mib=analysis and analysis.argument_size_in_bytes / 2**20, compile_s=compile_s)
                rows.append(row)
                cells = [f"{'-' if v is None else f'{v:.1f}':>{w}}" for v, w in (
                    (row["kept_mib"], 10), (row["temp_mib"], 10), (row["args_mib"], 10), (row["compile_s"], 11))]
                print(f"{name:<36}{residuals:>10}{policy:>12}{''.join(cells)}", flush=True)
    return rows


def allow_cudnn_trace() -> None:
    """Lets jax trace its cuDNN attention where no cuDNN is installed: its version check (the only
    step of the trace that asks for the library, jax 0.10-0.11) answers 9.10. Tracing is all a
    kept-only run does; compiling or running that trace needs a GPU."""
    from jax._src.cudnn import fused_attention_stablehlo as fused

    if fused.cuda_versions is None:
        fused.check_cudnn_version = lambda: 91000


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
