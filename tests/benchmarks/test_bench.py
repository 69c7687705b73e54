"""bench.py and gpu.sh run end to end for a tiny model (smoke tests, not timings), and the figures
they derive (counted FLOPs, the program they time) are the right ones."""

import csv
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from conftest import ROOT
from flax import nnx

import jaxvit
from jaxvit.flops import count_flops
from jaxvit.layers import attention_impl

TINY = ["--model", "vit_tiny_patch16_224", "--img-size", "32", "--model-args", "patch_size=8,depth=2",
        "--num-classes", "10", "--batch", "4", "--steps", "2", "--warmup", "1"]


def _bench(tmp_path, *args, name="r.csv"):
    out = tmp_path / name
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/bench.py"), *TINY, *args, "--csv", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tensorflow" not in proc.stderr.lower()
    return list(csv.DictReader(open(out))), proc.stdout


def test_bench_times_timm_eager(tmp_path):
    """timm's side of bench.py (jaxvit's rows come from the gpu.sh run below)."""
    pytest.importorskip("timm", reason="timm (the torch extra) is needed to compare against")
    rows, _ = _bench(tmp_path, "--torch", "eager", "--jax", "")
    assert {(r["impl"], r["task"]) for r in rows} == {("timm eager", "train"), ("timm eager", "infer")}
    assert all(float(r["img_per_s"]) > 0 for r in rows)


def test_bench_cpu_dots_xla_row(tmp_path):
    """bench.py --cpu-dots xla compiles jaxvit's step as --config.cpu_dots=xla and says so in the row."""
    # appended to a CSV begun before the plan_gb column: the row keeps that file's columns
    old_header = "time,host,device,model,batch,img_size,dtype,impl,task,img_per_s,ms_per_step,jaxvit_speedup," \
                 "mfu,peak_gb,compile_s,note,flops,xla_flops"
    (tmp_path / "r.csv").write_text(old_header + "\n")
    rows, _ = _bench(tmp_path, "--torch", "", "--jax", "train", "--cpu-dots", "xla")
    assert [(r["impl"], r["task"]) for r in rows] == [("jaxvit (cpu_dots=xla)", "train")]
    assert float(rows[0]["img_per_s"]) > 0 and float(rows[0]["xla_flops"]) > 0 and None not in rows[0]


def test_counted_flops_of_vit_base_are_its_analytic_count():
    """ViT-B/16 at 224 px, forward, one image: patch embedding + 12 blocks (qkv, q@k, attn@v,
    proj, two MLP layers) + head, 2 FLOPs per multiply-add: 35.13 GFLOP (timm lists 17.6 GMACs);
    the train step's backward adds twice the forward except the image's own gradient."""
    model = nnx.eval_shape(lambda: jaxvit.create_model("vit_base_patch16_224"))
    graph, state = nnx.split(model)
    x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
    n, d, p = 197, 768, 16
    analytic = 2 * (196 * d * 3 * p * p + 12 * (n * d * 3 * d + 2 * n * n * d + n * d * d + 2 * n * d * 4 * d)
                    + d * 1000)
    with attention_impl.implementation("xla"):
        forward = count_flops(lambda s, x: nnx.merge(graph, s)(x), state, x)
        train = count_flops(jax.grad(lambda s, x: nnx.merge(graph, s)(x).sum()), state, x)
    assert forward == analytic
    assert train == 3 * forward - 2 * 196 * d * 3 * p * p  # no gradient for the image


def test_gpu_sh_runs_its_sweep_on_a_tiny_setting(tmp_path):
    """benchmarks/gpu.sh end to end on the CPU with tiny settings, its opt-in stages included as a
    GPU session would run them (one process: 62 + 40 s of the suite as two): every stage writes
    its rows, an A/B row is timed under the setting it names, a profile is written per model, and
    the markdown table lists the rows."""
    pytest.importorskip("timm", reason="timm (the torch extra) is needed to compare against")
    env = dict(os.environ, PYTHON=sys.executable, FLAGSHIP="vit_tiny_patch16_224", MODELS="deit_tiny_patch16_224",
               STAGES="jax,timm,ab,profile", COMPILE_S="1", FLAGSHIP_COMPILE_S="1", WARM_S="1",
               BENCH_ARGS="--batch 2 --steps 1 --warmup 1 --img-size 32 --num-classes 10 "
                          "--model-args patch_size=8,depth=2",
               AB_ROWS="--model vit_tiny_patch16_224 --torch= --jax train --attention xla_padded --pad-multiple 2",
               PROFILE_MODELS="vit_tiny_patch16_224", PROFILE_ARGS="--batch 2 --ops 5")
    proc = subprocess.run(["bash", str(ROOT / "benchmarks/gpu.sh"), str(tmp_path)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "gpu.csv")))
    row = {(r["model"], r["impl"], r["task"]): r for r in rows}
    impls = set(row)
    plain = row["vit_tiny_patch16_224", "jaxvit", "train"]
    assert float(plain["img_per_s"]) > 0 and float(plain["mfu"]) > 0
    assert float(row["vit_tiny_patch16_224", "jaxvit", "infer"]["img_per_s"]) > 0
    # the counted FLOPs are the model's: XLA:CPU's count of the same program (which also counts
    # elementwise work) is within a few percent above it (measured 1.11x for this model)
    assert 1.0 <= float(plain["xla_flops"]) / float(plain["flops"]) < 1.3
    # the step's planned memory (XLA's buffer assignment), beside the allocator's peak where a
    # device reports one (a CPU does not)
    assert float(plain["plan_gb"]) > 0
    # The FLOP count traces the step with XLA attention and no remat; the timed program must
    # still be traced with the setting asked for (a shared jit trace once timed the
    # unrematerialized step under --remat block, on an H100). With remat the compiled program
    # recomputes each block's forward: XLA counts more FLOPs than the model's (measured 1.23x
    # the plain step's here).
    remat = row["vit_tiny_patch16_224", "jaxvit (remat=block)", "train"]
    assert remat["flops"] == plain["flops"]  # the model's FLOPs: the same either way
    assert float(remat["xla_flops"]) > 1.15 * float(plain["xla_flops"]), (plain, remat)
    assert row["vit_tiny_patch16_224", "jaxvit (remat=elementwise)", "train"]["flops"] == plain["flops"]
    assert ("vit_tiny_patch16_224", "jaxvit (uint8 input)", "train") in impls
    assert ("deit_tiny_patch16_224", "jaxvit", "infer") in impls
    # the A/B stage's row, named by its settings
    assert float(row["vit_tiny_patch16_224", "jaxvit (attention=xla_padded, pad=2)", "train"]["img_per_s"]) > 0
    # torch.compile given 1 s: reported as not measured, not a failure
    assert any(r["impl"] == "timm compile" and r["note"].startswith("not measured") for r in rows)
    table = (tmp_path / "gpu.md").read_text()
    assert "| deit_tiny_patch16_224 | train |" in table and "| vit_tiny_patch16_224 (remat=block) | train |" in table
    profile = (tmp_path / "profile_vit_tiny_patch16_224.txt").read_text()
    assert "train step" in profile and "(kind, operation) pairs" in profile, profile[-2000:]


def test_bench_input_smoke():
    """bench_input.py prints the pipeline's img/s per core next to the step's (not a timing)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/bench_input.py"), "--config=configs/default.py",
         "--config.model_args=depth=1,embed_dim=32,num_heads=2", "--config.aug.auto_augment=rand-m9-mstd0.5-inc1",
         "--config.aug.reprob=0.25", "--config.global_batch_size=32", "--sizes=16", "--batches=3",
         "--step_steps=1"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = next(line.split() for line in proc.stdout.splitlines() if line.strip().startswith("16 "))
    size, img_s, per_core, step, ratio = row
    assert float(img_s) > 0 and float(step) > 0
    assert float(ratio) == pytest.approx(float(per_core) / float(step), abs=0.06)
    assert "auto_augment='rand-m9-mstd0.5-inc1'" in proc.stdout


def test_ab_host_memory_times_both_settings_in_turns():
    """ab_host_memory.py: worker processes, glibc's defaults and kept memory (each checks its
    setting was made), here kept memory under both --config.cpu_dots too, two steps each a turn
    (a smoke test, not a timing)."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/ab_host_memory.py"), "--model",
                           "vit_tiny_patch16_224", "--img-size", "32", "--model-args", "patch_size=8,depth=1",
                           "--num-classes", "10", "--batch", "4", "--rounds", "2", "--cpu-dots", "auto,xla",
                           "--steps-per-turn", "2"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = re.findall(r"^\s*([\d.]+) ms .* s  (jaxvit .*)$", proc.stdout, re.M)
    assert [name for _, name in rows] == ["jaxvit (glibc defaults, cpu_dots=auto)", "jaxvit (kept, cpu_dots=auto)",
                                          "jaxvit (kept, cpu_dots=xla)"], proc.stdout
    assert all(float(ms) > 0 for ms, _ in rows), proc.stdout
    assert "cpu_dots=auto,xla, 2 steps a turn, the last 1 timed" in proc.stdout
    assert proc.stdout.count("round ") == 2
