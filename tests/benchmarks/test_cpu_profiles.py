"""The CPU profiling scripts run and report what they say (smoke tests in this process, tiny shapes,
not timings): profile_step.py's page faults per step, dense_products.py's products per step,
ab_step.py's variants with trace-time settings."""

import importlib.util
import re
import sys

import pytest
from conftest import ROOT, _xla_knows

sys.path.insert(0, str(ROOT / "benchmarks"))
import ab_step  # noqa: E402
import dense_products  # noqa: E402
import profile_step  # noqa: E402


@pytest.mark.parametrize("cpu_dots", ["auto", "xla"])
def test_profile_step_reports_page_faults_and_the_temp_buffer(capsys, cpu_dots):
    if cpu_dots == "xla" and not _xla_knows("xla_cpu_experimental_ynn_fusion_type"):
        pytest.skip("this jaxlib's XLA:CPU has no YNNPACK fusion option (cpu_dots=xla refuses it)")
    profile_step.main(["--depth", "1", "--embed-dim", "32", "--heads", "2", "--img-size", "32", "--patch", "8",
                       "--batch", "16", "--repeats", "10", "--ops", "3", "--cpu-dots", cpu_dots])
    out = capsys.readouterr().out
    assert f"cpu_dots: {cpu_dots})" in out
    found = re.search(r"per step: (\d+) page faults, ([\d.]+) s in the kernel, temp buffer ([\d.]+) MiB, "
                      r"([\d.]+) s of CPU \(([\d.]+) of (\d+) cores busy\)", out)
    assert found, out
    assert float(found.group(3)) > 0 and float(found.group(4)) > 0
    assert 0 < float(found.group(5)) <= int(found.group(6)) + 0.5  # CPU time over wall time, one step's worth
    assert re.search(r"train step [\d.]+ ms", out) and "all " in out


def test_dense_products_times_each_product_per_implementation(capsys):
    has_torch = importlib.util.find_spec("torch") is not None  # the torch extra: a torch row too
    totals = dense_products.main(["--batch", "2", "--tokens", "5", "--dim", "16", "--heads", "2", "--depth", "2",
                                  "--rounds", "1", "--onednn", "--torch" if has_torch else "--no-torch"])
    out = capsys.readouterr().out
    expected = {"jax"} | ({"torch"} if has_torch else set())
    if _xla_knows("xla_cpu_experimental_ynn_fusion_type"):
        expected.add("jax, Eigen dots")
        if _xla_knows("xla_cpu_experimental_onednn_fusion_type"):
            expected.add("jax, oneDNN dots")
    assert set(totals) == expected, totals
    assert all(t["dense"] > 0 and t["attention"] > 0 for t in totals.values()), totals
    # four layers x three products and three attention forms, one row per implementation each
    dense = [line for line in out.splitlines() if re.match(r"\s+(qkv|proj|fc1|fc2)\s+(fwd|dx|dw)\s+x1\s", line)]
    attention = [line for line in out.splitlines() if re.match(r"\s+attn\s+(q kT|p v|pT g)\s+x2\s", line)]
    assert len(dense) == 12 * len(expected) and len(attention) == 3 * len(expected), out
    with pytest.raises(SystemExit) as exit_info:  # heads that do not divide the width: a usage error
        dense_products.main(["--dim", "16", "--heads", "3"])
    assert exit_info.value.code == 2


def test_ab_step_times_variants_with_trace_settings(capsys):
    """Two variants differing only in a trace-time setting compile as two programs, give the same
    loss, and are timed in turns; a setting or an XLA option it does not know is a usage error."""
    tiny = ["--model", "vit_tiny_patch16_224", "--img-size", "16", "--num-classes", "10",
            "--model-args", "patch_size=8,depth=1,embed_dim=32,num_heads=2", "--batch", "4"]
    times = ab_step.main(tiny + ["--rounds", "2", "--steps", "1", "--variants", "auto linear_rows=unmerged;auto"])
    out = capsys.readouterr().out
    assert list(times) == ["auto linear_rows=unmerged", "auto"] and all(len(t) == 2 for t in times.values())
    losses = set(re.findall(r"loss ([\d.]+)", out))
    assert len(losses) == 1, out  # the same values either way
    with pytest.raises(SystemExit) as exit_info:
        ab_step.main(["--variants", "auto linear_rows=sideways"])
    assert exit_info.value.code == 2
    assert "linear_rows takes one of merged, unmerged" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # remat is a setting too, with its own policies
        ab_step.main(["--variants", "auto remat=layer"])
    assert exit_info.value.code == 2
    assert "remat takes one of none, block, elementwise" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # an XLA option this jaxlib lacks: one line, exit 2
        ab_step.main(tiny + ["--rounds", "1", "--steps", "1", "--variants", "auto xla_cpu_no_such_option=1"])
    assert exit_info.value.code == 2
    assert "error: ab_step.py: variant 'auto xla_cpu_no_such_option=1'" in capsys.readouterr().err
    # values as XLA's option parser takes them: a bool, an int, else the string (an enum list)
    assert [ab_step.xla_option_value(v) for v in ("true", "False", "512", "LIBRARY_FUSION_TYPE_REDUCE")] == [
        True, False, 512, "LIBRARY_FUSION_TYPE_REDUCE"]
    with pytest.raises(SystemExit) as exit_info:  # a value the option does not take: one line, exit 2
        ab_step.main(tiny + ["--rounds", "1", "--steps", "1", "--variants", "auto xla_cpu_use_onednn=maybe"])
    assert exit_info.value.code == 2
    assert "error: ab_step.py: variant 'auto xla_cpu_use_onednn=maybe'" in capsys.readouterr().err
