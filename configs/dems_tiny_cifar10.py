"""Seed 004's DEMS-ViT-tiny on CIFAR-10 at 32 px: strong-aug pretraining, weak-aug fine-tuning, eval.

Source: shared/seeds/004_58be01dcd4f55008.txt, "dems: pretrain, official 96.03, ours: 95.8",
"dems: ft using weak aug, official 96.74" and "dems: evaluate" (--model dems_tiny_patch2_32,
jaxvit/models/dems.py), run with erow/vitookit at d6f4dd1:
  :pretrain  --warmup_epochs=10 --epochs 800 --batch_size=512 on 2 GPUs (global 1024)
             --weight_decay 0.05, scale (0.2, 1), drop_path 0.2, the seed's CIFAR mean/std.
  :finetune  from the pretraining checkpoint: --blr=1e-3 --warmup_epochs=10 --epochs 100 --aa=""
             --reprob=0 --disable_weight_decay_on_bias_norm --batch_size=512 on 2 GPUs (global
             1024), scale (1, 1), drop_path 0.2.
  :eval      the seed's "evaluate" command: the pretraining checkpoint on the test set.
Both commands pass build_model.attn_drop=0.05, which DEMS_ViT (it takes attn_drop_rate) swallows
in **kwargs: no attention dropout ran, none here. Everything the commands leave to vitookit's
eval_cls.py defaults (blr 5e-4 for the pretraining, adamw, per-update cosine, warmup_lr 1e-6,
min_lr 1e-5, RandAugment, RandomErasing 0.25, mixup 0.8 + cutmix 1.0 with smoothing 0.1, the
inverted bias/norm decay flag, eval resize 36 + centre crop 32, no cooldown) is as in, and
explained by, configs/mvitv2_tiny_cifar10.py, whose ``seed004`` builds this recipe too.
dems_small_patch2_32 (not trained in the seed) takes the same: --config.model=dems_small_patch2_32.

  python main.py --config=configs/dems_tiny_cifar10.py:pretrain --workdir=runs/dems_c10
  python main.py --config=configs/dems_tiny_cifar10.py:finetune --workdir=runs/dems_c10_ft \
      --config.init_from=runs/dems_c10
  python main.py --config=configs/dems_tiny_cifar10.py:eval --workdir=runs/dems_c10_eval \
      --config.init_from=runs/dems_c10
Smoke test: --config.dataset=digits (tests/configs/test_configs.py)
"""

from configs.mvitv2_tiny_cifar10 import VARIANTS, seed004  # noqa: F401 (VARIANTS: the variants)


def get_config(arg: str = "pretrain"):
    return seed004(
        arg, model="dems_tiny_patch2_32", workdir="runs/dems_c10",
        pretrain=dict(global_batch_size=1024, blr=5e-4, warmup_epochs=10.0, drop_path_rate=0.2),
        finetune=dict(global_batch_size=1024, blr=1e-3, warmup_epochs=10.0, drop_path_rate=0.2),
    )
