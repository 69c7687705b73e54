"""Evals and checkpoints counted in epochs (timm / DeiT --eval-freq, vitookit --ckpt_freq)."""

import json

import pytest

from jaxvit.errors import ConfigError


def _config(**overrides):
    from configs.default import get_config

    c = get_config()
    c.model_args, c.img_size, c.patch_size = "depth=1,embed_dim=32,num_heads=2", 16, 4
    c.progress_bar, c.log_every = False, 1
    c.update(overrides)
    return c


def test_every_converts_epochs_to_steps():
    from jaxvit.train.loop import every

    c = _config(eval_every=7, ckpt_every=0, eval_every_epochs=0.0, ckpt_every_epochs=2.5)
    assert every(c, "eval", steps_per_epoch=3) == 7  # steps when no epochs are given
    assert every(c, "ckpt", steps_per_epoch=3) == 8  # 2.5 epochs of 3 steps, rounded
    c.eval_every_epochs = 0.1
    assert every(c, "eval", steps_per_epoch=3) == 1  # never 0: at least every step
    c.eval_every_epochs = -1.0
    with pytest.raises(ConfigError, match="eval_every_epochs"):
        every(c, "eval", steps_per_epoch=3)


def test_run_evaluates_and_checkpoints_at_epoch_ends(tmp_path):
    """digits: 1,437 training images at batch 256 are 5 steps an epoch; 2 epochs with evals and
    checkpoints every epoch give both at steps 5 and 10 (and the step-based keys are ignored)."""
    from jaxvit.train import loop

    config = _config(global_batch_size=256, num_epochs=2.0, eval_every=3, ckpt_every=3,
                     eval_every_epochs=1.0, ckpt_every_epochs=1.0, keep_checkpoints=5, warmup_epochs=0.0)
    loop.run(config, str(tmp_path))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    eval_steps = sorted(r["step"] for r in records if "eval_top1" in r)
    assert eval_steps == [5, 10]
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [5, 10]
