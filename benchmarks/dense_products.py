"""A ViT train step's dense products alone on this CPU: each Linear's forward product and its two
gradient products (dx = g W^T, dW = x^T g) at the step's shapes, timed in turns in one process as
jax/XLA:CPU runs them (its default kernels, and with YNNPACK kept off dots so Eigen's GEMM runs
them) and as torch runs them; the sum over the model's blocks is what the step's products cost,
whatever else the step does.

python benchmarks/dense_products.py   (vit_small_patch16_224 at batch 32: 32 x 197 rows)
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


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=32 * 197, help="batch x tokens")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--mlp-ratio", type=float, default=4.0)
    p.add_argument("--depth", type=int, default=12)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--torch", action=argparse.BooleanOptionalAction, default=True)
    return p.parse_args(argv)


def main(argv=None) -> dict[str, float]:
    """Prints each product's median ms per implementation and returns the per-step sums."""
    args = parse_args(argv)
    import jax
    import numpy as np

    hidden = int(args.dim * args.mlp_ratio)
    layers = {"qkv": (args.dim, 3 * args.dim), "proj": (args.dim, args.dim), "fc1": (args.dim, hidden),
              "fc2": (hidden, args.dim)}
    products = {"fwd": lambda x, w, g: x @ w, "dx": lambda x, w, g: g @ w.T, "dw": lambda x, w, g: x.T @ g}
    rng = np.random.default_rng(0)
    runs = []  # (layer, product, implementation, callable)
    for layer, (k, n) in layers.items():
        arrays = [rng.standard_normal(s, dtype=np.float32) for s in ((args.rows, k), (k, n), (args.rows, n))]
        on_device = [jax.device_put(a) for a in arrays]
        for name, fn in products.items():
            for impl, options in (("jax", None), ("jax, Eigen dots", EIGEN_DOTS)):
                try:
                    compiled = jax.jit(fn).lower(*on_device).compile(compiler_options=options)
                except Exception as e:  # noqa: BLE001 - a jaxlib without the option: no such row
                    print(f"{impl}: not run ({str(e).splitlines()[0][:100]})", file=sys.stderr)
                    continue
                runs.append((layer, name, impl, lambda c=compiled, a=on_device: jax.block_until_ready(c(*a))))
            if args.torch:
                import torch

                tensors = [torch.from_numpy(a) for a in arrays]
                runs.append((layer, name, "torch", lambda f=fn, t=tensors: f(*t)))
    times = {run[:3]: [] for run in runs}
    for _ in range(args.rounds):
        for layer, name, impl, call in runs:
            call()  # a warm-up in each turn: the other runs' buffers came and went meanwhile
            start = time.perf_counter()
            call()
            times[layer, name, impl].append((time.perf_counter() - start) * 1e3)
    totals: dict[str, float] = {}
    print(f"{args.rows} rows, width {args.dim}, hidden {hidden}, fp32, {jax.devices()[0].platform}: median ms")
    for (layer, name, impl), ts in times.items():
        median = statistics.median(ts)
        totals[impl] = totals.get(impl, 0.0) + args.depth * median
        print(f"  {layer:<5} {name:<4} {impl:<16} {median:8.1f}")
    print(f"x {args.depth} blocks, ms per step: " + ", ".join(f"{k} {v:.0f}" for k, v in totals.items()))
    return totals


if __name__ == "__main__":
    main()
