"""Shared test set-up: a persistent JAX compilation cache and helpers to run the trainer."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# torch's compiler stack (triton, loaded by timm through torchvision) must load before TensorFlow
# in one process: the other way round segfaults (seen: a worker that ran a trainer test, then a
# timm parity test). The whole suite collects test_convert.py, which imports timm, before any test
# runs; a run of a few files need not, so every process that runs tests imports it here (from
# pytest_configure), before collection imports any test module. pytest-xdist's controller runs no
# test and skips the ~5 s import.


def import_torch_before_tf(config) -> None:
    if getattr(config.option, "numprocesses", None) and "PYTEST_XDIST_WORKER" not in os.environ:
        return
    try:
        import torch
        import torch._dynamo  # noqa: F401

        # timm on one thread: with two, on this 2-core machine busy with the suite's other worker,
        # Inception-v4's forward at 75 px took 5.6 s instead of 0.1 (threads waiting on each other).
        torch.set_num_threads(1)
    except ImportError:  # no torch extra: only the tests that need timm skip
        pass


ROOT = Path(__file__).resolve().parents[1]
CIFAR_SUBSET = ROOT.parent / "shared" / "data" / "cifar10-subset"

# Subprocesses inherit these: compiled programs are reused across processes with equal shapes.
# Every program is cached, not only those over JAX's default 1 s: with the flags below most
# compile in well under a second, and each trainer process would recompile its hundreds of small
# init and eager programs. Cold cache, one process each, 2026-11-28: test_train_resume.py 133 ->
# 106 s, test_train.py + test_scale.py 189 -> 150 s, in-process files unchanged (test_configs.py +
# test_attention.py 112 and 117 s, within this machine's run-to-run spread).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Compiling is most of this suite's time (tiny models, a few steps each). Two XLA:CPU settings
# compile in about half the time code that runs slower, a net gain even for the longest runs here:
# - LLVM's backend at -O0. Measured on this 2-core machine, cold compilation cache, CPU seconds:
#   test_remat.py's mvitv2 + tnt cases 91 -> 47, test_recipes_e2e.py's seed000 (fine-tuning
#   runs) 53 -> 39.
# - XLA's older fusion emitters (LLVM IR written directly, not through the MLIR fusion emitters),
#   on top of -O0: test_remat.py 113 -> 58 s, test_configs.py 152 -> 115 s, 42 Swin/MViTv2/DeiT
#   parity cases 139 -> 111 s (one process each, cold cache, 2026-11-28). Only where this jaxlib
#   still has the flag: an unknown flag in XLA_FLAGS aborts every process.
# The numbers move at fp32 rounding: loss and gradients of a ViT, Swin and MViTv2 step against
# XLA's defaults, loss 2.2e-7 relative, gradients 3.0e-6 of each array's largest value (-O0 alone:
# 2.5e-6; both measured 2026-11-28); every comparison here is between two runs with the same flags,
# or against timm at 1e-4. This process and every trainer process a test starts (they inherit the
# environment, or take device_env's).


def _xla_knows(flag: str) -> bool:
    """Whether this jaxlib's XLA parses ``--flag`` (its name is in one of jaxlib's libraries)."""
    import importlib.util
    import mmap

    spec = importlib.util.find_spec("jaxlib")
    if spec is None or spec.origin is None:
        return False
    for lib in Path(spec.origin).parent.glob("*.so"):
        with open(lib, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if data.find(flag.encode()) != -1:
                return True
    return False


TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"
if _xla_knows("xla_cpu_use_fusion_emitters"):
    TEST_XLA_FLAGS += " --xla_cpu_use_fusion_emitters=false"
os.environ["XLA_FLAGS"] = f"{TEST_XLA_FLAGS} {os.environ.get('XLA_FLAGS', '')}".strip()

# A tiny ViT and short run: the trainer's mechanics, not its accuracy.
TINY = [
    "--config.model_args=depth=2,embed_dim=32,num_heads=2",
    "--config.img_size=16",
    "--config.patch_size=4",
    "--config.global_batch_size=32",
    "--config.progress_bar=False",
    "--config.log_every=1",
    "--config.eval_every=0",
]


# The one table of tiny variants: per family, keywords that shrink the model and the smallest
# image size it takes (its layer types kept); tiny_models(): one registered name per head layout
# at those sizes (DeiT's two heads, Perceiver IO's query, a ViT without a class token), Inception-v4
# as it is at 75 px.
TINY_FAMILIES = {
    "vit": ("depth=1,embed_dim=32,num_heads=2", 16),
    "mixer": ("num_blocks=1,embed_dim=32", 16),
    "swin": ("embed_dim=16,depths=(1,1),num_heads=(1,2),window_size=4", 16),
    "tnt": ("depth=1,embed_dim=32,inner_dim=8,num_heads_outer=2,num_heads_inner=2", 16),
    "mvitv2": ("embed_dim=16,depths=(1,1,1,1),num_heads=(1,2,4,8)", 32),
    "perceiver": ("depth=1,num_latents=8,latent_dim=16,latent_heads=2,latent_dim_head=8,cross_dim_head=8", 16),
    "dems": ("depth=2,embed_dim=16,num_heads=2,merge_num=(4,2),merge_layer=(1,2)", 16),
    "msvit": ("depth=1,embed_dim=16,num_heads=2,pool_heads=2", 16),
}
_TINY_NAMES = {"vit": ["vit_tiny_patch16_224", "deit_tiny_distilled_patch16_224",
                       "vit_betwixt_patch16_reg4_gap_256"], "mixer": ["mixer_s16_224"],
               "swin": ["swin_tiny_patch4_window7_224"], "tnt": ["tnt_s_patch16_224"], "mvitv2": ["mvitv2_tiny"],
               "perceiver": ["perceiver_tiny", "perceiver_io_tiny"], "dems": ["dems_tiny_patch2_32"],
               "msvit": ["mvit2_tiny_patch2"]}


@functools.cache
def tiny_models() -> dict[str, dict]:
    """TINY_FAMILIES as {registered name: keywords} (imports jaxvit: called by tests, not here)."""
    from jaxvit.registry import parse_model_args

    out = {"inception_v4": dict(img_size=75)}
    for family, (args, size) in TINY_FAMILIES.items():
        for name in _TINY_NAMES[family]:
            out[name] = dict(parse_model_args(args), img_size=size)
    return out


# keywords timm's mlp_mixer entry functions fix (mixer_b16_224: dict(num_blocks=12, ..., **kwargs))
TIMM_MIXER_FIXED = ("patch_size", "num_blocks", "embed_dim")


def timm_mixer(name: str, **kwargs):
    """``timm.create_model(name, **kwargs)`` for a name of timm's ``mlp_mixer`` module, where the
    keywords its entry function fixes may be overridden too (reduced depth and width): they
    reach timm's ``_create_mixer`` past the entry function, so every other argument of the
    name (block, MLP and norm layers, ResMLP's init_values) stays timm's own."""
    from unittest import mock

    import timm
    from timm.models import mlp_mixer

    fixed = {k: kwargs.pop(k) for k in TIMM_MIXER_FIXED if k in kwargs}
    create = mlp_mixer._create_mixer

    def create_with(variant, pretrained=False, **args):
        return create(variant, pretrained, **{**args, **fixed})

    with mock.patch.object(mlp_mixer, "_create_mixer", create_with):
        return timm.create_model(name, pretrained=False, **kwargs)


NOISE = 0.02  # moves every tensor off its init, so a mis-mapped one shows in the logits


def timm_model(name: str, **kwargs):
    """``timm.create_model(name, **kwargs)``, where the name's own depth (and width) can be
    overridden: timm's mlp_mixer functions fix num_blocks and embed_dim, MViTv2 takes its depths
    and widths (any MultiScaleVitCfg field, as jaxvit's keywords) from a config table."""
    import timm

    import jaxvit

    if jaxvit.get_entry(name).family == "mixer":
        return timm_mixer(name, **kwargs)
    if name.startswith("mvitv2_"):
        import dataclasses

        from timm.models import build_model_with_cfg
        from timm.models.mvitv2 import MultiScaleVit, model_cfgs

        fields = {f.name for f in dataclasses.fields(model_cfgs[name])}
        changes = {k: tuple(kwargs.pop(k)) if isinstance(kwargs[k], list) else kwargs.pop(k)
                   for k in list(kwargs) if k in fields}  # lists: keywords read back from JSON
        if changes:
            cfg = dataclasses.replace(model_cfgs[name], **changes)
            return build_model_with_cfg(MultiScaleVit, name, False, model_cfg=cfg,
                                        feature_cfg=dict(out_indices=4, feature_cls="getter"), **kwargs)
    return timm.create_model(name, pretrained=False, **kwargs)


def filled_model(name: str, seed: int = 0, **kwargs):
    """``jaxvit.create_model(name, **kwargs)`` with its weights drawn on the host instead of by
    its initializers (normal, std 0.05; norm scales and running variances around 1), its other
    state (dropout RNG streams) as create_model makes it. For tests of an interface, dtypes or
    train/eval behaviour, where the init distribution does not matter: an eager random init
    compiles op by op (Inception-v4: ~9 s here; a tiny MViTv2 ~4 s)."""
    import jax
    from flax import nnx

    import jaxvit
    from jaxvit._compat import without_weights

    model = without_weights(lambda: jaxvit.create_model(name, seed=seed, **kwargs))
    weights = nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))
    rng = np.random.default_rng(seed)

    def draw(path, a):
        x = rng.standard_normal(a.shape).astype(a.dtype) * 0.05
        names = {k.key for k in path if isinstance(k, jax.tree_util.DictKey)}  # the Variable's own name
        return jax.numpy.asarray(np.abs(x) + 1 if names & {"scale", "var"} else x)

    nnx.update(model, jax.tree_util.tree_map_with_path(draw, weights))
    return model


def compiled_forward(model):
    """``model(x)``, jitted once, as a function of ``x`` (the model's state a jit argument, its
    graph split out). Eagerly each op compiles on its own: a DEMS model's 287 took ~10 s here,
    one compiled forward well under 1 s. A new jit each call: what the forward traces under
    (an attention kernel, say) is fixed when it first runs."""
    import jax
    from flax import nnx

    graph, state = nnx.split(model)
    forward = jax.jit(lambda s, x: nnx.merge(graph, s)(x))
    return lambda x: forward(state, x)


def perturbed_timm(name: str, seed: int = 0, **kwargs):
    """timm's model in eval mode with seeded noise added to every floating tensor."""
    import torch

    torch.manual_seed(seed)
    model = timm_model(name, **kwargs).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for key, t in model.state_dict().items():
            if t.is_floating_point():
                noise = torch.randn(t.shape, generator=gen) * NOISE
                t.add_(noise.abs() if key.endswith("running_var") else noise)
    return model


def device_env(devices: int) -> dict[str, str]:
    """This environment for a process with ``devices`` simulated CPU devices. XLA aborts a
    process whose devices wait over 40 s for each other in a collective (its default), which
    a loaded 2-core machine reaches (seen: an 8-device run killed at an all-reduce); the
    timeout is raised so a slow run stays a slow run."""
    return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=(
        f"{TEST_XLA_FLAGS} --xla_force_host_platform_device_count={devices} "
        "--xla_cpu_collective_call_terminate_timeout_seconds=900 --xla_cpu_collective_timeout_seconds=900"))


def run_main(workdir: Path, *overrides: str, devices: int = 1, check: bool = True,
             config: str = "configs/default.py", tiny: bool = True, **popen):
    """Runs ``main.py`` in a fresh process with ``devices`` simulated CPU devices."""
    env = device_env(devices)
    cmd = [sys.executable, str(ROOT / "main.py"), "--config=" + str(ROOT / config),
           f"--workdir={workdir}", *(TINY if tiny else []), *overrides]
    if popen.pop("background", False):
        return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    proc = subprocess.run(cmd, env=env, cwd=popen.get("cwd", ROOT), capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"main.py failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def _parse(argv: list[str]):
    """main.py's flags (--config with its overrides, --workdir) parsed from ``argv``, in fresh
    FlagValues: what main.py's absl.app.run does, repeatable in one process."""
    from absl import flags
    from ml_collections import config_flags

    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values, lock_config=True, sys_argv=argv)
    flags.DEFINE_string("workdir", None, "", flag_values=flag_values)
    flag_values(argv)
    return flag_values


def train_in_process(workdir: Path, *overrides: str, config: str = "configs/default.py",
                     tiny: bool = True) -> dict[str, float]:
    """``loop.run`` in this process (one device) with main.py's own flag parsing: what
    ``run_main`` does, less a process start (TensorFlow and JAX imports, ~5-10 s). For runs
    whose tests read the outputs; the command line itself is tested through ``run_main``."""
    import jax

    from jaxvit.train import loop

    assert jax.device_count() == 1, "in-process runs are the one-device runs; pytest must not see XLA_FLAGS"
    argv = ["main.py", "--config=" + str(ROOT / config), *(TINY if tiny else []), *overrides]
    return loop.run(_parse(argv).config, str(workdir))


def main_in_process(workdir: Path | str, *overrides: str, config: str = "configs/default.py",
                    tiny: bool = True) -> tuple[int, str, str]:
    """``python main.py ...`` in this process (one device): main.py's own precheck, flag parsing
    and ``train``; returns (exit status, stdout, stderr). For the trainer's answers to a command
    (errors, final lines); one real process per error kind stays in test_bad_input.py."""
    import contextlib
    import io

    import main as main_py

    argv = ["main.py", "--config=" + str(ROOT / config), f"--workdir={workdir}", *(TINY if tiny else []),
            *overrides]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main_py.precheck(argv)
            flag_values = _parse(argv)
            status = main_py.train(flag_values.config, flag_values.workdir)
        except SystemExit as e:
            status = e.code
    return status, out.getvalue(), err.getvalue()


def trainer_weights(config, num_classes: int) -> tuple[dict[str, np.ndarray], set[str]]:
    """The weights a run of ``config`` starts from, flat ('params.head.kernel': array), and the
    param names init_from did not supply: jaxvit/train/state.py's ``create`` on this process's
    devices."""
    from jaxvit import weights
    from jaxvit.train import optim, sharding, state

    built = state.create(config, sharding.create_mesh(-1, 1), num_classes, optim.create_schedules(config, 1, 1))
    tree = {k: built.state[k] for k in ("params", "batch_stats") if built.state[k]}
    return {k: np.asarray(v) for k, v in weights.flatten(tree).items()}, built.new_names


def read_metrics(workdir: Path) -> list[dict]:
    with open(workdir / "metrics.jsonl") as f:
        return [json.loads(line) for line in f]


def train_losses(workdir: Path) -> list[float]:
    return [m["train_loss"] for m in read_metrics(workdir) if "train_loss" in m]


@pytest.fixture
def cifar_subset() -> Path:
    if not (CIFAR_SUBSET / "train").is_dir():
        pytest.skip(f"cifar10-subset not found at {CIFAR_SUBSET} (shared data absent on this machine)")
    return CIFAR_SUBSET


# `make test` runs `pytest -n 2 --dist loadgroup`. A file whose tests share a module-scoped
# fixture (a training run several tests read) is one group, so one worker makes that fixture
# once; other tests are groups of their own and spread over both workers. Tests marked
# xdist_group("memory") need 5-12 GB each (today: the full-size Inception-v4 end to end) and
# run one after another on one worker, so the two workers never hold two of them at once
# (24 GB machine; two at once were OOM-killed).
# The longest first (measured on this 2-core machine): xdist hands groups out in collection
# order, and a long group started last leaves one worker idle.
LONG_FIRST = ("test_train_resume.py", "test_families_train.py", "test_train.py", "test_scale.py",
              "test_recipes_e2e.py", "test_configs.py", "test_convert.py")


def _shares_module_fixture(item) -> bool:
    for defs in item._fixtureinfo.name2fixturedefs.values():
        for d in defs:
            own = getattr(d.func, "__module__", "") == item.module.__name__
            if d.scope in ("module", "package", "session") and own:
                return True
    return False


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            group = item.path.name if _shares_module_fixture(item) else item.nodeid
            item.add_marker(pytest.mark.xdist_group(group))

    def rank(item):
        if item.get_closest_marker("xdist_group").args[0] == "memory":
            return -1
        name = item.path.name
        return LONG_FIRST.index(name) if name in LONG_FIRST else len(LONG_FIRST)

    items.sort(key=rank)  # stable: a file's own order is kept


def pytest_configure(config):
    """xdist_group needs pytest < 9.2 with pytest-xdist <= 3.8 (see pyproject.toml's test extra):
    said once, before any test runs, instead of "memory" tests running side by side."""
    from importlib.metadata import version

    def release(pkg: str) -> tuple[int, ...]:
        return tuple(int(p) for p in version(pkg).split(".")[:2] if p.isdigit())

    if config.getoption("dist", "no") == "loadgroup" and release("pytest") >= (9, 2) \
            and release("pytest-xdist") <= (3, 8):
        raise pytest.UsageError(
            f"--dist loadgroup does not group tests with pytest {version('pytest')} and pytest-xdist "
            f"{version('pytest-xdist')}; install the test extra's pytest: pip install -e '.[torch,test]'"
        )
    import_torch_before_tf(config)
