"""benchmarks/recipe_compare.py end to end: one epoch of a tiny ViT on 400 CIFAR-10 images, both sides."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time

import pytest
from conftest import ROOT

pytest.importorskip("timm", reason="the PyTorch side needs timm: pip install -e '.[torch]'")


@pytest.mark.slow  # both trainers, an epoch each
def test_recipe_compare_prints_both_accuracies_and_appends_two_rows(tmp_path, cifar_subset):
    out_csv = tmp_path / "compare.csv"
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "recipe_compare.py"), f"--data={cifar_subset}",
        f"--workdir={tmp_path / 'work'}", f"--csv={out_csv}", "--limit=400", "--epochs=1",
        "--depth=1", "--embed-dim=32", "--heads=2", "--batch=64",
    ]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    wall_minutes = (time.monotonic() - start) / 60
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    rows = {}
    for line in proc.stdout.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) == 4 and cells[0] in ("jaxvit", "torch+timm"):
            rows[cells[0]] = cells
    assert set(rows) == {"jaxvit", "torch+timm"}, proc.stdout
    for impl, (_, top1, ema_top1, _minutes) in rows.items():
        assert 0.0 <= float(top1) <= 1.0, (impl, top1)
        assert 0.0 <= float(ema_top1) <= 1.0, (impl, ema_top1)  # EMA is on by default
    assert "train=400 val=100" in proc.stdout  # --limit reached both sides' settings

    with open(out_csv) as f:
        written = list(csv.DictReader(f))
    assert [r["impl"] for r in written] == ["jaxvit", "torch+timm"]
    assert all(0.0 <= float(r["top1"]) <= 1.0 for r in written)
    # each side's minutes time its own training: seconds at least (a compile, an epoch, an eval;
    # the CSV keeps 3 decimals, so > 0), the table shows the same figure at 2 decimals, and the
    # two together fit inside the script's wall time (a figure in seconds would not)
    minutes = {r["impl"]: float(r["minutes"]) for r in written}
    assert all(m > 0 for m in minutes.values()), minutes
    for impl, m in minutes.items():
        assert float(rows[impl][3]) == pytest.approx(m, abs=0.006), (impl, rows[impl][3], m)
    assert sum(minutes.values()) <= wall_minutes + 0.002, (minutes, wall_minutes)
