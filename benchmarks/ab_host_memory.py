"""The CPU train step with glibc's malloc defaults against jaxvit's kept host memory
(jaxvit/train/host_memory.py), timed in turns across processes.

A malloc setting holds for a whole process, so each variant is its own worker process: every worker
builds and compiles its step first, then the workers take turns, one step each a round, so the
machine's drift (this 2-core VM's speed moved 1.5x within an hour) falls on every variant alike.
Prints each round's times and each variant's median, with its page faults and kernel time a step.
``--steps-per-turn K`` runs K steps a turn and times the last K-1, back to back as a training
loop runs them (a worker that waited through the others' turns starts its first step with cold
caches and idle threads); ``--cpu-dots auto,xla`` times jaxvit's step compiled as each
``--config.cpu_dots`` (kept memory; glibc's defaults with the first only).

python benchmarks/ab_host_memory.py --model vit_small_patch16_224 --batch 32 --rounds 6 --torch
python benchmarks/ab_host_memory.py --model vit_small_patch16_224 --batch 32 --rounds 6 --torch \
    --steps-per-turn 3 --cpu-dots auto,xla
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run from a checkout

from ab_step import add_model_arguments, synthetic_step  # noqa: E402  (this directory)

from jaxvit.train.xla_cpu import CPU_DOTS  # noqa: E402


def _cpu_dots(text: str) -> list[str]:
    values = text.split(",")
    for v in values:
        if v not in CPU_DOTS:
            raise argparse.ArgumentTypeError(f"{v!r} is not one of {', '.join(CPU_DOTS)}")
    return values


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(p)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--torch", action="store_true", help="also timm eager's step, both ways")
    p.add_argument("--cpu-dots", default="auto", type=_cpu_dots,
                   help="jaxvit's matrix-product library (the trainer's --config.cpu_dots); a comma-separated "
                        "list times each, with kept memory (glibc's defaults with the first only)")
    p.add_argument("--steps-per-turn", type=int, default=1,
                   help="K > 1: each worker runs K steps a turn, the last K-1 timed (as a training loop runs "
                        "them: back to back); 1: one step a turn")
    p.add_argument("--worker", choices=["jaxvit", "timm"], help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _jaxvit_step(args):
    import jax

    from jaxvit.train import xla_cpu

    step, state, batch = synthetic_step(args)
    options = xla_cpu.compiler_options(args.cpu_dots[0], jax.default_backend())
    compiled, holder = jax.jit(step).lower(state, batch).compile(compiler_options=options), [state]

    def run():
        holder[0], metrics = compiled(holder[0], batch)
        return float(metrics["loss"])

    return run


def _timm_step(args):
    import timm
    import torch

    from jaxvit.registry import parse_model_args

    kwargs = dict(parse_model_args(args.model_args), **({"img_size": args.img_size} if args.img_size else {}))
    model = timm.create_model(args.model, num_classes=args.num_classes, **kwargs)
    size = args.img_size or model.pretrained_cfg["input_size"][1]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(args.batch, 3, size, size), torch.randint(0, args.num_classes, (args.batch,))

    def run():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return run


def worker(args) -> None:
    """Builds one step, runs two, then one step per line read from stdin, printing its figures."""
    from jaxvit.train.host_memory import keep_freed_memory

    print(json.dumps({"kept": keep_freed_memory(force=True) if os.environ.get("AB_KEEP") == "1" else False}),
          flush=True)
    run = _jaxvit_step(args) if args.worker == "jaxvit" else _timm_step(args)
    run(), run()
    print(json.dumps({"ready": True}), flush=True)
    for _ in sys.stdin:
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        run()
        seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
        print(json.dumps({"ms": seconds * 1000, "faults": after.ru_minflt - before.ru_minflt,
                          "sys_s": after.ru_stime - before.ru_stime}), flush=True)


def main(argv=None) -> dict[str, list[dict]]:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return {}
    given = argv if argv is not None else sys.argv[1:]
    # the worker gets its own --cpu-dots
    passed = [a for i, a in enumerate(given) if a != "--torch" and not a.startswith("--cpu-dots")
              and (i == 0 or given[i - 1] != "--cpu-dots")]
    dots = args.cpu_dots
    variants = ([("jaxvit", False, dots[0])] + [("jaxvit", True, d) for d in dots]
                + ([("timm", False, ""), ("timm", True, "")] if args.torch else []))
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    procs = {}
    for kind, keep, d in variants:  # built one after another: nothing is timed while another compiles
        name = f"{kind} ({'kept' if keep else 'glibc defaults'}{f', cpu_dots={d}' if len(dots) > 1 and d else ''})"
        procs[name] = subprocess.Popen([sys.executable, os.path.abspath(__file__), *passed, "--worker", kind,
                                        "--cpu-dots", d or "auto"],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                       env=dict(env, AB_KEEP="1" if keep else "0"))
        kept = json.loads(procs[name].stdout.readline())["kept"]
        assert kept == keep, f"{name}: the setting was not made"
        assert json.loads(procs[name].stdout.readline())["ready"]
    times: dict[str, list[dict]] = {name: [] for name in procs}
    k = max(1, args.steps_per_turn)
    for r in range(args.rounds):
        for name, proc in procs.items():
            turn = []
            for _ in range(k):
                proc.stdin.write("step\n")
                proc.stdin.flush()
                turn.append(json.loads(proc.stdout.readline()))
            timed = turn[1:] if k > 1 else turn
            times[name].append({key: statistics.mean(t[key] for t in timed) for key in timed[0]})
        print(f"round {r + 1}: " + ", ".join(f"{n} {t[-1]['ms']:.0f}" for n, t in times.items()), flush=True)
    per_turn = f"{k} steps a turn, the last {k - 1} timed" if k > 1 else "one step a turn"
    print(f"\n{args.model}, batch {args.batch}, fp32, AdamW, CPU, cpu_dots={','.join(dots)}, {per_turn}: "
          "median ms per step, page faults, kernel s")
    for name, t in times.items():
        print(f"{statistics.median(x['ms'] for x in t):9.0f} ms {statistics.median(x['faults'] for x in t):9.0f} "
              f"faults {statistics.median(x['sys_s'] for x in t):6.2f} s  {name}")
    for proc in procs.values():
        proc.stdin.close()
        proc.wait()
    return times


if __name__ == "__main__":
    main()
