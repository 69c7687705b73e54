"""Same ViT, same init, same recipe: jaxvit's trainer against a plain PyTorch loop of timm parts.

python benchmarks/recipe_compare.py --epochs 6 --depth 4 --embed-dim 192 --batch 128 \
    --auto-augment rand-m9-mstd0.5-inc1 --mixup 0.8 --cutmix 1.0 --smoothing 0.1 --ema 0.99

timm builds the model; its state_dict is converted to a jaxvit checkpoint (jaxvit starts from it with
--config.init_from) and loaded by the PyTorch side. Both sides train on the same train/val files
(jaxvit's imagefolder split) and the final val top-1 (and EMA top-1) of each are printed in one table
and appended to --csv. jaxvit runs as ``main.py`` in a subprocess; its numbers come from metrics.jsonl.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run from a checkout

import numpy as np  # noqa: E402
import timm  # noqa: E402  (torch and timm before anything that may import TensorFlow)
import torch  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402
from timm.data import Mixup, create_transform  # noqa: E402
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy  # noqa: E402
from timm.optim import create_optimizer_v2  # noqa: E402
from timm.scheduler import CosineLRScheduler  # noqa: E402
from timm.utils import ModelEmaV3  # noqa: E402

from jaxvit.data.sources import imagefolder_source  # noqa: E402

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
MODEL = "vit_tiny_patch16_224"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.path.join(os.path.dirname(ROOT), "shared/data/cifar10-subset"))
    p.add_argument("--workdir", default="runs/recipe_compare", help="checkpoints, jaxvit run, logs")
    p.add_argument("--csv", default=os.path.join(ROOT, "benchmarks/recipe_compare.csv"))
    p.add_argument("--limit", type=int, default=0, help=">0: N train, N/4 val images")
    p.add_argument("--seed", type=int, default=0, help="init, val split, data order")
    side = p.add_mutually_exclusive_group()
    side.add_argument("--torch-only", action="store_true")
    side.add_argument("--jax-only", action="store_true")
    m = p.add_argument_group("model")
    m.add_argument("--img-size", type=int, default=32)
    m.add_argument("--patch-size", type=int, default=4)
    m.add_argument("--depth", type=int, default=4)
    m.add_argument("--embed-dim", type=int, default=192)
    m.add_argument("--heads", type=int, default=3)
    m.add_argument("--drop-path", type=float, default=0.0)
    r = p.add_argument_group("recipe")
    r.add_argument("--epochs", type=int, default=6)
    r.add_argument("--batch", type=int, default=128)
    r.add_argument("--lr", type=float, default=1e-3)
    r.add_argument("--weight-decay", type=float, default=0.05)
    r.add_argument("--warmup-epochs", type=int, default=1)
    r.add_argument("--warmup-lr", type=float, default=1e-6)
    r.add_argument("--min-lr", type=float, default=1e-5)
    r.add_argument("--sched-unit", choices=["epoch", "step"], default="step",
                   help="timm's scheduler per epoch (train.py default) or per update (--sched-on-updates)")
    r.add_argument("--scale", type=float, nargs=2, default=(0.35, 1.0), help="RandomResizedCrop area range")
    r.add_argument("--interpolation", default="bicubic")
    r.add_argument("--hflip", type=float, default=0.5)
    r.add_argument("--auto-augment", default="rand-m9-mstd0.5-inc1", help="timm --aa string; '' for none")
    r.add_argument("--reprob", type=float, default=0.25)
    r.add_argument("--remode", default="pixel")
    r.add_argument("--mixup", type=float, default=0.8, help="mixup alpha (0: off)")
    r.add_argument("--cutmix", type=float, default=1.0, help="cutmix alpha (0: off)")
    r.add_argument("--mixup-prob", type=float, default=1.0)
    r.add_argument("--switch-prob", type=float, default=0.5)
    r.add_argument("--mixup-mode", default="batch")
    r.add_argument("--smoothing", type=float, default=0.1)
    r.add_argument("--ema", type=float, default=0.99, help="model EMA decay (0: no EMA)")
    r.add_argument("--crop-pct", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads")
    return p.parse_args(argv)


# --- shared inputs: file lists and init -------------------------------------------------------
def split_files(root: str, seed: int, limit: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """jaxvit's own imagefolder split (10% of each class held out as 'val'), the source's own file
    lists, so both sides see exactly the same files; ``limit`` keeps evenly spaced ones."""
    splits = dict(imagefolder_source(root, 0.1, seed).arrays)
    if limit:
        for name, n in (("train", limit), ("val", max(limit // 4, 10))):
            files, labels = splits[name]
            keep = np.linspace(0, len(files) - 1, min(n, len(files))).round().astype(int)
            splits[name] = (files[keep], labels[keep])
    return splits


def fresh_dir(path: str) -> str:
    shutil.rmtree(path, ignore_errors=True)
    return path


def link_folder(splits, classes: list[str], out: str) -> str:
    """An image folder with explicit train/ and val/ of symlinks (jaxvit's input under --limit)."""
    fresh_dir(out)
    for split, (files, labels) in splits.items():
        for c in classes:
            os.makedirs(os.path.join(out, split, c), exist_ok=True)
        for f, y in zip(files, labels):
            dst = os.path.join(out, split, classes[y], os.path.basename(f))
            os.symlink(os.path.abspath(f), dst)
    return out


def model_kwargs(args) -> dict:
    return dict(img_size=args.img_size, patch_size=args.patch_size, depth=args.depth,
                embed_dim=args.embed_dim, num_heads=args.heads, num_classes=args.num_classes)


def make_init(args, workdir: str) -> tuple[dict, str]:
    """timm's fresh init as a state_dict, and the same weights as a jaxvit checkpoint directory."""
    from convert import convert_state_dict, save

    torch.manual_seed(args.seed)
    sd = timm.create_model(MODEL, **model_kwargs(args)).state_dict()
    torch.save(sd, os.path.join(workdir, "init.pth"))
    out = fresh_dir(os.path.join(workdir, "init_jaxvit"))
    model, meta = convert_state_dict(MODEL, sd, log=lambda *_: None, **model_kwargs(args))
    save(out, model, meta)
    x = torch.randn(4, 3, args.img_size, args.img_size)
    with torch.no_grad():
        want = timm.create_model(MODEL, **model_kwargs(args)).eval()
        want.load_state_dict(sd)
        want = want(x).numpy()
    model.eval()
    got = np.asarray(model(x.numpy().transpose(0, 2, 3, 1)))
    print(f"init: jaxvit and timm logits differ by at most {np.abs(got - want).max():.2e}", flush=True)
    return sd, out


# --- jaxvit ----------------------------------------------------------------------------------
def jaxvit_flags(args, data_root: str, init_dir: str) -> list[str]:
    kw = model_kwargs(args)
    c = dict(
        dataset="imagefolder", data_dir=data_root, eval_split="val", val_fraction=0.1, seed=args.seed,
        img_size=args.img_size, patch_size=args.patch_size, mean=CIFAR_MEAN, std=CIFAR_STD,
        crop_pct=args.crop_pct, model=MODEL, init_from=init_dir, drop_path_rate=args.drop_path,
        model_args=",".join(f"{k}={kw[k]}" for k in ("depth", "embed_dim", "num_heads")),
        global_batch_size=args.batch, num_epochs=float(args.epochs), optimizer="adamw", lr=args.lr,
        weight_decay=args.weight_decay, filter_bias_and_bn=True, label_smoothing=args.smoothing,
        schedule="cosine", schedule_unit=args.sched_unit, warmup_epochs=float(args.warmup_epochs),
        warmup_lr=args.warmup_lr, min_lr=args.min_lr, mixup_alpha=args.mixup, cutmix_alpha=args.cutmix,
        mixup_prob=args.mixup_prob, switch_prob=args.switch_prob, mixup_mode=args.mixup_mode,
        model_ema=args.ema > 0, model_ema_decay=args.ema or 0.9998, progress_bar=False, eval_every=0,
        ckpt_every=0, log_every=10,
        **{"aug.scale": tuple(args.scale), "aug.interpolation": args.interpolation, "aug.hflip": args.hflip,
           "aug.auto_augment": args.auto_augment, "aug.reprob": args.reprob, "aug.remode": args.remode,
           "aug.color_jitter": 0.0},
    )
    return [f"--config.{k}={v}" for k, v in c.items()]


def run_jaxvit(args, data_root: str, init_dir: str, workdir: str) -> dict:
    """main.py in a fresh process (CPU); the last eval line of its metrics.jsonl."""
    run_dir = fresh_dir(os.path.join(workdir, "jaxvit"))  # a fresh run, not a resumed one
    cmd = [sys.executable, os.path.join(ROOT, "main.py"), f"--config={ROOT}/configs/default.py",
           f"--workdir={run_dir}", *jaxvit_flags(args, data_root, init_dir)]
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
    log_path = os.path.join(workdir, "jaxvit.log")
    print(f"jaxvit: training (log: {log_path})", flush=True)
    start = time.time()
    with open(log_path, "w") as log:
        code = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    minutes = (time.time() - start) / 60
    if code:
        sys.exit(f"jaxvit failed ({code}):\n{open(log_path).read()[-4000:]}")
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        final = [r for r in map(json.loads, f) if "eval_top1" in r][-1]
    return dict(impl="jaxvit", top1=final["eval_top1"], ema_top1=final.get("eval_ema_top1"), minutes=minutes)


# --- PyTorch ---------------------------------------------------------------------------------
def posterize(img, bits_to_keep, **_):
    """timm's posterize with Pillow < 13's meaning of 0 bits (black; jaxvit's too): Pillow 13
    rejects 0, which PosterizeIncreasing asks for at magnitude 10 (m9 with mstd noise gets there)."""
    if bits_to_keep >= 8:
        return img
    return ImageOps.posterize(img, bits_to_keep) if bits_to_keep > 0 else Image.new(img.mode, img.size)


for _name in ("Posterize", "PosterizeIncreasing", "PosterizeOriginal"):
    timm.data.auto_augment.NAME_TO_OP[_name] = posterize


class Files(torch.utils.data.Dataset):
    """Decoded RGB images in memory (jaxvit caches decoded images too), one transform per fetch."""

    def __init__(self, files, labels, transform):
        self.images = [Image.open(f).convert("RGB") for f in files]
        self.labels, self.transform = [int(y) for y in labels], transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.labels[i]


def torch_loaders(args, splits):
    common = dict(input_size=args.img_size, interpolation=args.interpolation, mean=CIFAR_MEAN, std=CIFAR_STD)
    train_tf = create_transform(
        is_training=True, scale=tuple(args.scale), hflip=args.hflip, color_jitter=0.0,
        auto_augment=args.auto_augment or None, re_prob=args.reprob, re_mode=args.remode, **common)
    eval_tf = create_transform(is_training=False, crop_pct=args.crop_pct, **common)
    gen = torch.Generator().manual_seed(args.seed)
    train = torch.utils.data.DataLoader(Files(*splits["train"], train_tf), args.batch, shuffle=True,
                                        drop_last=True, generator=gen)  # jaxvit: n // batch steps an epoch
    val = torch.utils.data.DataLoader(Files(*splits["val"], eval_tf), 256)
    return train, val


def torch_recipe(args, model, steps_per_epoch: int):
    """Optimizer, scheduler, mixup, loss and EMA, each timm's own."""
    opt = create_optimizer_v2(model, "adamw", lr=args.lr, weight_decay=args.weight_decay,
                              filter_bias_and_bn=True)
    per = steps_per_epoch if args.sched_unit == "step" else 1
    sched = CosineLRScheduler(opt, t_initial=args.epochs * per, lr_min=args.min_lr,
                              warmup_t=args.warmup_epochs * per, warmup_lr_init=args.warmup_lr,
                              t_in_epochs=args.sched_unit == "epoch")
    mix = None
    if args.mixup > 0 or args.cutmix > 0:
        mix = Mixup(mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, prob=args.mixup_prob,
                    switch_prob=args.switch_prob, mode=args.mixup_mode, label_smoothing=args.smoothing,
                    num_classes=args.num_classes)
        loss = SoftTargetCrossEntropy()
    else:
        loss = LabelSmoothingCrossEntropy(args.smoothing) if args.smoothing else torch.nn.CrossEntropyLoss()
    ema = ModelEmaV3(model, decay=args.ema) if args.ema > 0 else None
    return opt, sched, mix, loss, ema


@torch.no_grad()
def top1(model, loader) -> float:
    model.eval()
    hits = sum((model(x).argmax(-1) == y).sum().item() for x, y in loader)
    return hits / len(loader.dataset)


def run_torch(args, splits, init_sd) -> dict:
    """timm's train.py loop, reduced: mix, forward, backward, step, EMA, scheduler."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)  # timm's Mixup draws from numpy
    random.seed(args.seed)  # timm's crop and RandAugment draw from random
    start = time.time()
    train, val = torch_loaders(args, splits)
    model = timm.create_model(MODEL, drop_path_rate=args.drop_path, **model_kwargs(args))
    model.load_state_dict(init_sd)
    opt, sched, mix, loss_fn, ema = torch_recipe(args, model, len(train))
    updates = 0
    for epoch in range(args.epochs):
        model.train()
        for x, y in train:
            if mix is not None:
                x, y = mix(x, y)
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            updates += 1
            if ema is not None:
                ema.update(model, step=updates)
            if args.sched_unit == "step":
                sched.step_update(num_updates=updates)
        sched.step(epoch + 1)
        print(f"torch epoch {epoch + 1}/{args.epochs}: loss {loss.item():.4f}", flush=True)
    result = dict(impl="torch+timm", top1=top1(model, val), ema_top1=top1(ema.module, val) if ema else None)
    return dict(result, minutes=(time.time() - start) / 60)


# --- report ----------------------------------------------------------------------------------
def settings(args, splits) -> str:
    keys = ("epochs", "batch", "lr", "weight_decay", "warmup_epochs", "warmup_lr", "min_lr", "sched_unit",
            "img_size", "patch_size", "depth", "embed_dim", "heads", "drop_path", "scale", "interpolation",
            "hflip", "auto_augment", "reprob", "remode", "mixup", "cutmix", "mixup_prob", "switch_prob",
            "mixup_mode", "smoothing", "ema", "crop_pct", "seed")
    sizes = f"train={len(splits['train'][0])} val={len(splits['val'][0])}"
    return f"{MODEL} adamw cosine {sizes} " + " ".join(f"{k}={getattr(args, k)}" for k in keys)


def fmt(v, spec=".4f") -> str:
    return "-" if v is None else format(v, spec)


def report(rows: list[dict], text: str, path: str) -> None:
    print("\nimpl       | top-1  | EMA top-1 | minutes")
    for r in rows:
        print(f"{r['impl']:<10} | {fmt(r['top1'])} | {fmt(r['ema_top1']):<9} | {fmt(r['minutes'], '.2f')}")
    print(f"settings: {text}")
    new = not os.path.exists(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["date", "impl", "top1", "ema_top1", "minutes", "settings"])
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        for r in rows:
            w.writerow([stamp, r["impl"], fmt(r["top1"]), fmt(r["ema_top1"]), fmt(r["minutes"], ".3f"), text])


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    splits = split_files(args.data, args.seed, args.limit)
    args.num_classes = int(splits["train"][1].max()) + 1
    init_sd, init_dir = make_init(args, workdir)
    rows = []
    if not args.torch_only:
        train_dir = os.path.join(args.data, "train")
        classes = sorted(d for d in os.listdir(train_dir) if os.path.isdir(os.path.join(train_dir, d)))
        root = link_folder(splits, classes, os.path.join(workdir, "data")) if args.limit else args.data
        rows.append(run_jaxvit(args, root, init_dir, workdir))
    if not args.jax_only:
        rows.append(run_torch(args, splits, init_sd))
    report(rows, settings(args, splits), args.csv)
    return rows


if __name__ == "__main__":
    main()
