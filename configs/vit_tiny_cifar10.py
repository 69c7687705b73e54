"""ViT-Tiny trained from scratch on CIFAR-10 at 32px/patch 2 or 64px/patch 4.

Source: shared/seeds/004_58be01dcd4f55008.txt ("vit: 95.66" at 32px, "vit: 96.94" at 64px):
adamw, lr 1e-3, 10 warmup epochs, 200 epochs, batch 256, weight decay 0.05,
smoothing 0.1, --ra=3 (repeated augmentation), --reprob 0.1, RandomResizedCrop scale
(0.8, 1), CIFAR mean/std; the seed's "strong augmentation" listing: bicubic, horizontal
flip, RandAugment n=2 m=9 mstd=0.5 with the *Increasing ops (rand-m9-mstd0.5-inc1),
erasing in pixel mode. The scheduler is stepped per epoch (DeiT/MAE-style eval_cls.py).

Data: the seed's eval_cls.py reads CIFAR-10 with torchvision (--data_set CIFAR10
--data_location ../data: datasets.CIFAR10(root, download=True)), so the default is that download
as it unpacks: files:cifar10 under data/ (data/cifar-10-batches-py/; elsewhere
--config.data_dir=DIR). tfds instead: --config.dataset=cifar10 --config.data_dir=

python main.py --config=configs/vit_tiny_cifar10.py --workdir=runs/vit_c10_32
python main.py --config=configs/vit_tiny_cifar10.py:64 --workdir=runs/vit_c10_64
Smoke test: add --config.dataset=digits --config.eval_split=test --config.num_epochs=1
"""

from configs import default


def get_config(arg: str = "32"):
    size = int(arg)
    if size not in (32, 64):
        raise ValueError(f"configs/vit_tiny_cifar10.py:{arg}: the seed recipe has sizes 32 and 64")
    c = default.get_config()
    c.dataset = "files:cifar10"  # torchvision's download, as the seed read it
    c.data_dir = "data"
    c.eval_split = "test"
    c.img_size = size
    c.patch_size = 2 if size == 32 else 4
    c.mean = (0.4914, 0.4822, 0.4465)
    c.std = (0.2470, 0.2435, 0.2616)
    c.aug.scale = (0.8, 1.0)
    c.aug.hflip = 0.5
    c.aug.interpolation = "bicubic"
    c.aug.auto_augment = "rand-m9-mstd0.5-inc1"
    c.aug.reprob = 0.1
    c.aug.remode = "pixel"
    c.repeated_aug = 3
    c.model = "vit_tiny_patch16_224"
    c.model_args = ""
    c.global_batch_size = 256
    c.num_epochs = 200.0
    c.optimizer = "adamw"
    c.lr = 1e-3
    c.weight_decay = 0.05
    c.label_smoothing = 0.1
    c.warmup_epochs = 10.0
    c.schedule_unit = "epoch"
    c.eval_every = 1000
    c.ckpt_every = 1000
    return c
