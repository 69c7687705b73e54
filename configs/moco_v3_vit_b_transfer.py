"""MoCo v3 ViT-B/16 fine-tuned end to end on CIFAR-10, CIFAR-100, Flowers or Pets (DeiT recipe).

Source: shared/seeds/002_b09b7cb011dfa531.txt: DeiT main.py on 8 GPUs, --batch-size 128
(global 1024 = 8 x 128), --epochs 100, --lr 3e-4, --warmup-epochs 3, --no-repeated-aug,
--eval-freq 10 (epochs: eval_every_epochs) and
per dataset (reported top-1):
  cifar10   wd 0.1, reprob 0.0,  drop-path 0.1, mixup 0.8, cutmix 1   (98.9%)
  cifar100  wd 0.1, reprob 0.0,  drop-path 0.1, mixup 0.5, cutmix 1   (90.5%)
  flowers   wd 0.3, reprob 0.25, drop-path 0.1, mixup 0,   cutmix 0   (97.7%)
  pets      wd 0.1, reprob 0,    drop-path 0,   mixup 0.8, cutmix 0   (93.2%)
The rest is DeiT main.py's defaults: lr scaled by global batch / 512 (3e-4 -> 6e-4), adamw,
cosine per epoch, warmup_lr 1e-6, min_lr 1e-5, smoothing 0.1, mixup prob 1 / switch 0.5 /
batch mode, model EMA 0.99996. The images are transformed by the datasets.py the seed copies
into DeiT (facebookresearch/moco-v3 transfer/datasets.py, build_transform), not DeiT's own:
train RandomResizedCrop(224, scale=(0.05, 1)) (torchvision: bilinear, ratio 3/4..4/3) and a
horizontal flip, nothing else (no RandAugment, no colour jitter, and no random erasing: that
build_transform never reads --reprob, so the seed's --reprob 0.25 for Flowers has no effect);
eval Resize(256/224 * 224) + CenterCrop(224) (crop_pct 0.875, bilinear); ImageNet mean/std.

First convert the MoCo v3 checkpoint (its linear-probe/"vit-b-300ep.pth.tar" file):
  python -m convert --checkpoint vit-b-300ep.pth.tar --model vit_base_patch16_224 \
      --out runs/convert/mocov3_vit_b
  python main.py --config=configs/moco_v3_vit_b_transfer.py:cifar10 --workdir=runs/moco_c10
Flowers and Pets are read as seed 002 has them downloaded (its oxford_flowers_dataset.py and
oxford_pets_dataset.py): --config.data_dir=ROOT with ROOT/jpg/, ROOT/imagelabels.mat, ROOT/setid.mat
(dataset files:flowers102; train = trnid + valid, 2,040 images, as that loader does; test = tstid)
or ROOT/images/, ROOT/annotations/{trainval,test}.txt (files:pets; 3,680 / 3,669). The same images
and splits also come from tfds (variants flowers_tfds: oxford_flowers102 train+validation / test,
pets_tfds: oxford_iiit_pet train / test), prepared with `tfds build NAME`. CIFAR-10/100: the seed's
datasets.py has torchvision download them (datasets.CIFAR10 / CIFAR100(args.data_path,
download=True)), so cifar10 / cifar100 read that download as it unpacks (files:cifar10 under
data/cifar10, files:cifar100 under data/cifar100: the folder that holds cifar-10-batches-py/ or
cifar-100-python/, or that folder; elsewhere --config.data_dir=DIR); cifar10_tfds / cifar100_tfds
read tfds's cifar10 / cifar100 instead. Smoke test: --config.dataset=digits --config.init_from=
(tests/configs/test_configs.py)
"""

from configs import default
from jaxvit.errors import ConfigError

DATASETS = {
    # dataset, data_dir, train split, eval split, weight decay, drop path, mixup, cutmix
    "cifar10": ("files:cifar10", "data/cifar10", "train", "test", 0.1, 0.1, 0.8, 1.0),
    "cifar100": ("files:cifar100", "data/cifar100", "train", "test", 0.1, 0.1, 0.5, 1.0),
    "flowers": ("files:flowers102", "data/flowers", "train+val", "test", 0.3, 0.1, 0.0, 0.0),
    "pets": ("files:pets", "data/pets", "train", "test", 0.1, 0.0, 0.8, 0.0),
    "flowers_tfds": ("oxford_flowers102", "", "train+validation", "test", 0.3, 0.1, 0.0, 0.0),
    "pets_tfds": ("oxford_iiit_pet", "", "train", "test", 0.1, 0.0, 0.8, 0.0),
    "cifar10_tfds": ("cifar10", "", "train", "test", 0.1, 0.1, 0.8, 1.0),
    "cifar100_tfds": ("cifar100", "", "train", "test", 0.1, 0.1, 0.5, 1.0),
}


def get_config(arg: str = "cifar10"):
    if arg not in DATASETS:
        raise ConfigError(f"configs/moco_v3_vit_b_transfer.py:{arg}: choose one of {sorted(DATASETS)}")
    dataset, data_dir, train_split, eval_split, wd, drop_path, mixup, cutmix = DATASETS[arg]
    c = default.get_config()
    c.dataset, c.data_dir = dataset, data_dir
    c.train_split, c.eval_split = train_split, eval_split
    c.img_size = 224
    c.patch_size = 0
    c.mean = (0.485, 0.456, 0.406)
    c.std = (0.229, 0.224, 0.225)
    c.crop_pct = 0.875
    c.aug.scale = (0.05, 1.0)  # moco-v3 transfer/datasets.py
    c.aug.interpolation = "bilinear"  # torchvision's RandomResizedCrop / Resize default
    c.aug.hflip = 0.5
    c.aug.auto_augment = ""
    c.aug.reprob = 0.0
    c.repeated_aug = 0
    c.model = "vit_base_patch16_224"
    c.model_args = ""
    c.init_from = "runs/convert/mocov3_vit_b"
    c.drop_path_rate = drop_path
    c.dtype = "bfloat16"
    c.global_batch_size = 1024  # 8 x 128
    c.num_epochs = 100.0
    c.optimizer = "adamw"
    c.lr = 3e-4 * 1024 / 512  # DeiT: args.lr * global batch / 512
    c.weight_decay = wd
    c.label_smoothing = 0.1
    c.schedule = "cosine"
    c.schedule_unit = "epoch"
    c.warmup_epochs = 3.0
    c.warmup_lr = 1e-6
    c.min_lr = 1e-5
    c.mixup_alpha = mixup
    c.cutmix_alpha = cutmix
    c.mixup_prob = 1.0
    c.switch_prob = 0.5
    c.mixup_mode = "batch"
    c.model_ema = True
    c.model_ema_decay = 0.99996
    c.eval_every_epochs = 10.0  # --eval-freq 10
    c.ckpt_every_epochs = 1.0  # DeiT main.py writes its checkpoint every epoch
    return c
