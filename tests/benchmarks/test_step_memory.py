"""benchmarks/step_memory.py compiles a model's train step and prints its memory (a smoke test)."""

import subprocess
import sys

from conftest import ROOT


def test_step_memory_prints_a_row_per_model():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/step_memory.py"), "--models",
                           "vit_tiny_patch16_224,deit_tiny_patch16_224", "--model-args", "depth=1,img_size=32",
                           "--batch", "2"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[1:]}
    assert set(rows) == {"vit_tiny_patch16_224", "deit_tiny_patch16_224"}
    assert all(float(r[1]) > 0 and float(r[2]) > 0 for r in rows.values())
