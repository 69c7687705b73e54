"""The trainer end to end through main.py: devices, pmap, resume, errors, logs."""

import signal
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

from conftest import read_metrics, run_main, train_losses

STEPS = ["--config.total_steps=5"]


@pytest.fixture(scope="module")
def one_device_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("one")
    run_main(wd, *STEPS)
    return wd


def test_eight_devices_same_losses_as_one(one_device_run, tmp_path):
    run_main(tmp_path, *STEPS, devices=8)
    one, eight = train_losses(one_device_run), train_losses(tmp_path)
    assert len(one) == len(eight) == 5
    np.testing.assert_allclose(eight, one, atol=1e-5)
    assert one[-1] != one[0]  # it trained


def test_pmap_same_numbers_as_pjit(one_device_run, tmp_path):
    run_main(tmp_path, *STEPS, "--config.parallelism=pmap", devices=8)
    np.testing.assert_allclose(train_losses(tmp_path), train_losses(one_device_run), atol=1e-5)
    pm = {m["step"]: m for m in read_metrics(tmp_path)}
    pj = {m["step"]: m for m in read_metrics(one_device_run)}
    for step in pj:
        if "train_grad_norm" in pj[step]:
            assert pm[step]["train_grad_norm"] == pytest.approx(pj[step]["train_grad_norm"], rel=1e-4)


def final_params(workdir):
    mngr = ocp.CheckpointManager(workdir / "checkpoints", item_names=("state", "meta"))
    step = mngr.latest_step()
    state = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
    mngr.close()
    return step, state["params"]


def test_kill_after_checkpoint_then_rerun_matches_uninterrupted(tmp_path):
    args = ["--config.total_steps=40", "--config.ckpt_every=4", "--config.log_every=4"]
    full = tmp_path / "full"
    run_main(full, *args)

    killed = tmp_path / "killed"
    proc = run_main(killed, *args, background=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        steps = [d for d in (killed / "checkpoints").glob("[0-9]*")] if (killed / "checkpoints").exists() else []
        if steps:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    run_main(killed, *args)  # same command: resumes from the latest checkpoint

    step_a, params_a = final_params(full)
    step_b, params_b = final_params(killed)
    assert step_a == step_b == 40
    for a, b in zip(jax_leaves(params_a), jax_leaves(params_b)):
        np.testing.assert_array_equal(a, b)
    # the resumed run's log restarts after the checkpoint, and its losses continue the same curve
    full_losses = {m["step"]: m["train_loss"] for m in read_metrics(full) if "train_loss" in m}
    for m in read_metrics(killed):
        if "train_loss" in m and m["step"] in full_losses:
            assert m["train_loss"] == pytest.approx(full_losses[m["step"]], abs=1e-6)


def jax_leaves(tree):
    import jax

    return jax.tree.leaves(tree)


def test_unknown_config_key_names_close_matches(tmp_path):
    wd = tmp_path / "wd"
    proc = run_main(wd, "--config.schedul=cosine", check=False)
    assert proc.returncode != 0
    assert "unknown config key 'schedul'" in proc.stderr and "'schedule'" in proc.stderr
    assert not wd.exists(), "nothing may be written for a bad command"


def test_missing_tfds_dataset_says_how_to_prepare(tmp_path):
    wd = tmp_path / "wd"
    proc = run_main(wd, "--config.dataset=cifar10", f"--config.data_dir={tmp_path / 'tfds'}", check=False)
    assert proc.returncode != 0
    assert "not prepared" in proc.stderr and "tfds build cifar10" in proc.stderr
    assert not wd.exists()


def test_unknown_dataset_suggests_names(tmp_path):
    wd = tmp_path / "wd"
    proc = run_main(wd, "--config.dataset=digitz", check=False)
    assert proc.returncode != 0 and "digits" in proc.stderr
    assert not wd.exists()


def test_tensorboard_and_jsonl_hold_the_scalars(one_device_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list(one_device_run.glob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file in the workdir"
    acc = EventAccumulator(str(one_device_run), size_guidance={"tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["tensors"]) | set(acc.Tags()["scalars"])
    assert {"train_loss", "train_lr", "eval_top1", "eval_top5", "eval_loss"} <= tags
    losses = [float(np.asarray(__import__("tensorflow").make_ndarray(e.tensor_proto)))
              for e in acc.Tensors("train_loss")]
    np.testing.assert_allclose(losses, train_losses(one_device_run), rtol=1e-6)
    final = [m for m in read_metrics(one_device_run) if "eval_top1" in m][-1]
    assert final["eval_count"] == 360  # every digits test image counted once, none dropped


def test_imagefolder_on_cifar10_subset(cifar_subset, tmp_path):
    proc = run_main(
        tmp_path, "--config.dataset=imagefolder", f"--config.data_dir={cifar_subset}",
        "--config.eval_split=val", "--config.img_size=32", "--config.patch_size=8",
        "--config.total_steps=3", "--config.aug.hflip=0.5", "--config.cache_train=False",
    )
    assert "final eval" in proc.stdout
    final = [m for m in read_metrics(tmp_path) if "eval_top1" in m][-1]
    # 10% of each class held out: about 509 of the 5,085 images, each counted once
    assert 480 <= final["eval_count"] <= 540
