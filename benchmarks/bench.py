"""Times jaxvit's train step and inference against timm's, in one process, on synthetic data.

python benchmarks/bench.py --model vit_small_patch16_224 --batch 32 --steps 10
Prints one table (img/s, ratios, step time, peak memory, MFU) and appends rows to
--csv. No TensorFlow import: runs where TF is absent (the lent GPU machine).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
from datetime import UTC, datetime

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxvit
from jaxvit.train.step import make_train_step


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vit_small_patch16_224")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    p.add_argument("--steps", type=int, default=10, help="timed steps (after warm-up)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--peak-tflops", type=float, default=0.0,
                   help="device peak for MFU; 0 = measure a float32/bf16 matmul")
    p.add_argument("--torch", default="eager,amp,compile",
                   help="timm modes to time: eager, amp (autocast, GPU), compile; '' for none")
    p.add_argument("--attention", default="auto", help="attention kernel: auto | xla | cudnn | xla_padded "
                   "(jaxvit/layers/attention.py; the trainer's --config.attention)")
    p.add_argument("--model-args", default="", help="extra constructor keywords, e.g. depth=2,embed_dim=64")
    p.add_argument("--csv", default="benchmarks/results.csv")
    return p.parse_args(argv)


def model_kwargs(args) -> dict:
    from jaxvit.train.loop import parse_model_args

    return dict(num_classes=args.num_classes, img_size=args.img_size, **parse_model_args(args.model_args))


def timed(fn, steps: int, warmup: int, sync) -> float:
    """Seconds per call after ``warmup`` calls; ``sync`` blocks on the last result."""
    out = None
    for _ in range(warmup):
        out = fn()
    sync(out)
    start = time.perf_counter()
    for _ in range(steps):
        out = fn()
    sync(out)
    return (time.perf_counter() - start) / steps


def measure_matmul_tflops(dtype) -> float:
    n = 4096 if jax.default_backend() != "cpu" else 1024
    a = jnp.ones((n, n), dtype)
    f = jax.jit(lambda x: x @ x)
    sec = timed(lambda: f(a), 10, 2, lambda o: o.block_until_ready())
    return 2 * n**3 / sec / 1e12


def peak_memory_gb() -> float | None:
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return peak / 2**30 if peak else None


def bench_jax(args) -> list[dict]:
    jaxvit.layers.attention_impl.set_implementation(args.attention)
    model = jaxvit.create_model(args.model, dtype=args.dtype, **model_kwargs(args))
    graph, params, batch_stats, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    params, batch_stats, rest = map(nnx.to_pure_dict, (params, batch_stats, rest))
    schedule = optax.constant_schedule(1e-4)
    tx = optax.adamw(schedule, weight_decay=0.05)
    step = make_train_step(graph, rest, tx, schedule, args.num_classes, 0.0)
    state = dict(step=jnp.asarray(0), params=params, batch_stats=batch_stats,
                 opt_state=tx.init(params), rng=jax.random.PRNGKey(0))
    state = jax.tree.map(jnp.copy, state)  # donated below; the model keeps its own arrays
    rng = np.random.default_rng(0)
    batch = dict(
        image=jnp.asarray(rng.standard_normal((args.batch, args.img_size, args.img_size, 3), np.float32)),
        label=jnp.asarray(rng.integers(0, args.num_classes, args.batch), jnp.int32),
    )
    train = jax.jit(step, donate_argnums=(0,))
    compiled = train.lower(state, batch).compile()
    flops = (compiled.cost_analysis() or {}).get("flops", 0.0)
    if isinstance(flops, list):  # older jax returned one dict per device
        flops = flops[0].get("flops", 0.0)
    holder = {"s": state}

    def one_step():
        holder["s"], metrics = compiled(holder["s"], batch)
        return metrics["loss"]

    sec = timed(one_step, args.steps, args.warmup, lambda o: o.block_until_ready())
    eval_model = nnx.view(model, deterministic=True, use_running_average=True, raise_if_not_found=False)
    egraph, eparams, estats, erest = nnx.split(eval_model, nnx.Param, nnx.BatchStat, ...)
    infer = jax.jit(lambda p, s, x: nnx.merge(egraph, p, s, erest)(x))
    isec = timed(lambda: infer(eparams, estats, batch["image"]), args.steps, args.warmup,
                 lambda o: o.block_until_ready())
    return [
        dict(impl="jaxvit jit", task="train", sec=sec, flops=flops, mem=peak_memory_gb()),
        dict(impl="jaxvit jit", task="infer", sec=isec, flops=None, mem=None),
    ]


def bench_torch(args, modes: list[str]) -> list[dict]:
    import timm
    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    kw = model_kwargs(args)
    for mode in modes:
        if mode == "amp" and dev == "cpu":
            continue  # autocast on CPU is not what users run; reported on GPU only
        torch.manual_seed(0)
        model = timm.create_model(args.model, pretrained=False, **kw).to(dev).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
        x = torch.randn(args.batch, 3, args.img_size, args.img_size, device=dev)
        y = torch.randint(0, args.num_classes, (args.batch,), device=dev)
        fwd = torch.compile(model) if mode == "compile" else model
        amp = torch.autocast(dev, dtype=torch.bfloat16, enabled=(mode == "amp" or args.dtype == "bfloat16"))

        def one_step(opt=opt, amp=amp, fwd=fwd, x=x, y=y):
            opt.zero_grad(set_to_none=True)
            with amp:
                loss = torch.nn.functional.cross_entropy(fwd(x), y)
            loss.backward()
            opt.step()
            return loss

        def sync(_):
            if dev == "cuda":
                torch.cuda.synchronize()

        if dev == "cuda":
            torch.cuda.reset_peak_memory_stats()
        sec = timed(one_step, args.steps, args.warmup, sync)
        mem = torch.cuda.max_memory_allocated() / 2**30 if dev == "cuda" else None
        model.eval()
        with torch.no_grad():
            with amp:
                isec = timed(lambda fwd=fwd, x=x: fwd(x), args.steps, args.warmup, sync)
        name = f"timm {mode}"
        rows += [dict(impl=name, task="train", sec=sec, flops=None, mem=mem),
                 dict(impl=name, task="infer", sec=isec, flops=None, mem=None)]
    return rows


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    rows = bench_jax(args)
    modes = [m for m in args.torch.split(",") if m]
    if modes:
        rows += bench_torch(args, modes)
    dtype = jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32
    peak = args.peak_tflops or measure_matmul_tflops(dtype)
    ref = {r["task"]: r["sec"] for r in rows if r["impl"] == "jaxvit jit"}
    device = f"{jax.devices()[0].device_kind} x{jax.device_count()}"
    print(f"\n{args.model}  batch {args.batch}  {args.img_size}px  {args.dtype}  attention {args.attention}"
          f"  on {device}"
          f"  (peak {peak:.2f} TFLOP/s{' measured' if not args.peak_tflops else ''})")
    print(f"{'impl':<14}{'task':<7}{'img/s':>10}{'ms/step':>10}{'jaxvit x':>10}{'MFU':>8}{'peak GB':>9}")
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    for r in rows:
        r.update(img_s=args.batch / r["sec"], speedup=r["sec"] / ref[r["task"]])
        mfu = r["flops"] / r["sec"] / (peak * 1e12) if r["flops"] else None
        r["mfu"] = mfu
        mfu_s = f"{mfu:.1%}" if mfu else "-"
        mem_s = f"{r['mem']:.2f}" if r["mem"] else "-"
        print(f"{r['impl']:<14}{r['task']:<7}{r['img_s']:>10.1f}{r['sec'] * 1e3:>10.1f}"
              f"{r['speedup']:>10.2f}{mfu_s:>8}{mem_s:>9}")
    if args.csv:
        os.makedirs(os.path.dirname(args.csv) or ".", exist_ok=True)
        new = not os.path.exists(args.csv)
        with open(args.csv, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["time", "host", "device", "model", "batch", "img_size", "dtype", "impl", "task",
                            "img_per_s", "ms_per_step", "jaxvit_speedup", "mfu", "peak_gb"])
            for r in rows:
                w.writerow([stamp, platform.node(), device, args.model, args.batch, args.img_size, args.dtype,
                            r["impl"], r["task"], f"{r['img_s']:.2f}", f"{r['sec'] * 1e3:.2f}",
                            f"{r['speedup']:.3f}", f"{r['mfu']:.4f}" if r["mfu"] else "",
                            f"{r['mem']:.3f}" if r["mem"] else ""])
    return rows


if __name__ == "__main__":
    main()
