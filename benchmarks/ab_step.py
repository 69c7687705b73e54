"""Train-step variants timed against each other in one process: each variant compiled once, then
timed in turns (round 1: A, B, ...; round 2: A, B, ...), the median per variant. On a machine
whose speed drifts (this 2-core VM's did by 1.5x within an hour), turns in one process compare
variants where separate runs cannot.

A variant is an attention implementation (the trainer's --config.attention), optionally with
``/`` and the YNNPACK fusion types XLA:CPU may use for this program (the compile option
``xla_cpu_experimental_ynn_fusion_type``; empty: none), then optionally, after spaces,
``name=value`` items: the settings jaxvit reads when it traces a model (``linear_rows=unmerged``,
``residuals=plain``, jaxvit/layers/common.py; ``remat=elementwise``, jaxvit/layers/remat.py), or
XLA compile options for this program (a name that starts with ``xla_``, e.g.
``xla_cpu_prefer_vector_width=512``; true/false a bool, digits an int, else the string, e.g. an
enum list):

python benchmarks/ab_step.py --model vit_small_patch16_224 --batch 32 \\
    --variants "xla;auto;auto/LIBRARY_FUSION_TYPE_REDUCE,LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION"
python benchmarks/ab_step.py --model vit_small_patch16_224 --batch 32 --rounds 8 \\
    --variants "auto linear_rows=unmerged;auto"
python benchmarks/ab_step.py --model vit_small_patch16_224 --batch 32 --rounds 10 --steps 1 \\
    --variants "auto;auto xla_cpu_prefer_vector_width=512"
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout


# a variant's name=value settings: jaxvit's trace-time settings of these names
TRACE_SETTINGS = ("linear_rows", "residuals", "remat")


def trace_setting(name: str):
    """(the values ``name`` takes, its context manager: ``with context(value): ...``)."""
    from jaxvit.layers import common, remat

    if name == "remat":
        return remat.POLICIES, remat.policy
    return getattr(common, f"_{name}").choices, getattr(common, name)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The model and batch a train step is built for (``synthetic_step``); also ab_host_memory.py's."""
    p.add_argument("--model", default="vit_small_patch16_224")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--img-size", type=int, default=0, help="0: the model's default")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--model-args", default="", help="constructor keywords, e.g. depth=2,embed_dim=64")


def synthetic_step(args):
    """(step, state, batch): jaxvit's fp32 AdamW train step for the arguments' model, on random data."""
    from profile_step import synthetic_train_step

    import jaxvit
    from jaxvit.registry import get_entry, parse_model_args

    size = args.img_size or get_entry(args.model).default_cfg["input_size"][0]
    model = jaxvit.create_model(args.model, num_classes=args.num_classes, img_size=size,
                                **parse_model_args(args.model_args))
    return synthetic_train_step(model, args.batch, size)


def xla_option_value(text: str):
    """An XLA compile option's value as XLA's option parser takes it: true/false a bool, digits an
    int, anything else the string (enum lists such as LIBRARY_FUSION_TYPE_DOT stay strings)."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return int(text)
    except ValueError:
        return text


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(p)
    p.add_argument("--variants", default="xla;auto", help="';'-separated: attention[/ynn fusion types]")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=2, help="steps per variant per round")
    args = p.parse_args(argv)
    for variant in args.variants.split(";"):
        for setting in variant.split()[1:]:
            name, _, value = setting.partition("=")
            if name.startswith("xla_"):
                continue  # XLA checks its own options when it compiles
            if name not in TRACE_SETTINGS:
                p.error(f"variant {variant!r}: {name!r} is not a setting; use one of {', '.join(TRACE_SETTINGS)}")
            choices = trace_setting(name)[0]
            if value not in choices:
                p.error(f"variant {variant!r}: {name} takes one of {', '.join(choices)}")
    return args


def main(argv=None) -> dict[str, list[float]]:
    args = parse_args(argv)
    import jax

    import jaxvit
    from jaxvit.train import xla_cpu

    step, state, batch = synthetic_step(args)
    compiled = {}
    for variant in filter(None, args.variants.split(";")):
        kernel, *settings = variant.split()
        attention, _, ynn = kernel.partition("/")
        options = {"xla_cpu_experimental_ynn_fusion_type": ynn} if "/" in kernel else {}
        with contextlib.ExitStack() as stack:
            stack.enter_context(jaxvit.layers.attention_impl.implementation(attention))
            for setting in settings:
                name, _, value = setting.partition("=")
                if name.startswith("xla_"):
                    options[name] = xla_option_value(value)
                else:
                    stack.enter_context(trace_setting(name)[1](value))
            start = time.perf_counter()
            # a fresh function per variant: jit caches traces by function, and the kernel is traced in
            lowered = jax.jit(lambda s, b: step(s, b)).lower(state, batch)
            try:
                compiled[variant] = lowered.compile(compiler_options=options or None)
            except jax.errors.JaxRuntimeError as e:
                if not xla_cpu.rejected_option(e):
                    raise
                print(f"error: ab_step.py: variant {variant!r}: {str(e).splitlines()[0]} "
                      "(this jaxlib's XLA lacks that option or value; fix or drop it in --variants)", file=sys.stderr)
                raise SystemExit(2) from None
        _, metrics = compiled[variant](state, batch)
        print(f"{variant}: compiled in {time.perf_counter() - start:.1f} s, loss {float(metrics['loss']):.6f}",
              flush=True)
    times = {v: [] for v in compiled}
    for _ in range(args.rounds):
        for variant, fn in compiled.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                jax.block_until_ready(fn(state, batch))
            times[variant].append((time.perf_counter() - start) / args.steps * 1e3)
    size, platform = batch["image"].shape[1], jax.devices()[0].platform
    print(f"\n{args.model}, batch {args.batch}, {size} px, fp32, AdamW, {platform}: ms per step")
    for variant, ts in times.items():
        print(f"{statistics.median(ts):9.1f}  {variant or '(default)'}   rounds: {', '.join(f'{t:.0f}' for t in ts)}")
    return times


if __name__ == "__main__":
    from jaxvit.train.host_memory import keep_freed_memory

    keep_freed_memory()  # as main.py does; GLIBC_TUNABLES= keeps glibc's defaults
    main()
