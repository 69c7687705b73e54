"""Resume through main.py: SIGKILL (mid-save too) and SIGTERM, then the same command again,
end with the uninterrupted run's params bitwise; a half-written checkpoint is never resumed."""

import signal
import time

import numpy as np
import pytest
from conftest import read_metrics, run_main
from test_train import final_params, jax_leaves

RESUME_ARGS = ["--config.total_steps=40", "--config.ckpt_every=4", "--config.log_every=1"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    wd = tmp_path_factory.mktemp("full")
    run_main(wd, *RESUME_ARGS)
    return wd


def logged_steps(workdir) -> list[int]:
    try:
        return [m["step"] for m in read_metrics(workdir) if "train_loss" in m]
    except (FileNotFoundError, ValueError):  # not written yet, or a line being written
        return []


def start_and_interrupt(workdir, sig, after_step: int = 1):
    """Starts a run and sends ``sig`` once it has logged step ``after_step`` (a step, not a
    checkpoint boundary: the kill lands wherever the run happens to be)."""
    proc = run_main(workdir, *RESUME_ARGS, background=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if max(logged_steps(workdir), default=0) >= after_step:
            proc.send_signal(sig)
            break
        time.sleep(0.01)
    out = proc.communicate()[0].decode()
    return proc.returncode, out


def assert_same_final_params(a, b, compare_logged_losses=True):
    step_a, params_a = final_params(a)
    step_b, params_b = final_params(b)
    assert step_a == step_b == 40
    for x, y in zip(jax_leaves(params_a), jax_leaves(params_b)):
        np.testing.assert_array_equal(x, y)
    if not compare_logged_losses:
        return
    full_losses = {m["step"]: m["train_loss"] for m in read_metrics(a) if "train_loss" in m}
    for m in read_metrics(b):
        if "train_loss" in m and m["step"] in full_losses:
            assert m["train_loss"] == pytest.approx(full_losses[m["step"]], abs=1e-6)


def checkpoint_dir_listing(workdir) -> list[str]:
    try:
        return sorted(p.name for p in (workdir / "checkpoints").iterdir())
    except FileNotFoundError:
        return []


KILLS = 3  # each a trainer process (~10 s here): 2 in the middle of a write (i % 3 != 2), 1 anywhere (5 until
# 2026-11-28: the suite's time; the kill moments are drawn afresh each run)


@pytest.mark.slow  # KILLS + 1 trainer processes
def test_killed_again_and_again_mid_save_then_rerun_matches_uninterrupted(uninterrupted, tmp_path):
    """SIGKILL KILLS times at random moments of a run that saves every step (a save is most of
    a step's time for this model): two in three kills as soon as orbax's tmp dir appears (in the
    middle of a write), the others after a random delay; each rerun resumes from the latest
    complete checkpoint, and the last one ends with the uninterrupted run's params, bitwise."""
    import random

    rng = random.Random()
    seed = rng.randrange(2**32)
    rng.seed(seed)
    args = [*RESUME_ARGS, "--config.ckpt_every=1"]
    kills = []
    for i in range(KILLS):
        # each rerun moves on by 1-3 steps (a kill within a step of the target), so the kills
        # land well inside the 40 steps
        before = max(logged_steps(tmp_path), default=0)
        target = before + rng.randint(1, 2)
        proc = run_main(tmp_path, *args, background=True)
        deadline = time.time() + 300
        while proc.poll() is None and max(logged_steps(tmp_path), default=0) < target and time.time() < deadline:
            time.sleep(0.005)
        mid_save = i % 3 != 2
        if mid_save:  # orbax's tmp dir for this step or a later one: a save is being written
            while proc.poll() is None and time.time() < deadline and not any(
                    n.split(".")[0].isdigit() and int(n.split(".")[0]) >= target and "tmp" in n
                    for n in checkpoint_dir_listing(tmp_path)):
                time.sleep(0.001)
            delay = rng.uniform(0, 0.05)
            time.sleep(delay)
        else:  # a random moment within the next step or so (step and save, whatever is running)
            delay = rng.uniform(0, 0.5)
            kill_at = time.time() + delay
            while proc.poll() is None and time.time() < kill_at and max(logged_steps(tmp_path), default=0) <= target:
                time.sleep(0.002)
        proc.kill()
        out = proc.communicate()[0].decode()
        kills.append(dict(kill=i, mid_save=mid_save, delay=round(delay, 3), rc=proc.returncode,
                          logged=max(logged_steps(tmp_path), default=0),
                          left=checkpoint_dir_listing(tmp_path)))
        assert proc.returncode == -signal.SIGKILL, f"run {i} ended before its kill: {kills}\n{out[-3000:]}"
    report = f"random seed {seed}; kills (step logged, checkpoint dir left):\n" + "\n".join(map(str, kills))
    print(report)  # shown with -rP
    # the uninterrupted run's command (a checkpoint every 4 steps, not every step: ~0.3 s a save
    # here) resumes from the latest complete checkpoint the kills left
    proc = run_main(tmp_path, *RESUME_ARGS, check=False)
    assert proc.returncode == 0, f"{report}\n{proc.stderr[-3000:]}"
    # the kills did land in the middle of writes (orbax's tmp dir left behind, then replaced)
    assert sum(any("orbax-checkpoint-tmp" in n for n in k["left"]) for k in kills) >= 2, report
    assert max(logged_steps(tmp_path)) == 40, report
    try:
        assert_same_final_params(uninterrupted, tmp_path)
    except AssertionError as e:
        raise AssertionError(f"{report}\n{e}") from None


def test_half_written_checkpoint_is_never_resumed_from(uninterrupted, tmp_path):
    """A save cut short leaves orbax's tmp dir, or (where rename is not atomic) a step dir
    without its commit marker; resume must take the last complete checkpoint instead."""
    import shutil

    wd = tmp_path / "wd"
    shutil.copytree(uninterrupted, wd)
    ckpts = wd / "checkpoints"
    assert sorted(int(p.name) for p in ckpts.iterdir()) == [32, 36, 40]
    # step 40 cut short before its commit marker, and an orbax tmp dir with truncated files
    (ckpts / "40" / "commit_success.txt").unlink()
    tmp = ckpts / "44.orbax-checkpoint-tmp-1795397415"
    shutil.copytree(ckpts / "36", tmp)
    for f in (tmp / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 16:
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    n_logged = len(logged_steps(wd))
    proc = run_main(wd, *RESUME_ARGS)
    assert "set aside as 40.incomplete-" in proc.stderr
    assert logged_steps(wd)[n_logged:] == [37, 38, 39, 40]  # resumed from 36
    assert any(p.name.startswith("40.incomplete-") for p in ckpts.iterdir())  # kept, not deleted
    assert_same_final_params(uninterrupted, wd)


def test_sigterm_saves_exits_zero_and_resumes(uninterrupted, tmp_path):
    code, out = start_and_interrupt(tmp_path, signal.SIGTERM)
    assert code == 0, out[-3000:]
    assert "preempted: checkpoint saved at step" in out
    saved = int(out.split("checkpoint saved at step ")[1].split(";")[0])
    assert saved < 40 and (tmp_path / "checkpoints" / str(saved)).is_dir()
    run_main(tmp_path, *RESUME_ARGS)
    # logged losses are means over log windows, which a stop between log steps splits
    assert_same_final_params(uninterrupted, tmp_path, compare_logged_losses=False)
