"""Transformer-in-Transformer on CIFAR-10 / STL-10 / Tiny-ImageNet: random init or TnT-S.

Source: shared/seeds/001_08ab12b5c0fdb041.txt, "Transformer in Transformer": "Rand-TnT",
a randomly initialized 6-layer TnT with patch size 4 and pixel size 2 (timm keywords:
patch_size=4, first_stride=2, depth=6), and "Pre-TnT", timm's pretrained tnt_s_patch16_224
(":<dataset>_pretrained", images resized to 224); both with Adam, lr 1e-4, batch 128,
cosine schedule, 10 epochs, Resize + RandomCrop(size, padding=4) + horizontal flip,
Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)) on every dataset.
Rand-TnT's widths are not stated (lucidrains' TNT was used): TnT-S's 384 / 24 here.

  python main.py --config=configs/tnt_small_data.py:cifar10 --workdir=runs/tnt_c10
  python main.py --config=configs/tnt_small_data.py:stl10_pretrained --workdir=runs/tnt_stl_pre
Data as configs/swin_small_data.py: torchvision's CIFAR-10 / STL-10 downloads (files:cifar10 under
data/cifar10, files:stl10 under data/stl10; other place: --config.data_dir=DIR), as seed 001's
code reads them; tfds instead: --config.dataset=cifar10 (or stl10) --config.data_dir=
Smoke test: --config.dataset=digits (tests/test_configs.py)
"""

from configs import default
from configs.swin_small_data import DATA, small_data

VARIANTS = sorted(DATA) + [f"{d}_pretrained" for d in sorted(DATA)]


def get_config(arg: str = "cifar10"):
    if arg not in VARIANTS:
        raise ValueError(f"configs/tnt_small_data.py:{arg}: choose one of {VARIANTS}")
    pretrained = arg.endswith("_pretrained")
    c = small_data(default.get_config(), arg.removesuffix("_pretrained"))
    c.mean, c.std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)  # the seed's, everywhere
    c.aug.random_resized_crop = False  # Resize, then RandomCrop(size, padding=4)
    c.aug.crop_padding = 4
    c.model = "tnt_s_patch16_224"
    if pretrained:
        c.img_size = 224
        c.patch_size = 0
        c.init_from = "runs/convert/tnt_s_patch16_224"
    else:
        c.patch_size = 4
        c.model_args = "first_stride=2,depth=6"
    c.optimizer = "adam"
    c.lr = 1e-4
    c.weight_decay = 0.0
    c.label_smoothing = 0.0
    c.schedule = "cosine"
    c.warmup_epochs = 0.0
    c.min_lr = 0.0
    c.global_batch_size = 128
    c.num_epochs = 10.0
    c.eval_every = 1000
    c.ckpt_every = 1000
    return c
