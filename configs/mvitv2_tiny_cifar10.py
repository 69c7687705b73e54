"""MViTv2-tiny on CIFAR-10 at 32px (patch stride 2): strong-aug pretraining, weak-aug fine-tuning.

Source: shared/seeds/004_58be01dcd4f55008.txt, "mvit: pretrain: 96.58" and "mvit: ft using
weak aug" (model mvit2_tiny_patch2):
  :pretrain  --warmup_epochs=0 --epochs 800 --batch_size=512 --weight_decay 0.05,
             scale (0.2, 1), CIFAR mean/std; the seed's strong augmentation listing:
             RandomResizedCrop bicubic, hflip, RandAugment n2 m9 mstd0.5 (*Increasing ops),
             RandomErasing p=0.25 pixel.
  :finetune  from the pretraining checkpoint, --blr=1e-3 --warmup_epochs=0 --epochs 100
             --aa="" --reprob=0 --disable_weight_decay_on_bias_norm --batch_size=1024,
             scale (1, 1), drop_path 0.2, attn_drop 0.05.
Not in the seed's text, taken from the MAE-style eval_cls.py defaults it builds on (an
assumption): adamw, lr = blr * batch / 256 with blr 1e-3 for the pretraining too, min_lr
1e-6, smoothing 0.1, scheduler per epoch. MViTv2-tiny at 32px: patch kernel 3, stride 2,
padding 1 (16x16 tokens).

Data: as configs/vit_tiny_cifar10.py (same seed, --data_set CIFAR10 --data_location ../data,
torchvision's download): files:cifar10 under data/ (data/cifar-10-batches-py/; elsewhere
--config.data_dir=DIR); tfds instead: --config.dataset=cifar10 --config.data_dir=

  python main.py --config=configs/mvitv2_tiny_cifar10.py:pretrain --workdir=runs/mvit_c10
  python main.py --config=configs/mvitv2_tiny_cifar10.py:finetune --workdir=runs/mvit_c10_ft \
      --config.init_from=runs/mvit_c10
Smoke test: --config.dataset=digits (tests/test_configs.py)
"""

from configs import default


def get_config(arg: str = "pretrain"):
    if arg not in ("pretrain", "finetune"):
        raise ValueError(f"configs/mvitv2_tiny_cifar10.py:{arg}: choose 'pretrain' or 'finetune'")
    c = default.get_config()
    c.dataset = "files:cifar10"  # torchvision's download, as the seed read it
    c.data_dir = "data"
    c.eval_split = "test"
    c.img_size = 32
    c.patch_size = 0
    c.model = "mvitv2_tiny"
    c.model_args = "patch_kernel=(3,3),patch_stride=(2,2),patch_padding=(1,1)"
    c.mean = (0.4914, 0.4822, 0.4465)
    c.std = (0.2470, 0.2435, 0.2616)
    c.crop_pct = 1.0
    c.aug.interpolation = "bicubic"
    c.aug.hflip = 0.5
    c.optimizer = "adamw"
    c.blr = 1e-3
    c.weight_decay = 0.05
    c.label_smoothing = 0.1
    c.schedule = "cosine"
    c.schedule_unit = "epoch"
    c.warmup_epochs = 0.0
    c.min_lr = 1e-6
    c.eval_every = 2000
    c.ckpt_every = 2000
    if arg == "pretrain":
        c.aug.scale = (0.2, 1.0)
        c.aug.auto_augment = "rand-m9-mstd0.5-inc1"
        c.aug.reprob = 0.25
        c.aug.remode = "pixel"
        c.global_batch_size = 512
        c.num_epochs = 800.0
        c.filter_bias_and_bn = False  # the pretraining command does not disable it
    else:
        c.aug.scale = (1.0, 1.0)
        c.global_batch_size = 1024
        c.num_epochs = 100.0
        c.drop_path_rate = 0.2
        c.attn_drop_rate = 0.05
        c.filter_bias_and_bn = True  # --disable_weight_decay_on_bias_norm
        c.init_from = "runs/mvit_c10"  # the pretraining workdir
    return c
