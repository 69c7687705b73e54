"""Transformer-in-Transformer on CIFAR-10 / STL-10 / Tiny-ImageNet: random init or TnT-S.

Source: shared/seeds/001_08ab12b5c0fdb041.txt, "Transformer in Transformer": "Rand-TnT",
a randomly initialized 6-layer TnT with patch size 4 and pixel size 2 (timm keywords:
patch_size=4, first_stride=2, depth=6), and "Pre-TnT", timm's pretrained tnt_s_patch16_224
(":<dataset>_pretrained", images resized to 224); both with Adam, lr 1e-4, batch 128,
cosine schedule, 10 epochs, Resize + RandomCrop(size, padding=4) + horizontal flip,
Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)) on every dataset.

Rand-TnT in the seed's own source (395t/coding-assignment-week-8-vit-2, src/tnt/train.py with
--net tnt, and src/tnt/models/tnt.py, lucidrains' transformer-in-transformer) is
TNT(patch_dim=512, pixel_dim=24, depth=6, heads=8, dim_head=64, attn_dropout=0.1,
ff_dropout=0.1, patch 4, pixel 2). jaxvit's TnT is timm's, and lucidrains' differs in kind,
not in size, so it is not reproduced exactly; this config takes its sizes (embed_dim 512,
inner_dim 24, depth 6, 8 heads inside and out, dropout 0.1 on attention and MLPs) and keeps
timm's structure. The deviations: (1) lucidrains' outer tokens start as learned parameters
shared by all images (``patch_tokens``) and see the image only through each block's
pixel-to-patch residual, timm embeds every patch from its pixels and adds a class token;
(2) lucidrains' inner tokens are linear maps of raw 2x2-pixel patches (unfold + Linear),
timm's a 7x7 conv with stride ``first_stride`` inside each 4x4 patch; (3) lucidrains'
attention projects to heads x 64 channels (512) inside and out, timm splits the width
(8 heads of 3 channels inside); (4) lucidrains' head is LayerNorm + Linear on the first
token with no final norm, no drop path. A parity port would be a new family.

  python main.py --config=configs/tnt_small_data.py:cifar10 --workdir=runs/tnt_c10
  python main.py --config=configs/tnt_small_data.py:stl10_pretrained --workdir=runs/tnt_stl_pre
Data as configs/swin_small_data.py: torchvision's CIFAR-10 / STL-10 downloads (files:cifar10 under
data/cifar10, files:stl10 under data/stl10; other place: --config.data_dir=DIR), as seed 001's
code reads them; tfds instead: --config.dataset=cifar10 (or stl10) --config.data_dir=
Smoke test: --config.dataset=digits (tests/configs/test_configs.py)
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
    c.model_args = ""
    if pretrained:
        c.img_size = 224
        c.patch_size = 0
        c.init_from = "runs/convert/tnt_s_patch16_224"
    else:
        c.patch_size = 4
        # proj_drop_rate: lucidrains' ff_dropout (in the MLPs; timm also drops after attention's proj)
        c.model_args = ("first_stride=2,depth=6,embed_dim=512,inner_dim=24,num_heads_outer=8,"
                        "num_heads_inner=8,proj_drop_rate=0.1")
        c.attn_drop_rate = 0.1  # lucidrains' attn_dropout (it drops the attention output; timm the weights)
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
