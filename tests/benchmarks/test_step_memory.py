"""benchmarks/step_memory.py compiles a model's train step and prints its memory (a smoke test)."""

import subprocess
import sys

import jax
from conftest import ROOT


def test_step_memory_prints_a_row_per_model_and_setting():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/step_memory.py"), "--models",
                           "vit_tiny_patch16_224,deit_tiny_patch16_224", "--model-args", "depth=1,img_size=64",
                           "--batch", "8", "--residuals", "lean,plain", "--remat", "none,elementwise"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # model, residuals, remat, kept MiB, temp MiB, args MiB, compile s
    rows = {tuple(line.split()[:3]): [float(v) for v in line.split()[3:]] for line in proc.stdout.splitlines()[1:]}
    models = ("vit_tiny_patch16_224", "deit_tiny_patch16_224")
    assert set(rows) == {(m, r, p) for m in models for r in ("lean", "plain") for p in ("none", "elementwise")}
    assert all(v[0] > 0 and v[1] > 0 and v[2] > 0 for v in rows.values())
    for m in models:
        # LayerNorm and GELU keeping only their inputs: less temp memory, the same arguments
        # (XLA:CPU, bf16, jaxlib 0.10.2: measured 5.6 against 6.1 MiB)
        lean, plain = rows[m, "lean", "none"], rows[m, "plain", "none"]
        assert lean[1] < plain[1] and lean[2] == plain[2], (lean, plain)
        # remat='elementwise': the norms' and GELU's outputs not kept for the gradient (measured
        # 1.5 against 2.6 MiB kept; XLA:CPU's temp memory is the same: its scheduler is not memory-driven)
        elementwise = rows[m, "lean", "elementwise"]
        assert elementwise[0] < lean[0] and elementwise[2] == lean[2], (elementwise, lean)


def test_step_memory_traces_the_gpus_fused_attention_anywhere():
    """--kept-only --attention cudnn: what a GPU's step keeps with cuDNN's fused attention, traced
    on this CPU (nothing compiled); less under remat='elementwise' and with inputs padded only to
    an even length (--pad-multiple 2: 17 tokens -> 18 rather than 64)."""
    kept = {}
    for pad in ("0", "2"):
        proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/step_memory.py"), "--models",
                               "vit_tiny_patch16_224", "--model-args", "depth=2,img_size=64,patch_size=16",
                               "--batch", "8", "--attention", "cudnn", "--kept-only", "--remat",
                               "none,elementwise", "--pad-multiple", pad],
                              capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-2000:]
        for line in proc.stdout.splitlines()[1:]:
            name, _, policy, mib, *rest = line.split()
            assert rest == ["-", "-", "-"], line  # nothing compiled
            kept[pad, policy] = float(mib)
    assert kept["0", "elementwise"] < kept["0", "none"], kept
    assert kept["2", "none"] < kept["0", "none"] and kept["2", "elementwise"] < kept["0", "elementwise"], kept
    if jax.default_backend() == "gpu":
        return
    # compiling the fused path needs a GPU: one line, exit 2
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/step_memory.py"), "--attention", "cudnn"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: step_memory.py:"), \
        proc.stderr[-1000:]
