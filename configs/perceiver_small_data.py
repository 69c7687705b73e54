"""Perceiver (medium / large / xlarge) on CIFAR-10, STL-10, Tiny-ImageNet with the pick-1-to-4 policy.

Source: shared/seeds/001_08ab12b5c0fdb041.txt, "Perceiver" (lucidrains' perceiver-pytorch):
dropout 0.2 on attention and feed-forward; per image 1 to 4 of: ColorJitter(0.2, 0.2, 0.2,
0.2), horizontal and vertical flip, RandomRotation((0, 180)), RandomAffine(15, translate
(0.2, 0.2), scale (0.8, 1.2), shear 15, bilinear), RandomEqualize, RandomAutocontrast,
RandomAdjustSharpness(2), and on STL-10 RandomResizedCrop(96, scale (0.5, 1)); 100 epochs on
CIFAR-10; sizes medium / large / xlarge (its parameter counts: 293,362 / 1,151,730 /
4,428,262); Tiny-ImageNet "_noaug" drops the policy. Its exact widths and optimizer live in
its repository's configs, not in the write-up: perceiver_tiny / _small / _base and AdamW lr
3e-4, batch 128 here (print our counts with `python -m jaxvit.models.perceiver`).

  python main.py --config=configs/perceiver_small_data.py:cifar10_large --workdir=runs/perc_c10_l
Data as configs/swin_small_data.py: torchvision's CIFAR-10 / STL-10 downloads (files:cifar10 under
data/cifar10, files:stl10 under data/stl10; other place: --config.data_dir=DIR), as seed 001's
code reads them; tfds instead: --config.dataset=cifar10 (or stl10) --config.data_dir=
Smoke test: --config.dataset=digits (tests/test_configs.py)
"""

from configs import default
from configs.swin_small_data import DATA, small_data

SIZES = {"": "perceiver_tiny", "_large": "perceiver_small", "_xl": "perceiver_base"}
PICK = ("color_jitter", "hflip", "vflip", "rotate", "affine", "equalize", "autocontrast", "sharpness")
VARIANTS = [f"{d}{s}" for d in sorted(DATA) for s in SIZES] + ["tiny_imagenet_large_noaug"]


def get_config(arg: str = "cifar10"):
    if arg not in VARIANTS:
        raise ValueError(f"configs/perceiver_small_data.py:{arg}: choose one of {VARIANTS}")
    noaug = arg.endswith("_noaug")
    rest = arg.removesuffix("_noaug")
    name = next(d for d in sorted(DATA, key=len, reverse=True) if rest.startswith(d))
    c = small_data(default.get_config(), name)
    c.model = SIZES[rest[len(name):]]
    c.patch_size = 0
    c.aug.random_resized_crop = False
    c.aug.hflip = 0.0  # flips are in the pick policy
    if not noaug:
        c.aug.pick_ops = PICK + (("random_resized_crop",) if name == "stl10" else ())
        c.aug.pick_min, c.aug.pick_max = 1, 4
    c.attn_drop_rate = 0.2
    c.drop_rate = 0.2
    c.optimizer = "adamw"
    c.lr = 3e-4
    c.weight_decay = 0.01
    c.label_smoothing = 0.0
    c.global_batch_size = 128
    c.num_epochs = 100.0
    c.warmup_epochs = 1.0
    c.min_lr = 0.0
    c.eval_every = 1000
    c.ckpt_every = 1000
    return c
