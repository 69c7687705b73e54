"""Times jaxvit's train step and inference against timm's (eager, AMP, torch.compile) on synthetic data.

One model:   python benchmarks/bench.py --model vit_small_patch16_224 --batch 32 --steps 10
A sweep:     python benchmarks/bench.py --models gpu --dtype bfloat16 --batch 128 --md table.md
             (each model in its own process, so each peak-memory figure is that model's own and a
             stuck compile is bounded by --model-timeout)
Prints a table (img/s, ratio to jaxvit, step time, compile time, peak memory, MFU), appends rows
to --csv and, with --md, writes the markdown table of this run's rows. jaxvit's train rows also
give "plan GB": the step's arguments, outputs and temporaries as XLA's buffer assignment plans
them; "peak GB" is what the device's allocator saw at its most, compiling included (on a GPU,
autotuning's scratch and workspaces count there), so the two apart show where a peak comes from.

MFU counts the model's FLOPs from the jitted step's jaxpr (jaxvit/flops.py: the matrix products
and convolutions, traced with XLA attention and no remat), so it is right on GPU, where XLA's
cost analysis leaves out the cuBLAS/cuDNN calls. The peak is the chip's dense bf16/fp16 figure
(PEAK_TFLOPS) or, elsewhere, a measured matmul.

No TensorFlow import: runs where TF is absent (the lent GPU machine); ml_collections not needed.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run from a checkout

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

import jaxvit  # noqa: E402
from jaxvit.flops import count_flops  # noqa: E402
from jaxvit.layers import remat  # noqa: E402
from jaxvit.registry import get_entry, parse_model_args  # noqa: E402
from jaxvit.train import xla_cpu  # noqa: E402
from jaxvit.train.step import make_train_step, normalize_on_device  # noqa: E402

# issue 15's sweep, each at its default size
SWEEPS = {
    "gpu": ("vit_base_patch16_224", "deit_small_patch16_224", "swin_tiny_patch4_window7_224", "mixer_b16_224",
            "mvitv2_tiny", "tnt_s_patch16_224", "inception_v4", "perceiver_base"),
}
# Dense (no sparsity) bf16/fp16 tensor-core peaks from the vendors' data sheets, TFLOP/s; keyed
# by a substring of jax's device_kind. MFU is counted FLOPs / step time / this.
PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L4": 121.0, "TPU v5 lite": 197.0, "TPU v4": 275.0,
               "TPU v5p": 459.0, "TPU v6": 918.0}
TORCH_MODES = ("eager", "amp", "compile")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FIELDS = ["time", "host", "device", "model", "batch", "img_size", "dtype", "impl", "task", "img_per_s",
          "ms_per_step", "jaxvit_speedup", "mfu", "peak_gb", "compile_s", "note", "flops", "xla_flops", "plan_gb"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vit_small_patch16_224")
    p.add_argument("--models", default="", help="comma-separated names, or a sweep: " + ", ".join(SWEEPS)
                   + "; each in its own process (overrides --model)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--img-size", type=int, default=0, help="0: the model's default input size")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    p.add_argument("--steps", type=int, default=10, help="timed steps (after warm-up)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--peak-tflops", type=float, default=0.0,
                   help="device peak for MFU; 0 = PEAK_TFLOPS for the chip (bf16), else a measured matmul")
    p.add_argument("--torch", default="eager,amp,compile",
                   help="timm modes to time: eager, amp (autocast, GPU), compile; '' for none. With "
                   "--dtype bfloat16 every mode runs under bf16 autocast")
    p.add_argument("--compile-timeout", type=float, default=120.0,
                   help="seconds for timm's torch.compile run (its own process); past it, 'not measured'")
    p.add_argument("--model-timeout", type=float, default=600.0, help="seconds per model in a --models sweep")
    p.add_argument("--attention", default="auto", help="attention kernel: auto | xla | cudnn | xla_padded | head_major "
                   "(jaxvit/layers/attention.py; the trainer's --config.attention)")
    p.add_argument("--remat", default="none", choices=remat.POLICIES, help="the trainer's --config.remat")
    p.add_argument("--pad-multiple", type=int, default=0,
                   help="the multiple cuDNN's attention inputs are padded to (0: jaxvit's, "
                   "jaxvit.layers.attention.PAD_MULTIPLE); to time other paddings on a GPU")
    p.add_argument("--transfer-dtype", default="float32", choices=["float32", "uint8"],
                   help="the trainer's --config.transfer_dtype: uint8 images, normalized in the step")
    p.add_argument("--cpu-dots", default="auto", choices=xla_cpu.CPU_DOTS,
                   help="on a CPU: the library of the matrix products (the trainer's --config.cpu_dots)")
    p.add_argument("--jax", default="train,infer", help="jaxvit tasks to time; '' for none")
    p.add_argument("--model-args", default="", help="extra constructor keywords, e.g. depth=2,embed_dim=64")
    p.add_argument("--csv", default="benchmarks/results.csv")
    p.add_argument("--md", default="", help="write this run's rows as a markdown table here")
    p.add_argument("--md-from", default="", help="only write --md (or print) the table of this CSV's rows")
    p.add_argument("--torch-only", default="", help=argparse.SUPPRESS)  # internal: one timm mode, JSON out
    args = p.parse_args(argv)
    if not args.img_size:
        args.img_size = get_entry(args.model).default_cfg["input_size"][0] if not args.models else 0
    return args


def model_kwargs(args) -> dict:
    return dict(num_classes=args.num_classes, img_size=args.img_size, **parse_model_args(args.model_args))


def timed(fn, steps: int, warmup: int, sync) -> tuple[float, float]:
    """(seconds per call after ``warmup`` calls, seconds of the warm-up calls: compile + first runs)."""
    start = time.perf_counter()
    out = None
    for _ in range(warmup):
        out = fn()
    sync(out)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        out = fn()
    sync(out)
    return (time.perf_counter() - start) / steps, first


def measure_matmul_tflops(dtype) -> float:
    n = 4096 if jax.default_backend() != "cpu" else 1024
    a = jnp.ones((n, n), dtype)
    f = jax.jit(lambda x: x @ x)
    sec, _ = timed(lambda: f(a), 10, 2, lambda o: o.block_until_ready())
    return 2 * n**3 / sec / 1e12


def peak_tflops(args) -> tuple[float, str]:
    if args.peak_tflops:
        return args.peak_tflops, "given"
    kind = jax.devices()[0].device_kind
    if args.dtype == "bfloat16":
        for key, value in PEAK_TFLOPS.items():
            if key in kind:
                return value, "data sheet"
    return measure_matmul_tflops(jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32), "measured matmul"


def peak_memory_gb() -> float | None:
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return peak / 2**30 if peak else None


def xla_flops(compiled) -> float | None:
    """XLA's own FLOP count of the compiled program: with remat it exceeds the model's count by the
    recomputed forward. On GPU it leaves out cuBLAS/cuDNN custom calls (so it is not the MFU's)."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost  # older jax: one dict per device
    return (cost or {}).get("flops")


def attention_kernel(compiled) -> str:
    """Which attention ran: cuDNN's fused kernel shows as a custom call in the optimized HLO."""
    return "cudnn" if "fmha" in compiled.as_text() else "xla"


def _compile(lower, options=None):
    """``lower().compile(compiler_options=options)``; where the fused attention kernel fails to
    compile (cuDNN refusing a shape only when the program is built), XLA's attention instead, with
    the reason as a note."""
    try:
        return lower().compile(compiler_options=options), ""
    except Exception as e:  # noqa: BLE001  (any kernel refusal: the figure is still worth having)
        if jaxvit.layers.attention_impl.get_implementation() == "xla":
            raise
        reason = str(e).strip().splitlines()[0][:100]
        print(f"compile failed ({reason}); XLA attention instead", flush=True)
        with jaxvit.layers.attention_impl.implementation("xla"):
            return lower().compile(compiler_options=options), f" (fused kernel failed: {reason})"


def bench_jax(args) -> list[dict]:
    jaxvit.layers.attention_impl.set_implementation(args.attention)
    jaxvit.layers.attention_impl.set_pad_multiple(args.pad_multiple or jaxvit.layers.attention_impl.PAD_MULTIPLE)
    remat.set_policy(args.remat)
    tasks = [t for t in args.jax.split(",") if t]
    options = xla_cpu.compiler_options(args.cpu_dots, jax.default_backend())
    model = jaxvit.create_model(args.model, dtype=args.dtype, **model_kwargs(args))
    graph, params, batch_stats, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    params, batch_stats, rest = map(nnx.to_pure_dict, (params, batch_stats, rest))
    schedule = optax.constant_schedule(1e-4)
    tx = optax.adamw(schedule, weight_decay=0.05)
    norm = dict(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    step = make_train_step(graph, rest, tx, schedule, args.num_classes, 0.0, **norm)
    state = dict(step=jnp.asarray(0), params=params, batch_stats=batch_stats,
                 opt_state=tx.init(params), rng=jax.random.PRNGKey(0))
    state = jax.tree.map(jnp.copy, state)  # donated below; the model keeps its own arrays
    rng = np.random.default_rng(0)
    shape = (args.batch, args.img_size, args.img_size, 3)
    batch = dict(
        image=jnp.asarray(rng.integers(0, 256, shape, np.uint8) if args.transfer_dtype == "uint8"
                          else rng.standard_normal(shape, np.float32)),
        label=jnp.asarray(rng.integers(0, args.num_classes, args.batch), jnp.int32),
    )
    # the model's FLOPs: XLA attention, no remat (recomputation is not model work)
    with jaxvit.layers.attention_impl.implementation("xla"), remat.policy("none"):
        # (a lambda: make_jaxpr(step) would leave its trace in jit's cache for jit(step) below)
        flops = count_flops(lambda s, b: step(s, b), state, batch)
        infer_flops = count_flops(lambda p, s, x: nnx.merge(graph, p, s, rest)(normalize_on_device(x, **norm)),
                                  params, batch_stats, batch["image"])
    rows = []
    if "train" in tasks:
        start = time.perf_counter()
        # a fresh function per lowering: jit caches traces by function, and a retry under XLA
        # attention must trace again
        compiled, fallback = _compile(lambda: jax.jit(lambda s, b: step(s, b), donate_argnums=(0,)).lower(state, batch),
                                      options)
        compile_s = time.perf_counter() - start
        holder = {"s": state}

        def one_step():
            holder["s"], metrics = compiled(holder["s"], batch)
            return metrics["loss"]

        sec, _ = timed(one_step, args.steps, args.warmup, lambda o: o.block_until_ready())
        from jaxvit.train.state import peak_bytes  # XLA's buffer assignment: the step's own plan

        rows.append(dict(impl="jaxvit", task="train", sec=sec, flops=flops, mem=peak_memory_gb(),
                         compile_s=compile_s, note=attention_kernel(compiled) + fallback,
                         xla_flops=xla_flops(compiled), plan_gb=peak_bytes(compiled) / 2**30 or None))
        params, batch_stats = holder["s"]["params"], holder["s"]["batch_stats"]
        del holder, compiled
    if "infer" in tasks:
        eval_model = nnx.view(nnx.merge(graph, params, batch_stats, rest), deterministic=True,
                              use_running_average=True, raise_if_not_found=False)
        egraph, eparams, estats, erest = nnx.split(eval_model, nnx.Param, nnx.BatchStat, ...)
        start = time.perf_counter()
        infer, fallback = _compile(lambda: jax.jit(
            lambda p, s, x: nnx.merge(egraph, p, s, erest)(normalize_on_device(x, **norm))).lower(
            eparams, estats, batch["image"]), options)
        compile_s = time.perf_counter() - start
        isec, _ = timed(lambda: infer(eparams, estats, batch["image"]), args.steps, args.warmup,
                        lambda o: o.block_until_ready())
        rows.append(dict(impl="jaxvit", task="infer", sec=isec, flops=infer_flops, mem=None,
                         compile_s=compile_s, note=attention_kernel(infer) + fallback))
    setting = [s for s in (f"attention={args.attention}" if args.attention != "auto" else "",
                           f"remat={args.remat}" if args.remat != "none" else "",
                           f"pad={args.pad_multiple}" if args.pad_multiple else "",
                           "uint8 input" if args.transfer_dtype == "uint8" else "",
                           f"cpu_dots={args.cpu_dots}" if options else "") if s]
    for r in rows:
        r["impl"] += f" ({', '.join(setting)})" if setting else ""
    return rows


def bench_torch_mode(args, mode: str) -> list[dict]:
    import timm
    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    if mode == "amp" and dev == "cpu":
        return []  # autocast on CPU is not what users run; reported on GPU only
    torch.manual_seed(0)
    kwargs = model_kwargs(args)
    try:
        model = timm.create_model(args.model, pretrained=False, **kwargs)
    except TypeError as e:  # timm's convolutional models (Inception-v4) take any size and no img_size
        if "img_size" not in str(e):
            raise
        kwargs.pop("img_size")
        model = timm.create_model(args.model, pretrained=False, **kwargs)
    model = model.to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    x = torch.randn(args.batch, 3, args.img_size, args.img_size, device=dev)
    y = torch.randint(0, args.num_classes, (args.batch,), device=dev)
    fwd = torch.compile(model) if mode == "compile" else model
    amp = torch.autocast(dev, dtype=torch.bfloat16, enabled=(mode == "amp" or args.dtype == "bfloat16"))

    def one_step():
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
    sec, first = timed(one_step, args.steps, args.warmup, sync)
    mem = torch.cuda.max_memory_allocated() / 2**30 if dev == "cuda" else None
    model.eval()
    with torch.no_grad(), amp:
        isec, ifirst = timed(lambda: fwd(x), args.steps, args.warmup, sync)
    name = f"timm {mode}"
    compile_s = (first, ifirst) if mode == "compile" else (None, None)
    return [dict(impl=name, task="train", sec=sec, flops=None, mem=mem, compile_s=compile_s[0]),
            dict(impl=name, task="infer", sec=isec, flops=None, mem=None, compile_s=compile_s[1])]


def bench_torch(args, modes: list[str]) -> list[dict]:
    """Eager and AMP here; torch.compile in its own process, stopped after --compile-timeout."""
    rows = []
    for mode in modes:
        if mode not in TORCH_MODES:
            raise SystemExit(f"error: --torch mode {mode!r} is not one of {TORCH_MODES}")
        if mode != "compile":
            rows += bench_torch_mode(args, mode)
            continue
        cmd = [sys.executable, os.path.abspath(__file__), "--torch-only", "compile", *_passed_args(args)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.compile_timeout)
        except subprocess.TimeoutExpired:
            note = f"not measured: compile and {args.steps + args.warmup} steps > {args.compile_timeout:.0f} s"
            rows += [dict(impl="timm compile", task=t, sec=None, note=note) for t in ("train", "infer")]
            continue
        if proc.returncode:
            note = "failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1][:120]
            rows += [dict(impl="timm compile", task=t, sec=None, note=note) for t in ("train", "infer")]
            continue
        rows += json.loads(proc.stdout.strip().splitlines()[-1])
    return rows


def _passed_args(args, model: str = "") -> list[str]:
    return ["--model", model or args.model, "--batch", str(args.batch), "--img-size", str(args.img_size),
            "--num-classes", str(args.num_classes), "--dtype", args.dtype, "--steps", str(args.steps),
            "--warmup", str(args.warmup), "--model-args", args.model_args]


def run_one(args) -> list[dict]:
    """jaxvit's rows, printed and written at once (a run stopped in timm's half keeps them), then timm's."""
    jax_rows = bench_jax(args) if args.jax else []
    finish(args, jax_rows, jax_rows)
    gc.collect()  # the jax arrays above are dropped before torch allocates
    rows = []
    modes = [m for m in args.torch.split(",") if m]
    if modes:
        try:
            import timm
        except ImportError:
            modes = []
        else:
            if args.model not in timm.list_models():
                rows += [dict(impl="timm", task=t, sec=None, note=f"{args.model} is not a timm model")
                         for t in ("train", "infer")]
                modes = []
        rows += bench_torch(args, modes)
    finish(args, rows, jax_rows)
    return jax_rows + rows


def finish(args, rows: list[dict], jax_rows: list[dict]) -> None:
    """Fills img/s, ratio to ``jax_rows``, MFU; prints the table; appends to --csv."""
    if not rows:
        return
    if not hasattr(args, "peak"):
        args.peak = peak_tflops(args)
    peak, source = args.peak
    ref = {r["task"]: r["sec"] for r in jax_rows if r.get("sec")}
    device = f"{jax.devices()[0].device_kind} x{jax.device_count()}"
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    print(f"\n{args.model}  batch {args.batch}  {args.img_size}px  {args.dtype}  on {device}"
          f"  (peak {peak:.1f} TFLOP/s, {source})")
    print(f"{'impl':<40}{'task':<7}{'img/s':>9}{'ms':>8}{'jaxvit x':>9}{'MFU':>7}{'peak GB':>8}{'plan GB':>8}"
          f"{'compile s':>10}  note")
    for r in rows:
        sec = r.get("sec")
        r.update(time=stamp, host=platform.node(), device=device, model=args.model, batch=args.batch,
                 img_size=args.img_size, dtype=args.dtype)
        r["img_per_s"] = args.batch / sec if sec else None
        r["ms_per_step"] = sec * 1e3 if sec else None
        r["jaxvit_speedup"] = sec / ref[r["task"]] if sec and r["task"] in ref else None
        r["mfu"] = r["flops"] / sec / (peak * 1e12) if sec and r.get("flops") else None
        r["peak_gb"] = r.get("mem")
        cell = {k: (spec.format(v) if isinstance(v, float) else "-") for k, v, spec in (
            ("img", r["img_per_s"], "{:.1f}"), ("ms", r["ms_per_step"], "{:.1f}"), ("x", r["jaxvit_speedup"], "{:.2f}"),
            ("mfu", r["mfu"], "{:.1%}"), ("mem", r["peak_gb"], "{:.2f}"), ("plan", r.get("plan_gb"), "{:.2f}"),
            ("c", r.get("compile_s"), "{:.1f}"))}
        print(f"{r['impl']:<40}{r['task']:<7}{cell['img']:>9}{cell['ms']:>8}{cell['x']:>9}{cell['mfu']:>7}"
              f"{cell['mem']:>8}{cell['plan']:>8}{cell['c']:>10}  {r.get('note', '')}")
    if args.csv:
        os.makedirs(os.path.dirname(os.path.abspath(args.csv)), exist_ok=True)
        new = not os.path.exists(args.csv)
        fields = FIELDS
        if not new:  # a CSV begun before a column was added keeps its own columns
            with open(args.csv, newline="") as f:
                fields = next(csv.reader(f), None) or FIELDS
        with open(args.csv, "a", newline="") as f:
            w = csv.DictWriter(f, fields, extrasaction="ignore")
            if new:
                w.writeheader()
            for r in rows:
                w.writerow({k: (f"{v:.4g}" if isinstance(v, float) else ("" if v is None else v))
                            for k, v in r.items()})


def markdown(rows: list[dict]) -> str:
    """One line per (model, task): jaxvit's img/s and peak GB beside timm's AMP and compile."""
    out = ["| model | task | jaxvit img/s | MFU | timm eager | timm AMP | timm compile | jaxvit / compile | "
           "peak GB jaxvit / timm AMP / compile | attention |", "|---|---|---|---|---|---|---|---|---|---|"]
    keys = list(dict.fromkeys((r["model"], r["task"], r["impl"]) for r in rows if r["impl"].startswith("jaxvit")))

    def num(v, fmt="{:.0f}"):
        return fmt.format(float(v)) if v not in (None, "") else "-"

    for model, task, impl in keys:
        def get(name, model=model, task=task):
            return next((r for r in rows if (r["model"], r["task"], r["impl"]) == (model, task, name)), {})

        j, eager, amp, comp = get(impl), get("timm eager"), get("timm amp"), get("timm compile")
        ratio = (f"{float(j['img_per_s']) / float(comp['img_per_s']):.2f}x"
                 if j.get("img_per_s") and comp.get("img_per_s") else "-")
        mem = " / ".join(num(x.get("peak_gb"), "{:.2f}") for x in (j, amp, comp)) if task == "train" else ""
        label = model + impl[len("jaxvit"):]
        compiled = num(comp.get("img_per_s")) if comp.get("img_per_s") else comp.get("note", "-")
        out.append(f"| {label} | {task} | {num(j.get('img_per_s'))} | {num(j.get('mfu'), '{:.1%}')} | "
                   f"{num(eager.get('img_per_s'))} | {num(amp.get('img_per_s'))} | {compiled} | "
                   f"{ratio} | {mem} | {j.get('note', '')} |")
    return "\n".join(out) + "\n"


def sweep(args) -> list[dict]:
    names = SWEEPS.get(args.models, tuple(m for m in args.models.split(",") if m))
    rows = []
    csv_path = os.path.abspath(args.csv or os.path.join(ROOT, "benchmarks", "results.csv"))
    for name in names:
        argv = [*_passed_args(args, name), "--torch", args.torch, "--compile-timeout", str(args.compile_timeout),
                "--attention", args.attention, "--remat", args.remat, "--pad-multiple", str(args.pad_multiple),
                "--jax", args.jax,
                "--transfer-dtype", args.transfer_dtype, "--cpu-dots", args.cpu_dots,
                "--peak-tflops", str(args.peak_tflops), "--csv", csv_path]
        before = _read_csv(csv_path)
        start = time.perf_counter()
        try:
            subprocess.run([sys.executable, os.path.abspath(__file__), *argv], timeout=args.model_timeout,
                           check=False)
        except subprocess.TimeoutExpired:
            print(f"{name}: stopped after {args.model_timeout:.0f} s")
        print(f"[{name}: {time.perf_counter() - start:.0f} s]", flush=True)
        rows += _read_csv(csv_path)[len(before):]
    return rows


def _read_csv(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.md_from:
        table = markdown(_read_csv(args.md_from))
        if args.md:
            with open(args.md, "w") as f:
                f.write(table)
        print(table)
        return []
    if args.torch_only:
        rows = bench_torch_mode(args, args.torch_only)
        print(json.dumps(rows))
        return rows
    if args.models:
        rows = sweep(args)
    else:
        rows = run_one(args)
        rows = _read_csv(args.csv)[-len(rows):] if args.csv and rows else rows
    if args.md:
        with open(args.md, "w") as f:
            f.write(markdown(rows))
        print("\n" + markdown(rows))
    return rows


if __name__ == "__main__":
    from jaxvit.train.host_memory import keep_freed_memory

    keep_freed_memory()  # as main.py does (timm's steps here get it too); GLIBC_TUNABLES= keeps glibc's
    main()
