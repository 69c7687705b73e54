"""Where a ViT train step's time goes on this machine: forward and gradient of the whole model and
of one block's parts (attention, MLP, LayerNorm), each jitted alone, and the model gradient under
XLA:CPU flag variants (each in its own process). With ``--ops N``: instead, the trainer's whole
train step (AdamW) under jax's profiler, its time per compiled operation summed by kind (a dot,
YNNPACK's fusions, XLA's loop fusions) and by the jax operation it came from (``jvp`` = forward,
``transpose(jvp)`` = backward), the N largest, after the page faults, kernel time and CPU time
per step (how many cores the step kept busy).

python benchmarks/profile_step.py --depth 4 --embed-dim 64 --heads 2 --img-size 16 --patch 4 --batch 128
python benchmarks/profile_step.py --depth 12 --embed-dim 384 --heads 6 --img-size 224 --patch 16 --batch 32 \
    --ops 25   (vit_small_patch16_224's layout)
python benchmarks/profile_step.py --model swin_tiny_patch4_window7_224 --dtype bfloat16 --batch 128 --ops 25
    (on a GPU: each kernel's device time, by the HLO operation it runs)
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from jaxvit.train.xla_cpu import CPU_DOTS, compiler_options  # noqa: E402

FLAG_VARIANTS = ("", "--xla_cpu_multi_thread_eigen=false", "--xla_cpu_use_thunk_runtime=false",
                 "--xla_cpu_enable_fast_math=true", "--xla_cpu_use_xnnpack=true")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--embed-dim", type=int, default=64)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--img-size", type=int, default=16)
    p.add_argument("--patch", type=int, default=4)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--ops", type=int, default=0, help="N > 0: the whole train step's N costliest operations")
    p.add_argument("--attention", default="auto", help="the trainer's --config.attention")
    p.add_argument("--model", default="", help="with --ops: this model at its default size (1000 classes) "
                   "instead of the ViT laid out by --depth .. --patch")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="the compute dtype")
    p.add_argument("--cpu-dots", default="auto", choices=CPU_DOTS,
                   help="with --ops: the trainer's --config.cpu_dots (the matrix products' library on a CPU)")
    p.add_argument("--model-only", action="store_true", help=argparse.SUPPRESS)  # one flag variant's run
    return p.parse_args(argv)


def ms(fn, *args, repeats: int) -> float:
    import jax

    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / repeats * 1e3


def fwd_grad(module, x, repeats: int) -> tuple[float, float]:
    """(forward ms, gradient ms w.r.t. parameters and input) of ``module(x).sum()``."""
    import jax
    from flax import nnx

    graph, state = nnx.split(module)

    def f(s, x):
        return nnx.merge(graph, s)(x).sum()

    return ms(jax.jit(f), state, x, repeats=repeats), ms(jax.jit(jax.grad(f, argnums=(0, 1))), state, x,
                                                         repeats=repeats)


def synthetic_train_step(model, batch_size: int, img_size: int):
    """The trainer's train step (AdamW, no smoothing) on ``model``, its initial state and one
    synthetic batch: (step, state, batch)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx

    from jaxvit.train.step import make_train_step

    graph, params, stats, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    params, stats, rest = map(nnx.to_pure_dict, (params, stats, rest))
    schedule = optax.constant_schedule(1e-4)
    tx = optax.adamw(schedule, weight_decay=0.05)
    step = make_train_step(graph, rest, tx, schedule, model.num_classes, 0.0, mean=(0.5,) * 3, std=(0.5,) * 3)
    state = dict(step=jnp.asarray(0), params=params, batch_stats=stats, opt_state=tx.init(params),
                 rng=jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    batch = dict(image=jnp.asarray(rng.standard_normal((batch_size, img_size, img_size, 3)), jnp.float32),
                 label=jnp.asarray(rng.integers(0, model.num_classes, batch_size), jnp.int32))
    return step, state, batch


def op_profile(args, model) -> tuple[float, list[tuple[str, str, float]]]:
    """The trainer's train step on ``model``: its wall ms per step, and (kind, jax operation, ms per
    step) rows, costliest first: per compiled operation, the time jax's profiler records on XLA's
    threads (both threads' operations counted, so the sum can pass the step's wall time; an
    operation the profiler records no event for is missing from it), or on a GPU's streams."""
    import shutil
    import tempfile

    import jax
    from jax.profiler import ProfileData

    step, state, batch = synthetic_train_step(model, args.batch, args.img_size)
    options = compiler_options(args.cpu_dots, jax.default_backend())
    compiled = jax.jit(step).lower(state, batch).compile(compiler_options=options)
    # the jax operation each compiled operation came from, from the optimized HLO's metadata
    origin = dict(re.findall(r'%([\w.\-]+) = [^\n]*?op_name="(?:jit\([^)]*\)/)?([^"]*)"', compiled.as_text()))
    jax.block_until_ready(compiled(state, batch))
    steps = max(1, args.repeats // 10)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    for _ in range(steps):
        jax.block_until_ready(compiled(state, batch))
    wall = (time.perf_counter() - start) / steps * 1e3
    after = resource.getrusage(resource.RUSAGE_SELF)
    memory = compiled.memory_analysis()
    temp = memory.temp_size_in_bytes if memory else 0
    # XLA:CPU maps its temp buffer afresh for every execution: each step faults in every page of
    # it, and the kernel zero-fills them; the per-operation profile below does not show that time
    cpu_s = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / steps
    print(f"per step: {(after.ru_minflt - before.ru_minflt) / steps:.0f} page faults, "
          f"{(after.ru_stime - before.ru_stime) / steps:.2f} s in the kernel, temp buffer {temp / 2**20:.2f} MiB, "
          f"{cpu_s:.2f} s of CPU ({cpu_s / (wall / 1e3):.2f} of {os.cpu_count()} cores busy)", flush=True)
    trace_dir = tempfile.mkdtemp(prefix="profile_step_")
    jax.profiler.start_trace(trace_dir)
    for _ in range(steps):
        jax.block_until_ready(compiled(state, batch))
    jax.profiler.stop_trace()
    profile = ProfileData.from_file(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)[0])
    shutil.rmtree(trace_dir)
    ns = collections.Counter()
    # on a GPU, the kernels' device time on the device planes' streams (a kernel names its HLO
    # operation in its hlo_op stat; the host's thunk events are launches, not work); on a CPU,
    # the host threads' events named after the operations
    device_lines = [line for plane in profile.planes if plane.name.startswith("/device:")
                    for line in plane.lines if line.name.startswith("Stream")]
    lines = device_lines or [line for plane in profile.planes for line in plane.lines]
    for line in lines:
        for event in line.events:
            name = event.name
            if name not in origin and device_lines:
                name = next((str(v) for k, v in event.stats if k == "hlo_op"), name)
            if name in origin:
                ns[(re.sub(r"\.\d+$", "", name), origin[name][-70:])] += event.duration_ns
    return wall, [(kind, op, t / 1e6 / steps) for (kind, op), t in ns.most_common()]


def main(argv=None):
    args = parse_args(argv)
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx

    import jaxvit

    jaxvit.layers.attention_impl.set_implementation(args.attention)
    if args.model:
        if not args.ops:
            raise SystemExit("error: --model profiles with --ops only; add --ops N")
        model = jaxvit.create_model(args.model, num_classes=1000, dtype=args.dtype)
        args.img_size = jaxvit.registry.get_entry(args.model).default_cfg["input_size"][0]
    else:
        model = jaxvit.create_model("vit_tiny_patch16_224", num_classes=10, img_size=args.img_size,
                                    patch_size=args.patch, depth=args.depth, embed_dim=args.embed_dim,
                                    num_heads=args.heads, dtype=args.dtype)
    if args.ops:
        wall, rows = op_profile(args, model)
        print(f"train step {wall:.1f} ms (attention: {args.attention}, cpu_dots: {args.cpu_dots})")
        print(f"{'ms/step':>8}  {'kind':<26} jax operation (jvp: forward; transpose(jvp): backward)")
        for kind, op, t in rows[:args.ops]:
            print(f"{t:8.1f}  {kind:<26} {op}")
        print(f"{sum(t for _, _, t in rows):8.1f}  all {len(rows)} (kind, operation) pairs")
        return
    x = jnp.asarray(np.random.default_rng(0).standard_normal((args.batch, args.img_size, args.img_size, 3)),
                    jnp.float32)
    y = jnp.zeros((args.batch,), jnp.int32)
    graph, params, rest = nnx.split(model, nnx.Param, ...)
    params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)

    def loss(p, x):
        return optax.softmax_cross_entropy_with_integer_labels(nnx.merge(graph, p, rest)(x), y).mean()

    fwd = ms(jax.jit(loss), params, x, repeats=args.repeats)
    grad = ms(jax.jit(jax.grad(loss)), params, x, repeats=args.repeats)
    print(f"model   forward {fwd:7.2f} ms   gradient {grad:7.2f} ms   ({grad / fwd:.1f}x)", flush=True)
    if args.model_only:
        return
    tokens = (args.img_size // args.patch) ** 2 + 1
    h = jnp.ones((args.batch, tokens, args.embed_dim), jnp.float32)
    blk = model.blocks[0]
    for name, module in (("block", blk), ("attention", blk.attn), ("mlp", blk.mlp), ("layernorm", blk.norm1)):
        f, g = fwd_grad(module, h, args.repeats)
        print(f"{name:<9} forward {f:7.2f} ms   gradient {g:7.2f} ms   ({g / f:.1f}x)", flush=True)
    print("\nXLA_FLAGS variants (model gradient, each its own process):")
    base = [a for a in (argv if argv is not None else sys.argv[1:])]
    for flags in FLAG_VARIANTS:
        env = dict(os.environ, XLA_FLAGS=flags)
        out = subprocess.run([sys.executable, os.path.abspath(__file__), *base, "--model-only"], env=env,
                             capture_output=True, text=True, timeout=600).stdout.strip().splitlines()
        print(f"  {flags or '(none)':<40} {out[-1] if out else 'failed'}", flush=True)


if __name__ == "__main__":
    from jaxvit.train.host_memory import keep_freed_memory

    keep_freed_memory()  # as main.py does; GLIBC_TUNABLES= keeps glibc's defaults
    main()
