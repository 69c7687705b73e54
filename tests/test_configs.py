"""Every recipe in configs/ builds and trains a few steps, scaled down to digits."""

from pathlib import Path

import pytest

from conftest import ROOT, read_metrics, run_main

CONFIGS = sorted(p.name for p in (ROOT / "configs").glob("*.py") if p.name != "__init__.py")
SMOKE = [
    "--config.dataset=digits", "--config.data_dir=", "--config.eval_split=test",
    "--config.total_steps=2", "--config.global_batch_size=16", "--config.eval_every=0",
    "--config.progress_bar=False", "--config.log_every=1",
]


@pytest.mark.parametrize("name", CONFIGS)
def test_config_runs_on_digits(name, tmp_path: Path):
    proc = run_main(tmp_path, *SMOKE, config=f"configs/{name}", tiny=False)
    assert "final eval" in proc.stdout
    losses = [m["train_loss"] for m in read_metrics(tmp_path) if "train_loss" in m]
    assert len(losses) == 2 and all(l == l for l in losses)  # two finite steps logged
