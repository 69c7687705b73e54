"""Swin on CIFAR-10 / STL-10 / Tiny-ImageNet from scratch, and Swin-B fine-tuned on CIFAR-10.

Source: shared/seeds/001_08ab12b5c0fdb041.txt, "Swin Transformer" (timm models):
from scratch, Swin-T-like models per dataset (its table): img 32 / 96 / 64, embed_dim 64,
depths (2, 2, 8, 2), heads (2, 4, 8, 16), patch 4, window 8 / 12 / 8 (clamped to the feature
map as timm does), lr 5e-4, batch 1024 on CIFAR-10; ":cifar10_pretrained" fine-tunes
Swin-B (swin_base_patch4_window7_224, ImageNet weights) for one epoch on CIFAR-10 resized
to 224 (reported 96.39%); "All models were trained with learning rate 5e-4", the fine-tune
included. (The seed repository's src/swin/cifar10.py differs from its write-up: Adam lr 1e-3,
no weight decay, 40 epochs, batch 1024, no augmentation; the write-up is followed here.) Not
stated in the seed (chosen here, Swin paper's defaults): adamw, weight decay 0.05, cosine with 5%
warmup, 100 epochs from scratch, batch 128 outside CIFAR-10, RandomResizedCrop + flip, dataset mean/std.

  python main.py --config=configs/swin_small_data.py:cifar10 --workdir=runs/swin_c10
  python main.py --config=configs/swin_small_data.py:tiny_imagenet --workdir=runs/swin_tin \
      --config.data_dir=/data/tiny-imagenet-200      # the official download, as unpacked
  # :cifar10_pretrained: convert timm's Swin-B once (the torch extra), then fine-tune
  python -c "import timm, torch; torch.save(timm.create_model('swin_base_patch4_window7_224.ms_in1k',
      pretrained=True).state_dict(), 'swin_base.pth')"
  python -m convert --model swin_base_patch4_window7_224 --checkpoint swin_base.pth \
      --out runs/convert/swin_base_patch4_window7_224
  python main.py --config=configs/swin_small_data.py:cifar10_pretrained --workdir=runs/swin_c10_ft
Data (shared by tnt_, mixer_ and perceiver_small_data.py): seed 001's code reads CIFAR-10 and STL-10
through torchvision (datasets.CIFAR10 / STL10(root=data/<dataset>, download=True) in its
src/perceiver/lib/train_utils.py and the Perceiver IO notebook; CIFAR10(root='./data') in
src/cifar/train_cifar10.py, TnT's trainer; its Swin and Mixer notebooks are taken to do the same).
So the defaults read those downloads as they unpack: files:cifar10 under data/cifar10 and files:stl10
under data/stl10 (the folder torchvision made, cifar-10-batches-py/ or stl10_binary/, or its parent:
--config.data_dir=DIR). The same images from tfds: --config.dataset=cifar10 (or stl10)
--config.data_dir= (tfds's own folder; `tfds build cifar10` first).
Smoke test: --config.dataset=digits (tests/configs/test_configs.py)
"""

from configs import default

DATA = {
    # dataset, eval split, img size, window, batch, mean, std
    "cifar10": ("files:cifar10", "test", 32, 8, 1024, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "stl10": ("files:stl10", "test", 96, 12, 128, (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)),
    "tiny_imagenet": ("imagefolder", "val", 64, 8, 128, (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)),
}
VARIANTS = sorted(DATA) + ["cifar10_pretrained"]


def small_data(c, name: str):
    """Dataset, size and normalization of seed 001's three datasets (shared by its configs)."""
    dataset, eval_split, size, _, _, mean, std = DATA[name]
    c.dataset, c.eval_split, c.img_size, c.mean, c.std = dataset, eval_split, size, mean, std
    if dataset.startswith("files:"):  # seed 001's torchvision root: data/cifar10/cifar-10-batches-py/...
        c.data_dir = f"data/{name}"
    c.crop_pct = 1.0
    c.aug.hflip = 0.5
    return c


def get_config(arg: str = "cifar10"):
    if arg not in VARIANTS:
        raise ValueError(f"configs/swin_small_data.py:{arg}: choose one of {VARIANTS}")
    c = default.get_config()
    pretrained = arg.endswith("_pretrained")
    small_data(c, arg.removesuffix("_pretrained"))
    c.patch_size = 0
    c.aug.scale = (0.08, 1.0)
    c.optimizer = "adamw"
    c.weight_decay = 0.05
    c.schedule = "cosine"
    c.label_smoothing = 0.1
    c.eval_every = 1000
    c.ckpt_every = 1000
    if pretrained:
        c.model = "swin_base_patch4_window7_224"
        c.model_args = ""
        c.init_from = "runs/convert/swin_base_patch4_window7_224"
        c.img_size = 224
        c.mean, c.std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        c.crop_pct = 0.875
        c.lr = 5e-4  # the seed: every Swin run at 5e-4
        c.global_batch_size = 64
        c.num_epochs = 1.0
        c.warmup_epochs = 0.05
        return c
    _, _, _, window, batch, _, _ = DATA[arg]
    c.model = "swin_tiny_patch4_window7_224"
    c.model_args = f"embed_dim=64,depths=(2,2,8,2),num_heads=(2,4,8,16),window_size={window}"
    c.lr = 5e-4
    c.global_batch_size = batch
    c.num_epochs = 100.0
    c.warmup_epochs = 5.0
    return c
