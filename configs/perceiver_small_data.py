"""Perceiver Medium / Large / XLarge on CIFAR-10, STL-10, Tiny-ImageNet with the pick-1-to-4 policy.

Source: shared/seeds/001_08ab12b5c0fdb041.txt, "Perceiver" (lucidrains' perceiver-pytorch), whose
exact settings live in its repository, 395t/coding-assignment-week-8-vit-2:
``src/perceiver/configs/perceiver_{cifar10,stl10,tinyimagenet}*.py`` (one file per variant
below, same names) and ``src/perceiver/lib/train_utils.py`` (data, optimizer, loop):
  models      perceiver_medium / _large / _xlarge (jaxvit/models/perceiver.py), 6 Fourier bands,
              max_freq 10, no weight tying; with 10 classes the seed's 293,362 / 1,151,730 /
              4,428,262 parameters. Tiny-ImageNet's XL has 48-channel heads (its own config).
  optimizer   torch AdamW with only lr set: weight decay 0.01, betas (0.9, 0.999), eps 1e-8,
              constant lr (no schedule, no warmup), plain cross-entropy.
  per variant lr, dropout (attn = ff), batch, epochs, as in the table VARIANTS below.
  data        CIFAR-10 / STL-10 normalized with (0.4914, 0.4822, 0.4465) / (0.2023, 0.1994,
              0.2010); Tiny-ImageNet only ToTensor (mean 0, std 1); no resize, no crop at eval.
  policy      RandomChoice of 1..4 (uniform) steps, each step one op drawn uniformly *with
              replacement* from: ColorJitter(0.2, 0.2, 0.2, 0.2), RandomHorizontalFlip,
              RandomVerticalFlip, RandomRotation((0, 180)), RandomAffine(15, (0.2, 0.2), (0.8,
              1.2), 15, bilinear), RandomEqualize, RandomAutocontrast, RandomAdjustSharpness(2),
              and on STL-10 / Tiny-ImageNet RandomResizedCrop(size, (0.5, 1)); the torchvision
              Random* ops that take a p (flips, equalize, autocontrast, sharpness) apply with
              their default p=0.5 (jaxvit.data.autoaugment.PICK_PROB). ``_noaug`` drops it.
Deviation, on purpose: the seed's evaluate() calls model.eval() after every epoch and the loop
never calls model.train() again, so from epoch 2 on its runs trained without dropout (which may
be why its write-up found dropout "had negligible effect"). jaxvit trains with the dropout
the configs ask for. Also: jaxvit drops the last partial batch (the seed keeps it).

  python main.py --config=configs/perceiver_small_data.py:cifar10_large --workdir=runs/perc_c10_l
Data as configs/swin_small_data.py: torchvision's CIFAR-10 / STL-10 downloads (files:cifar10 under
data/cifar10, files:stl10 under data/stl10; other place: --config.data_dir=DIR), as seed 001's
code reads them; tfds instead: --config.dataset=cifar10 (or stl10) --config.data_dir=
Smoke test: --config.dataset=digits (tests/configs/test_configs.py)
"""

from configs import default
from configs.swin_small_data import small_data

PICK = ("color_jitter", "hflip", "vflip", "rotate", "affine", "equalize", "autocontrast", "sharpness")
SEED_NORM = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
# variant: (dataset, model, lr, dropout, batch, epochs, model_args)
VARIANTS = {
    "cifar10": ("cifar10", "perceiver_medium", 1e-3, 0.2, 64, 100, ""),
    "cifar10_large": ("cifar10", "perceiver_large", 3e-4, 0.3, 64, 100, ""),
    "cifar10_xl": ("cifar10", "perceiver_xlarge", 3e-4, 0.3, 64, 100, ""),
    "cifar10_noaug": ("cifar10", "perceiver_medium", 1e-3, 0.2, 64, 100, ""),
    "cifar10_noaug_nodrop": ("cifar10", "perceiver_medium", 1e-3, 0.0, 64, 100, ""),
    "stl10": ("stl10", "perceiver_medium", 3e-4, 0.2, 32, 200, ""),
    "stl10_large": ("stl10", "perceiver_large", 3e-4, 0.3, 32, 200, ""),
    "stl10_xl": ("stl10", "perceiver_xlarge", 3e-4, 0.3, 32, 200, ""),
    "tiny_imagenet_large": ("tiny_imagenet", "perceiver_large", 3e-4, 0.2, 64, 100, ""),
    "tiny_imagenet_large_noaug": ("tiny_imagenet", "perceiver_large", 3e-4, 0.2, 64, 100, ""),
    "tiny_imagenet_large_noaug_nodrop": ("tiny_imagenet", "perceiver_large", 3e-4, 0.0, 64, 100, ""),
    "tiny_imagenet_xl": ("tiny_imagenet", "perceiver_xlarge", 3e-4, 0.2, 64, 100,
                         "cross_dim_head=48,latent_dim_head=48"),
}


def get_config(arg: str = "cifar10"):
    if arg not in VARIANTS:
        raise ValueError(f"configs/perceiver_small_data.py:{arg}: choose one of {list(VARIANTS)}")
    name, model, lr, drop, batch, epochs, model_args = VARIANTS[arg]
    c = small_data(default.get_config(), name)
    c.model, c.model_args = model, model_args
    c.patch_size = 0
    c.mean, c.std = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)) if name == "tiny_imagenet" else SEED_NORM
    c.aug.random_resized_crop = False
    c.aug.interpolation = "bilinear"  # torchvision RandomResizedCrop's default (the policy's crop)
    c.aug.hflip = 0.0  # flips are in the pick policy
    if "_noaug" not in arg:
        c.aug.pick_ops = PICK + (("random_resized_crop",) if name != "cifar10" else ())
        c.aug.pick_min, c.aug.pick_max = 1, 4
    c.attn_drop_rate = drop
    c.drop_rate = drop
    c.optimizer = "adamw"
    c.lr = lr
    c.weight_decay = 0.01  # torch AdamW's default
    c.filter_bias_and_bn = False  # torch AdamW on model.parameters(): every tensor decays
    c.label_smoothing = 0.0
    c.schedule = "constant"
    c.warmup_epochs = 0.0
    c.global_batch_size = batch
    c.num_epochs = float(epochs)
    c.eval_every = 1000
    c.ckpt_every = 1000
    return c
