"""Bad input a user brings: one line ``error: ...``, exit status 2, nothing written.

The trainer's checks run in this process (``loop.run`` raises a ``jaxvit.errors.UserError``);
one real ``main.py`` run checks what the user sees (stderr, exit status). Checkpoint files as
training scripts save them (numpy scalars, argparse options) load safely with the converter.
"""

import argparse

import numpy as np
import pytest
import torch
from conftest import run_main

from convert.__main__ import main as convert_main
from convert.source import load_state_dict
from jaxvit.errors import ConfigError, UserError, one_line


def _config(**overrides):
    from configs.default import get_config

    c = get_config()
    c.model_args, c.img_size, c.patch_size, c.global_batch_size = "depth=1,embed_dim=32,num_heads=2", 16, 4, 32
    c.progress_bar, c.total_steps = False, 2
    for key, value in overrides.items():
        node = c
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c


@pytest.mark.parametrize("overrides, expected", [
    (dict(optimizer="adamx"), "config.optimizer='adamx' is not one of"),
    (dict(model_args="depth=1,embed_dim=32,num_heads=2,bogus=3"), "bogus"),
    (dict(model_args="depth=1,embed_dim=30,num_heads=4"), "divisible by num_heads"),
    (dict(model="vit_tiny_patch16"), "'vit_tiny_patch16_224'"),  # among the close names suggested
    (dict(lr=(1e-3, 1e-4)), "give one learning rate or 3"),
    (dict(**{"aug.auto_augment": "rand-m9-foo"}), "rand-m9-foo"),
    (dict(mixup_alpha=0.8, mixup_mode="pairs"), "mixup_mode"),
    (dict(global_batch_size=30, grad_accum_steps=4), "grad_accum_steps=4"),
    (dict(cpu_dots="ynn"), "config.cpu_dots='ynn' is not one of ('auto', 'xla')"),
    (dict(cpu_dots="xla", parallelism="pmap"), "cpu_dots='xla' needs --config.parallelism=pjit on a CPU"),
])
def test_config_mistakes_are_user_errors_and_write_nothing(tmp_path, overrides, expected):
    from jaxvit.train import loop

    with pytest.raises(UserError) as info:
        loop.run(_config(**overrides), str(tmp_path / "wd"))
    assert expected in one_line(info.value.args[0])
    assert not (tmp_path / "wd").exists()


def test_uint8_transfer_with_random_erasing_exits_2_before_writing(tmp_path):
    """Random erasing works on the normalized image, on the host: with uint8 batches there is none there."""
    from conftest import main_in_process

    status, _, err = main_in_process(tmp_path / "wd", "--config.transfer_dtype=uint8", "--config.aug.reprob=0.25")
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), err[-2000:]
    assert "aug.reprob=0.25" in lines[0] and "--config.transfer_dtype=float32" in lines[0]
    assert not (tmp_path / "wd").exists()
    status, _, err = main_in_process(tmp_path / "wd", "--config.transfer_dtype=uint16")
    assert status == 2 and err.strip() == (
        "error: config.transfer_dtype='uint16' is not one of ('float32', 'uint8')"), err[-2000:]
    assert not (tmp_path / "wd").exists()


def test_main_prints_one_line_and_exits_2(tmp_path):
    """What the user sees: no traceback, a single 'error:' line, exit 2, no workdir."""
    proc = run_main(tmp_path / "wd", "--config.optimizer=adamx", check=False)
    err_lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    errors = [line for line in err_lines if line.startswith("error: ")]
    assert len(errors) == 1 and "config.optimizer='adamx' is not one of" in errors[0], proc.stderr[-2000:]
    assert not (tmp_path / "wd").exists()


@pytest.mark.parametrize("argv, expected", [
    (["--config=configs/moco_v3_vit_b_transfer.py:nope"], "choose one of"),
    (["--config=configs/nope.py"], "config file 'configs/nope.py' not found"),
    (["--config=configs/default.py", "--config.schedul=step"], "did you mean 'schedule'"),
])
def test_config_file_variant_and_key_mistakes_exit_2(argv, expected, capsys):
    import main

    with pytest.raises(SystemExit) as info:
        main.precheck(["main.py", *argv, "--workdir=x"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert expected in err, err


def test_unexpected_errors_keep_their_type():
    """Only jaxvit's own user errors become one line; a bug elsewhere keeps its traceback."""
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, UserError)
    assert not issubclass(ZeroDivisionError, UserError)


# --- checkpoint files as training scripts save them ---------------------------------------
def _sd():
    return {"weight": torch.arange(6, dtype=torch.float32).reshape(2, 3), "bias": torch.zeros(2)}


class NotPlain:  # a global weights-only loading refuses
    def __init__(self):
        self.x = 1


@pytest.mark.parametrize("extra", [
    {"best_metric": np.float64(0.93)},
    {"epoch": np.int64(3), "dtype": np.dtype("float32"), "hist": np.arange(3.0)},
    {"args": argparse.Namespace(lr=1e-3, model="vit")},
])
def test_plain_values_beside_the_weights_load_safely(tmp_path, extra):
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": _sd(), **extra}, path)
    sd = load_state_dict(str(path), log=lambda m: None)
    np.testing.assert_array_equal(sd["weight"], np.arange(6, dtype=np.float32).reshape(2, 3))


def test_unknown_global_is_named_with_its_key_not_called_corrupt(tmp_path, capsys):
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": _sd(), "optimizer": {"extra": NotPlain()}}, path)
    out = tmp_path / "out"
    rc = convert_main(["--model", "vit_tiny_patch16_224", "--checkpoint", str(path), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    assert "NotPlain under ['optimizer']['extra']" in err, err
    assert "--trust-checkpoint" in err and "not corrupt" in err and "truncated" not in err
    assert not out.exists()
    # the user's choice for a file they trust: it unpickles, then the weights are read
    sd = load_state_dict(str(path), trust=True, log=lambda m: None)
    assert sorted(sd) == ["bias", "weight"]


def test_truncated_file_is_called_corrupt(tmp_path):
    from convert.rules import ConversionError

    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": _sd(), "best_metric": np.float64(0.5)}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ConversionError, match="truncated or corrupt"):
        load_state_dict(str(path))
