"""The trainer end to end through main.py: devices, pmap, processes, errors, logs (resume: test_train_resume.py)."""

import numpy as np
import pytest
from conftest import main_in_process, read_metrics, run_main, train_in_process, train_losses

STEPS = ["--config.total_steps=5"]


@pytest.fixture(scope="module")
def one_device_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("one")
    train_in_process(wd, *STEPS)
    return wd


def test_eight_devices_same_losses_as_one(one_device_run, tmp_path):
    run_main(tmp_path, *STEPS, devices=8)
    one, eight = train_losses(one_device_run), train_losses(tmp_path)
    assert len(one) == len(eight) == 5
    # measured max |loss8 - loss1| (seeds 0-2, 2-core CPU, 2026-11-27): 4.8e-7; 1e-5 is 20x
    np.testing.assert_allclose(eight, one, atol=1e-5)
    assert one[-1] != one[0]  # it trained


def test_pmap_same_numbers_as_pjit(one_device_run, tmp_path):
    run_main(tmp_path, *STEPS, "--config.parallelism=pmap", devices=8)
    # measured (seeds 0-2, 2-core CPU, 2026-11-27): losses 4.8e-7 apart (atol 1e-5: 20x),
    # grad norms 3.5e-7 apart relatively (rel 1e-4: 280x)
    np.testing.assert_allclose(train_losses(tmp_path), train_losses(one_device_run), atol=1e-5)
    pm = {m["step"]: m for m in read_metrics(tmp_path)}
    pj = {m["step"]: m for m in read_metrics(one_device_run)}
    for step in pj:
        if "train_grad_norm" in pj[step]:
            assert pm[step]["train_grad_norm"] == pytest.approx(pj[step]["train_grad_norm"], rel=1e-4)


def test_cpu_dots_xla_same_losses(one_device_run, tmp_path):
    """--config.cpu_dots=xla compiles the train and eval steps with XLA's own dot kernels on this CPU
    (tests/train/test_xla_cpu.py checks that the option changes the program): the same run."""
    train_in_process(tmp_path, *STEPS, "--config.cpu_dots=xla")
    # measured max |loss_xla - loss_auto| over the 5 steps (seeds 0-2, 2-core CPU, 2026-11-29): 2.4e-7; 1e-5 is 40x
    np.testing.assert_allclose(train_losses(tmp_path), train_losses(one_device_run), atol=1e-5)


def final_params(workdir):
    """The latest checkpoint's params on this process's one device, whatever mesh saved them."""
    from jaxvit.train.checkpoint import latest_steps, restore_on_one_device

    step = latest_steps(workdir / "checkpoints")[-1]
    return step, restore_on_one_device(str(workdir / "checkpoints" / str(step) / "state"))["params"]


def test_nan_loss_stops_naming_step_and_checkpoint(tmp_path):
    from jaxvit.train.loop import NonFiniteLoss

    with pytest.raises(NonFiniteLoss, match="loss is nan at step") as e:
        train_in_process(tmp_path, "--config.total_steps=20", "--config.lr=1e30", "--config.warmup_steps=1",
                         "--config.ckpt_every=1")
    assert "Last good checkpoint" in str(e.value)


def test_eval_only_reports_the_checkpoint(one_device_run):
    status, out, err = main_in_process(one_device_run, *STEPS, "--config.eval_only=True")
    assert status == 0, err[-3000:]
    last = [m for m in read_metrics(one_device_run) if "eval_top1" in m]
    assert len(last) >= 2 and last[-1]["eval_top1"] == pytest.approx(last[-2]["eval_top1"])
    assert f"eval_top1={last[-1]['eval_top1']:.4f}" in out


def test_eval_only_without_checkpoint_writes_nothing(tmp_path):
    status, _, err = main_in_process(tmp_path / "none", "--config.eval_only=True")
    assert status == 2 and "no checkpoint" in err
    assert not (tmp_path / "none").exists()


def test_predict_prints_top5_with_class_names(one_device_run, tmp_path, capsys):
    from jaxvit.data.tf_util import import_tf

    tf = import_tf()
    from sklearn.datasets import load_digits

    img = np.repeat((load_digits().images[0] / 16 * 255).astype(np.uint8)[..., None], 3, -1)
    path = tmp_path / "digit.png"
    path.write_bytes(tf.io.encode_png(img).numpy())
    from jaxvit.predict import main as predict_main

    assert predict_main(["--checkpoint", str(one_device_run), str(path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == str(path) and len(lines) == 6
    labels = [line.split()[-1] for line in lines[1:]]
    assert set(labels) <= {str(i) for i in range(10)} and len(set(labels)) == 5


def jax_leaves(tree):
    import jax

    return jax.tree.leaves(tree)


def test_unknown_config_key_names_close_matches(tmp_path):
    wd = tmp_path / "wd"
    status, _, err = main_in_process(wd, "--config.schedul=cosine")
    assert status == 2
    assert "unknown config key 'schedul'" in err and "'schedule'" in err
    assert not wd.exists(), "nothing may be written for a bad command"


def test_missing_tfds_dataset_says_how_to_prepare(tmp_path):
    wd = tmp_path / "wd"
    status, _, err = main_in_process(wd, "--config.dataset=cifar10", f"--config.data_dir={tmp_path / 'tfds'}")
    assert status == 2
    assert "not prepared" in err and "tfds build cifar10" in err
    assert not wd.exists()


def test_unknown_dataset_suggests_names(tmp_path):
    wd = tmp_path / "wd"
    status, _, err = main_in_process(wd, "--config.dataset=digitz")
    assert status == 2 and "digits" in err
    assert not wd.exists()


def test_tensorboard_and_jsonl_hold_the_scalars(one_device_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list(one_device_run.glob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file in the workdir"
    acc = EventAccumulator(str(one_device_run), size_guidance={"scalars": 0})
    acc.Reload()
    assert {"train_loss", "train_lr", "eval_top1", "eval_top5", "eval_loss"} <= set(acc.Tags()["scalars"])
    losses = [e.value for e in acc.Scalars("train_loss")]
    # the event file holds float32 (simple_value), metrics.jsonl the float64 of the same number
    np.testing.assert_allclose(losses, train_losses(one_device_run), rtol=1e-6)
    final = [m for m in read_metrics(one_device_run) if "eval_top1" in m][-1]
    assert final["eval_count"] == 360  # every digits test image counted once, none dropped


def test_imagefolder_on_cifar10_subset(cifar_subset, tmp_path):
    result = train_in_process(
        tmp_path, "--config.dataset=imagefolder", f"--config.data_dir={cifar_subset}",
        "--config.eval_split=val", "--config.img_size=32", "--config.patch_size=8",
        "--config.total_steps=3", "--config.aug.hflip=0.5", "--config.cache_train=False",
    )
    final = [m for m in read_metrics(tmp_path) if "eval_top1" in m][-1]
    assert final["step"] == 3 and result["eval_top1"] == pytest.approx(final["eval_top1"])
    # 10% of each class held out: about 509 of the 5,085 images, each counted once
    assert 480 <= final["eval_count"] <= 540


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_relative_workdir_as_in_the_readme(tmp_path, monkeypatch):
    """main.py's command with a workdir relative to the current directory (in this process:
    a trainer process of its own cost ~18 s of the suite, for what main.py does in-process)."""
    monkeypatch.chdir(tmp_path)
    status, out, err = main_in_process("runs/rel", "--config.total_steps=2", "--config.ckpt_every=1")
    assert status == 0, err[-3000:]
    assert "final eval" in out
    assert (tmp_path / "runs/rel/checkpoints/2").is_dir() and (tmp_path / "runs/rel/metrics.jsonl").exists()


def test_train_and_eval_steps_compile_once(tmp_path, caplog):
    """Logging, eval and checkpoint steps must not retrace the jitted steps. JAX logs each
    lowering ("Compiling jit(f) ..."), whether or not the persistent cache then has the binary."""
    import logging

    import jax

    with jax.log_compiles(True), caplog.at_level(logging.WARNING, logger="jax"):
        train_in_process(tmp_path, "--config.total_steps=7", "--config.log_every=2", "--config.eval_every=3",
                         "--config.ckpt_every=3")
    log = "\n".join(r.getMessage()[:80] for r in caplog.records)
    assert log.count("Compiling jit(train_step)") == 1, log
    assert log.count("Compiling jit(eval_step)") == 1, log
    assert len([m for m in read_metrics(tmp_path) if "eval_top1" in m]) == 3  # steps 3, 6, 7


def test_synthetic_dataset_trains_and_evaluates(tmp_path):
    result = train_in_process(tmp_path, "--config.dataset=synthetic", "--config.total_steps=2")
    final = [m for m in read_metrics(tmp_path) if "eval_count" in m][-1]
    assert final["step"] == 2 and final["eval_count"] == result["eval_count"] == 2 * 32  # two masked batches


def test_uint8_transfer_trains_as_float32_does(tmp_path):
    """transfer_dtype='uint8' (images normalized in the step): a 1-block ViT trains, its first-step loss is
    the float32 run's to within the inputs' rounding, and eval_only reads its checkpoint with uint8 batches."""
    one_block = ["--config.model_args=depth=1,embed_dim=32,num_heads=2", "--config.total_steps=3"]
    f32 = train_in_process(tmp_path / "f32", *one_block)
    u8 = train_in_process(tmp_path / "u8", *one_block, "--config.transfer_dtype=uint8")
    lf, lu = train_losses(tmp_path / "f32"), train_losses(tmp_path / "u8")
    assert len(lu) == 3 and lu[-1] != lu[0]  # it trained
    # measured |first-step loss difference| (seeds 0-2, 2-core CPU): 5.2e-6, 2.4e-6, 1.2e-6 (the inputs differ
    # by at most 0.5/255 before normalization); 5e-5 is 10x the largest
    assert lu[0] == pytest.approx(lf[0], abs=5e-5)
    # measured |final eval loss difference| (seeds 0-2): 1.4e-6, 6.8e-7, 1.5e-6; 5e-5 is 30x the largest
    assert u8["eval_count"] == f32["eval_count"] == 360 and u8["eval_loss"] == pytest.approx(f32["eval_loss"], abs=5e-5)
    status, out, err = main_in_process(tmp_path / "u8", *one_block, "--config.transfer_dtype=uint8",
                                       "--config.eval_only=True")
    assert status == 0, err[-3000:]
    assert f"eval_loss={u8['eval_loss']:.4f}" in out and "eval_count=360" in out


def test_synthetic_runs_without_tensorflow(tmp_path):
    """GPU hosts often have no TensorFlow (the lent H100 has none): main.py on synthetic data trains,
    writes TensorBoard events and evaluates (eval_only too) with TensorFlow made unimportable."""
    import subprocess
    import sys

    from conftest import ROOT, TINY, device_env

    code = ("import runpy, sys; sys.modules['tensorflow'] = None; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    args = [sys.executable, "-c", code, str(ROOT / "main.py"), f"--config={ROOT / 'configs/default.py'}",
            f"--workdir={tmp_path}", *TINY, "--config.dataset=synthetic", "--config.num_classes=10",
            "--config.total_steps=2"]
    for extra in ([], ["--config.eval_only=True"]):
        proc = subprocess.run(args + extra, env=device_env(1), cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "final eval" in proc.stdout
    assert list(tmp_path.glob("events.out.tfevents.*"))
    assert len([m for m in read_metrics(tmp_path) if "train_loss" in m]) == 2
