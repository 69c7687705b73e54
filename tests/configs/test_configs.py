"""Every recipe in configs/ builds (each variant) and trains a few steps scaled down to digits.

The runs are in this process (loop.run), with the recipe's own settings (augmentation,
mixup, EMA, schedule, optimizer, param groups) and only the data, the step count, the batch
and the model's size overridden: the family's tiny widths and depths, its layer types kept.
Inception-v4 has no width or depth keyword, and its smallest step costs about a minute to
compile here, so its recipe runs on a tiny ViT (the L2-SP / 3-part lr / new-layers groups
then come from ViT's group_matcher); Inception-v4 itself trains in test_families_train.py.
"""

import importlib
import inspect
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, TINY_FAMILIES

CONFIG_FILES = sorted(p.stem for p in (ROOT / "configs").glob("*.py") if p.name != "__init__.py")

TINY = TINY_FAMILIES  # tests/conftest.py's one table of tiny variants
STAND_IN = {"inception": "vit_tiny_patch16_224"}  # see the module docstring


def variants(stem: str) -> list[str | None]:
    """The arguments a config file takes (``configs/x.py:arg``): its VARIANTS/DATASETS table or
    its default; None for a file whose get_config takes none."""
    mod = importlib.import_module(f"configs.{stem}")
    params = inspect.signature(mod.get_config).parameters
    if not params:
        return [None]
    for table in ("VARIANTS", "DATASETS", "PRETRAINED"):
        if hasattr(mod, table):
            return list(getattr(mod, table))
    default = next(iter(params.values())).default
    return [default] if default is not inspect.Parameter.empty else []


def load(stem: str, arg):
    mod = importlib.import_module(f"configs.{stem}")
    return mod.get_config() if arg is None else mod.get_config(arg)


def tiny_run(config, *, stand_in: bool = True, batch: int = 16):
    """The recipe at the family's tiny size (Inception-v4: a ViT stand-in, or itself at 75 px
    with ``stand_in=False``), 2 steps of ``batch`` images, no eval or checkpoint in between."""
    import jaxvit
    from jaxvit.registry import parse_model_args

    family = jaxvit.registry.get_entry(config.model).family
    if family in STAND_IN and stand_in:
        config.model, config.model_args, config.patch_size = STAND_IN[family], "", 4
        family = jaxvit.registry.get_entry(config.model).family
    if family in TINY:
        tiny, config.img_size = TINY[family]
        args = parse_model_args(config.model_args)
        args.update(parse_model_args(tiny))
        config.model_args = ",".join(f"{k}={v!r}" for k, v in args.items())
    else:  # Inception-v4 as it is, at its smallest input
        config.img_size = 75
    config.total_steps = 2
    config.global_batch_size = batch
    config.grad_accum_steps = 1
    config.dtype = "float32"
    config.progress_bar = False
    config.log_every = 1
    config.eval_every = config.eval_every_epochs = 0
    config.ckpt_every = config.ckpt_every_epochs = 0
    config.mesh.fsdp = 1
    return config


def smoke(config, init_from: str = ""):
    """The recipe on digits: 2 steps of 16 images, the family's tiny model."""
    config = tiny_run(config)
    config.dataset, config.data_dir, config.train_split, config.eval_split = "digits", "", "train", "test"
    config.num_classes = -1
    config.init_from = init_from
    return config


@pytest.mark.parametrize("stem", CONFIG_FILES)
def test_every_variant_builds_and_validates(stem):
    from jaxvit.train import loop

    found = variants(stem)
    assert found, f"configs/{stem}.py: no variant to build"
    for arg in found:
        config = load(stem, arg)
        assert config.to_dict(), arg
        loop.validate(config)
    src = (ROOT / "configs" / f"{stem}.py").read_text()
    assert "Source:" in src or stem == "default", f"configs/{stem}.py must cite its source recipe"


@pytest.mark.parametrize("stem", CONFIG_FILES)
def test_config_trains_on_digits(stem, tmp_path: Path):
    from conftest import read_metrics

    from jaxvit.train import loop

    arg = variants(stem)[0]
    result = loop.run(smoke(load(stem, arg)), str(tmp_path))
    losses = [m["train_loss"] for m in read_metrics(tmp_path) if "train_loss" in m]
    assert len(losses) == 2 and np.all(np.isfinite(losses)), losses
    assert result["eval_count"] == 360
    if load(stem, arg).get("model_ema"):
        assert "eval_ema_top1" in result
