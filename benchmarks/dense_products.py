"""A ViT train step's matrix products alone on this CPU, at the step's shapes, timed in turns in one
process: each Linear's forward product and its two gradient products (dx = g W^T, dW = x^T g), and
attention's six batched products per block (forward q k^T and p v; backward dO v^T, dS k, p^T dO
and dS^T q), as jax/XLA:CPU runs them (its default kernels, with YNNPACK kept off dots so XLA's own
dot kernels run them - the trainer's --config.cpu_dots=xla - and, with --onednn, XLA's experimental
oneDNN fusion for dots) and as torch runs them. The sums over the model's blocks are what the
step's products cost, whatever else the step does.

python benchmarks/dense_products.py   (vit_small_patch16_224 at batch 32: 32 x 197 rows, 6 heads)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from jaxvit.train import xla_cpu

# XLA:CPU's YNNPACK fusions but dots: the trainer's --config.cpu_dots=xla (jaxlib 0.10's compile
# option; a jaxlib without it skips the row)
EIGEN_DOTS = xla_cpu.compiler_options("xla", "cpu")
# jaxlib 0.10's oneDNN fusion for dots (experimental; not a trainer setting: it ran vit_small's
# weight-gradient products slower than XLA's own kernels, README "Measured"; and its compile killed
# a process with SIGILL on four sliced products summed, a form this script does not time)
ONEDNN_DOTS = {"xla_cpu_use_onednn": True, "xla_cpu_experimental_onednn_fusion_type": "LIBRARY_FUSION_TYPE_DOT",
               "xla_cpu_experimental_ynn_fusion_type": xla_cpu.YNN_TYPES_WITHOUT_DOTS}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--tokens", type=int, default=197)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--heads", type=int, default=6, help="attention heads (0: no attention products)")
    p.add_argument("--mlp-ratio", type=float, default=4.0)
    p.add_argument("--depth", type=int, default=12)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--torch", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--onednn", action="store_true", help="also XLA's oneDNN fusion for dots")
    args = p.parse_args(argv)
    if args.heads and args.dim % args.heads:
        p.error(f"--dim {args.dim} is not a multiple of --heads {args.heads}")
    return args


def main(argv=None) -> dict[str, dict[str, float]]:
    """Prints each product's median ms per implementation and returns, per implementation, the
    per-step sums of the dense ("dense") and the attention ("attention") products."""
    args = parse_args(argv)
    import jax
    import numpy as np

    rows, hidden = args.batch * args.tokens, int(args.dim * args.mlp_ratio)
    rng = np.random.default_rng(0)
    # (group, layer, product, times a block runs it, its operand shapes, the product)
    products = []
    for layer, (k, n) in {"qkv": (args.dim, 3 * args.dim), "proj": (args.dim, args.dim),
                          "fc1": (args.dim, hidden), "fc2": (hidden, args.dim)}.items():
        shapes = ((rows, k), (k, n), (rows, n))
        products += [("dense", layer, "fwd", 1, shapes, lambda x, w, g: x @ w),
                     ("dense", layer, "dx", 1, shapes, lambda x, w, g: g @ w.T),
                     ("dense", layer, "dw", 1, shapes, lambda x, w, g: x.T @ g)]
    if args.heads:
        # heads ahead of tokens, as the trainer's CPU attention (head_major) lays them out; each form
        # runs twice a block: q k^T and dO v^T; p v and dS k; p^T dO and dS^T q
        heads = (args.batch, args.heads, args.tokens, args.dim // args.heads)
        scores = (args.batch, args.heads, args.tokens, args.tokens)
        products += [("attention", "attn", "q kT", 2, (heads, heads), lambda a, b: a @ b.swapaxes(-1, -2)),
                     ("attention", "attn", "p v", 2, (scores, heads), lambda a, b: a @ b),
                     ("attention", "attn", "pT g", 2, (scores, heads), lambda a, b: a.swapaxes(-1, -2) @ b)]
    implementations = [("jax", None), ("jax, Eigen dots", EIGEN_DOTS)]
    if args.onednn:
        implementations.append(("jax, oneDNN dots", ONEDNN_DOTS))
    runs = []  # (group, layer, product, count, implementation, callable)
    for group, layer, name, count, shapes, fn in products:
        arrays = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
        on_device = [jax.device_put(a) for a in arrays]
        for impl, options in implementations:
            try:
                compiled = jax.jit(fn).lower(*on_device).compile(compiler_options=options)
            except Exception as e:  # noqa: BLE001 - a jaxlib without the option: no such row
                print(f"{impl}: not run ({str(e).splitlines()[0][:100]})", file=sys.stderr)
                continue
            runs.append((group, layer, name, count, impl,
                         lambda c=compiled, a=on_device: jax.block_until_ready(c(*a))))
        if args.torch:
            import torch

            tensors = [torch.from_numpy(a) for a in arrays]
            runs.append((group, layer, name, count, "torch", lambda f=fn, t=tensors: f(*t)))
    times = {run[:5]: [] for run in runs}
    for _ in range(args.rounds):
        for *key, call in runs:
            call()  # a warm-up in each turn: the other runs' buffers came and went meanwhile
            start = time.perf_counter()
            call()
            times[tuple(key)].append((time.perf_counter() - start) * 1e3)
    totals: dict[str, dict[str, float]] = {}
    print(f"batch {args.batch} x {args.tokens} tokens, width {args.dim}, hidden {hidden}, "
          f"{args.heads} heads, fp32, {jax.devices()[0].platform}: median ms (x: runs a block)")
    for (group, layer, name, count, impl), ts in times.items():
        median = statistics.median(ts)
        per_impl = totals.setdefault(impl, {"dense": 0.0, "attention": 0.0})
        per_impl[group] += args.depth * count * median
        print(f"  {layer:<5} {name:<5} x{count} {impl:<17} {median:8.1f}")
    print(f"x {args.depth} blocks, ms per step (dense + attention = all):")
    for impl, t in totals.items():
        print(f"  {impl:<17} {t['dense']:7.0f} + {t['attention']:6.0f} = {t['dense'] + t['attention']:7.0f}")
    return totals


if __name__ == "__main__":
    main()
