"""MLP-Mixer-B/16 fine-tuned on CIFAR-100 at 224px from ImageNet-21k weights (miil or official).

Source: shared/seeds/000_002a583accf1febd.txt (timm train.py): -b 128, --img-size 224,
--epochs 50, --color-jitter 0, --squish, --amp, --sched cosine, --model-ema
--model-ema-decay 0.995, --reprob 0.5, --smoothing 0.1, --min-lr 1e-8, --warmup-epochs 3,
--train-interpolation bilinear, --aa v0, --pretrained, --lr 2e-4, --opt adam,
--weight-decay 1e-4; --model mixer_b16_224_miil_in21k (":miil", reported 91.1%) or
mixer_b16_224_in21k (":official", 84.0%). The other rows of its table are overrides:
  --config.optimizer=adam  --config.lr=4e-4                          (miil 90.5, official 82.6)
  --config.optimizer=adamw --config.lr=2e-4 [--config.weight_decay=1e-2] (90.9 / 84.4, 84.7)
  --config.optimizer=sgd   --config.lr=2e-4                          (92.4 / 91.7)
timm train.py steps the scheduler once per epoch (schedule_unit='epoch'); its warmup_lr
default at the time was 1e-4 (timm 0.4.x), and so was --cooldown-epochs 10: the command sets
none, so timm's create_scheduler returned num_epochs = 50 (cosine) + 10 (at min_lr) and the run
trained 60 epochs (cooldown_epochs=10 here). --amp is bfloat16 compute here (params fp32).

First convert the weights (once; the torch extra, and timm's download for the .pth):
  python -c "import timm, torch; torch.save(timm.create_model('mixer_b16_224.miil_in21k',
      pretrained=True).state_dict(), 'mixer_miil.pth')"
  python -m convert --model mixer_b16_224 --checkpoint mixer_miil.pth \
      --out runs/convert/mixer_b16_224.miil_in21k
  python main.py --config=configs/mixer_b16_cifar100.py:miil --workdir=runs/mixer_c100_miil
Data: CIFAR-100 as torchvision downloads it (files:cifar100 under data/cifar100: the folder that
holds cifar-100-python/, or that folder; elsewhere --config.data_dir=DIR), the form a PyTorch user
has. The seed's own command passes timm a folder (/Cifar100Folder/, no --dataset: timm's image
folder reader, so CIFAR-100 exported to image files; the same 50,000 / 10,000 images, PNG being
lossless): such an export reads with --config.dataset=imagefolder --config.data_dir=DIR
--config.eval_split=val (DIR/train/<class>/, DIR/val/<class>/). tfds: --config.dataset=cifar100
--config.data_dir=
Smoke test: --config.dataset=digits --config.init_from= (see tests/configs/test_configs.py)
"""

from configs import default

PRETRAINED = {
    # timm name, (mean, std) of that pretraining
    "miil": ("mixer_b16_224.miil_in21k", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "official": ("mixer_b16_224.goog_in21k", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


def get_config(arg: str = "miil"):
    if arg not in PRETRAINED:
        raise ValueError(f"configs/mixer_b16_cifar100.py:{arg}: choose one of {sorted(PRETRAINED)}")
    name, mean, std = PRETRAINED[arg]
    c = default.get_config()
    c.dataset = "files:cifar100"  # torchvision's download (see the docstring)
    c.data_dir = "data/cifar100"
    c.eval_split = "test"
    c.img_size = 224
    c.patch_size = 0
    c.mean, c.std = mean, std
    c.crop_pct = 1.0  # --squish: eval resizes the whole image
    c.aug.squish = True
    c.aug.random_resized_crop = False
    c.aug.interpolation = "bilinear"
    c.aug.hflip = 0.5
    c.aug.color_jitter = 0.0
    c.aug.auto_augment = "v0"
    c.aug.reprob = 0.5
    c.model = name
    c.model_args = ""
    c.init_from = f"runs/convert/{name}"
    c.dtype = "bfloat16"
    c.global_batch_size = 128
    c.num_epochs = 50.0
    c.optimizer = "adam"
    c.lr = 2e-4
    c.weight_decay = 1e-4
    c.label_smoothing = 0.1
    c.schedule = "cosine"
    c.schedule_unit = "epoch"
    c.warmup_epochs = 3.0
    c.warmup_lr = 1e-4
    c.min_lr = 1e-8
    c.cooldown_epochs = 10.0  # timm 0.4.x train.py's default; the run is 50 + 10 epochs
    c.model_ema = True
    c.model_ema_decay = 0.995
    c.eval_every_epochs = c.ckpt_every_epochs = 1.0  # timm train.py: eval and checkpoint every epoch
    return c
