"""bench.py runs end to end for a tiny model (a smoke test, not a timing)."""

import csv
import subprocess
import sys

import pytest
from conftest import ROOT


def test_bench_tiny_two_steps(tmp_path):
    pytest.importorskip("timm", reason="timm (the torch extra) is needed to compare against")
    out = tmp_path / "r.csv"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/bench.py"), "--model", "vit_tiny_patch16_224",
         "--img-size", "32", "--model-args", "patch_size=8,depth=2", "--num-classes", "10",
         "--batch", "4", "--steps", "2", "--warmup", "1", "--torch", "eager", "--csv", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tensorflow" not in proc.stderr.lower()
    rows = list(csv.DictReader(open(out)))
    assert {(r["impl"], r["task"]) for r in rows} == {
        ("jaxvit jit", "train"), ("jaxvit jit", "infer"), ("timm eager", "train"), ("timm eager", "infer")}
    assert all(float(r["img_per_s"]) > 0 for r in rows)
    assert float(next(r for r in rows if r["impl"] == "jaxvit jit" and r["task"] == "train")["mfu"]) > 0


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
