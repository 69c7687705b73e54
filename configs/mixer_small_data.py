"""MLP-Mixer on CIFAR-10 / STL-10 / Tiny-ImageNet: Mixer-S/16 from scratch, Mixer-B/16 fine-tuned.

Source: shared/seeds/001_08ab12b5c0fdb041.txt, "MLP-Mixer" (timm models): from scratch,
mixer_s16_224 (8 layers, 16x16 patches) at each dataset's size, Adam, 20 epochs,
RandomHorizontalFlip + ColorJitter; its chosen settings: CIFAR-10 lr 1e-3 batch 512 (59%),
STL-10 lr 1e-4 batch 256 (44%), Tiny-ImageNet lr 1e-2 batch 512 (18%).
":<dataset>_pretrained": timm's pretrained mixer_b16_224 fine-tuned at 224, lr 5e-5,
batch 32, 2 epochs (95% / 94.9% / 83.3%). The colour-jitter strength is not stated: 0.4
(timm's default). Schedule not stated: constant lr.

  python main.py --config=configs/mixer_small_data.py:cifar10 --workdir=runs/mixer_c10
Data as configs/swin_small_data.py: torchvision's CIFAR-10 / STL-10 downloads (files:cifar10 under
data/cifar10, files:stl10 under data/stl10; other place: --config.data_dir=DIR), as seed 001's
code reads them; tfds instead: --config.dataset=cifar10 (or stl10) --config.data_dir=
Smoke test: --config.dataset=digits (tests/configs/test_configs.py)
"""

from configs import default
from configs.swin_small_data import DATA, small_data

SCRATCH = {"cifar10": (1e-3, 512), "stl10": (1e-4, 256), "tiny_imagenet": (1e-2, 512)}
VARIANTS = sorted(DATA) + [f"{d}_pretrained" for d in sorted(DATA)]


def get_config(arg: str = "cifar10"):
    if arg not in VARIANTS:
        raise ValueError(f"configs/mixer_small_data.py:{arg}: choose one of {VARIANTS}")
    pretrained = arg.endswith("_pretrained")
    name = arg.removesuffix("_pretrained")
    c = small_data(default.get_config(), name)
    c.aug.random_resized_crop = False
    c.aug.color_jitter = 0.4
    c.patch_size = 0
    c.optimizer = "adam"
    c.weight_decay = 0.0
    c.label_smoothing = 0.0
    c.schedule = "constant"
    c.warmup_epochs = 0.0
    c.eval_every = 1000
    c.ckpt_every = 1000
    if pretrained:
        c.model = "mixer_b16_224"
        c.model_args = ""
        c.init_from = "runs/convert/mixer_b16_224"
        c.img_size = 224
        c.mean = c.std = (0.5, 0.5, 0.5)
        c.lr, c.global_batch_size, c.num_epochs = 5e-5, 32, 2.0
    else:
        c.model = "mixer_s16_224"
        c.model_args = ""
        c.lr, c.global_batch_size = SCRATCH[name]
        c.num_epochs = 20.0
    return c
