"""Seed 004's "mvit" on CIFAR-10 at 32 px: strong-aug pretraining, weak-aug fine-tuning, eval.

Source: shared/seeds/004_58be01dcd4f55008.txt, "mvit: pretrain: 96.58" and "mvit: ft using weak
aug" (--model mvit2_tiny_patch2), run with erow/vitookit at d6f4dd1 (the commit whose
doc/mvit.md is the seed). That ``mvit2_tiny_patch2`` is vitookit's multi-resolution ViT
(16 + 32 px frames, block-causal attention, LayerScale, attention pooling; see
jaxvit/models/msvit.py), not Li et al.'s MViTv2 (``mvitv2_tiny`` in jaxvit; to run this
recipe on it: --config.model=mvitv2_tiny --config.patch_size=0
--config.model_args="patch_kernel=(3,3),patch_stride=(2,2),patch_padding=(1,1)").
  :pretrain  --warmup_epochs=0 --epochs 800 --batch_size=512 on 2 GPUs (global 1024)
             --weight_decay 0.05, scale (0.2, 1), the seed's CIFAR mean/std.
  :finetune  from the pretraining checkpoint: --blr=1e-3 --warmup_epochs=0 --epochs 100 --aa=""
             --reprob=0 --disable_weight_decay_on_bias_norm --batch_size=1024 on 1 GPU,
             scale (1, 1), drop_path 0.2 (attn_drop 0.05 is passed too, but the model takes
             attn_drop_rate and swallows unknown keywords: no attention dropout ran).
  :eval      the seed's "evaluate" command: the checkpoint on the test set, nothing trained.
From vitookit's vitookit/evaluation/eval_cls.py defaults at d6f4dd1 (the commands leave them):
adamw (eps 1e-8), blr 5e-4 for the pretraining, lr = blr * global batch / 256, timm's cosine
stepped at fractional epochs (= per update, schedule_unit='step'), warmup_lr 1e-6, min_lr 1e-5,
RandAugment rand-m9-mstd0.5-inc1 bicubic, RandomErasing 0.25 pixel, mixup 0.8 + cutmix 1.0
(prob 1, switch 0.5, batch mode) with smoothing 0.1 *in both runs* (eval_cls.py's Mixup
defaults, which the weak-aug listing in the seed does not show). Its training loop runs
--epochs, not timm's num_epochs + cooldown: cooldown_epochs 0. --disable_weight_decay_on_bias_norm
passes filter_bias_and_bn=False to timm's create_optimizer, so the fine-tuning *decays* biases
and norms and the pretraining does not (the flag's name says the opposite of what it does).
Eval: vitookit's build_transform resizes to 32 / 0.875 = 36 (bicubic), centre-crops 32.
--ckpt_freq 10 / 5 is in epochs: eval_cls.py evaluates and checkpoints every ckpt_freq epochs and
at the last (ckpt_every_epochs = eval_every_epochs = 10 pretraining, 5 fine-tuning; eval_cls.py
counts from epoch 0, so its evals fall one epoch earlier than these, after epochs 1, 11, 21, ...).

Data: as configs/vit_tiny_cifar10.py (same seed, --data_set CIFAR10 --data_location ../data,
torchvision's download): files:cifar10 under data/ (data/cifar-10-batches-py/; elsewhere
--config.data_dir=DIR); tfds instead: --config.dataset=cifar10 --config.data_dir=

  python main.py --config=configs/mvitv2_tiny_cifar10.py:pretrain --workdir=runs/mvit_c10
  python main.py --config=configs/mvitv2_tiny_cifar10.py:finetune --workdir=runs/mvit_c10_ft \
      --config.init_from=runs/mvit_c10
  python main.py --config=configs/mvitv2_tiny_cifar10.py:eval --workdir=runs/mvit_c10_eval \
      --config.init_from=runs/mvit_c10
Smoke test: --config.dataset=digits (tests/configs/test_configs.py)
"""

from configs import default

VARIANTS = ("pretrain", "finetune", "eval")


def seed004(arg: str, *, model: str, workdir: str, pretrain: dict, finetune: dict):
    """Seed 004's vitookit eval_cls.py recipe for ``model``; ``pretrain`` / ``finetune`` hold what the
    two commands set differently per model (global batch, blr, warmup, drop_path)."""
    if arg not in VARIANTS:
        raise ValueError(f"choose one of {VARIANTS}, got {arg!r}")
    c = default.get_config()
    c.dataset = "files:cifar10"  # torchvision's download, as the seed read it
    c.data_dir = "data"
    c.eval_split = "test"
    c.img_size = 32
    c.patch_size = 2
    c.model = model
    c.model_args = ""
    c.mean = (0.4914, 0.4822, 0.4465)
    c.std = (0.2470, 0.2435, 0.2616)
    c.crop_pct = 0.875
    c.aug.interpolation = "bicubic"
    c.aug.hflip = 0.5
    c.optimizer = "adamw"
    c.weight_decay = 0.05
    c.label_smoothing = 0.1
    c.mixup_alpha = 0.8
    c.cutmix_alpha = 1.0
    c.schedule = "cosine"
    c.schedule_unit = "step"
    c.warmup_lr = 1e-6
    c.min_lr = 1e-5
    c.cooldown_epochs = 0.0
    run = finetune if arg == "finetune" else pretrain
    c.eval_every_epochs = c.ckpt_every_epochs = 5.0 if arg == "finetune" else 10.0  # --ckpt_freq
    c.global_batch_size = run["global_batch_size"]
    c.blr = run["blr"]
    c.warmup_epochs = run["warmup_epochs"]
    c.drop_path_rate = run["drop_path_rate"]
    if arg == "finetune":
        c.aug.scale = (1.0, 1.0)
        c.num_epochs = 100.0
        c.filter_bias_and_bn = False  # --disable_weight_decay_on_bias_norm (see the docstring)
        c.init_from = workdir  # the pretraining workdir
    else:
        c.aug.scale = (0.2, 1.0)
        c.aug.auto_augment = "rand-m9-mstd0.5-inc1"
        c.aug.reprob = 0.25
        c.aug.remode = "pixel"
        c.num_epochs = 800.0
        c.filter_bias_and_bn = True
    if arg == "eval":
        c.eval_only = True
        c.init_from = workdir
    return c


def get_config(arg: str = "pretrain"):
    return seed004(
        arg, model="mvit2_tiny_patch2", workdir="runs/mvit_c10",
        pretrain=dict(global_batch_size=1024, blr=5e-4, warmup_epochs=0.0, drop_path_rate=0.0),
        finetune=dict(global_batch_size=1024, blr=1e-3, warmup_epochs=0.0, drop_path_rate=0.2),
    )
