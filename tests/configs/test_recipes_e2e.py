"""Each seed recipe end to end, the way its user runs it, at tiny size.

Per seed config (one variant each): a random-init timm checkpoint with the pretrained class
count, saved as the user has it -> ``python -m convert`` as the config's docstring says (plus
``--model-args`` for the tiny size) -> main.py's path with that config (loaded as main.py loads
it, the overrides a user passes: tiny model, init_from, data_dir on a stand-in in the config's
official layout with the real class count, 2 steps) -> the run's final eval -> ``jaxvit.predict``
on a PNG -> ``convert.export`` -> timm ``create_model(...).load_state_dict(strict=True)`` -> timm's
logits (eval, fp32) equal jaxvit's of the same (EMA) weights.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the recipes' timm steps need torch: pip install -e '.[torch]'")
pytest.importorskip("timm", reason="the recipes' timm steps need timm: pip install -e '.[torch]'")

from conftest import ROOT, read_metrics, timm_model  # noqa: E402
from test_layouts import make_cifar10, make_cifar100, make_dtd, make_pets  # noqa: E402

# jaxvit vs timm, fp32, eval mode, the same weights, pre-logits features and logits: measured
# max |diff| 1.2e-7 (Mixer), 1.3e-7 (Swin), 3.6e-7 (MoCo ViT-B), 4.8e-7 (ViT-Tiny) and 3.1e-5
# (Inception-v4's ~150 layers, features up to ~10); 1e-4 is above all of them.
TOL = 1e-4


# --- the user's steps ---------------------------------------------------------------------------
def convert(*argv: str) -> None:
    from convert.__main__ import main

    assert main(list(argv)) == 0, argv


def train(spec: str, workdir: Path, **overrides) -> dict:
    """main.py --config=configs/<spec> --workdir=workdir --config.k=v ..., in this process."""
    from jaxvit.train import loop
    from jaxvit.train.config_util import load_config_file

    config = load_config_file(str(ROOT / "configs" / spec))
    overrides = dict(total_steps=2, progress_bar=False, log_every=1, **overrides)
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        assert leaf in node, f"{spec} has no config key {key!r}"
        node[leaf] = value
    return loop.run(config, str(workdir))


def check_eval(result: dict, workdir: Path, eval_size: int, ema: bool) -> None:
    """The run's final eval covered the whole eval split once, with finite numbers."""
    prefixes = ("eval", "eval_ema") if ema else ("eval",)
    for p in prefixes:
        assert result[f"{p}_count"] == eval_size, result
        for k in ("loss", "top1", "top5"):
            assert np.isfinite(result[f"{p}_{k}"]), result
    assert ("eval_ema_top1" in result) == ema
    losses = [m["train_loss"] for m in read_metrics(workdir) if "train_loss" in m]
    assert len(losses) == 2 and np.all(np.isfinite(losses)), losses


def png(path: Path, size: int) -> Path:
    from jaxvit.data.tf_util import import_tf

    tf = import_tf()
    img = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    path.write_bytes(tf.io.encode_png(img).numpy())
    return path


def predict(workdir: Path, image: Path, ema: bool, capsys) -> list[str]:
    """python -m jaxvit.predict [--ema] --checkpoint workdir image: the class names it prints."""
    from jaxvit import predict as predict_mod

    capsys.readouterr()
    flags = ["--ema"] if ema else []
    assert predict_mod.main([*flags, "--checkpoint", str(workdir), str(image)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(image) and len(lines) == 6, lines
    rows = [re.fullmatch(r"\s+([\d.]+)%\s+(.+)", line) for line in lines[1:]]
    assert all(rows), lines
    probs = [float(r.group(1)) for r in rows]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 100.01, lines
    return [r.group(2) for r in rows]


def export_and_compare(workdir: Path, tmp: Path, ema: bool, img_size: int, capsys) -> dict:
    """python -m convert.export [--ema] -> timm strict load -> logits; returns the exported dict."""
    import jax
    from flax import nnx
    from safetensors.torch import load_file

    import jaxvit
    from convert.export import main as export_main
    from jaxvit import weights

    out = tmp / "export.safetensors"
    capsys.readouterr()
    assert export_main(["--checkpoint", str(workdir), "--out", str(out), *(["--ema"] if ema else [])]) == 0
    printed = capsys.readouterr().out
    # the timm call export prints, taken as the user pastes it
    found = re.search(r"load with timm\.create_model\((.*)\)\.load_state_dict", printed)
    assert found, printed
    call = ast.parse(f"f({found.group(1)})", mode="eval").body
    name = ast.literal_eval(call.args[0])
    kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    assert kwargs.pop("pretrained") is False and name == weights.locate(str(workdir)).meta["model"]

    torch.manual_seed(0)
    ref = timm_model(name, **kwargs)
    exported = load_file(str(out))
    ref.load_state_dict(exported, strict=True)
    ref.eval()
    x = np.random.default_rng(1).standard_normal((2, img_size, img_size, 3)).astype(np.float32)
    with torch.no_grad():
        xt = torch.from_numpy(x).permute(0, 3, 1, 2)
        want = {"pre_logits": ref.forward_head(ref.forward_features(xt), pre_logits=True).numpy(),
                "logits": ref(xt).numpy()}
    model = jaxvit.create_model(name, checkpoint=str(workdir), ema=ema)
    model = nnx.view(model, deterministic=True, use_running_average=True, raise_if_not_found=False)
    graph, state = nnx.split(model)

    @jax.jit  # one compile: eager Inception-v4 is hundreds of op-by-op compiles
    def forward(state, x):
        m = nnx.merge(graph, state)
        return {"pre_logits": m.forward_head(m.forward_features(x), pre_logits=True), "logits": m(x)}

    got = {k: np.asarray(v) for k, v in forward(state, x).items()}
    assert got["logits"].shape == want["logits"].shape == (2, kwargs["num_classes"])
    # a fine-tuned head starts at zero in some families: the features carry the comparison then
    assert np.abs(want["pre_logits"]).max() > 0.1, "features near zero: the comparison would be vacuous"
    diff = max(float(np.abs(got[k] - want[k]).max()) for k in want)
    print(f"{name}: max |diff| jaxvit vs timm {diff:.2e} (pre-logits features and logits; "
          f"|logits| up to {np.abs(want['logits']).max():.2e})")  # shown with -s
    assert diff < TOL, diff
    return exported


def assert_started_from(exported: dict, source: dict, key: str, source_key: str | None = None) -> None:
    """The run's backbone came from the user's checkpoint through convert and init_from: two
    steps at lr <= 6e-4 move a weight by ~1e-3, another init differs by ~0.03 (std 0.02)."""
    moved = float((exported[key] - source[source_key or key]).abs().max())
    assert moved < 5e-3, (key, moved)


def _kw(model_args: str) -> dict:
    from jaxvit.registry import parse_model_args

    return parse_model_args(model_args)


# --- seed 000: Mixer-B/16 miil in21k -> CIFAR-100 -------------------------------------------------
MIXER_TINY = "num_blocks=1,embed_dim=32"


def test_seed000_mixer_miil_cifar100(tmp_path, capsys):
    """configs/mixer_b16_cifar100.py:miil: the miil 21k checkpoint (11,221 classes) converted as
    its docstring says, fine-tuned on torchvision's CIFAR-100 layout (100 classes), EMA."""
    torch.manual_seed(0)
    src = timm_model("mixer_b16_224.miil_in21k", num_classes=11221, num_blocks=1, embed_dim=32,
                     img_size=32, patch_size=8)
    pth = tmp_path / "mixer_miil.pth"
    torch.save(src.state_dict(), pth)
    conv = tmp_path / "runs/convert/mixer_b16_224.miil_in21k"
    convert("--model", "mixer_b16_224", "--checkpoint", str(pth), "--out", str(conv),
            "--model-args", MIXER_TINY, "--img-size", "32", "--patch-size", "8")

    data = tmp_path / "data/cifar100"
    make_cifar100(data, n_train=20, n_test=10)
    workdir = tmp_path / "runs/mixer_c100_miil"
    result = train("mixer_b16_cifar100.py:miil", workdir, model_args=MIXER_TINY, img_size=32, patch_size=8,
                   init_from=str(conv), data_dir=str(data), global_batch_size=8)
    check_eval(result, workdir, eval_size=10, ema=True)

    names = predict(workdir, png(tmp_path / "x.png", 40), ema=True, capsys=capsys)
    assert all(re.fullmatch(r"fine\d+", n) for n in names), names  # CIFAR-100's fine label names
    exported = export_and_compare(workdir, tmp_path, ema=True, img_size=32, capsys=capsys)
    assert_started_from(exported, src.state_dict(), "blocks.0.mlp_tokens.fc1.weight")


# --- seed 001: Swin-B (ImageNet-1k) fine-tuned on CIFAR-10 ----------------------------------------
SWIN_TINY = "embed_dim=16,depths=(1,1),num_heads=(1,2),window_size=4"


def test_seed001_swin_pretrained_cifar10(tmp_path, capsys):
    """configs/swin_small_data.py:cifar10_pretrained: a 224-px, 1000-class Swin-B checkpoint
    converted, fine-tuned at 32 px on torchvision's CIFAR-10 layout; no EMA."""
    torch.manual_seed(0)
    src = timm_model("swin_base_patch4_window7_224", num_classes=1000, **_kw(SWIN_TINY))
    pth = tmp_path / "swin_base.pth"
    torch.save(src.state_dict(), pth)
    conv = tmp_path / "runs/convert/swin_base_patch4_window7_224"
    convert("--model", "swin_base_patch4_window7_224", "--checkpoint", str(pth), "--out", str(conv),
            "--model-args", SWIN_TINY)

    data = tmp_path / "data/cifar10"
    make_cifar10(data, n_train=20, n_test=10)
    workdir = tmp_path / "runs/swin_c10_ft"
    result = train("swin_small_data.py:cifar10_pretrained", workdir, model_args=SWIN_TINY, img_size=32,
                   init_from=str(conv), data_dir=str(data), global_batch_size=8)
    check_eval(result, workdir, eval_size=10, ema=False)

    names = predict(workdir, png(tmp_path / "x.png", 32), ema=False, capsys=capsys)
    assert all(re.fullmatch(r"class\d", n) for n in names), names  # the stand-in's batches.meta names
    exported = export_and_compare(workdir, tmp_path, ema=False, img_size=32, capsys=capsys)
    assert_started_from(exported, src.state_dict(), "layers.1.blocks.0.attn.qkv.weight")


# --- seed 002: MoCo v3 ViT-B -> Oxford-IIIT Pets --------------------------------------------------
VIT_TINY = "depth=1,embed_dim=32,num_heads=2"


def moco_v3_checkpoint(path: Path, mlp_dim: int = 64, dim: int = 16) -> None:
    """What moco-v3's main_moco.py saves (vit-b-300ep.pth.tar): {'epoch', 'arch', 'state_dict',
    'optimizer', 'scaler'}, the state dict under DistributedDataParallel's 'module.': the base
    encoder (timm's VisionTransformer, its head replaced by the 3-layer projection MLP of
    moco/builder.py's _build_mlp), the momentum encoder (a copy) and the 2-layer predictor."""
    torch.manual_seed(0)
    vit = timm_model("vit_base_patch16_224", num_classes=0, **_kw(VIT_TINY))
    width = vit.embed_dim

    def mlp(num_layers, input_dim, last_bn=True):
        layers = []
        for i in range(num_layers):
            d1, d2 = input_dim if i == 0 else mlp_dim, dim if i == num_layers - 1 else mlp_dim
            layers.append(torch.nn.Linear(d1, d2, bias=False))
            if i < num_layers - 1:
                layers += [torch.nn.BatchNorm1d(d2), torch.nn.ReLU(inplace=True)]
            elif last_bn:
                layers.append(torch.nn.BatchNorm1d(d2, affine=False))
        return torch.nn.Sequential(*layers)

    vit.head = mlp(3, width)
    encoder = vit.state_dict()
    sd = {f"module.base_encoder.{k}": v for k, v in encoder.items()}
    # the momentum encoder: an average of past base encoders, so near but not equal to it
    sd.update({f"module.momentum_encoder.{k}": v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v
               for k, v in encoder.items()})
    sd.update({f"module.predictor.{k}": v for k, v in mlp(2, dim, last_bn=False).state_dict().items()})
    optimizer = {"state": {0: {"mu": torch.zeros(3)}}, "param_groups": [{"lr": 1.5e-4, "params": [0]}]}
    scaler = {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
              "_growth_tracker": 10}
    torch.save({"epoch": 300, "arch": "vit_base", "state_dict": sd, "optimizer": optimizer, "scaler": scaler},
               path)


def test_seed002_moco_v3_pets(tmp_path, capsys):
    """configs/moco_v3_vit_b_transfer.py:pets: moco-v3's checkpoint file converted as the docstring
    says (prefixes, momentum encoder, predictor and projection head dropped or re-initialized),
    fine-tuned at 32 px (pos_embed resampled from 224's grid) on the official Pets files (37
    breeds) with mixup and EMA."""
    ckpt = tmp_path / "vit-b-300ep.pth.tar"
    moco_v3_checkpoint(ckpt)
    conv = tmp_path / "runs/convert/mocov3_vit_b"
    convert("--checkpoint", str(ckpt), "--model", "vit_base_patch16_224", "--out", str(conv),
            "--model-args", VIT_TINY)

    data = make_pets(tmp_path / "pets")
    workdir = tmp_path / "runs/moco_pets"
    result = train("moco_v3_vit_b_transfer.py:pets", workdir, model_args=VIT_TINY, img_size=32,
                   init_from=str(conv), data_dir=str(data), global_batch_size=8)
    check_eval(result, workdir, eval_size=37, ema=True)

    names = predict(workdir, png(tmp_path / "x.png", 48), ema=True, capsys=capsys)
    assert all(re.fullmatch(r"breed_\d\d", n) for n in names), names  # breeds from the file names
    exported = export_and_compare(workdir, tmp_path, ema=True, img_size=32, capsys=capsys)
    source = torch.load(ckpt, weights_only=True)["state_dict"]
    qkv = "blocks.0.attn.qkv.weight"
    assert_started_from(exported, source, qkv, f"module.base_encoder.{qkv}")  # not the momentum encoder


# --- seed 004: ViT-Tiny from scratch on CIFAR-10 at 32 px -----------------------------------------
def test_seed004_vit_tiny_cifar10_from_scratch(tmp_path, capsys):
    """configs/vit_tiny_cifar10.py:32 on torchvision's CIFAR-10 download (data/cifar-10-batches-py),
    RandAugment, repeated augmentation, erasing; no conversion, no EMA."""
    data = tmp_path / "data"
    make_cifar10(data, n_train=20, n_test=10)
    workdir = tmp_path / "runs/vit_c10_32"
    result = train("vit_tiny_cifar10.py:32", workdir, model_args=VIT_TINY, patch_size=8, data_dir=str(data),
                   global_batch_size=8)
    check_eval(result, workdir, eval_size=10, ema=False)

    names = predict(workdir, png(tmp_path / "x.png", 32), ema=False, capsys=capsys)
    assert all(re.fullmatch(r"class\d", n) for n in names), names
    export_and_compare(workdir, tmp_path, ema=False, img_size=32, capsys=capsys)


def with_batch_statistics(model: torch.nn.Module, size: int) -> torch.nn.Module:
    """BatchNorm running statistics of real activations, as a trained checkpoint has: a fresh
    init's mean 0 / var 1 normalize nothing, and in eval mode its activations grow through
    Inception's ~150 layers to logits of 1e20, where a 1e-4 comparison means nothing. The
    variances are then inflated 1.5x, as tests/models/test_inception.py does: statistics that normalize
    exactly make this random network chaotic (timm's own fp32 and fp64 logits differ by 1e-2)."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.momentum = None  # a cumulative average: after one batch, that batch's statistics
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, size, size))
        for m in bns:
            m.momentum = 0.1
            m.running_var.mul_(1.5)
    return model.eval()


# --- seed 003: Inception-v4 (ImageNet-1k) -> DTD, non-binary transfer ------------------------------
@pytest.mark.xdist_group("memory")  # the full-size inception_v4 in torch and jax (tests/conftest.py)
def test_seed003_inception_v4_dtd(tmp_path, capsys):
    """configs/inception_v4_nonbinary.py:dtd, the parts that are cheap here: timm's full-size
    inception_v4 checkpoint (1000 classes; it has no size keywords) converted as the docstring
    says -> the recipe's init_from (last_linear 1000 -> 47 re-initialized, new_layers=1) evaluated
    on the official DTD files (47 classes, fold 1, val) at 75 px, the smallest input it takes, as
    ``--config.eval_only=True`` does -> export of the converted checkpoint -> timm strict load and
    logits. Not trained here: compiling its train step costs ~65 s on this CPU (the whole path
    ~100 s), and at batch 2 with 1x1 final maps train-mode BatchNorm divides by ~sqrt(eps) (grad
    norm 3e6 at the first step), so two steps would test nothing; Inception-v4 trains in
    tests/train/test_families_train.py."""
    torch.manual_seed(0)
    pth = tmp_path / "inception_v4.pth"
    torch.save(with_batch_statistics(timm_model("inception_v4"), 75).state_dict(), pth)
    conv = tmp_path / "runs/convert/inception_v4"
    convert("--model", "inception_v4", "--checkpoint", str(pth), "--out", str(conv))

    data = make_dtd(tmp_path / "data")
    result = train("inception_v4_nonbinary.py:dtd", tmp_path / "runs/inc_dtd_eval", img_size=75,
                   init_from=str(conv), data_dir=str(data), global_batch_size=16, eval_only=True)
    assert result["eval_count"] == 47, result  # DTD fold 1 val: one image per class here
    assert all(np.isfinite(result[f"eval_{k}"]) for k in ("loss", "top1", "top5")), result

    export_and_compare(conv, tmp_path, ema=False, img_size=75, capsys=capsys)
